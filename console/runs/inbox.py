"""The failure inbox: failed runs gathered by cause, with what retrying them did.

`failure_groups(runs)` takes any queryset of runs already scoped to the
person (one team's, or all of their teams'), so the team page and a view
across teams count the same way. Groups are keyed by team and failure group
(console/runs/failures.py), whose key was stored with each run: the page
only counts, from one index.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from console.skyvern import TERMINAL_STATUSES

from .models import (
    COUNTED_RETRY_STATES,
    FailureGroupCount,
    FailureHourCount,
    Retry,
    Run,
    Status,
)

HISTOGRAM_HOURS = 24
HISTOGRAM_HEIGHT = 20
BAR_WIDTH = 5
GROUPS_SHOWN = 50


@dataclass
class FailureGroup:
    """One cause of failure in one team, and what retrying its runs did."""

    team_id: int
    key: str
    count: int
    first_seen: datetime
    last_seen: datetime
    category: str = ""
    reason: str = ""
    workflow_permanent_id: str = ""
    workflow_title: str = ""
    # Failures per hour, oldest first, over the HISTOGRAM_HOURS hours to `now`.
    per_hour: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_HOURS)
    retried: int = 0  # runs of the group someone retried (or is retrying)
    retries_completed: int = 0  # retries whose new run completed
    retries_finished: int = 0  # retries whose new run reached a terminal status

    @property
    def success_rate(self) -> int | None:
        """Percent of finished retries that completed; None before any finished."""
        if not self.retries_finished:
            return None
        return round(100 * self.retries_completed / self.retries_finished)

    @property
    def last_day(self) -> int:
        return sum(self.per_hour)

    @property
    def bars(self) -> list[tuple[int, int, int, int]]:
        """The histogram as SVG bars (x, y, height, failures), one per hour
        in a BAR_WIDTH × HISTOGRAM_HEIGHT box each; an hour with any failure
        shows at least a sliver."""
        top = max(self.per_hour) or 1
        bars = []
        for hour, failures in enumerate(self.per_hour):
            height = max(1, round(HISTOGRAM_HEIGHT * failures / top)) if failures else 0
            bars.append((hour * BAR_WIDTH, HISTOGRAM_HEIGHT - height, height, failures))
        return bars


@dataclass
class FailureInbox:
    groups: list[FailureGroup]
    total_groups: int
    total_runs: int
    hours_from: datetime  # the start of the histograms' first hour


def failure_groups(runs, *, now: datetime | None = None, limit: int = GROUPS_SHOWN) -> FailureInbox:
    """The failed, terminated and timed-out runs among `runs`, by team and
    failure group, the most recently seen group first (at most `limit`).

    For each group: how many runs, first and last seen (created), failures
    per hour over the last HISTOGRAM_HOURS hours, how many of its runs were
    retried, and of the retries whose new run finished, how many completed
    (the console's own lineage: Skyvern keeps none for API retries). The
    retries are those of the whole group in its team: `runs` narrows which
    groups are shown and what they count, not whose retries count."""
    now = now or timezone.now()
    failed = runs.exclude(failure_group="")
    keyed = failed.order_by().values("team_id", "failure_group")
    rows = list(
        keyed.annotate(
            count=Count("id"),
            first_seen=Min("created_at"),
            last_seen=Max("created_at"),
            sample=Max("id"),
        ).order_by("-last_seen", "failure_group")
    )
    hours_from = now.replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=HISTOGRAM_HOURS - 1
    )
    groups = {
        (row["team_id"], row["failure_group"]): FailureGroup(
            team_id=row["team_id"],
            key=row["failure_group"],
            count=row["count"],
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
        )
        for row in rows[:limit]
    }
    inbox = FailureInbox(
        groups=list(groups.values()),
        total_groups=len(rows),
        total_runs=sum(row["count"] for row in rows),
        hours_from=hours_from,
    )
    if not groups:
        return inbox
    keys = sorted({key for _team, key in groups})
    shown = failed.filter(failure_group__in=keys)

    # What the group is, from one of its runs (the same for all of them).
    samples = Run.objects.filter(pk__in=[row["sample"] for row in rows[:limit]]).values(
        "team_id",
        "failure_group",
        "failure_category",
        "failure_reason_normalised",
        "workflow_permanent_id",
        "workflow_title",
    )
    for sample in samples:
        group = groups[(sample["team_id"], sample["failure_group"])]
        group.category = sample["failure_category"]
        group.reason = sample["failure_reason_normalised"]
        group.workflow_permanent_id = sample["workflow_permanent_id"]
        group.workflow_title = sample["workflow_title"]

    hours = {
        f"h{hour}": Count(
            "id",
            filter=Q(
                created_at__gte=hours_from + timedelta(hours=hour),
                created_at__lt=hours_from + timedelta(hours=hour + 1),
            ),
        )
        for hour in range(HISTOGRAM_HOURS)
    }
    recent = shown.filter(created_at__gte=hours_from).order_by().values("team_id", "failure_group")
    for row in recent.annotate(**hours):
        group = groups.get((row["team_id"], row["failure_group"]))
        if group is not None:
            group.per_hour = [row[f"h{hour}"] for hour in range(HISTOGRAM_HOURS)]

    _count_retries(groups)
    return inbox


def _count_retries(groups: dict) -> None:
    """Fill each of `groups` ({(team id, key): FailureGroup}) with how many
    of its runs were retried and how their retries ended."""
    keys = sorted({key for _team, key in groups})
    # Retries are few beside failures: counted from the retries' side, with
    # their new runs (the console's lineage), over each shown group of the
    # teams found above (a subquery of `runs` here made SQLite start from the
    # groups' runs instead).
    retries = (
        Retry.objects.filter(
            run__team_id__in=sorted({team for team, _key in groups}),
            run__failure_group__in=keys,
            state__in=COUNTED_RETRY_STATES,
        )
        .order_by()
        .values("run__team_id", "run__failure_group")
        .annotate(
            runs=Count("run_id", distinct=True),
            completed=Count("id", filter=Q(new_run__status=Status.COMPLETED)),
            finished=Count("id", filter=Q(new_run__status__in=TERMINAL_STATUSES)),
        )
    )
    for row in retries:
        group = groups.get((row["run__team_id"], row["run__failure_group"]))
        if group is not None:
            group.retried = row["runs"]
            group.retries_completed = row["completed"]
            group.retries_finished = row["finished"]


def team_failure_groups(
    team_ids, *, now: datetime | None = None, limit: int = GROUPS_SHOWN
) -> FailureInbox:
    """What `failure_groups` says of all the runs of the teams `team_ids`
    (ids the caller scoped to the person), read from the counts the database
    keeps (FailureGroupCount, FailureHourCount) instead of counting the runs:
    about one row per group, whatever the number of failures."""
    now = now or timezone.now()
    team_ids = sorted(team_ids)
    hours_from = now.replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=HISTOGRAM_HOURS - 1
    )
    rows = list(
        FailureGroupCount.objects.filter(team_id__in=team_ids).order_by(
            "-last_seen", "failure_group"
        )
    )
    groups = {
        (row.team_id, row.failure_group): FailureGroup(
            team_id=row.team_id,
            key=row.failure_group,
            count=row.count,
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            category=row.failure_category,
            reason=row.failure_reason_normalised,
            workflow_permanent_id=row.workflow_permanent_id,
            workflow_title=row.workflow_title,
        )
        for row in rows[:limit]
    }
    inbox = FailureInbox(
        groups=list(groups.values()),
        total_groups=len(rows),
        total_runs=sum(row.count for row in rows),
        hours_from=hours_from,
    )
    if not groups:
        return inbox
    hours = FailureHourCount.objects.filter(
        team_id__in=team_ids,
        hour__gte=hours_from,
        hour__lt=hours_from + timedelta(hours=HISTOGRAM_HOURS),
    ).values_list("team_id", "failure_group", "hour", "count")
    for team_id, key, hour, count in hours:
        group = groups.get((team_id, key))
        if group is not None:
            group.per_hour[(hour - hours_from) // timedelta(hours=1)] = count
    _count_retries(groups)
    return inbox
