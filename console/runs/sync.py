"""Bringing the cached run history in line with Skyvern.

This is the first slice: a full import of a connection's runs, used by the
demo's seeding and by tests. Incremental sync, the periodic task and the
"Sync now" button build on `runs_upsert`.
"""

from django.utils import timezone

from console.skyvern import RunSummary
from console.teams.clients import client_for
from console.teams.models import Connection

from .models import Run, search_text_for

SYNC_PAGE_SIZE = 100
# Columns a listing may change; lineage and run details are never overwritten by it.
LISTED_FIELDS = [
    "status",
    "workflow_permanent_id",
    "workflow_title",
    "failure_reason",
    "created_at",
    "modified_at",
    "queued_at",
    "started_at",
    "finished_at",
    "search_text",
    "synced_at",
]


def runs_upsert(*, connection: Connection, summaries: list[RunSummary]) -> int:
    """Insert or update one page of listed runs in a single statement."""
    now = timezone.now()
    rows = [
        Run(
            team_id=connection.team_id,
            connection=connection,
            run_id=summary.run_id,
            status=summary.status,
            workflow_permanent_id=summary.workflow_permanent_id or "",
            workflow_title=summary.workflow_title or "",
            failure_reason=summary.failure_reason or "",
            created_at=summary.created_at or now,
            modified_at=summary.modified_at,
            queued_at=summary.queued_at,
            started_at=summary.started_at,
            finished_at=summary.finished_at,
            raw=summary.raw,
            search_text=search_text_for(
                summary.run_id, summary.workflow_permanent_id, summary.workflow_title
            ),
            synced_at=now,
        )
        for summary in summaries
    ]
    Run.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["connection", "run_id"],
        update_fields=LISTED_FIELDS,
    )
    return len(rows)


def connection_import_all(*, connection: Connection) -> int:
    """Page through every run Skyvern lists for the connection and cache it.

    Idempotent: running it again updates rows in place and duplicates nothing.
    Holds one page in memory at a time.
    """
    client = client_for(connection)
    page, total = 1, 0
    while True:
        summaries = client.list_runs(page=page, page_size=SYNC_PAGE_SIZE)
        if not summaries:
            return total
        total += runs_upsert(connection=connection, summaries=summaries)
        if len(summaries) < SYNC_PAGE_SIZE:
            return total
        page += 1
