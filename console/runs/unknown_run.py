"""A search for one run id that this team's cache doesn't hold: the runs page
says so, offers "Sync now" to fetch it from Skyvern, and names the person's
other teams whose cache holds it (only teams they may see)."""

import re
from dataclasses import dataclass

from .models import Run

# A Skyvern run id as a person pastes it: a workflow run's, or a task's.
RUN_ID_SEARCH = re.compile(r"(?:wr|tsk)_[A-Za-z0-9_-]{1,100}")


@dataclass(frozen=True)
class UnknownRun:
    run_id: str
    other_teams: tuple[tuple[str, str], ...]  # (slug, name), by name


def unknown_run(user, team, search: str) -> UnknownRun | None:
    """The run id searched for, when it is one and the team's cache has no
    run with it; None otherwise (a filter may hide a run the team has)."""
    run_id = (search or "").strip()
    if not RUN_ID_SEARCH.fullmatch(run_id):
        return None
    runs = Run.objects.restrict(user).filter(run_id=run_id)
    if runs.filter(team=team).exists():
        return None
    others = (
        runs.exclude(team=team)
        .order_by("team__name")
        .values_list("team__slug", "team__name")
        .distinct()
    )
    return UnknownRun(run_id=run_id, other_teams=tuple(others))
