"""Bulk retry jobs: create one over the runs selected in a team, pause,
resume or cancel it, and show how far it has come.

Guarantees:
- the selection is captured as items when the job is created: runs that
  appear later never slip in;
- creating a job sends nothing: its worker (see `sending`) is booked when
  the job is committed.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from console.teams.access import require
from console.teams.models import RETRY, Team

from ..models import (
    ACTIVE_JOB_STATES,
    DONE_ITEM_STATES,
    BulkRetryItem,
    BulkRetryJob,
    ConnectionThrottle,
    ItemState,
    JobKind,
    JobState,
    SkipReason,
)
from .canary import canary_size
from .common import BulkRetryRefused, _audit, _book_worker_on_commit, log
from .following import bulk_job_settle
from .preview import _classified, sending_behind, side_effects
from .throttle import throttle_for


def bulk_retry_create(
    *,
    team: Team,
    user,
    runs,
    reason: str,
    include_already_retried: bool,
    max_steps_override: int | None,
    selection: dict,
    include_skyvern_retrying: bool = False,
    include_completed: bool = False,
    canary_over: int | None = None,
    min_success_percent: int | None = None,
    kind: str = JobKind.RETRY,
    rerun_on_latest: bool = False,
    request=None,
) -> BulkRetryJob:
    """Create a job over exactly the runs selected now, and book its worker.

    A job sending more runs than `canary_over` (BULK_RETRY_CANARY_OVER when
    None) starts with a canary: its first items are marked, sent first, and
    the rest go only if at least `min_success_percent`
    (BULK_RETRY_MIN_SUCCESS_PERCENT when None) of them succeed (`canary`).

    Every selected run becomes an item: `pending`, or `skipped` with its
    reason (as the preview said). Runs added later are never included. The
    worker is enqueued when the transaction commits; nothing is sent here,
    so this returns at once. Needs the operator role. Recorded in the audit
    log with the job (bulk_job_create; and bulk_job_finish when every run
    was skipped). Runs Skyvern retries itself and runs that succeeded are
    skipped unless the person ticked them in (`include_skyvern_retrying`,
    `include_completed`); the audit record says how many each tick let in.
    `kind` says what is done to each run: retried, its webhook replayed, or
    canceled (JobKind); each goes through the same throttle. With
    `rerun_on_latest`, the runs behind their workflow's latest version are
    rerun on it instead (each item knows which version).
    """
    require(user, RETRY, team)
    if kind not in JobKind.values:
        raise BulkRetryRefused("Choose retry, replay webhooks or cancel.")
    reason = (reason or "").strip()
    if not reason:
        raise BulkRetryRefused("Say why this bulk job is done.")
    if max_steps_override is not None and max_steps_override < 1:
        raise BulkRetryRefused("The max steps override must be a positive number.")
    if canary_over is None:
        canary_over = settings.BULK_RETRY_CANARY_OVER
    if min_success_percent is None:
        min_success_percent = settings.BULK_RETRY_MIN_SUCCESS_PERCENT
    _check_percent(min_success_percent)
    now = timezone.now()
    with transaction.atomic():
        rows = _classified(
            team=team,
            runs=runs,
            include_already_retried=include_already_retried,
            include_skyvern_retrying=include_skyvern_retrying,
            include_completed=include_completed,
            kind=kind,
        )
        if not rows:
            raise BulkRetryRefused("No runs are selected.")
        to_send = sum(1 for row in rows if row.skip is None)
        # A canary judges whether retries succeed again: replays and cancels have none.
        canary = (
            canary_size(to_send=to_send, canary_over=canary_over) if kind == JobKind.RETRY else 0
        )
        behind = (
            sending_behind(team=team, runs=runs, sending=[row for row in rows if not row.skip])
            if rerun_on_latest and kind == JobKind.RETRY
            else {}
        )
        job = BulkRetryJob.objects.create(
            rerun_on_latest=rerun_on_latest,
            team=team,
            created_by=user,
            created_at=now,
            reason=reason,
            kind=kind,
            include_already_retried=include_already_retried,
            max_steps_override=max_steps_override,
            selection=selection or {},
            total=len(rows),
            canary_over=canary_over,
            canary_size=canary,
            min_success_percent=min_success_percent,
        )
        canary_ids = {row.pk for row in rows if row.skip is None}
        canary_ids = set(sorted(canary_ids)[:canary]) if canary else set()
        BulkRetryItem.objects.bulk_create(
            [
                BulkRetryItem(
                    job=job,
                    run_id=row.pk,
                    connection_id=row.connection_id,
                    state=ItemState.SKIPPED if row.skip else ItemState.PENDING,
                    skip_reason=row.skip or "",
                    seen_retries=row.counted_retries,
                    rerun_version=behind.get(row.pk),
                    finished_at=now if row.skip else None,
                    canary=row.pk in canary_ids,
                )
                for row in rows
            ],
            batch_size=500,
        )
        for connection_id in {row.connection_id for row in rows if row.skip is None}:
            throttle_for(connection_id)
        skipped = sum(1 for row in rows if row.skip)
        effects = side_effects([row for row in rows if row.skip is None])
        overrides = {}
        if include_skyvern_retrying:
            overrides["skyvern_retries_overridden"] = effects.beside_skyvern
        if include_completed:
            overrides["completed_included"] = effects.completed
        _audit(
            "bulk_job_create",
            job=job,
            user=user,
            request=request,
            runs=len(rows),
            to_send=len(rows) - skipped,
            skipped=skipped,
            reason=reason,
            **overrides,
            canary=canary,
            min_success_percent=min_success_percent,
            reruns=len(behind),
        )
        if all(row.skip for row in rows):
            job.state = JobState.FINISHED
            job.finished_at = job.followed_at = now  # nothing was sent: nothing to follow
            job.save(update_fields=["state", "finished_at", "followed_at"])
            _audit("bulk_job_finish", job=job, skipped=skipped)
        else:
            _book_worker_on_commit(job.pk)
    log.info("%s created by %s for team %s: %s runs", job.title, user, team.pk, len(rows))
    return job


def _set_state(job: BulkRetryJob, user, *, from_states, to_state, **extra) -> bool:
    now = timezone.now()
    changed = BulkRetryJob.objects.filter(pk=job.pk, state__in=from_states).update(
        state=to_state, state_changed_by=user, state_changed_at=now, **extra
    )
    return bool(changed)


def bulk_retry_pause(*, job: BulkRetryJob, user, request=None) -> BulkRetryJob:
    """Stop sending: workers take no new item once this commits (they look
    at the job before every claim, at least every POLL_SECONDS). Items
    already sent are recorded as they answer. Needs the operator role."""
    require(user, RETRY, job.team)
    if not _set_state(
        job, user, from_states=[JobState.QUEUED, JobState.RUNNING], to_state=JobState.PAUSED
    ):
        job.refresh_from_db()
        raise BulkRetryRefused(
            f"This job is {job.get_state_display().lower()}; it can't be paused."
        )
    job.refresh_from_db()
    _audit("bulk_job_pause", job=job, user=user, request=request)
    log.info("%s paused by %s", job.title, user)
    return job


def bulk_retry_resume(*, job: BulkRetryJob, user, request=None) -> BulkRetryJob:
    """Carry on with a paused job: its worker is booked again. Needs the operator role.

    Resuming a job that halted itself is the person's decision to go on: its
    canary counts as passed, and its rolling window starts over (only
    retries sent from now on count)."""
    require(user, RETRY, job.team)
    with transaction.atomic():
        job.refresh_from_db(fields=["started_at", "halt_reason"])
        halt_reason = job.halt_reason
        to_state = JobState.RUNNING if job.started_at else JobState.QUEUED
        extra = {}
        if halt_reason:
            extra = {"halt_reason": "", "watch_since": timezone.now()}
        if not _set_state(job, user, from_states=[JobState.PAUSED], to_state=to_state, **extra):
            job.refresh_from_db()
            raise BulkRetryRefused(
                f"This job is {job.get_state_display().lower()}; only a paused job can resume."
            )
        if halt_reason:
            BulkRetryJob.objects.filter(
                pk=job.pk, canary_size__gt=0, canary_passed_at__isnull=True
            ).update(canary_passed_at=timezone.now())
        _book_worker_on_commit(job.pk)
        details = {"halt_reason": halt_reason} if halt_reason else {}
        _audit("bulk_job_resume", job=job, user=user, request=request, **details)
    job.refresh_from_db()
    log.info("%s resumed by %s", job.title, user)
    return job


def _check_percent(value) -> None:
    if not isinstance(value, int) or not 0 <= value <= 100:
        raise BulkRetryRefused("The success threshold must be a percentage from 0 to 100.")


def bulk_retry_set_threshold(
    *, job: BulkRetryJob, user, min_success_percent: int, request=None
) -> BulkRetryJob:
    """Change the share of retries that must succeed for the job to go on
    (its canary, then its rolling window). A job that halted itself stays
    paused: resuming is a separate decision. Audited with the old and new
    value. Needs the operator role."""
    require(user, RETRY, job.team)
    _check_percent(min_success_percent)
    with transaction.atomic():
        current = (
            BulkRetryJob.objects.select_for_update()
            .filter(pk=job.pk, state__in=ACTIVE_JOB_STATES)
            .values_list("min_success_percent", flat=True)
            .first()
        )
        if current is None:
            job.refresh_from_db()
            raise BulkRetryRefused(
                f"This job is {job.get_state_display().lower()}; its threshold can't change."
            )
        BulkRetryJob.objects.filter(pk=job.pk).update(min_success_percent=min_success_percent)
        _audit(
            "bulk_job_threshold",
            job=job,
            user=user,
            request=request,
            before=current,
            after=min_success_percent,
        )
    job.refresh_from_db()
    log.info(
        "bulk retry #%s: threshold %s%% -> %s%% by %s", job.pk, current, min_success_percent, user
    )
    return job


def bulk_retry_cancel(*, job: BulkRetryJob, user, request=None) -> BulkRetryJob:
    """End the job: every item still waiting becomes `skipped` ("job canceled");
    items already sent (or being sent) keep, or get, their real outcome.
    Needs the operator role."""
    require(user, RETRY, job.team)
    now = timezone.now()
    with transaction.atomic():
        if not _set_state(
            job, user, from_states=ACTIVE_JOB_STATES, to_state=JobState.CANCELED, finished_at=now
        ):
            job.refresh_from_db()
            raise BulkRetryRefused(
                f"This job is {job.get_state_display().lower()}; it can't be canceled."
            )
        skipped = _skip_canceled(job.pk)
        _audit("bulk_job_cancel", job=job, user=user, request=request, skipped=skipped)
    # Retries already sent are still followed to their end.
    bulk_job_settle(job_id=job.pk)
    job.refresh_from_db()
    log.info("%s canceled by %s", job.title, user)
    return job


def _skip_canceled(job_id: int) -> int:
    return BulkRetryItem.objects.filter(
        job_id=job_id, state=ItemState.PENDING, job__state=JobState.CANCELED
    ).update(
        state=ItemState.SKIPPED,
        skip_reason=SkipReason.JOB_CANCELED,
        next_attempt_at=None,
        finished_at=timezone.now(),
    )


# --- progress ---------------------------------------------------------------------


@dataclass
class JobProgress:
    """How far a job has come, as every viewer sees it.

    `done` counts settled items (retried, failed, skipped, unknown); `rate`
    is items sent and settled per minute over the last minute (None before
    any); `eta` is the time left at that rate (None when unknown or done);
    `waiting_until` / `waiting_reason` say when a connection is held back
    (e.g. Skyvern answered 429).
    """

    job_id: int
    state: str
    total: int
    done: int
    counts: dict[str, int]
    rate: float | None
    eta: timedelta | None
    active: bool
    waiting_until: datetime | None = None
    waiting_reason: str = ""

    @property
    def percent(self) -> int:
        return 100 if not self.total else int(self.done * 100 / self.total)

    @property
    def remaining(self) -> int:
        return self.total - self.done


def item_counts(job_id: int) -> dict[str, int]:
    """How many of a job's runs are in each item state (every state, in order)."""
    counts = {state.value: 0 for state in ItemState}
    for state, n in (
        BulkRetryItem.objects.filter(job_id=job_id)
        .order_by()
        .values_list("state")
        .annotate(n=Count("pk"))
    ):
        counts[state] = n
    return counts


def bulk_job_progress(job: BulkRetryJob) -> JobProgress:
    """The job's progress, read from the database (the same for every viewer)."""
    job.refresh_from_db()
    now = timezone.now()
    counts = item_counts(job.pk)
    done = sum(counts[s] for s in DONE_ITEM_STATES)
    total = sum(counts.values())
    rate = None
    if job.started_at:
        window = min(timedelta(minutes=1), max(now - job.started_at, timedelta(seconds=5)))
        recent = BulkRetryItem.objects.filter(
            job=job, finished_at__gte=now - window, attempts__gt=0
        ).count()
        if recent:
            rate = recent / (window.total_seconds() / 60)
    remaining = total - done
    eta = None
    if rate and remaining:
        eta = timedelta(minutes=remaining / rate)
    waiting_until, waiting_reason = None, ""
    if job.is_active and remaining:
        connection_ids = (
            BulkRetryItem.objects.filter(job=job, state=ItemState.PENDING)
            .order_by()
            .values("connection_id")
            .distinct()
        )
        throttle = (
            ConnectionThrottle.objects.filter(
                connection_id__in=connection_ids, paused_until__gt=now
            )
            .order_by("-paused_until")
            .first()
        )
        if throttle is not None:
            waiting_until, waiting_reason = throttle.paused_until, throttle.pause_reason
    return JobProgress(
        job_id=job.pk,
        state=job.state,
        total=total,
        done=done,
        counts=counts,
        rate=rate,
        eta=eta,
        active=job.is_active,
        waiting_until=waiting_until,
        waiting_reason=waiting_reason,
    )
