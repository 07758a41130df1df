"""Compact rows or cards: how the runs page lists runs (issue 15).

Compact rows (row_html.py) are the default: fifty failed runs fit a screen or
two, not thirteen. The choice is a cookie, like the theme (console/theme.py):
it holds on every team and needs no JavaScript, since the switch is a plain
POST form that comes back to the page it was on.

An answer to what was done from inside a row (a retry, a check, a row's own
refresh) is a row: the row's requests say so (`layout=rows`, row_html.ROWS_VALS).
"""

from django.views.decorators.http import require_POST

from console.theme import choice_remembered

COOKIE = "console_runs_layout"
ROWS, CARDS = "rows", "cards"
CHOICES = {ROWS: "Compact", CARDS: "Cards"}
DEFAULT = ROWS


def layout_of(request) -> str:
    """The person's choice: one of CHOICES, compact rows when unset or unknown."""
    chosen = request.COOKIES.get(COOKIE, DEFAULT)
    return chosen if chosen in CHOICES else DEFAULT


def answers_in_rows(request) -> bool:
    """Whether an htmx request came from a compact row (its answer is a row)."""
    if not getattr(request, "htmx", False):
        return False
    data = request.POST if request.method == "POST" else request.GET
    return data.get("layout") == ROWS


def row_open(request) -> bool:
    """Whether the row asking had its card unfolded (it stays so)."""
    data = request.POST if request.method == "POST" else request.GET
    return data.get("open") == "1"


@require_POST
def layout_set(request):
    """Remember compact rows or cards, then back to the page the switch was on."""
    chosen = request.POST.get("layout", "")
    if chosen not in CHOICES:
        chosen = DEFAULT
    return choice_remembered(request, COOKIE, chosen)
