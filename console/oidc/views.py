"""The two pages of a sign-in with the identity provider: off to the
provider, and back from it. Both 404 when the provider is not configured."""

import logging

import requests
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import SuspiciousOperation
from django.http import Http404
from django.shortcuts import redirect
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from console.audit.models import Action, Outcome
from console.audit.services import audit_record
from console.teams.timezones import browser_time_zone_keep

from .config import ProviderUnavailable, oidc_enabled, oidc_setting, provider_name

log = logging.getLogger("console.oidc")


@method_decorator([login_not_required, never_cache], name="dispatch")
class SignInStart(OIDCAuthenticationRequestView):
    """/oidc/sign-in/: off to the provider (state, nonce and PKCE kept in the session)."""

    get_settings = staticmethod(oidc_setting)

    def __init__(self, *args, **kwargs):
        # The endpoints are looked up when the page is asked for, not when Django builds the view.
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get(self, request):
        if not oidc_enabled():
            raise Http404("Sign-in with an identity provider is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = oidc_setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except ProviderUnavailable as error:
            log.warning("identity provider unavailable: %s", error)
            messages.error(request, unreachable_message())
            return redirect("login")
        self.OIDC_RP_CLIENT_ID = oidc_setting("OIDC_RP_CLIENT_ID")
        # The browser's zone (console.js adds it to the link), for a first sign-in.
        browser_time_zone_keep(request, request.GET.get("time_zone", ""))
        return super().get(request)


def unreachable_message() -> str:
    return (
        f"{provider_name()} could not be reached, so you can't sign in with it just now. "
        "Try again in a minute, or sign in with your password if you have one."
    )


@method_decorator([login_not_required, never_cache], name="dispatch")
class SignInCallback(OIDCAuthenticationCallbackView):
    """/oidc/callback/: the provider sends the browser back here with a code,
    which is exchanged for the person's identity; then the console's rules."""

    get_settings = staticmethod(oidc_setting)

    def get(self, request):
        if not oidc_enabled():
            raise Http404("Sign-in with an identity provider is not configured.")
        try:
            return super().get(request)
        except (requests.RequestException, ProviderUnavailable) as error:
            log.warning("identity provider sign-in failed: %s", error)
            return self.refused("provider unreachable", unreachable_message())
        except SuspiciousOperation as error:
            # A forged or replayed callback, or a token that doesn't check out.
            log.warning("identity provider sign-in not verified: %s", error)
            return self.refused(
                "answer not verified",
                f"The answer from {provider_name()} could not be verified. Sign in again.",
            )

    def refused(self, reason: str, message: str):
        audit_record(
            action=Action.LOGIN_FAILED,
            outcome=Outcome.REFUSED,
            request=self.request,
            details={"via": provider_name(), "reason": reason},
        )
        messages.error(self.request, message)
        return redirect("login")

    def login_failure(self):
        refusal = getattr(self.request, "sign_in_refusal", None)
        if refusal is not None:
            message = refusal["message"]
        elif self.request.GET.get("error"):
            message = f"{provider_name()} did not sign you in."
        else:
            message = f"Signing in with {provider_name()} did not work. Try again."
        messages.error(self.request, message)
        return redirect("login")
