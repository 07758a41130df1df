"""The per-connection throttle of bulk retries: which item goes out next,
and when, so that every job and worker together don't hammer Skyvern.

Guarantees:
- per connection, every job and worker together keep at most C requests in
  flight and send at most R per second (the connection's `ConnectionThrottle`
  row; `BULK_RETRY_MAX_IN_FLIGHT`, `BULK_RETRY_PER_SECOND`, or the
  connection's own); a 429 or a busy Skyvern holds the whole connection back
  (`throttle_hold`);
- an item is claimed by one conditional UPDATE (pending → sending) inside a
  transaction that holds its connection's throttle row, so two workers, in
  threads or processes, on SQLite or PostgreSQL, never send it twice;
- the claim records the same retry intent as a single-run retry
  (`retry_intent_record`): a bulk item and a Retry click on the same run at
  the same moment make one Skyvern call;
- an item counts as in flight for its lease (`sending_lease`): the client's
  longest possible call plus a margin; after that its worker is dead.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Min, Q
from django.utils import timezone

from console.runs.actions import action_intent_record, counted_actions, latest_action
from console.runs.models import RetryKind, Run
from console.runs.services import latest_retry, retry_intent_record
from console.skyvern import BULK_CANCEL_LIMIT

from ..models import (
    BulkRetryItem,
    BulkRetryJob,
    ConnectionThrottle,
    ItemState,
    JobKind,
    JobState,
    SkipReason,
)


def throttle_for(connection_id: int) -> ConnectionThrottle:
    throttle, _ = ConnectionThrottle.objects.get_or_create(connection_id=connection_id)
    return throttle


def throttle_hold(connection_id: int, *, until: datetime, reason: str) -> None:
    """Send nothing more through the connection until `until` (Skyvern asked
    to wait); a longer hold already set stays."""
    ConnectionThrottle.objects.filter(connection_id=connection_id).filter(
        Q(paused_until__isnull=True) | Q(paused_until__lt=until)
    ).update(paused_until=until, pause_reason=reason[:300])


def sending_lease() -> timedelta:
    """How long an item may stay `sending`: the client's longest possible call
    (connect + read timeout) plus a margin. Older means its worker died."""
    return timedelta(seconds=settings.SKYVERN_CONNECT_TIMEOUT + settings.SKYVERN_READ_TIMEOUT + 15)


@dataclass
class Claim:
    """One look for work: an item to send now, or when to look again, or stop.
    A bulk cancel claims up to BULK_CANCEL_LIMIT items of one connection at
    once (`batch`, `item` its first): Skyvern cancels them in one call."""

    item: BulkRetryItem | None = None
    wait_until: datetime | None = None
    stop: bool = False
    batch: list = None


def _due(job_id: int, now: datetime, canary_only: bool = False):
    due = BulkRetryItem.objects.filter(job_id=job_id, state=ItemState.PENDING).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    return due.filter(canary=True) if canary_only else due


def bulk_item_claim(*, job_id: int, canary_only: bool = False) -> Claim:
    """Take the job's next due item for sending, if the throttle allows.

    The item moves pending → sending by a conditional UPDATE inside a
    transaction that holds the connection's throttle row, with its Retry
    intent recorded in the same transaction: at most one claimer ever gets an
    item, and the in-flight count and rate it checked can't change under it.
    An item whose run was retried meanwhile (by a person or another job) is
    skipped here, with no Skyvern call. With `canary_only`, only the job's
    canary items are taken (the rest wait for the canary's verdict).
    """
    now = timezone.now()
    job_state = BulkRetryJob.objects.filter(pk=job_id).values_list("state", flat=True).first()
    if job_state not in (JobState.QUEUED, JobState.RUNNING):
        return Claim(stop=True)
    connection_ids = list(
        _due(job_id, now, canary_only)
        .order_by()
        .values_list("connection_id", flat=True)
        .distinct()[:20]
    )
    if not connection_ids:
        pending = BulkRetryItem.objects.filter(job_id=job_id, state=ItemState.PENDING)
        if canary_only:
            pending = pending.filter(canary=True)
        later = pending.aggregate(at=Min("next_attempt_at"))["at"]
        if later is None:
            if canary_only:
                # The last canary items are out: look again soon for their verdict.
                return Claim(wait_until=now + timedelta(seconds=0.25))
            return Claim(stop=True)  # nothing pending: the job is (nearly) done
        return Claim(wait_until=later)
    earliest = None
    for connection_id in connection_ids:
        claim = _claim_on_connection(job_id, connection_id, canary_only)
        if claim.item is not None or claim.stop:
            return claim
        if claim.wait_until and (earliest is None or claim.wait_until < earliest):
            earliest = claim.wait_until
    return Claim(wait_until=earliest or timezone.now())


def _claim_on_connection(job_id: int, connection_id: int, canary_only: bool) -> Claim:
    try:
        return _claim_holding_throttle(job_id, connection_id, canary_only)
    except ConnectionThrottle.DoesNotExist:
        # A job makes its connections' throttle rows when it is created; an
        # item of any other connection gets one here, committed on its own
        # before the claim locks it, so that claimers only ever queue on a
        # row every one of them can see.
        throttle_for(connection_id)
        return _claim_holding_throttle(job_id, connection_id, canary_only)


def _claim_holding_throttle(job_id: int, connection_id: int, canary_only: bool) -> Claim:
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
            .only("state", "kind", "created_by", "max_steps_override")
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
        candidates = (
            _due(job_id, now, canary_only).filter(connection_id=connection_id).order_by("id")
        )
        if skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        size = BULK_CANCEL_LIMIT if job.kind == JobKind.CANCEL else 1
        picked = list(candidates.values_list("pk", flat=True)[:size])
        if not picked:
            return Claim(wait_until=now)
        BulkRetryItem.objects.filter(pk__in=picked, state=ItemState.PENDING).update(
            state=ItemState.SENDING,
            sent_at=now,
            attempts=F("attempts") + 1,
            next_attempt_at=None,
        )
        items = list(
            BulkRetryItem.objects.filter(
                pk__in=picked, state=ItemState.SENDING, sent_at=now
            ).order_by("id")
        )
        if not items:
            return Claim(wait_until=now)
        runs = Run.objects.select_related("connection", "team").in_bulk(
            [item.run_id for item in items]
        )
        claimed = []
        for item in items:
            run = runs[item.run_id]
            if _record_intent(item, run, job, now):
                item.run = run
                item.job = job
                claimed.append(item)
        if not claimed:
            return Claim(wait_until=now)
        throttle.next_send_at = now + timedelta(seconds=1 / throttle.effective_per_second)
        throttle.save(update_fields=["next_send_at"])
        if job.state == JobState.QUEUED:
            BulkRetryJob.objects.filter(pk=job_id, state=JobState.QUEUED).update(
                state=JobState.RUNNING, started_at=now
            )
    for item in claimed:
        run, job_, retry, action = item.run, item.job, item.retry, item.action
        item.refresh_from_db()
        item.run, item.job, item.retry, item.action = run, job_, retry, action
    if job.kind == JobKind.CANCEL:
        return Claim(item=claimed[0], batch=claimed)
    return Claim(item=claimed[0])


def _record_intent(item: BulkRetryItem, run: Run, job: BulkRetryJob, now) -> bool:
    """Record the claimed item's intent (a retry, a replay or a cancel) as a
    click on the run's card would, or skip it when someone else's intent
    owns it; returns whether the item is to be sent."""
    if job.kind == JobKind.RETRY:
        retry = retry_intent_record(
            run=run,
            number=item.seen_retries + 1,
            user=job.created_by,
            kind=RetryKind.RERUN if item.rerun_version else RetryKind.RETRY,
            version=item.rerun_version,
        )
        if retry is None:
            owner = latest_retry(run)
            BulkRetryItem.objects.filter(pk=item.pk).update(
                state=ItemState.SKIPPED,
                skip_reason=SkipReason.RETRIED_MEANWHILE,
                retry=owner,
                new_run=owner.new_run if owner else None,
                finished_at=now,
            )
            return False
        BulkRetryItem.objects.filter(pk=item.pk).update(retry=retry)
        item.retry = retry
        return True
    kind = job.kind
    number = counted_actions(run, kind).count() + 1
    action = action_intent_record(run=run, kind=kind, number=number, user=job.created_by)
    if action is None:
        BulkRetryItem.objects.filter(pk=item.pk).update(
            state=ItemState.SKIPPED,
            skip_reason=SkipReason.DONE_MEANWHILE,
            action=latest_action(run, kind),
            finished_at=now,
        )
        return False
    BulkRetryItem.objects.filter(pk=item.pk).update(action=action)
    action.run = run
    item.action = action
    return True
