"""The audit log's record of sign-ins, failed sign-ins, sign-outs and lockouts.

Django's and django-axes's signals, connected when the audit app is ready
(apps.py). The address recorded is the one django-axes counts by
(`console.logins.client_ip`, through `audit_record`).
"""

from axes.helpers import get_failure_limit
from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

from .models import Action, Outcome
from .services import audit_record


def _typed_username(credentials) -> str:
    """The name typed at a failed sign-in (never the password)."""
    return str((credentials or {}).get("username") or "")[:150]


def audit_login(sender, request, user, **kwargs):
    """A sign-in; the backend may say how (the identity provider's adds `sign_in_details`)."""
    details = getattr(user, "sign_in_details", None)
    audit_record(action=Action.LOGIN, request=request, user=user, details=details)


def audit_logout(sender, request, user, **kwargs):
    if user is not None:
        audit_record(action=Action.LOGOUT, request=request, user=user)


def audit_login_failed(sender, credentials, request=None, **kwargs):
    """Every failed sign-in, including one refused because of a lockout.

    A sign-in the identity provider vouched for but the console refused (an
    email domain not allowed…) names the email and why (`sign_in_refusal`)."""
    details = {"locked_out": bool(getattr(request, "axes_locked_out", False))}
    username = _typed_username(credentials)
    refusal = getattr(request, "sign_in_refusal", None)
    if refusal:
        username = refusal["username"]
        details.update(via=refusal["via"], reason=refusal["reason"])
    audit_record(
        action=Action.LOGIN_FAILED,
        outcome=Outcome.REFUSED,
        request=request,
        username=username,
        details=details,
    )


def audit_lockout(sender, request, username, ip_address, **kwargs):
    """The failure that locks an account from an address: recorded once.

    django-axes sends this signal again on every attempt while the lock
    lasts; only the attempt whose count reaches the limit starts a lockout.
    """
    credentials = getattr(request, "axes_credentials", None) or {}
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None or failures != get_failure_limit(request, credentials):
        return
    audit_record(
        action=Action.LOCKOUT,
        outcome=Outcome.REFUSED,
        request=request,
        username=str(username or "")[:150],
        details={"failures": failures},
    )


def connect_sign_in_signals() -> None:
    user_logged_in.connect(audit_login, dispatch_uid="audit_login")
    user_logged_out.connect(audit_logout, dispatch_uid="audit_logout")
    user_login_failed.connect(audit_login_failed, dispatch_uid="audit_login_failed")
    user_locked_out.connect(audit_lockout, dispatch_uid="audit_lockout")
