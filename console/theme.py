"""Light, dark, or whatever the person's system says (Auto, the default).

The choice is a cookie, so that it holds on the sign-in page too and on every
team; the base template reads it through the `theme` context processor and
sets `data-theme` on <html> (Pico's switch), or leaves it off for Auto, where
Pico follows `prefers-color-scheme`. The switch is a plain POST form that
works without JavaScript; console.js applies a choice at once and saves it
with the same POST.
"""

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

COOKIE = "console_theme"
CHOICES = {"auto": "Auto", "light": "Light", "dark": "Dark"}
DEFAULT = "auto"
# A year: the choice is a person's habit, not a session's.
COOKIE_MAX_AGE = 365 * 24 * 60 * 60


def theme_of(request) -> str:
    """The person's choice: one of CHOICES, Auto when unset or unknown."""
    chosen = request.COOKIES.get(COOKIE, DEFAULT)
    return chosen if chosen in CHOICES else DEFAULT


def theme(request) -> dict:
    """Context processor: `theme` (the choice), its label, and `theme_choices` for the switch."""
    chosen = theme_of(request)
    return {"theme": chosen, "theme_label": CHOICES[chosen], "theme_choices": CHOICES}


@login_not_required
@require_POST
def theme_set(request):
    """Remember the chosen theme, then back to the page the switch was on
    (204 for console.js, which has already applied it)."""
    chosen = request.POST.get("theme", "")
    if chosen not in CHOICES:
        chosen = DEFAULT
    answer = HttpResponse(status=204) if request.headers.get("X-Theme-Switch") else None
    return choice_remembered(request, COOKIE, chosen, answer=answer)


def choice_remembered(request, cookie: str, chosen: str, *, answer=None):
    """`answer` (by default: back to the page the switch was on, if it is
    this site's) with the person's choice kept a year in `cookie`: the theme,
    the runs page's layout."""
    if answer is None:
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            back = "/"
        answer = redirect(back)
    answer.set_cookie(
        cookie,
        chosen,
        max_age=COOKIE_MAX_AGE,
        samesite="Lax",
        httponly=True,
        secure=request.is_secure(),
    )
    return answer
