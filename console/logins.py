"""Who is signing in from where: the client address django-axes counts by
(the audit log records the same one), and the page a locked-out sign-in gets.

The audit log's record of sign-ins, failures, sign-outs and lockouts is the
audit app's (console/audit/receivers.py)."""

from django.conf import settings


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


def not_a_password_attempt(request, credentials=None) -> bool:
    """django-axes counts wrong passwords (AXES_WHITELIST_CALLABLE): a sign-in
    through the identity provider carries none, its provider guards its own
    sign-in, and refusing someone's email domain there is no guess, so those
    are neither counted nor locked out."""
    return not (credentials or {}).get("password")
