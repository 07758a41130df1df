"""The bulk retry worker: sends each run's retry in the background without
hammering Skyvern, without retrying any run twice, and records what
happened to each one.

Guarantees:
- every send goes through the same recorded intent as a single-run retry
  (`retry_intent_record`): a bulk item and a Retry click on the same run at
  the same moment make one Skyvern call;
- an item is claimed by one conditional UPDATE (pending → sending) inside a
  transaction that holds its connection's throttle row, so two workers, in
  threads or processes, on SQLite or PostgreSQL, never send it twice;
- an item is re-sent automatically only when Skyvern certainly did not act
  (429, 503 with Retry-After, connection refused before sending); a timeout,
  a dropped connection, a 5xx without Retry-After or an unreadable answer
  leave it `unknown` until a person checks or retries it anyway (see
  `checking`);
- per connection, every job and worker together keep at most C requests in
  flight and send at most R per second; a 429 holds the whole connection back;
- a worker killed mid-job loses nothing: items it left in `sending` become
  `unknown` once their lease (the client's longest possible call plus a
  margin) has passed, and the job is picked up again by the next worker.
"""

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db import connection as db_connection
from django.db.models import F, Min, Q
from django.utils import timezone

from console.background.queue import enqueue_once, waiting_args
from console.runs.models import Retry, RetryState, Run
from console.runs.services import latest_retry, retry_intent_record, retry_intent_send
from console.skyvern import (
    KeyRejected,
    RateLimited,
    SkyvernBusy,
    SkyvernError,
    SkyvernUnreachable,
)

from ..models import (
    OPEN_ITEM_STATES,
    BulkRetryItem,
    BulkRetryJob,
    ConnectionThrottle,
    ItemState,
    JobState,
    SkipReason,
)
from .common import JOB_PASS, _audit, log
from .jobs import _skip_canceled, item_counts, throttle_for

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

GAVE_UP_SENDING = (
    "The worker stopped while sending this retry; Skyvern may or may not have it. "
    "Check for the new run, or retry anyway."
)
SENT_AMBIGUOUS = " Skyvern may or may not have created the new run."


def sending_lease() -> timedelta:
    """How long an item may stay `sending`: the client's longest possible call
    (connect + read timeout) plus a margin. Older means its worker died."""
    return timedelta(seconds=settings.SKYVERN_CONNECT_TIMEOUT + settings.SKYVERN_READ_TIMEOUT + 15)


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
    try:
        return _claim_holding_throttle(job_id, connection_id)
    except ConnectionThrottle.DoesNotExist:
        # A job makes its connections' throttle rows when it is created; an
        # item of any other connection gets one here, committed on its own
        # before the claim locks it, so that claimers only ever queue on a
        # row every one of them can see.
        throttle_for(connection_id)
        return _claim_holding_throttle(job_id, connection_id)


def _claim_holding_throttle(job_id: int, connection_id: int) -> Claim:
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
        # With the person who started it: the retry is recorded, and sent, as theirs.
        job = (
            BulkRetryJob.objects.select_related("created_by")
            .only("state", "created_by", "max_steps_override")
            .get(pk=job_id)
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
            counts = {state: n for state, n in item_counts(job_id).items() if n}
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
        when = min(comebacks)
        enqueue_once(JOB_PASS, job_id, run_after=when)
        return f"Waiting; booked again for {when.isoformat()}."
    return f"Stopped ({job.get_state_display().lower()})."


def bulk_jobs_revive() -> list[int]:
    """Book a worker for every running or queued job that has lost its own.

    A job has lost its worker when it still has open items, no worker task is
    waiting for it, and no worker has shown a sign of life for longer than
    the sending lease (a SIGKILLed worker's task never finishes). Also turns
    dead workers' `sending` items into `unknown`. Returns the revived job ids.
    """
    bulk_items_give_up_stale()
    cutoff = timezone.now() - sending_lease()
    waiting = {args[0] for args in waiting_args(JOB_PASS) if args}
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
        enqueue_once(JOB_PASS, job.pk)
        revived.append(job.pk)
    if revived:
        log.warning("bulk retry: revived stalled job(s) %s", revived)
    return revived
