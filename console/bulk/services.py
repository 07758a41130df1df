"""Bulk retry: choose runs, preview, and retry them in the background without
hammering Skyvern, without retrying any run twice, and saying at the end what
happened to each one.

Views, tasks and commands call these functions; nothing else changes a job.
Guarantees:
- the selection is captured as items when the job is created: runs that
  appear later never slip in;
- every send goes through the same recorded intent as a single-run retry
  (`retry_intent_record`): a bulk item and a Retry click on the same run at
  the same moment make one Skyvern call;
- an item is claimed by one conditional UPDATE (pending → sending) inside a
  transaction that holds its connection's throttle row, so two workers, in
  threads or processes, on SQLite or PostgreSQL, never send it twice;
- an item is re-sent automatically only when Skyvern certainly did not act
  (429, 503 with Retry-After, connection refused before sending); a timeout,
  a dropped connection, a 5xx without Retry-After or an unreadable answer
  leave it `unknown` until a person checks or retries it anyway;
- per connection, every job and worker together keep at most C requests in
  flight and send at most R per second; a 429 holds the whole connection back;
- a worker killed mid-job loses nothing: items it left in `sending` become
  `unknown` once their lease (the client's longest possible call plus a
  margin) has passed, and the job is picked up again by the next worker.
"""

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import close_old_connections, transaction
from django.db import connection as db_connection
from django.db.models import Count, Exists, F, IntegerField, Min, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from console.runs.models import COUNTED_RETRY_STATES, Retry, RetryState, Run
from console.runs.services import (
    counted_retries,
    latest_retry,
    retry_intent_record,
    retry_intent_send,
    retry_lineage_store,
)
from console.skyvern import (
    TERMINAL_STATUSES,
    KeyRejected,
    RateLimited,
    SkyvernBusy,
    SkyvernError,
    SkyvernUnreachable,
)
from console.teams.access import can_retry
from console.teams.clients import client_for
from console.teams.models import Connection, Team
from console.teams.secrets import ApiKeyUnreadable

from .models import (
    ACTIVE_JOB_STATES,
    OPEN_ITEM_STATES,
    BulkRetryItem,
    BulkRetryJob,
    ConnectionThrottle,
    ItemState,
    JobState,
    SkipReason,
)

log = logging.getLogger(__name__)

#: How many workflows / failure reasons a preview names before "Other".
PREVIEW_TOP = 5
#: How many runs of each skip reason a preview lists by name.
PREVIEW_SAMPLE = 20
#: A worker sleeps in place for a due time closer than this; later, it books
#: itself again for then and lets the worker process do other tasks.
INLINE_WAIT_MAX = timedelta(seconds=5)
#: Longest sleep between two looks at the job (how fast pause/cancel bite).
POLL_SECONDS = 0.25
#: One worker pass gives the worker process back after this long.
PASS_MAX = timedelta(minutes=5)
#: Shortest and longest wait before a certain-not-sent item goes again.
MIN_RESEND_DELAY = timedelta(seconds=0.5)
MAX_BACKOFF = timedelta(seconds=60)
#: An unknown item's check looks for runs created this long before the attempt
#: (clocks differ a little) and reads at most this many pages.
CHECK_CLOCK_MARGIN = timedelta(seconds=5)
CHECK_MAX_PAGES = 10
CHECK_PAGE_SIZE = 100

GAVE_UP_SENDING = (
    "The worker stopped while sending this retry; Skyvern may or may not have it. "
    "Check for the new run, or retry anyway."
)
SENT_AMBIGUOUS = " Skyvern may or may not have created the new run."


class BulkRetryRefused(Exception):
    """The console won't do this; the message says why, for the user."""


def _audit(action, *, job, user=None, request=None, target=None, outcome="ok", **details):
    """One audit row about `job` (or one of its runs, as `target`)."""
    from console.audit.services import audit_record

    if target is not None:
        details = {"job": job.pk, **details}
    audit_record(
        action=action,
        request=request,
        user=user,
        team=job.team_id,
        outcome=outcome,
        target=target if target is not None else ("bulk_job", job.pk, f"Bulk retry #{job.pk}"),
        details=details,
    )


def sending_lease() -> timedelta:
    """How long an item may stay `sending`: the client's longest possible call
    (connect + read timeout) plus a margin. Older means its worker died."""
    return timedelta(seconds=settings.SKYVERN_CONNECT_TIMEOUT + settings.SKYVERN_READ_TIMEOUT + 15)


def _require_operator(team: Team, user) -> None:
    if not can_retry(team.role_of(user)):
        raise PermissionDenied(f"This needs the operator role in {team.name}.")


# --- choosing and previewing ----------------------------------------------------


@dataclass(frozen=True)
class Breakdown:
    label: str
    count: int


@dataclass(frozen=True)
class SkipGroup:
    reason: SkipReason
    count: int
    runs: list  # up to PREVIEW_SAMPLE Run objects, oldest first

    @property
    def label(self) -> str:
        return self.reason.label


@dataclass
class BulkPreview:
    """What a bulk retry of a selection would do; nothing has been sent.

    `by_workflow` and `by_failure_reason` describe the runs that will be sent
    (top PREVIEW_TOP, then "Other"); `skipped` lists every skip reason that
    applies, with its count and the first runs.
    """

    total: int
    to_send: int
    by_workflow: list[Breakdown]
    by_failure_reason: list[Breakdown]
    skipped: list[SkipGroup]

    @property
    def skipped_count(self) -> int:
        return sum(group.count for group in self.skipped)


def failing_connections(team: Team) -> dict[int, str]:
    """The team's connections whose API key is failing, with why.

    A key is failing when (1) it can't be decrypted with the configured
    encryption keys, (2) the connection's most recent sync failed because
    Skyvern rejected the key, or (3) a bulk retry got 403 for it after the
    last successful sync. Sending those runs could only fail.
    """
    from console.sync.models import ConnectionSync

    failing: dict[int, str] = {}
    syncs = {s.connection_id: s for s in ConnectionSync.objects.filter(connection__team=team)}
    throttles = {
        t.connection_id: t for t in ConnectionThrottle.objects.filter(connection__team=team)
    }
    rejected_words = (KeyRejected.default_message, "This team's stored API key")
    for connection in Connection.objects.filter(team=team):
        sync = syncs.get(connection.pk)
        throttle = throttles.get(connection.pk)
        try:
            connection.api_key()
        except ApiKeyUnreadable as error:
            failing[connection.pk] = str(error)
            continue
        if sync is not None and sync.last_failed and sync.last_error.startswith(rejected_words):
            failing[connection.pk] = f"The last sync failed: {sync.last_error}"
            continue
        if throttle is not None and throttle.key_rejected_at is not None:
            last_ok = sync.last_success_at if sync is not None else None
            if last_ok is None or throttle.key_rejected_at > last_ok:
                failing[connection.pk] = KeyRejected.default_message
    return failing


@dataclass(frozen=True)
class _Row:
    pk: int
    status: str
    connection_id: int
    workflow_title: str
    failure_reason: str
    counted_retries: int
    skip: SkipReason | None


def _classified(*, team: Team, runs, include_already_retried: bool) -> list[_Row]:
    """Every selected run of the team, oldest first, with why it is skipped (or None)."""
    counted = (
        Retry.objects.filter(run=OuterRef("pk"), state__in=COUNTED_RETRY_STATES)
        .order_by()
        .values("run")
        .annotate(n=Count("pk"))
        .values("n")
    )
    in_active_job = BulkRetryItem.objects.filter(
        run=OuterRef("pk"), state__in=OPEN_ITEM_STATES, job__state__in=ACTIVE_JOB_STATES
    )
    failing = failing_connections(team)
    rows = (
        runs.filter(team=team)
        .annotate(
            n_retries=Coalesce(Subquery(counted, output_field=IntegerField()), Value(0)),
            in_job=Exists(in_active_job),
        )
        .order_by("created_at", "id")
        .values_list(
            "pk",
            "status",
            "connection_id",
            "workflow_title",
            "failure_reason",
            "n_retries",
            "in_job",
        )
    )
    out = []
    for pk, status, connection_id, title, reason, n_retries, in_job in rows.iterator(
        chunk_size=2000
    ):
        if status not in TERMINAL_STATUSES:
            skip = SkipReason.NOT_TERMINAL
        elif in_job:
            skip = SkipReason.IN_ACTIVE_JOB
        elif connection_id in failing:
            skip = SkipReason.KEY_FAILING
        elif n_retries and not include_already_retried:
            skip = SkipReason.ALREADY_RETRIED
        else:
            skip = None
        out.append(_Row(pk, status, connection_id, title, reason, n_retries, skip))
    return out


def _reason_label(reason: str) -> str:
    first = (reason or "").strip().splitlines()[0].strip() if (reason or "").strip() else ""
    if not first:
        return "(no failure reason)"
    return first if len(first) <= 120 else first[:119] + "…"


def _top(counter: Counter) -> list[Breakdown]:
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    top = [Breakdown(label, count) for label, count in ranked[:PREVIEW_TOP]]
    rest = sum(count for _, count in ranked[PREVIEW_TOP:])
    if rest:
        top.append(Breakdown("Other", rest))
    return top


def bulk_retry_preview(*, team: Team, runs, include_already_retried: bool) -> BulkPreview:
    """What retrying `runs` (a Run queryset already scoped to the team) would do.

    Sends nothing and records nothing. Each selected run is either to be sent
    or skipped for exactly one reason, checked in this order: not terminal;
    already in another active bulk job; its connection's key is failing (see
    `failing_connections`); already retried (unless include_already_retried).
    """
    rows = _classified(team=team, runs=runs, include_already_retried=include_already_retried)
    sending = [row for row in rows if row.skip is None]
    skipped: dict[SkipReason, list[_Row]] = {}
    for row in rows:
        if row.skip is not None:
            skipped.setdefault(row.skip, []).append(row)
    groups = []
    for reason in SkipReason:
        members = skipped.get(reason)
        if not members:
            continue
        sample_ids = [row.pk for row in members[:PREVIEW_SAMPLE]]
        sample = list(Run.objects.filter(pk__in=sample_ids).order_by("created_at", "id"))
        groups.append(SkipGroup(reason=reason, count=len(members), runs=sample))
    return BulkPreview(
        total=len(rows),
        to_send=len(sending),
        by_workflow=_top(Counter(row.workflow_title or "(untitled workflow)" for row in sending)),
        by_failure_reason=_top(Counter(_reason_label(row.failure_reason) for row in sending)),
        skipped=groups,
    )


# --- creating and steering a job -----------------------------------------------


def throttle_for(connection_id: int) -> ConnectionThrottle:
    throttle, _ = ConnectionThrottle.objects.get_or_create(connection_id=connection_id)
    return throttle


def bulk_retry_create(
    *,
    team: Team,
    user,
    runs,
    reason: str,
    include_already_retried: bool,
    max_steps_override: int | None,
    selection: dict,
    request=None,
) -> BulkRetryJob:
    """Create a job over exactly the runs selected now, and book its worker.

    Every selected run becomes an item: `pending`, or `skipped` with its
    reason (as the preview said). Runs added later are never included. The
    worker is enqueued when the transaction commits; nothing is sent here,
    so this returns at once. Needs the operator role. Recorded in the audit
    log with the job (bulk_job_create; and bulk_job_finish when every run
    was skipped).
    """
    _require_operator(team, user)
    reason = (reason or "").strip()
    if not reason:
        raise BulkRetryRefused("Say why these runs are being retried.")
    if max_steps_override is not None and max_steps_override < 1:
        raise BulkRetryRefused("The max steps override must be a positive number.")
    now = timezone.now()
    with transaction.atomic():
        rows = _classified(team=team, runs=runs, include_already_retried=include_already_retried)
        if not rows:
            raise BulkRetryRefused("No runs are selected.")
        job = BulkRetryJob.objects.create(
            team=team,
            created_by=user,
            created_at=now,
            reason=reason,
            include_already_retried=include_already_retried,
            max_steps_override=max_steps_override,
            selection=selection or {},
            total=len(rows),
        )
        BulkRetryItem.objects.bulk_create(
            [
                BulkRetryItem(
                    job=job,
                    run_id=row.pk,
                    connection_id=row.connection_id,
                    state=ItemState.SKIPPED if row.skip else ItemState.PENDING,
                    skip_reason=row.skip or "",
                    seen_retries=row.counted_retries,
                    finished_at=now if row.skip else None,
                )
                for row in rows
            ],
            batch_size=500,
        )
        for connection_id in {row.connection_id for row in rows if row.skip is None}:
            throttle_for(connection_id)
        skipped = sum(1 for row in rows if row.skip)
        _audit(
            "bulk_job_create",
            job=job,
            user=user,
            request=request,
            runs=len(rows),
            to_send=len(rows) - skipped,
            skipped=skipped,
            reason=reason,
        )
        if all(row.skip for row in rows):
            job.state = JobState.FINISHED
            job.finished_at = now
            job.save(update_fields=["state", "finished_at"])
            _audit("bulk_job_finish", job=job, skipped=skipped)
        else:
            _enqueue_on_commit(job.pk)
    log.info("bulk retry #%s created by %s for team %s: %s runs", job.pk, user, team.pk, len(rows))
    return job


def _enqueue_on_commit(job_id: int) -> None:
    from .tasks import bulk_job_enqueue, bulk_watchdog_schedule

    def book():
        bulk_job_enqueue(job_id)
        bulk_watchdog_schedule()

    transaction.on_commit(book)


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
    _require_operator(job.team, user)
    if not _set_state(
        job, user, from_states=[JobState.QUEUED, JobState.RUNNING], to_state=JobState.PAUSED
    ):
        job.refresh_from_db()
        raise BulkRetryRefused(
            f"This job is {job.get_state_display().lower()}; it can't be paused."
        )
    job.refresh_from_db()
    _audit("bulk_job_pause", job=job, user=user, request=request)
    log.info("bulk retry #%s paused by %s", job.pk, user)
    return job


def bulk_retry_resume(*, job: BulkRetryJob, user, request=None) -> BulkRetryJob:
    """Carry on with a paused job: its worker is booked again. Needs the operator role."""
    _require_operator(job.team, user)
    with transaction.atomic():
        job.refresh_from_db(fields=["started_at"])
        to_state = JobState.RUNNING if job.started_at else JobState.QUEUED
        if not _set_state(job, user, from_states=[JobState.PAUSED], to_state=to_state):
            job.refresh_from_db()
            raise BulkRetryRefused(
                f"This job is {job.get_state_display().lower()}; only a paused job can resume."
            )
        _enqueue_on_commit(job.pk)
        _audit("bulk_job_resume", job=job, user=user, request=request)
    job.refresh_from_db()
    log.info("bulk retry #%s resumed by %s", job.pk, user)
    return job


def bulk_retry_cancel(*, job: BulkRetryJob, user, request=None) -> BulkRetryJob:
    """End the job: every item still waiting becomes `skipped` ("job canceled");
    items already sent (or being sent) keep, or get, their real outcome.
    Needs the operator role."""
    _require_operator(job.team, user)
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
    job.refresh_from_db()
    log.info("bulk retry #%s canceled by %s", job.pk, user)
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


def bulk_job_progress(job: BulkRetryJob) -> JobProgress:
    """The job's progress, read from the database (the same for every viewer)."""
    job.refresh_from_db()
    now = timezone.now()
    counts = {state.value: 0 for state in ItemState}
    for state, n in (
        BulkRetryItem.objects.filter(job=job)
        .order_by()
        .values_list("state")
        .annotate(n=Count("pk"))
    ):
        counts[state] = n
    done = sum(counts[s] for s in ItemState.values if s not in OPEN_ITEM_STATES)
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


# --- the worker -------------------------------------------------------------------


@dataclass
class Claim:
    """One look for work: an item to send now, or when to look again, or stop."""

    item: BulkRetryItem | None = None
    wait_until: datetime | None = None
    stop: bool = False


def _due(job_id: int, now: datetime):
    return BulkRetryItem.objects.filter(job_id=job_id, state=ItemState.PENDING).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )


def bulk_item_claim(*, job_id: int) -> Claim:
    """Take the job's next due item for sending, if the throttle allows.

    The item moves pending → sending by a conditional UPDATE inside a
    transaction that holds the connection's throttle row, with its Retry
    intent recorded in the same transaction: at most one claimer ever gets an
    item, and the in-flight count and rate it checked can't change under it.
    An item whose run was retried meanwhile (by a person or another job) is
    skipped here, with no Skyvern call.
    """
    now = timezone.now()
    job_state = BulkRetryJob.objects.filter(pk=job_id).values_list("state", flat=True).first()
    if job_state not in (JobState.QUEUED, JobState.RUNNING):
        return Claim(stop=True)
    connection_ids = list(
        _due(job_id, now).order_by().values_list("connection_id", flat=True).distinct()[:20]
    )
    if not connection_ids:
        later = BulkRetryItem.objects.filter(job_id=job_id, state=ItemState.PENDING).aggregate(
            at=Min("next_attempt_at")
        )["at"]
        if later is None:
            return Claim(stop=True)  # nothing pending: the job is (nearly) done
        return Claim(wait_until=later)
    earliest = None
    for connection_id in connection_ids:
        claim = _claim_on_connection(job_id, connection_id)
        if claim.item is not None or claim.stop:
            return claim
        if claim.wait_until and (earliest is None or claim.wait_until < earliest):
            earliest = claim.wait_until
    return Claim(wait_until=earliest or timezone.now())


def _claim_on_connection(job_id: int, connection_id: int) -> Claim:
    throttle_for(connection_id)
    skip_locked = db_connection.features.has_select_for_update_skip_locked
    with transaction.atomic():
        # PostgreSQL: every claimer of this connection queues here. SQLite:
        # the IMMEDIATE transaction already holds the database's write lock.
        throttle = ConnectionThrottle.objects.select_for_update().get(connection_id=connection_id)
        now = timezone.now()
        # Then the job row (a sign of life, and the lock that orders this claim
        # with pause and cancel: always throttle, then job, then items).
        if not BulkRetryJob.objects.filter(
            pk=job_id, state__in=[JobState.QUEUED, JobState.RUNNING]
        ).update(heartbeat_at=now):
            return Claim(stop=True)
        job = BulkRetryJob.objects.only("state", "created_by_id", "max_steps_override").get(
            pk=job_id
        )
        if throttle.paused_until and throttle.paused_until > now:
            return Claim(wait_until=throttle.paused_until)
        if throttle.next_send_at and throttle.next_send_at > now:
            return Claim(wait_until=throttle.next_send_at)
        in_flight = BulkRetryItem.objects.filter(
            connection_id=connection_id, state=ItemState.SENDING, sent_at__gt=now - sending_lease()
        ).count()
        if in_flight >= throttle.effective_max_in_flight:
            return Claim(wait_until=now + timedelta(seconds=0.1))
        candidates = _due(job_id, now).filter(connection_id=connection_id).order_by("id")
        if skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        item = candidates.first()
        if item is None:
            return Claim(wait_until=now)
        claimed = BulkRetryItem.objects.filter(pk=item.pk, state=ItemState.PENDING).update(
            state=ItemState.SENDING,
            sent_at=now,
            attempts=F("attempts") + 1,
            next_attempt_at=None,
        )
        if not claimed:
            return Claim(wait_until=now)
        run = Run.objects.select_related("connection", "team").get(pk=item.run_id)
        retry = retry_intent_record(run=run, number=item.seen_retries + 1, user=job.created_by)
        if retry is None:
            owner = latest_retry(run)
            BulkRetryItem.objects.filter(pk=item.pk).update(
                state=ItemState.SKIPPED,
                skip_reason=SkipReason.RETRIED_MEANWHILE,
                retry=owner,
                new_run=owner.new_run if owner else None,
                finished_at=now,
            )
            return Claim(wait_until=now)
        BulkRetryItem.objects.filter(pk=item.pk).update(retry=retry)
        throttle.next_send_at = now + timedelta(seconds=1 / throttle.effective_per_second)
        throttle.save(update_fields=["next_send_at"])
        if job.state == JobState.QUEUED:
            BulkRetryJob.objects.filter(pk=job_id, state=JobState.QUEUED).update(
                state=JobState.RUNNING, started_at=now
            )
    item.refresh_from_db()
    item.run = run
    item.retry = retry
    item.job = job
    return Claim(item=item)


def _error_text(error: SkyvernError) -> str:
    message = str(error)
    if error.detail and error.detail not in message:
        message = f"{message} Skyvern said: {error.detail}"
    if error.run_may_exist:
        message += SENT_AMBIGUOUS
    return message[:500]


def _certainly_not_sent(error: SkyvernError) -> bool:
    """Skyvern certainly did not act and said (or implied) to come back later."""
    if isinstance(error, RateLimited | SkyvernBusy):
        return True
    return isinstance(error, SkyvernUnreachable) and not error.run_may_exist


def _resend_delay(error: SkyvernError, attempts: int) -> timedelta:
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        delay = timedelta(seconds=retry_after)
    else:
        delay = min(MAX_BACKOFF, timedelta(seconds=2 ** max(0, attempts - 1)))
    return max(delay, MIN_RESEND_DELAY)


def bulk_item_send(*, item: BulkRetryItem) -> str:
    """Send a claimed item's retry once and record the outcome; returns the new state.

    Only the claimer calls this. 429 / 503 with Retry-After / refused
    connection: the item waits (and the whole connection with it) and goes
    again; any answer that leaves the outcome open: `unknown`; any other
    error: `failed` with Skyvern's reason. A 403 fails the job's other
    waiting items of that connection too (the key is rejected).
    """
    job = item.job
    error = retry_intent_send(
        retry=item.retry, user=job.created_by, max_steps_override=job.max_steps_override
    )
    now = timezone.now()
    retry = item.retry
    if error is None:
        BulkRetryItem.objects.filter(pk=item.pk).update(
            state=ItemState.RETRIED, new_run=retry.new_run, error="", finished_at=now
        )
        return ItemState.RETRIED
    message = _error_text(error)
    if _certainly_not_sent(error):
        if item.attempts >= settings.BULK_RETRY_MAX_ATTEMPTS:
            BulkRetryItem.objects.filter(pk=item.pk).update(
                state=ItemState.FAILED,
                error=f"{message} Gave up after {item.attempts} attempts."[:500],
                finished_at=now,
            )
            return ItemState.FAILED
        until = now + _resend_delay(error, item.attempts)
        ConnectionThrottle.objects.filter(connection_id=item.connection_id).filter(
            Q(paused_until__isnull=True) | Q(paused_until__lt=until)
        ).update(paused_until=until, pause_reason=str(error)[:300])
        BulkRetryItem.objects.filter(pk=item.pk, state=ItemState.SENDING).update(
            state=ItemState.PENDING, next_attempt_at=until, error=message
        )
        _skip_canceled(job.pk)  # canceled while this one was out
        return ItemState.PENDING
    if error.run_may_exist:
        BulkRetryItem.objects.filter(pk=item.pk).update(
            state=ItemState.UNKNOWN, error=message, finished_at=now
        )
        return ItemState.UNKNOWN
    BulkRetryItem.objects.filter(pk=item.pk).update(
        state=ItemState.FAILED, error=message, finished_at=now
    )
    if isinstance(error, KeyRejected):
        ConnectionThrottle.objects.filter(connection_id=item.connection_id).update(
            key_rejected_at=now
        )
        BulkRetryItem.objects.filter(
            job_id=job.pk, connection_id=item.connection_id, state=ItemState.PENDING
        ).update(state=ItemState.FAILED, error=message, finished_at=now)
    return ItemState.FAILED


def bulk_items_give_up_stale(*, job_id: int | None = None) -> int:
    """Items left `sending` past their lease (their worker died) become
    `unknown`, with their Retry intent: never re-sent blindly. Returns how many."""
    now = timezone.now()
    stale = BulkRetryItem.objects.filter(state=ItemState.SENDING, sent_at__lt=now - sending_lease())
    if job_id is not None:
        stale = stale.filter(job_id=job_id)
    with transaction.atomic():
        rows = list(stale.values_list("pk", "retry_id"))
        if not rows:
            return 0
        BulkRetryItem.objects.filter(pk__in=[pk for pk, _ in rows], state=ItemState.SENDING).update(
            state=ItemState.UNKNOWN, error=GAVE_UP_SENDING, finished_at=now
        )
        Retry.objects.filter(
            pk__in=[retry_id for _, retry_id in rows if retry_id], state=RetryState.SENDING
        ).update(state=RetryState.UNKNOWN, error=GAVE_UP_SENDING, finished_at=now)
    log.warning("bulk retry: %s item(s) left sending by a dead worker are now unknown", len(rows))
    return len(rows)


def _finish_if_done(job_id: int) -> bool:
    now = timezone.now()
    with transaction.atomic():
        if BulkRetryItem.objects.filter(job_id=job_id, state__in=OPEN_ITEM_STATES).exists():
            return False
        finished = BulkRetryJob.objects.filter(
            pk=job_id, state__in=[JobState.QUEUED, JobState.RUNNING]
        ).update(state=JobState.FINISHED, finished_at=now)
        if finished:
            job = BulkRetryJob.objects.only("pk", "team_id").get(pk=job_id)
            counts = dict(
                BulkRetryItem.objects.filter(job_id=job_id)
                .order_by()
                .values_list("state")
                .annotate(n=Count("pk"))
            )
            _audit("bulk_job_finish", job=job, **counts)
        return bool(finished)


def _work_loop(job_id: int, deadline: float) -> datetime | None:
    """Claim and send until nothing is due; returns when to come back (or None)."""
    while True:
        if time.monotonic() > deadline:
            return timezone.now()
        claim = bulk_item_claim(job_id=job_id)
        if claim.item is not None:
            try:
                bulk_item_send(item=claim.item)
            except Exception:
                log.exception("bulk retry #%s: item %s failed", job_id, claim.item.pk)
                BulkRetryItem.objects.filter(pk=claim.item.pk, state=ItemState.SENDING).update(
                    state=ItemState.UNKNOWN,
                    error="The console failed while sending this retry; "
                    "Skyvern may or may not have it.",
                    finished_at=timezone.now(),
                )
            continue
        if claim.stop:
            return None
        now = timezone.now()
        wait = claim.wait_until - now if claim.wait_until else timedelta(0)
        if wait > INLINE_WAIT_MAX:
            return claim.wait_until
        BulkRetryJob.objects.filter(pk=job_id).update(heartbeat_at=now)
        time.sleep(min(max(wait.total_seconds(), 0.01), POLL_SECONDS))


def _threaded_loop(job_id: int, deadline: float, results: list) -> None:
    try:
        results.append(_work_loop(job_id, deadline))
    except Exception as error:  # noqa: BLE001 - reported by the caller
        results.append(error)
    finally:
        db_connection.close()


def bulk_job_work(*, job_id: int) -> str:
    """Work a job's due items until none is due; what the worker task calls.

    Sends with BULK_RETRY_WORKER_THREADS threads (each claim still obeys the
    connection's throttle), so any number of these may run at once on one
    job. Finishes the job when every item is settled; when only delayed
    items remain, books itself again for when the first is due. Returns a
    line for the task's result.
    """
    bulk_items_give_up_stale(job_id=job_id)
    job = BulkRetryJob.objects.filter(pk=job_id).first()
    if job is None:
        return "The job was removed."
    if job.state not in (JobState.QUEUED, JobState.RUNNING):
        return f"The job is {job.get_state_display().lower()}."
    BulkRetryJob.objects.filter(pk=job_id).update(heartbeat_at=timezone.now())
    deadline = time.monotonic() + PASS_MAX.total_seconds()
    threads = max(1, settings.BULK_RETRY_WORKER_THREADS)
    # Threads have their own database connections: they can't see data of an
    # open transaction (a test's), so then work in this thread only.
    if threads == 1 or db_connection.in_atomic_block:
        results = [_work_loop(job_id, deadline)]
    else:
        results: list = []
        workers = [
            threading.Thread(
                target=_threaded_loop,
                args=(job_id, deadline, results),
                name=f"bulk-{job_id}-{n}",
                daemon=True,
            )
            for n in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        close_old_connections()
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise errors[0]
    if _finish_if_done(job_id):
        log.info("bulk retry #%s finished", job_id)
        return "Finished."
    comebacks = [r for r in results if isinstance(r, datetime)]
    job.refresh_from_db(fields=["state"])
    if comebacks and job.state in (JobState.QUEUED, JobState.RUNNING):
        from .tasks import bulk_job_enqueue

        when = min(comebacks)
        bulk_job_enqueue(job_id, run_after=when)
        return f"Waiting; booked again for {when.isoformat()}."
    return f"Stopped ({job.get_state_display().lower()})."


def bulk_jobs_revive() -> list[int]:
    """Book a worker for every running or queued job that has lost its own.

    A job has lost its worker when it still has open items, no worker task is
    waiting for it, and no worker has shown a sign of life for longer than
    the sending lease (a SIGKILLed worker's task never finishes). Also turns
    dead workers' `sending` items into `unknown`. Returns the revived job ids.
    """
    from .tasks import bulk_job_enqueue, waiting_job_ids

    bulk_items_give_up_stale()
    cutoff = timezone.now() - sending_lease()
    waiting = waiting_job_ids()
    revived = []
    for job in BulkRetryJob.objects.filter(state__in=[JobState.QUEUED, JobState.RUNNING]):
        if job.pk in waiting:
            continue
        if job.heartbeat_at is not None and job.heartbeat_at > cutoff:
            continue
        if job.heartbeat_at is None and job.created_at > cutoff:
            continue
        if _finish_if_done(job.pk):
            continue
        bulk_job_enqueue(job.pk)
        revived.append(job.pk)
    if revived:
        log.warning("bulk retry: revived stalled job(s) %s", revived)
    return revived


# --- unknown items: check, or retry anyway --------------------------------------------


@dataclass
class CheckResult:
    """What a check of an unknown item found: `found` is the linked new run."""

    found: Run | None
    message: str
    candidates: list[str] = field(default_factory=list)


def bulk_item_check(*, item: BulkRetryItem, user, request=None) -> CheckResult:
    """Look at Skyvern for the run an `unknown` item may have created.

    Lists the connection's runs of the item's workflow created since the
    attempt. Skyvern names the run a retry came from
    (`retried_from_workflow_run_id`); a run retried from this one and not
    already linked to another retry is linked as the item's new run (state
    retried, lineage as a single retry). When Skyvern does not say where runs
    came from, one unlinked run of the workflow since the attempt is linked;
    several are reported and nothing is linked. Found nothing: says so and
    the item stays unknown. Needs the operator role. Each check is recorded
    once in the audit log, with what it found.
    """
    job = item.job
    _require_operator(job.team, user)
    item.refresh_from_db()
    if item.state != ItemState.UNKNOWN:
        raise BulkRetryRefused("Only an item whose outcome is unknown can be checked.")
    run = Run.objects.select_related("connection", "team").get(pk=item.run_id)
    retry = item.retry
    attempted = item.sent_at or (retry.requested_at if retry else None) or job.created_at
    since = attempted - CHECK_CLOCK_MARGIN
    now = timezone.now()

    def audited(result: CheckResult) -> CheckResult:
        _audit(
            "bulk_item_check",
            job=job,
            user=user,
            request=request,
            target=run,
            outcome="ok" if result.found else "unknown",
            item=item.pk,
            found=result.found.run_id if result.found else "",
            message=result.message,
        )
        return result

    def note(message: str, found: Run | None = None, candidates=()) -> CheckResult:
        BulkRetryItem.objects.filter(pk=item.pk).update(check_note=message[:500], checked_at=now)
        return audited(CheckResult(found=found, message=message, candidates=list(candidates)))

    try:
        client = client_for(run.connection)
        seen = []
        for page in range(1, CHECK_MAX_PAGES + 1):
            summaries = client.list_runs(
                page=page,
                page_size=CHECK_PAGE_SIZE,
                search_key=run.workflow_permanent_id or None,
            )
            seen += summaries
            oldest = summaries[-1].created_at if summaries else None
            if len(summaries) < CHECK_PAGE_SIZE or (oldest is not None and oldest < since):
                break
    except (SkyvernError, ApiKeyUnreadable) as error:
        return note(f"Couldn't check with Skyvern: {error}")

    recent = [
        s
        for s in seen
        if s.run_id != run.run_id
        and (s.created_at is None or s.created_at >= since)
        and (not run.workflow_permanent_id or s.workflow_permanent_id == run.workflow_permanent_id)
    ]
    # Runs already known to be some retry's result can't be this one's.
    taken = set(
        Retry.objects.filter(
            new_run__connection=run.connection,
            new_run__run_id__in=[s.run_id for s in recent],
        ).values_list("new_run__run_id", flat=True)
    )
    recent = [s for s in recent if s.run_id not in taken]
    says_origin = any("retried_from_workflow_run_id" in s.raw for s in seen)
    if says_origin:
        matches = [s for s in recent if s.raw.get("retried_from_workflow_run_id") == run.run_id]
    else:
        matches = recent
    since_text = timezone.localtime(attempted).strftime("%Y-%m-%d %H:%M:%S")
    if not matches:
        return note(
            f"No new run of this workflow retried from {run.run_id} since {since_text} "
            "was found at Skyvern. The retry was probably not created; use Retry anyway."
        )
    if not says_origin and len(matches) > 1:
        ids = [s.run_id for s in matches]
        return note(
            f"{len(ids)} new runs of this workflow since {since_text} ({', '.join(ids[:5])}); "
            "Skyvern doesn't say which came from this retry, so none was linked.",
            candidates=ids,
        )
    match = min(matches, key=lambda s: (s.created_at or now, s.run_id))
    try:
        detail = client.get_run(match.run_id)
    except SkyvernError as error:
        return note(f"Found {match.run_id}, but couldn't read it from Skyvern: {error}")
    with transaction.atomic():
        new_run = retry_lineage_store(run=run, detail=detail, user=job.created_by, when=attempted)
        if retry is not None:
            Retry.objects.filter(pk=retry.pk).update(
                state=RetryState.RETRIED, new_run=new_run, error="", finished_at=now
            )
        message = f"Found {new_run.run_id}, created {since_text} or later; linked as the new run."
        BulkRetryItem.objects.filter(pk=item.pk, state=ItemState.UNKNOWN).update(
            state=ItemState.RETRIED,
            new_run=new_run,
            error="",
            check_note=message,
            checked_at=now,
            finished_at=now,
        )
    log.info("bulk retry #%s: check linked %s to %s", job.pk, run.run_id, new_run.run_id)
    return audited(CheckResult(found=new_run, message=message, candidates=[new_run.run_id]))


def bulk_item_retry_anyway(*, item: BulkRetryItem, user, request=None) -> BulkRetryItem:
    """Send an `unknown` item again, as a new retry intent, on a person's say-so.

    The unknown attempt keeps counting as a retry; this one is the next
    number, so it too is sent at most once (and not at all if someone else
    retried the run meanwhile). The item goes back to waiting and the job's
    worker sends it through the throttle; a finished job runs again for it.
    Needs the operator role. Recorded once in the audit log.
    """
    job = item.job
    _require_operator(job.team, user)
    now = timezone.now()
    with transaction.atomic():
        job.refresh_from_db()
        if job.state == JobState.CANCELED:
            raise BulkRetryRefused("This job was canceled; retry the run from its own page.")
        seen = counted_retries(item.run).count()
        moved = BulkRetryItem.objects.filter(pk=item.pk, state=ItemState.UNKNOWN).update(
            state=ItemState.PENDING,
            seen_retries=seen,
            next_attempt_at=None,
            finished_at=None,
            check_note=f"Sent again by {user} at {timezone.localtime(now):%H:%M:%S}.",
            checked_at=now,
        )
        if not moved:
            raise BulkRetryRefused("Only an item whose outcome is unknown can be retried anyway.")
        if job.state == JobState.FINISHED:
            BulkRetryJob.objects.filter(pk=job.pk, state=JobState.FINISHED).update(
                state=JobState.RUNNING, finished_at=None
            )
        _enqueue_on_commit(job.pk)
        _audit(
            "bulk_item_retry_anyway",
            job=job,
            user=user,
            request=request,
            target=item.run,
            item=item.pk,
            number=seen + 1,
        )
    item.refresh_from_db()
    log.info("bulk retry #%s: %s sent again by %s", job.pk, item.run_id, user)
    return item
