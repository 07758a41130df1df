"""Each person's time zone: chosen on the account page, kept in
`AccountSettings`, and made the current zone of every request they make, so
that times typed into a filter and times shown mean the same wall clock.

The name is remembered in the session, so a page costs no extra query; a
change is written to both.
"""

import zoneinfo
from functools import cache

from django import forms
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.utils import timezone

from .models import AccountSettings

SESSION_KEY = "time_zone"
DEFAULT = "UTC"
# The browser's zone, sent by console.js with the sign-in form (a field) or
# the identity provider's sign-in link (kept in the session until back).
BROWSER_FIELD = "browser_time_zone"
BROWSER_SESSION_KEY = "browser_time_zone"


@cache
def zone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def zone_or_none(name: str):
    try:
        return zoneinfo.ZoneInfo(name) if name in zone_names() else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def time_zone_of(user) -> str:
    found = AccountSettings.objects.filter(user=user).values_list("time_zone", flat=True).first()
    return found if found and zone_or_none(found) else DEFAULT


def time_zone_set(*, request, name: str) -> None:
    """Keep `name` as the person's zone and use it from this request on."""
    AccountSettings.objects.update_or_create(user=request.user, defaults={"time_zone": name})
    request.session[SESSION_KEY] = name
    timezone.activate(zone_or_none(name))


def browser_time_zone_keep(request, name: str) -> None:
    """Remember the browser's zone until the sign-in it came with ends (the
    identity provider's round trip); a name that is no zone is dropped."""
    if zone_or_none(name or ""):
        request.session[BROWSER_SESSION_KEY] = name


def time_zone_first(user, browser: str) -> None:
    """The browser's zone becomes the person's, only if they have none saved:
    a choice made on the account page (UTC too) is never overridden."""
    if browser and zone_or_none(browser):
        AccountSettings.objects.get_or_create(user=user, defaults={"time_zone": browser})


@receiver(user_logged_in, dispatch_uid="teams.time_zone_at_sign_in")
def time_zone_at_sign_in(sender, request, user, **kwargs):
    """Read the person's zone once, as they sign in (a session then knows it);
    on their first sign-in with JavaScript, it is their browser's."""
    if request is not None and hasattr(request, "session"):
        browser = request.session.pop(BROWSER_SESSION_KEY, "")
        if request.method == "POST":
            browser = request.POST.get(BROWSER_FIELD, "") or browser
        time_zone_first(user, browser)
        request.session[SESSION_KEY] = time_zone_of(user)


class TimeZoneMiddleware:
    """Makes the signed-in person's zone the current one for the request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            name = request.session.get(SESSION_KEY)
            if name is None:
                name = request.session[SESSION_KEY] = time_zone_of(user)
            zone = zone_or_none(name)
            if zone is not None:
                timezone.activate(zone)
            else:
                timezone.deactivate()
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(
        label="Time zone",
        help_text="Times on the console are shown and typed in this zone.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = [(name, name) for name in zone_names()]
        self.fields["time_zone"].error_messages["invalid_choice"] = (
            "“%(value)s” is not a time zone name: choose one from the list, such as Europe/Berlin."
        )
