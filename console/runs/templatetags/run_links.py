"""`{% run_url "runs:run_detail" team.slug run.run_id %}`: `{% url %}` for run pages, fast.

A runs page draws 50 cards with three run links each, and `reverse()` was a
large share of drawing a card (docs/performance.md, "Run links").
The URL of a run page is the same string for every run of a team but for the
run id, so it is reversed once per (URL name, team) with a placeholder id
and filled in after.
"""

from functools import lru_cache

from django import template
from django.urls import reverse

from console.skyvern import validate_run_id

register = template.Library()

PLACEHOLDER = "wr_RUNID"


@lru_cache(maxsize=4096)
def _pattern(name: str, team_slug: str) -> tuple[str, str]:
    url = reverse(name, kwargs={"team_slug": team_slug, "run_id": PLACEHOLDER})
    before, _, after = url.partition(PLACEHOLDER)
    return before, after


@register.simple_tag
def run_url(name: str, team_slug: str, run_id: str) -> str:
    validate_run_id(run_id)  # what the URL pattern would accept, nothing else
    before, after = _pattern(name, team_slug)
    return f"{before}{run_id}{after}"
