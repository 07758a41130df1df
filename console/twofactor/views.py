"""The code page (the second step of signing in) and the enrolment page."""

import logging

import django_otp
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.shortcuts import redirect, render, resolve_url
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from console.audit.models import Action, Outcome
from console.audit.services import audit_record
from console.teams.access import last_team
from console.teams.timezones import TimeZoneForm, time_zone_set

from . import services

log = logging.getLogger("console.twofactor")

FAILURES_SESSION_KEY = "twofactor_code_failures"


def next_url(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def wrong_code_message(check) -> str:
    if check.wait_seconds:
        return (
            f"Too many wrong codes in a row: wait {check.wait_seconds} "
            f"second{'s' if check.wait_seconds != 1 else ''}, "
            "then enter the code your app shows now."
        )
    return "That code is not right. Enter the 6-digit code your authenticator app shows now."


@never_cache
@require_http_methods(["GET", "POST"])
def verify(request):
    """/login/code/: after the password, the 6-digit code of the person's device."""
    device = services.confirmed_device(request.user)
    if device is None or request.user.is_verified():
        return redirect(next_url(request))
    error = None
    if request.method == "POST":
        check = services.check_code(device, request.POST.get("code", ""))
        if check.ok:
            django_otp.login(request, device)
            request.session.cycle_key()
            request.session.pop(FAILURES_SESSION_KEY, None)
            log.info("two-factor sign-in verified user=%s", request.user.pk)
            return redirect(next_url(request))
        failures = request.session.get(FAILURES_SESSION_KEY, 0) + 1
        request.session[FAILURES_SESSION_KEY] = failures
        log.warning("two-factor code refused user=%s failures=%s", request.user.pk, failures)
        signed_out = failures >= settings.TWO_FACTOR_CODE_FAILURE_LIMIT
        audit_record(
            action=Action.TWO_FACTOR_CODE_REFUSED,
            request=request,
            outcome=Outcome.REFUSED,
            details={"failures": failures, "signed_out": signed_out},
        )
        if signed_out:
            log.warning(
                "two-factor: signed out after %s wrong codes user=%s", failures, request.user.pk
            )
            logout(request)
            messages.error(
                request,
                f"{failures} wrong two-factor codes in a row: you have been signed out. "
                "Sign in again to retry.",
            )
            return redirect(settings.LOGIN_URL)
        error = wrong_code_message(check)
    return render(
        request,
        "twofactor/verify.html",
        {"error": error, "next": next_url(request)},
    )


def manage_context(request, *, error=None):
    user = request.user
    device = services.confirmed_device(user)
    context = {
        "device": device,
        "required": services.is_required_for(user),
        "error": error,
        "pending": None,
        "time_zone_form": TimeZoneForm(initial={"time_zone": timezone.get_current_timezone_name()}),
        # The header keeps the navigation of the team the person came from.
        "team": last_team(request),
    }
    if device is None:
        pending = services.pending_device(user)
        if pending is not None:
            context.update(
                pending=pending,
                secret=services.secret_text(pending),
                otpauth_uri=services.otpauth_uri(pending),
                # segno's own markup: path data only, nothing from the request.
                qr_svg=mark_safe(services.qr_svg(pending)),  # noqa: S308
            )
    return context


@never_cache
@require_http_methods(["GET"])
def manage(request):
    """/account/two-factor/: set up, confirm, or turn off two-factor sign-in."""
    return render(request, "twofactor/manage.html", manage_context(request))


@never_cache
@require_POST
def time_zone_change(request):
    """The account page's time zone: every time the person reads or types is in it."""
    form = TimeZoneForm(request.POST)
    if form.is_valid():
        time_zone_set(request=request, name=form.cleaned_data["time_zone"])
        messages.success(request, f"Times are now shown in {form.cleaned_data['time_zone']}.")
        return redirect("twofactor:manage")
    context = manage_context(request)
    context["time_zone_form"] = form
    return render(request, "twofactor/manage.html", context, status=400)


@never_cache
@require_POST
def setup(request):
    """Make a new secret (an unconfirmed device) to scan or type into an app."""
    if services.confirmed_device(request.user) is not None:
        messages.info(request, "Two-factor sign-in is already on.")
    else:
        services.start_setup(request.user)
    return redirect("twofactor:manage")


@never_cache
@require_POST
def confirm(request):
    """The first code from the app: proves the secret was stored, turns it on."""
    pending = services.pending_device(request.user)
    if pending is None or services.confirmed_device(request.user) is not None:
        return redirect("twofactor:manage")
    check = services.check_code(pending, request.POST.get("code", ""))
    if not check.ok:
        log.warning("two-factor setup code refused user=%s", request.user.pk)
        context = manage_context(request, error=wrong_code_message(check))
        return render(request, "twofactor/manage.html", context)
    pending.confirmed = True
    pending.save(update_fields=["confirmed"])
    django_otp.login(request, pending)
    request.session.cycle_key()
    log.info("two-factor sign-in turned on user=%s", request.user.pk)
    audit_record(action=Action.TWO_FACTOR_ON, request=request)
    messages.success(
        request, "Two-factor sign-in is on: you'll be asked for a code each time you sign in."
    )
    return redirect("twofactor:manage")


@never_cache
@require_POST
def disable(request):
    """Turn two-factor sign-in off: only with a current code."""
    device = services.confirmed_device(request.user)
    if device is None:
        return redirect("twofactor:manage")
    check = services.check_code(device, request.POST.get("code", ""))
    if not check.ok:
        log.warning("two-factor disable code refused user=%s", request.user.pk)
        context = manage_context(request, error=wrong_code_message(check))
        return render(request, "twofactor/manage.html", context)
    services.remove_devices(request.user)
    log.info("two-factor sign-in turned off user=%s", request.user.pk)
    audit_record(action=Action.TWO_FACTOR_OFF, request=request)
    messages.success(request, "Two-factor sign-in is off.")
    return redirect("twofactor:manage")
