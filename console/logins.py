"""Who is signing in from where: the client address django-axes counts by,
and the audit log's record of sign-ins, failures, sign-outs and lockouts."""

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or behind CONSOLE_PROXY_COUNT proxies
    the X-Forwarded-For entry the outermost of them added.

    Only the entries the console's own proxies appended are trusted: anything
    further left was written by the client and could be anything.
    """
    proxies = settings.CONSOLE_PROXY_COUNT
    if proxies > 0:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")


def lockout_response(request, original_response=None, credentials=None):
    """The page a locked-out sign-in gets (AXES_LOCKOUT_CALLABLE): 429, in the
    console's look, saying for how long — never whether the password was right."""
    from axes.helpers import get_cool_off
    from django.shortcuts import render

    cool_off = get_cool_off(request)
    minutes = max(1, round(cool_off.total_seconds() / 60)) if cool_off else None
    return render(
        request,
        "registration/locked_out.html",
        {"failure_limit": settings.AXES_FAILURE_LIMIT, "minutes": minutes},
        status=429,
    )


# --- the audit log: sign-in, failed sign-in, sign-out, lockout ---------------------------
# Connected when the audit app is ready (console/audit/apps.py imports this module).


def _typed_username(credentials) -> str:
    """The name typed at a failed sign-in (never the password)."""
    return str((credentials or {}).get("username") or "")[:150]


@receiver(user_logged_in, dispatch_uid="audit_login")
def audit_login(sender, request, user, **kwargs):
    from console.audit.services import audit_record

    audit_record(action="login", request=request, user=user)


@receiver(user_logged_out, dispatch_uid="audit_logout")
def audit_logout(sender, request, user, **kwargs):
    from console.audit.services import audit_record

    if user is not None:
        audit_record(action="logout", request=request, user=user)


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs):
    """Every failed sign-in, including one refused because of a lockout."""
    from console.audit.services import audit_record

    audit_record(
        action="login_failed",
        outcome="refused",
        request=request,
        username=_typed_username(credentials),
        details={"locked_out": bool(getattr(request, "axes_locked_out", False))},
    )


@receiver(user_locked_out, dispatch_uid="audit_lockout")
def audit_lockout(sender, request, username, ip_address, **kwargs):
    """The failure that locks an account from an address: recorded once.

    django-axes sends this signal again on every attempt while the lock
    lasts; only the attempt whose count reaches the limit starts a lockout.
    """
    from axes.helpers import get_failure_limit

    from console.audit.services import audit_record

    credentials = getattr(request, "axes_credentials", None) or {}
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None or failures != get_failure_limit(request, credentials):
        return
    audit_record(
        action="lockout",
        outcome="refused",
        request=request,
        username=str(username or "")[:150],
        details={"failures": failures},
    )
