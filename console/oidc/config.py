"""Where the company's identity provider is, and what it says about itself.

Everything comes from settings (the OIDC_* environment variables, see
docs/sign-in-with-oidc.md). The provider's endpoints are either given one by
one or read from its discovery document, once per process and only when a
sign-in with the provider needs them: a provider that is down never stands in
the way of a password sign-in.
"""

import logging
import threading
from dataclasses import dataclass

import requests
from django.conf import settings
from mozilla_django_oidc.utils import import_from_settings

log = logging.getLogger("console.oidc")

# mozilla-django-oidc's setting name -> the discovery document's field.
ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
ROLE_NAMES = ("viewer", "operator", "admin")


class ProviderUnavailable(Exception):
    """The provider's discovery document could not be read, or is not the issuer's."""


def oidc_enabled() -> bool:
    """Sign-in with the provider is offered only when it is configured."""
    return bool(settings.OIDC_ISSUER and settings.OIDC_RP_CLIENT_ID)


def provider_name() -> str:
    return settings.OIDC_PROVIDER_NAME


_discovered: dict[str, dict] = {}
_discovery_lock = threading.Lock()


def discovery_document(issuer: str) -> dict:
    """The issuer's /.well-known/openid-configuration, kept once read."""
    with _discovery_lock:
        if issuer in _discovered:
            return _discovered[issuer]
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = requests.get(
                url, timeout=settings.OIDC_TIMEOUT, verify=settings.OIDC_VERIFY_SSL
            )
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as error:
            raise ProviderUnavailable(f"discovery at {url} failed: {error}") from error
        if not isinstance(document, dict) or document.get("issuer") != issuer:
            # A document naming another issuer would let that issuer sign people in.
            raise ProviderUnavailable(f"discovery at {url} names another issuer")
        _discovered[issuer] = document
        return document


def forget_discovery() -> None:
    """For tests that start a new provider."""
    with _discovery_lock:
        _discovered.clear()


def oidc_setting(attr: str, *default):
    """mozilla-django-oidc's settings, with endpoints not given filled in from discovery."""
    if attr in ENDPOINTS:
        explicit = getattr(settings, attr, "")
        if explicit:
            return explicit
        field = ENDPOINTS[attr]
        value = discovery_document(settings.OIDC_ISSUER).get(field)
        if not value:
            raise ProviderUnavailable(f"the discovery document has no {field}")
        return value
    return import_from_settings(attr, *default)


@dataclass(frozen=True)
class GroupRole:
    group: str
    team_slug: str
    role: str


def parse_group_roles(text: str) -> list[GroupRole]:
    """OIDC_GROUP_ROLES: comma-separated `group:team:role` entries (the group
    name may itself hold colons). Raises ValueError naming a bad entry."""
    mapping = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        parts = entry.rsplit(":", 2)
        if len(parts) != 3 or not all(part.strip() for part in parts):
            raise ValueError(f"“{entry}” is not group:team:role")
        group, team_slug, role = (part.strip() for part in parts)
        if role not in ROLE_NAMES:
            raise ValueError(f"“{entry}”: the role must be one of {', '.join(ROLE_NAMES)}")
        mapping.append(GroupRole(group=group, team_slug=team_slug, role=role))
    return mapping


def group_roles() -> list[GroupRole]:
    return parse_group_roles(settings.OIDC_GROUP_ROLES)
