"""The authentication backend for sign-ins with the identity provider
(mozilla-django-oidc's, with the console's rules from services.py).

Django makes a backend object for every sign-in, password ones included, so
nothing here talks to the provider until a callback from it is handled.
"""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from . import services
from .config import oidc_enabled, oidc_setting, provider_name

log = logging.getLogger("console.oidc")


def _endpoint(name):
    return property(lambda self: oidc_setting(name))


class OidcBackend(OIDCAuthenticationBackend):
    OIDC_OP_TOKEN_ENDPOINT = _endpoint("OIDC_OP_TOKEN_ENDPOINT")
    OIDC_OP_USER_ENDPOINT = _endpoint("OIDC_OP_USER_ENDPOINT")
    OIDC_OP_JWKS_ENDPOINT = _endpoint("OIDC_OP_JWKS_ENDPOINT")
    OIDC_RP_IDP_SIGN_KEY = None

    def __init__(self, *args, **kwargs):
        self.UserModel = get_user_model()
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO

    get_settings = staticmethod(oidc_setting)

    def authenticate(self, request, **kwargs):
        # Only the provider's callback passes a nonce; a password form never does.
        if request is None or not oidc_enabled() or "nonce" not in kwargs:
            return None
        return super().authenticate(request, **kwargs)

    def verify_token(self, token, **kwargs):
        """The ID token's signature and nonce (mozilla-django-oidc), and also
        that it comes from the configured issuer and is meant for this console."""
        payload = super().verify_token(token, **kwargs)
        if payload.get("iss") != settings.OIDC_ISSUER:
            raise SuspiciousOperation("The ID token's issuer is not OIDC_ISSUER.")
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("The ID token is not meant for this client.")
        return payload

    def verify_claims(self, claims):
        refusal = services.sign_in_refusal(
            claims, allowed_domains=settings.OIDC_ALLOWED_EMAIL_DOMAINS
        )
        if refusal is not None:
            self._refuse(refusal, claims)
            return False
        return True

    def _refuse(self, refusal, claims):
        log.warning("identity provider sign-in refused: %s", refusal.reason)
        # Read by the callback view (the message) and the audit log's failed sign-in row.
        self.request.sign_in_refusal = {
            "username": services.claim_email(claims)[:150],
            "via": provider_name(),
            "reason": refusal.reason,
            "message": refusal.message,
        }

    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        if not self.verify_claims(claims):
            return None
        email = services.claim_email(claims)
        try:
            user = services.account_for(email)
        except services.AccountRefused as refused:
            self._refuse(refused.refusal, claims)
            return None
        if not user.is_active:
            self._refuse(
                services.Refusal(
                    "account deactivated",
                    f"The console account for {email} is deactivated.",
                ),
                claims,
            )
            return None
        groups = services.claim_groups(claims, settings.OIDC_GROUPS_CLAIM)
        roles = services.team_roles_apply(user=user, groups=groups, request=self.request)
        # Read by the audit log's sign-in row (console/audit/receivers.py).
        # Plain text, as the log page and its CSV show it.
        user.sign_in_details = {
            "via": provider_name(),
            "groups": ", ".join(groups),
            "team_roles": ", ".join(f"{slug}: {role or 'none'}" for slug, role in roles.items()),
        }
        return user
