"""Skyvern's view of the cached runs: the one module that writes it.

Whatever tells the console about a run stores it through a function here: a
sync's listing pages (`runs_store_listing`) and detail fetches
(`run_upsert_detail`), a webhook delivery (`run_store_delivery`), a card's
refresh (`run_store_refresh`), Skyvern's answer to a retry
(`retry_lineage_store`) and a person, or Skyvern, naming an unknown retry's
new run (`retry_lineage_link`).

Guarantees, for every function here:
- One writer of a connection's runs at a time. Each function takes the
  connection's runs lock (its WriteLock row, select_for_update) itself,
  before it reads the cached run it compares Skyvern's view with, and writes
  before letting go, in one transaction: no view judged newer is replaced by
  an older one in between. The lock row is taken before any run row in every
  path, so two writers never deadlock. Called inside a caller's transaction,
  the lock is held until that transaction ends (what the caller writes
  there is covered too). On SQLite the lock is the IMMEDIATE transaction's
  hold on the whole database.
- Older news never overwrites newer: a view whose `modified_at` is older than
  the cached run's is not stored (a view without a time can't be placed and
  counts as current).
- Lineage (retried_from, retried_by, retried_at) is written only by
  retry_lineage_store and retry_lineage_link; nothing else here touches it.
- A failure stores nothing: each function is one transaction.
- A run's failure columns (category, failure group, normalised reason;
  console/runs/failures.py) are worked out from what is stored with it, in
  the same write, so they always agree with its status, reason and workflow.
"""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from console.skyvern import RunDetail, RunSummary

from .failures import failure_fields, first_failure_category
from .models import Retry, RetryState, Run, WriteLock, search_text_for

# What a retry decision reads (see Run): a list row says all of it.
RETRY_FACT_FIELDS = [
    "attempt",
    "attempts",
    "retry_pending",
    "next_attempt_at",
    "webhook_url",
    "browser_session_id",
    "credits_used",
]

# Columns a listing may change; lineage and run details are never overwritten by it.
LISTED_FIELDS = [
    "status",
    "workflow_version_id",
    "workflow_version",
    "workflow_permanent_id",
    "workflow_title",
    "failure_reason",
    "webhook_failure_reason",
    "created_at",
    "modified_at",
    "queued_at",
    "started_at",
    "finished_at",
    "search_text",
    "failure_category",
    "failure_group",
    "failure_reason_normalised",
    "synced_at",
    *RETRY_FACT_FIELDS,
]


class LineageRefused(Exception):
    """The run can't be linked as this retry's new run; the message says why."""


# --- the lock ---------------------------------------------------------------------------


def _lock(connection) -> None:
    """Hold the right to write `connection`'s cached runs until the
    transaction ends (see the module docstring)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("the runs lock holds only inside transaction.atomic()")
    locked = WriteLock.objects.select_for_update().filter(pk=connection.pk)
    if not list(locked.values_list("pk", flat=True)):
        # Every connection gets its row when it is made (runs_lock_create);
        # one that came without (loaded raw) gets it here, then it is locked.
        WriteLock.objects.get_or_create(connection=connection)
        list(locked.values_list("pk", flat=True))


def runs_lock_create(sender, instance, created, raw=False, **kwargs) -> None:
    """Every connection has its runs lock from the start (a post_save receiver)."""
    if created and not raw:
        WriteLock.objects.get_or_create(connection=instance)


def _older(incoming, cached) -> bool:
    """Is what Skyvern just said (its modified_at) older than what is cached?"""
    return incoming is not None and cached is not None and incoming < cached


# --- a sync's listing pages -------------------------------------------------------------


@dataclass(frozen=True)
class ListingStored:
    """What one listing page did to the cache."""

    created: int  # runs the cache didn't have
    changed: int  # cached runs whose status the page changed
    unchanged: bool  # every listed run was cached, with the same status


def runs_store_listing(*, connection, summaries: list[RunSummary]) -> ListingStored:
    """Store one page of Skyvern's run list.

    Runs the cache lacks are inserted; cached runs get the listed columns
    (LISTED_FIELDS) unless the cached view is newer (a webhook got there
    first). A listing never overwrites a run's details (output, URLs, the
    full view's raw) or its lineage, and never duplicates a run (one upsert
    and one insert, both on the unique (connection, run_id)): the same page
    twice changes nothing but synced_at.
    """
    with transaction.atomic():
        _lock(connection)
        cached = {
            run_id: (status, modified_at)
            for run_id, status, modified_at in Run.objects.filter(
                connection=connection, run_id__in=[s.run_id for s in summaries]
            ).values_list("run_id", "status", "modified_at")
        }
        fresher = [
            s
            for s in summaries
            if s.run_id in cached and not _older(s.modified_at, cached[s.run_id][1])
        ]
        new = [s for s in summaries if s.run_id not in cached]
        _runs_upsert(connection=connection, summaries=fresher)
        _runs_insert(connection=connection, summaries=new)
    return ListingStored(
        created=len(new),
        changed=sum(1 for s in fresher if cached[s.run_id][0] != s.status),
        unchanged=all(s.run_id in cached and cached[s.run_id][0] == s.status for s in summaries),
    )


def _runs_from_listing(*, connection, summaries: list[RunSummary]) -> list[Run]:
    """Unsaved Run rows for one page of Skyvern's run list."""
    now = timezone.now()
    return [
        Run(
            team_id=connection.team_id,
            connection=connection,
            run_id=summary.run_id,
            status=summary.status,
            workflow_permanent_id=summary.workflow_permanent_id or "",
            workflow_title=summary.workflow_title or "",
            failure_reason=summary.failure_reason or "",
            webhook_failure_reason=summary.webhook_failure_reason or "",
            workflow_version_id=summary.workflow_id or "",
            workflow_version=summary.workflow_version,
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
            # A listed run carries Skyvern's classification itself.
            **failure_fields(
                status=summary.status,
                failure_reason=summary.failure_reason or "",
                category=first_failure_category(summary.raw.get("failure_category")),
                workflow=summary.workflow_permanent_id or "",
            ),
            **retry_facts_from_summary(summary),
        )
        for summary in summaries
    ]


def retry_facts_from_summary(summary: RunSummary) -> dict:
    """What a retry decision reads (RETRY_FACT_FIELDS), from a list row."""
    credits = summary.credits_used
    return {
        "attempt": summary.attempt,
        "attempts": _attempts_json(summary.attempts),
        "retry_pending": summary.retry_pending,
        "next_attempt_at": summary.next_attempt_at,
        "webhook_url": (summary.webhook_callback_url or "")[:2000],
        "browser_session_id": (summary.browser_session_id or "")[:128],
        "credits_used": credits if credits is not None and credits >= 0 else None,
    }


def _runs_upsert(*, connection, summaries: list[RunSummary]) -> int:
    """Insert or update listed runs in a single statement, whatever the
    cached rows say: for runs compared with the cache under the lock."""
    rows = _runs_from_listing(connection=connection, summaries=summaries)
    Run.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["connection", "run_id"],
        update_fields=LISTED_FIELDS,
    )
    return len(rows)


def _runs_insert(*, connection, summaries: list[RunSummary]) -> int:
    """Insert listed runs the cache didn't have, in a single statement; a run
    there all the same is left as it is (the next sync compares it)."""
    rows = _runs_from_listing(connection=connection, summaries=summaries)
    Run.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


# --- Skyvern's full view of one run -----------------------------------------------------


def _attempts_json(attempts) -> list[dict]:
    """Skyvern's attempts at a run, oldest first, as the cache keeps them (JSON)."""

    def iso(moment):
        return moment.isoformat() if moment else None

    return [
        {
            "number": a.number,
            "status": a.status,
            "failure_reason": a.failure_reason,
            "error_codes": list(a.error_codes),
            "started_at": iso(a.started_at),
            "finished_at": iso(a.finished_at),
            "retry_decision": a.retry_decision,
            "decision_reason": a.decision_reason,
            "next_attempt_at": iso(a.next_attempt_at),
        }
        for a in sorted(attempts, key=lambda a: a.number)
    ]


def run_fields_from_detail(detail: RunDetail) -> dict:
    """The cached columns of a Run, from Skyvern's full view of it."""
    fields = {
        "status": detail.status,
        "failure_reason": detail.failure_reason or "",
        "modified_at": detail.modified_at,
        "queued_at": detail.queued_at,
        "started_at": detail.started_at,
        "finished_at": detail.finished_at,
        "app_url": detail.app_url or "",
        "recording_url": detail.recording_url or "",
        "screenshot_urls": detail.screenshot_urls,
        "output": detail.output,
        # The output has its own column: don't store it twice.
        "raw": {key: value for key, value in detail.raw.items() if key != "output"},
        "synced_at": timezone.now(),
    }
    fields.update(
        attempt=detail.attempt,
        attempts=_attempts_json(detail.attempts),
        retry_pending=detail.retry_pending,
        next_attempt_at=detail.next_attempt_at,
    )
    # A full view says these only sometimes (a webhook's half, a newer
    # Skyvern); what a list row said stays until a view says otherwise.
    webhook_url = detail.webhook_url or _str(detail.raw, "webhook_callback_url")
    if webhook_url:
        fields["webhook_url"] = webhook_url[:2000]
    if detail.browser_session_id:
        fields["browser_session_id"] = detail.browser_session_id[:128]
    if detail.credits_used is not None and detail.credits_used >= 0:
        fields["credits_used"] = detail.credits_used
    if detail.webhook_failure_reason:
        # Only a delivery carries it; a plain read of the run doesn't say.
        fields["webhook_failure_reason"] = detail.webhook_failure_reason
    if detail.created_at:
        fields["created_at"] = detail.created_at
    if detail.workflow_permanent_id:
        fields["workflow_permanent_id"] = detail.workflow_permanent_id
    if detail.workflow_title:
        fields["workflow_title"] = detail.workflow_title
    if detail.workflow_id:  # a webhook's view names the version; get-run's doesn't
        fields["workflow_version_id"] = detail.workflow_id
    # Skyvern's full view has no failure_category today (only its run list
    # does); when it does, it counts.
    if "failure_category" in detail.raw:
        fields["failure_category"] = first_failure_category(detail.raw["failure_category"])
    return fields


# What the failure columns are worked out from, beyond the view itself.
FAILURE_INPUTS = ("failure_category", "workflow_permanent_id")


def _with_failure(fields: dict, cached: Run | None) -> dict:
    """`fields` (a run's columns from Skyvern's view) with its failure
    columns; what the view lacks (the category, the workflow) is the cached
    run's."""
    category = fields.get("failure_category")
    if category is None:
        category = cached.failure_category if cached is not None else ""
    workflow = fields.get("workflow_permanent_id") or (
        cached.workflow_permanent_id if cached is not None else ""
    )
    return {
        **fields,
        **failure_fields(
            status=fields["status"],
            failure_reason=fields["failure_reason"],
            category=category,
            workflow=workflow,
        ),
    }
def _str(data, key) -> str:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def _cached(connection, run_id: str, *fields) -> Run | None:
    """Take the lock, then read the cached run (those fields only, and what
    its failure columns need) that Skyvern's view is to be compared with;
    None if it isn't cached."""
    _lock(connection)
    return (
        Run.objects.filter(connection=connection, run_id=run_id)
        .only(*fields, *FAILURE_INPUTS)
        .first()
    )


def _write_detail(*, connection, detail: RunDetail, cached: Run | None) -> tuple[Run, bool]:
    """Store Skyvern's full view, whatever the cache says: for a view just
    compared under the lock with `cached`. Lineage fields are never touched."""
    fields = _with_failure(run_fields_from_detail(detail), cached)
    return Run.objects.update_or_create(
        connection=connection,
        run_id=detail.run_id,
        defaults=fields,
        create_defaults={"team_id": connection.team_id, "created_at": timezone.now(), **fields},
    )


def run_upsert_detail(*, connection, detail: RunDetail) -> tuple[Run, bool]:
    """Store Skyvern's full view of one run (a sync's fetch); returns (run, created).

    A view older than the cached one is ignored (the cached run is returned);
    any other is stored, synced_at included. Lineage is never touched.
    """
    with transaction.atomic():
        cached = _cached(connection, detail.run_id, "modified_at")
        if cached is not None and _older(detail.modified_at, cached.modified_at):
            return cached, False
        return _write_detail(connection=connection, detail=detail, cached=cached)


def _attempt(raw) -> int | None:
    """Skyvern's own attempt number of the run (its automatic retries keep the run id)."""
    value = raw.get("attempt") if isinstance(raw, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def run_store_delivery(*, connection, detail: RunDetail) -> str:
    """Store a run Skyvern delivered (a webhook) unless it is a repeat or
    older news; says which, for the log.

    Deduplicated by content, not by time: when the cached run is a full view
    (it has an app_url) with the same status, `modified_at` and `attempt`,
    or holds exactly this payload, nothing changes, not even synced_at; so
    re-deliveries and replays are no-ops. A view older than the cached one
    (by `modified_at`, else by `attempt`) is ignored. Lineage is never touched.
    """
    with transaction.atomic():
        cached = _cached(
            connection, detail.run_id, "status", "app_url", "raw", "output", "modified_at"
        )
        if cached is not None:
            incoming_attempt, cached_attempt = _attempt(detail.raw), _attempt(cached.raw)
            # The same news about the run, in a full view already stored: a
            # re-delivery, a replay, or the same moment fetched by a sync.
            if (
                cached.app_url
                and detail.modified_at is not None
                and (detail.status, detail.modified_at, incoming_attempt)
                == (cached.status, cached.modified_at, cached_attempt)
            ):
                return "unchanged (already applied: same status, modified_at and attempt)"
            # Compared as stored: the cached raw is the payload minus what has
            # a column of its own (the output).
            stored = run_fields_from_detail(detail)
            if cached.raw == stored["raw"] and cached.output == stored["output"]:
                return "unchanged (same payload)"
            if _older(detail.modified_at, cached.modified_at):
                return "ignored (older than the cached run)"
            if detail.modified_at == cached.modified_at and _older(
                incoming_attempt, cached_attempt
            ):
                return "ignored (an earlier attempt than the cached run)"
        _, created = _write_detail(connection=connection, detail=detail, cached=cached)
        return "created" if created else "updated"


def run_store_refresh(*, run: Run, detail: RunDetail) -> None:
    """Store Skyvern's view of `run`, just fetched for its card, in the cache
    and on `run` itself.

    Only Skyvern's columns are saved, so a lineage written meanwhile
    survives. When the cache holds a newer view meanwhile (a webhook, a
    sync), `run` is reloaded with that instead and nothing is written; a run
    gone from the cache meanwhile stays gone.
    """
    with transaction.atomic():
        cached = _cached(run.connection, run.run_id, "modified_at")
        if cached is None:
            return
        fields = _with_failure(run_fields_from_detail(detail), cached)
        if _older(detail.modified_at, cached.modified_at):
            deferred = run.get_deferred_fields()
            run.refresh_from_db(fields=[name for name in fields if name not in deferred])
            return
        for name, value in fields.items():
            setattr(run, name, value)
        run.save(update_fields=list(fields))


# --- lineage: the run a retry made ------------------------------------------------------


def _store_lineage(*, run: Run, detail: RunDetail, user, when) -> Run:
    """The new run with its lineage; Skyvern's view of it only when not older
    than the cached one. The caller holds the lock."""
    lineage = {"retried_from": run, "retried_by": user, "retried_at": when}
    cached = (
        Run.objects.filter(connection=run.connection, run_id=detail.run_id)
        .only("modified_at", *FAILURE_INPUTS)
        .first()
    )
    seen = _with_failure(
        {
            **run_fields_from_detail(detail),
            "team_id": run.team_id,
            "workflow_permanent_id": detail.workflow_permanent_id or run.workflow_permanent_id,
            "workflow_title": detail.workflow_title or run.workflow_title,
        },
        cached,
    )
    newer_cached = cached is not None and _older(detail.modified_at, cached.modified_at)
    new_run, _ = Run.objects.update_or_create(
        connection=run.connection,
        run_id=detail.run_id,
        defaults=lineage if newer_cached else {**seen, **lineage},
        create_defaults={"created_at": when, **seen, **lineage},
    )
    return new_run


def retry_lineage_store(*, run: Run, detail: RunDetail, user, when) -> Run:
    """Store (or update) the new run Skyvern made from `run`, with its
    lineage (retried_from, retried_by, retried_at).

    A webhook or sync may have stored the new run already: the lineage is
    added, and Skyvern's view replaces the cached one only if it is not older.
    Storing the same answer twice changes nothing but synced_at.
    """
    with transaction.atomic():
        _lock(run.connection)
        return _store_lineage(run=run, detail=detail, user=user, when=when)


def retry_lineage_link(*, retry: Retry, run: Run, detail: RunDetail) -> Run:
    """Store Skyvern's run `detail` as the new run of the unknown `retry` of
    `run`, with the lineage a successful send records (by whoever asked for
    the retry, when they did).

    Refused (LineageRefused, nothing stored) when the retry is no longer of
    unknown outcome (someone settled it meanwhile: its row is locked, after
    the runs lock, until the transaction ends), or the run is already some
    retry's new run, or recorded as a retry of another run: a run is the
    result of at most one retry. The retry's own record is the caller's to
    write, in the same transaction.
    """
    with transaction.atomic():
        _lock(run.connection)
        current = Retry.objects.select_for_update().get(pk=retry.pk)
        if current.state != RetryState.UNKNOWN:
            raise LineageRefused("Someone settled this retry meanwhile; nothing was linked.")
        owner = (
            Retry.objects.filter(new_run__connection=run.connection, new_run__run_id=detail.run_id)
            .select_related("run")
            .first()
        )
        if owner is not None:
            raise LineageRefused(
                f"{detail.run_id} is already the new run of retry #{owner.number} of "
                f"{owner.run.run_id}; it can't be this retry too."
            )
        cached_origin = (
            Run.objects.filter(connection=run.connection, run_id=detail.run_id)
            .exclude(retried_from__isnull=True)
            .exclude(retried_from=run)
            .values_list("retried_from__run_id", flat=True)
            .first()
        )
        if cached_origin:
            raise LineageRefused(
                f"{detail.run_id} is already recorded as a retry of {cached_origin}; "
                "it can't be this retry too."
            )
        return _store_lineage(
            run=run, detail=detail, user=current.requested_by, when=current.requested_at
        )
