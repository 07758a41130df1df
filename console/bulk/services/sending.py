"""The bulk retry worker: sends each run's retry in the background, through
its connection's throttle (`throttle`), without retrying any run twice, and
records what happened to each one.

Guarantees:
- each claimed item is sent once (the claim, `throttle.bulk_item_claim`,
  records its retry intent first);
- an item is re-sent automatically only when Skyvern certainly did not act
  (429, 503 with Retry-After, connection refused before sending); a timeout,
  a dropped connection, a 5xx without Retry-After or an unreadable answer
  leave it `unknown` until a person checks or retries it anyway (see
  `checking`);
- a worker killed mid-job loses nothing: items it left in `sending` become
  `unknown` once their lease (the client's longest possible call plus a
  margin) has passed, and the job is picked up again by the next worker.
"""

import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db import connection as db_connection
from django.utils import timezone

from console.background.queue import enqueue_once, waiting_args
from console.runs.actions import webhook_replay_send
from console.runs.models import ActionState, Retry, RetryKind, RetryState, RunAction
from console.runs.reruns import rerun_intent_send
from console.runs.services import retry_intent_send
from console.skyvern import (
    KeyRejected,
    RateLimited,
    SkyvernBusy,
    SkyvernError,
    SkyvernUnreachable,
)
from console.teams.clients import client_for
from console.teams.secrets import ApiKeyUnreadable

from ..models import (
    OPEN_ITEM_STATES,
    BulkRetryItem,
    BulkRetryJob,
    ConnectionThrottle,
    ItemState,
    JobKind,
    JobState,
)
from .canary import bulk_job_guard
from .common import JOB_PASS, _audit, log
from .following import bulk_job_settle
from .jobs import _skip_canceled, item_counts
from .throttle import Claim, bulk_item_claim, sending_lease, throttle_hold

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
    """Send a claimed item once (its retry, or its webhook replay) and record
    the outcome; returns the new state.

    Only the claimer calls this. 429 / 503 with Retry-After / refused
    connection: the item waits (and the whole connection with it) and goes
    again; any answer that leaves the outcome open: `unknown`; any other
    error: `failed` with Skyvern's reason. A 403 fails the job's other
    waiting items of that connection too (the key is rejected). A replay
    Skyvern sent but the receiver did not take (no 2xx) is `failed`, with
    the receiver's answer.
    """
    job = item.job
    if job.kind == JobKind.REPLAY_WEBHOOK:
        error = webhook_replay_send(action=item.action)
        if error is None:
            return _replay_done(item)
        return _send_failed(item, error)
    if item.retry.kind == RetryKind.RERUN:
        error = rerun_intent_send(retry=item.retry, user=job.created_by)
    else:
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
    return _send_failed(item, error)


def _replay_done(item: BulkRetryItem) -> str:
    action = item.action
    now = timezone.now()
    if action.status_code is not None and 200 <= action.status_code < 300:
        BulkRetryItem.objects.filter(pk=item.pk).update(
            state=ItemState.DONE, error="", finished_at=now
        )
        return ItemState.DONE
    if action.status_code is not None:
        words = f"The receiver answered HTTP {action.status_code}"
        if action.response_excerpt:
            words += f": {action.response_excerpt}"
    else:
        words = f"The receiver didn't answer: {action.error or 'no answer'}"
    BulkRetryItem.objects.filter(pk=item.pk).update(
        state=ItemState.FAILED, error=words[:500], finished_at=now
    )
    return ItemState.FAILED


def bulk_cancel_send(*, items: list[BulkRetryItem]) -> None:
    """Cancel a claimed batch (one connection, at most 100 runs) with one
    Skyvern call, and record each run's outcome: canceled (`done`), not
    canceled because it had finished or isn't this organisation's
    (`failed`), or the call's error, as bulk_item_send records it."""
    connection = items[0].run.connection
    try:
        result = client_for(connection).cancel_runs([item.run.run_id for item in items])
    except (SkyvernError, ApiKeyUnreadable) as error:
        if not isinstance(error, SkyvernError):
            error = SkyvernError(str(error))
        for item in items:
            _send_failed(item, error)
        return
    now = timezone.now()
    cancelled = set(result.cancelled)
    for item in items:
        if item.run.run_id in cancelled:
            RunAction.objects.filter(pk=item.action_id).update(
                state=ActionState.DONE, finished_at=now
            )
            BulkRetryItem.objects.filter(pk=item.pk).update(
                state=ItemState.DONE, error="", finished_at=now
            )
        else:
            words = "Skyvern didn't cancel it: it had finished already, or isn't this key's run."
            RunAction.objects.filter(pk=item.action_id).update(
                state=ActionState.FAILED, error=words, finished_at=now
            )
            BulkRetryItem.objects.filter(pk=item.pk).update(
                state=ItemState.FAILED, error=words, finished_at=now
            )


def _send_failed(item: BulkRetryItem, error: SkyvernError) -> str:
    """Record a send that Skyvern answered with an error (see bulk_item_send)."""
    job = item.job
    now = timezone.now()
    if item.action_id and not item.action.finished_at:
        # A cancel batch's intent (a replay's is kept by webhook_replay_send).
        state = ActionState.UNKNOWN if error.run_may_exist else ActionState.FAILED
        RunAction.objects.filter(pk=item.action_id).update(
            state=state, error=_error_text(error), finished_at=now
        )
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
        throttle_hold(item.connection_id, until=until, reason=str(error))
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
        RunAction.objects.filter(
            bulk_items__pk__in=[pk for pk, _ in rows], state=ActionState.SENDING
        ).update(state=ActionState.UNKNOWN, error=GAVE_UP_SENDING, finished_at=now)
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
    if finished:
        # Every new run may have ended already (a fast webhook, a skipped-only end).
        bulk_job_settle(job_id=job_id)
    return bool(finished)


def _work_loop(job_id: int, deadline: float) -> datetime | None:
    """Claim and send until nothing is due; returns when to come back (or None)."""
    while True:
        if time.monotonic() > deadline:
            return timezone.now()
        guard = bulk_job_guard(job_id=job_id)
        if guard.stop:
            return None
        if guard.wait_until is not None:
            claim = Claim(wait_until=guard.wait_until)  # the canary's outcomes are awaited
        else:
            claim = bulk_item_claim(job_id=job_id, canary_only=guard.canary_only)
        if claim.item is not None:
            batch = claim.batch or [claim.item]
            try:
                if claim.batch:
                    bulk_cancel_send(items=claim.batch)
                else:
                    bulk_item_send(item=claim.item)
            except Exception:
                log.exception("bulk job #%s: item(s) %s failed", job_id, [i.pk for i in batch])
                BulkRetryItem.objects.filter(
                    pk__in=[i.pk for i in batch], state=ItemState.SENDING
                ).update(
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
        log.info("%s finished", job.title)
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
