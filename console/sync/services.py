"""Keeping a connection's cached run history true to Skyvern.

`connection_sync` is what the `sync_runs` command, the periodic task and the
"Sync now" button all call. Guarantees:
- at most one sync of a connection runs at a time (a lease on its
  ConnectionSync row, renewed after every page; a sync that died lets go
  after LEASE_EXPIRES_AFTER);
- running it twice, or concurrently, never duplicates a run, and a newer
  view of a run (a webhook's) is never overwritten by an older one: every
  page and detail is stored by console/runs/store.py, under the
  connection's runs lock, like every other writer of the cached runs;
- memory stays flat: one page of runs is held at a time;
- a full sync cut off mid-way resumes at the page where it stopped;
- when Skyvern fails, the cached runs are left as they were and the error is
  recorded for the team pages to show;
- a retry whose outcome is unknown gets the cached runs that may be its new
  run proposed on its card (never linked: Skyvern doesn't say, a person does).
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from console.compiled import CompiledQuery
from console.runs.checking import retry_proposals_update
from console.runs.models import KnownWorkflow, Run
from console.runs.reruns import workflow_versions
from console.runs.store import run_upsert_detail, runs_store_listing
from console.skyvern import RunNotFound, SkyvernError
from console.teams.clients import client_for
from console.teams.models import Connection
from console.teams.secrets import ApiKeyUnreadable

from .models import ConnectionSync

log = logging.getLogger(__name__)

SYNC_PAGE_SIZE = 100
LEASE_EXPIRES_AFTER = timedelta(minutes=2)
# Per pass, so that one sync never turns into thousands of calls at once.
REFRESH_LIMIT = 200
DETAIL_LIMIT = 100
FAILED_STATUSES = ("failed", "terminated", "timed_out")
# Workflows of recent failures whose versions are asked again per pass, and
# how long what Skyvern said of them is good for the cards.
KNOW_WORKFLOWS_LIMIT = 5
KNOWN_WORKFLOW_FRESH = timedelta(minutes=10)
RECENT_FAILURES = timedelta(days=7)
NON_TERMINAL = ("created", "queued", "running", "paused")


@dataclass
class SyncResult:
    pages: int = 0
    checked: int = 0
    created: int = 0
    updated: int = 0
    refreshed: int = 0
    detailed: int = 0
    stopped_early: bool = False
    error: str = ""
    skipped: bool = False  # another sync of the connection was running

    def summary(self) -> str:
        if self.skipped:
            return "A sync of this connection was already running."
        text = (
            f"{self.checked} runs checked: {self.created} new, {self.updated} changed, "
            f"{self.refreshed} unfinished refreshed, {self.detailed} with details fetched."
        )
        return f"{text} Failed: {self.error}" if self.error else text


def sync_state_for(connection: Connection) -> ConnectionSync:
    state, _ = ConnectionSync.objects.get_or_create(connection=connection)
    return state


_CONNECTION_FIELDS = list(Connection._meta.concrete_fields)
_SYNC_FIELDS = list(ConnectionSync._meta.concrete_fields)

# The sync line is on every runs page: each connection of the team with its
# sync state (none before its first look) in one query, compiled once.
_CONNECTIONS_WITH_SYNC = CompiledQuery(
    lambda team_pk: (
        Connection.objects.filter(team_id=team_pk)
        .order_by("label")
        .values_list(
            *(field.name for field in _CONNECTION_FIELDS),
            *(f"sync__{field.name}" for field in _SYNC_FIELDS),
        )
    ),
    -1,
)


def team_sync_states(team) -> list[ConnectionSync]:
    """The sync state of each of the team's connections, in one query."""
    states = []
    split = len(_CONNECTION_FIELDS)
    using = Connection.objects.db
    for row in _CONNECTIONS_WITH_SYNC.rows(team.pk, using=using):
        connection = Connection.from_db(
            using, [field.attname for field in _CONNECTION_FIELDS], row[:split]
        )
        if row[split] is None:
            state = sync_state_for(connection)  # its first look: no sync yet
        else:
            state = ConnectionSync.from_db(
                using, [field.attname for field in _SYNC_FIELDS], row[split:]
            )
        state.connection = connection
        states.append(state)
    return states


def _take_lease(state: ConnectionSync, owner: str, *, full: bool) -> bool:
    now = timezone.now()
    taken = (
        ConnectionSync.objects.filter(pk=state.pk)
        .filter(Q(running_since__isnull=True) | Q(running_since__lt=now - LEASE_EXPIRES_AFTER))
        .update(
            running_since=now,
            running_owner=owner,
            running_full=full,
            progress_runs=0,
            last_started_at=now,
        )
    )
    return taken == 1


def _renew_lease(state: ConnectionSync, owner: str, **changes) -> None:
    ConnectionSync.objects.filter(pk=state.pk, running_owner=owner).update(
        running_since=timezone.now(), **changes
    )


def _release_lease(state: ConnectionSync, owner: str, **changes) -> None:
    ConnectionSync.objects.filter(pk=state.pk, running_owner=owner).update(
        running_since=None, running_owner="", last_finished_at=timezone.now(), **changes
    )


def connection_sync(*, connection: Connection, full: bool = False) -> SyncResult:
    """Bring the connection's cached runs in line with Skyvern.

    Incremental (default): read the newest runs until a whole page is
    already cached, finished and unchanged. Full: read every page. Then
    refresh unfinished runs one by one, and fetch the details that only
    `GET /v1/runs/{id}` has for failed runs that lack them.
    """
    state = sync_state_for(connection)
    owner = uuid.uuid4().hex
    result = SyncResult()
    if not _take_lease(state, owner, full=full):
        result.skipped = True
        return result
    try:
        client = client_for(connection)
        _sync_listing(client, connection, state, owner, full=full, result=result)
        _refresh_unfinished(client, connection, result)
        _fetch_failure_details(client, connection, result)
        # Runs just stored may be what an unknown retry made: say so on its
        # card (a person checks and links; nothing is linked here).
        retry_proposals_update(connection=connection)
        _know_workflows(connection)
    except (SkyvernError, ApiKeyUnreadable) as error:
        result.error = str(error)
        _release_lease(
            state,
            owner,
            last_error=result.error[:500],
            last_error_at=timezone.now(),
            last_result=result.summary()[:300],
        )
        log.warning("sync of connection %s failed: %s", connection.pk, type(error).__name__)
        return result
    except BaseException:
        _release_lease(
            state,
            owner,
            last_error="The sync stopped on an internal error.",
            last_error_at=timezone.now(),
        )
        raise
    _release_lease(state, owner, last_success_at=timezone.now(), last_result=result.summary()[:300])
    log.info("synced connection %s: %s", connection.pk, result.summary())
    return result


def _sync_listing(client, connection, state, owner, *, full, result):
    state.refresh_from_db(fields=["full_resume_page"])
    page = (state.full_resume_page or 1) if full else 1
    while True:
        summaries = client.list_runs(page=page, page_size=SYNC_PAGE_SIZE)
        if not summaries:
            break
        # The page and the resume point are one step: a sync killed between
        # them would otherwise resume at the wrong page.
        with transaction.atomic():
            stored = runs_store_listing(connection=connection, summaries=summaries)
            _renew_lease(
                state,
                owner,
                progress_runs=F("progress_runs") + len(summaries),
                **({"full_resume_page": page + 1} if full else {}),
            )
        result.pages += 1
        result.checked += len(summaries)
        result.created += stored.created
        result.updated += stored.changed
        # Unfinished runs that haven't changed are refreshed one by one below:
        # they must not keep the listing reading back to the oldest page.
        if not full and stored.unchanged:
            result.stopped_early = True
            break
        if len(summaries) < SYNC_PAGE_SIZE:
            break
        page += 1
    if full:
        ConnectionSync.objects.filter(pk=state.pk).update(full_resume_page=None)


def _refresh_unfinished(client, connection, result):
    unfinished = Run.objects.filter(connection=connection, status__in=NON_TERMINAL).order_by(
        "synced_at"
    )
    result.refreshed += _store_details(
        client, connection, unfinished.values_list("run_id", flat=True)[:REFRESH_LIMIT]
    )


def _fetch_failure_details(client, connection, result):
    # A run cached from the listing has no app_url yet: Skyvern always sets one.
    lacking = Run.objects.filter(
        Q(status__in=FAILED_STATUSES) | Q(retried_from__isnull=False),
        connection=connection,
        app_url="",
    ).order_by("-created_at")
    result.detailed += _store_details(
        client, connection, lacking.values_list("run_id", flat=True)[:DETAIL_LIMIT]
    )


def _know_workflows(connection) -> None:
    """Ask Skyvern again about the workflows of recent failures (their
    versions and retry policies), a few per pass, so that their cards can
    say which attempt Skyvern makes next and whether the run is behind its
    workflow. Advice only: a workflow Skyvern can't tell about is skipped."""
    now = timezone.now()
    fresh = KnownWorkflow.objects.filter(
        connection=connection, fetched_at__gte=now - KNOWN_WORKFLOW_FRESH
    ).values_list("workflow_permanent_id", flat=True)
    recent = (
        Run.objects.filter(
            Q(status__in=FAILED_STATUSES) | Q(retry_pending=True),
            connection=connection,
            created_at__gte=now - RECENT_FAILURES,
        )
        .exclude(workflow_permanent_id="")
        .exclude(workflow_permanent_id__in=fresh)
        .order_by("-created_at")
        .values_list("workflow_permanent_id", flat=True)[: DETAIL_LIMIT * 5]
    )
    for wpid in list(dict.fromkeys(recent))[:KNOW_WORKFLOWS_LIMIT]:
        workflow_versions(connection, wpid)


def _store_details(client, connection, run_ids) -> int:
    """Ask Skyvern for each run and store its answer; how many were stored."""
    stored = 0
    for run_id in run_ids:
        try:
            detail = client.get_run(run_id)
        except RunNotFound:
            continue  # gone from Skyvern (or never ours): keep what we know
        run_upsert_detail(connection=connection, detail=detail)
        stored += 1
    return stored
