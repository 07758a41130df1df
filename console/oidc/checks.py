"""`manage.py check` says what is wrong with the OIDC settings before anyone tries to sign in."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .config import oidc_enabled, parse_group_roles


@register(Tags.security)
def oidc_settings_check(app_configs, **kwargs):
    problems = []
    try:
        parse_group_roles(settings.OIDC_GROUP_ROLES)
    except ValueError as error:
        problems.append(Error(f"OIDC_GROUP_ROLES: {error}.", id="oidc.E001"))
    if settings.OIDC_ISSUER and not settings.OIDC_RP_CLIENT_ID:
        problems.append(
            Warning("OIDC_ISSUER is set but OIDC_CLIENT_ID is not: OIDC sign-in is off.",
                    id="oidc.W001")
        )
    if oidc_enabled() and not settings.OIDC_RP_CLIENT_SECRET:
        problems.append(Error("OIDC_CLIENT_SECRET is not set.", id="oidc.E002"))
    if oidc_enabled() and not settings.OIDC_ALLOWED_EMAIL_DOMAINS:
        problems.append(
            Warning(
                "OIDC_ALLOWED_EMAIL_DOMAINS is empty: anyone the identity provider "
                "signs in gets an account (with no team until one is given).",
                id="oidc.W002",
            )
        )
    return problems
