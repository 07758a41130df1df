"""The stored counts of a team's runs: rebuilt from its runs.

The failure inbox's counts (FailureGroupCount, FailureHourCount) and the runs
page's counts per status (RunStatusCount) are kept by the database on every
write of a run (triggers, migrations runs/0010 and runs/0014), whoever writes
it: the store, a cascade, the admin, a test. Rebuilding them for a team gives
what the triggers kept; `manage.py rebuild_failure_counts` does it when
someone doubts them (a restore from a backup, a hand-edited database).
"""

from datetime import UTC

from django.db import connection, transaction
from django.db.models import Count, Max, Min
from django.db.models.functions import Trunc

from .models import FailureGroupCount, FailureHourCount, Run, RunStatusCount

# The triggers' advisory lock class on PostgreSQL (migration runs/0010).
PG_LOCK_CLASS = 7313


def _lock_team_counts(team_id: int) -> None:
    """Hold the team's counts until the transaction ends, as the triggers do
    (on SQLite the write transaction holds the whole database)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [PG_LOCK_CLASS, team_id])


def counted_groups(team_id: int) -> dict:
    """The team's failure groups counted from its runs, as the stored counts
    should be: {group: (count, first seen, last seen, category, reason, workflow)}."""
    rows = (
        Run.objects.filter(team_id=team_id)
        .exclude(failure_group="")
        .order_by()
        .values("failure_group")
        .annotate(
            n=Count("id"),
            first=Min("created_at"),
            last=Max("created_at"),
            category=Max("failure_category"),
            reason=Max("failure_reason_normalised"),
            workflow=Max("workflow_permanent_id"),
            title=Max("workflow_title"),
        )
    )
    return {row["failure_group"]: row for row in rows}


def counted_hours(team_id: int) -> dict:
    """{(hour, group): count} of the team's failed runs, from the runs."""
    rows = (
        Run.objects.filter(team_id=team_id)
        .exclude(failure_group="")
        .order_by()
        .annotate(hour=Trunc("created_at", "hour", tzinfo=UTC))
        .values("hour", "failure_group")
        .annotate(n=Count("id"))
    )
    return {(row["hour"], row["failure_group"]): row["n"] for row in rows}


def counted_statuses(team_id: int) -> dict[str, int]:
    """{status: count} of the team's runs, from the runs."""
    rows = Run.objects.filter(team_id=team_id).order_by().values_list("status")
    return dict(rows.annotate(n=Count("id")))


def rebuild_failure_counts(team_id: int) -> int:
    """Replace the team's stored counts by a fresh count of its runs; returns
    how many groups it has."""
    with transaction.atomic():
        _lock_team_counts(team_id)
        FailureGroupCount.objects.filter(team_id=team_id).delete()
        FailureHourCount.objects.filter(team_id=team_id).delete()
        RunStatusCount.objects.filter(team_id=team_id).delete()
        groups = counted_groups(team_id)
        FailureGroupCount.objects.bulk_create(
            [
                FailureGroupCount(
                    team_id=team_id,
                    failure_group=key,
                    failure_category=row["category"],
                    failure_reason_normalised=row["reason"],
                    workflow_permanent_id=row["workflow"],
                    workflow_title=row["title"],
                    count=row["n"],
                    first_seen=row["first"],
                    last_seen=row["last"],
                )
                for key, row in groups.items()
            ],
            batch_size=1000,
        )
        FailureHourCount.objects.bulk_create(
            [
                FailureHourCount(team_id=team_id, hour=hour, failure_group=key, count=n)
                for (hour, key), n in counted_hours(team_id).items()
            ],
            batch_size=1000,
        )
        RunStatusCount.objects.bulk_create(
            RunStatusCount(team_id=team_id, status=status, count=n)
            for status, n in counted_statuses(team_id).items()
        )
    return len(groups)
