"""Runs of a bulk retry whose outcome is unknown: check at Skyvern whether
the retry created a new run, or retry anyway on a person's say-so."""

from django.db import transaction
from django.utils import timezone

from console import timefmt
from console.runs.checking import RetryCheck, retry_check
from console.runs.services import RetryRefused, counted_retries
from console.teams.access import require
from console.teams.models import RETRY

from ..models import BulkRetryItem, BulkRetryJob, ItemState, JobKind, JobState
from .common import FOLLOW, BulkRetryRefused, _audit, _book_worker_on_commit, log

#: What a check of an unknown item found (the runs app's check of its retry).
CheckResult = RetryCheck


def bulk_item_check(*, item: BulkRetryItem, user, request=None) -> RetryCheck:
    """Look at Skyvern for the run an `unknown` item's retry may have made.

    The check of a single retry (console.runs.checking.retry_check), from
    when the item was sent: it lists the candidates and their evidence, and
    links one only when Skyvern names this run as its origin (the item is
    then retried, with the lineage of a single retry). Otherwise the person
    links one (retry_link) or retries anyway. The item keeps the check's
    note. Needs the operator role; each check is one audit row
    (bulk_item_check).
    """
    job = item.job
    require(user, RETRY, job.team)
    item.refresh_from_db()
    if item.state != ItemState.UNKNOWN:
        raise BulkRetryRefused("Only an item whose outcome is unknown can be checked.")
    if item.retry is None:
        raise BulkRetryRefused("No retry of this run was recorded; there is nothing to check.")
    try:
        result = retry_check(
            retry=item.retry,
            user=user,
            request=request,
            attempted=item.sent_at,
            audit_as=("bulk_item_check", {"job": job.pk, "item": item.pk}),
        )
    except RetryRefused as refused:
        raise BulkRetryRefused(str(refused)) from None
    BulkRetryItem.objects.filter(pk=item.pk).update(
        check_note=result.message[:500], checked_at=timezone.now()
    )
    if result.linked is not None:
        log.info("bulk retry #%s: check linked %s to %s", job.pk, item.run_id, result.linked)
    return result


def bulk_item_retry_anyway(*, item: BulkRetryItem, user, request=None) -> BulkRetryItem:
    """Send an `unknown` item again, as a new retry intent, on a person's say-so.

    The unknown attempt keeps counting as a retry; this one is the next
    number, so it too is sent at most once (and not at all if someone else
    retried the run meanwhile). The item goes back to waiting and the job's
    worker sends it through the throttle; a finished job runs again for it.
    Needs the operator role. Recorded once in the audit log.
    """
    job = item.job
    require(user, RETRY, job.team)
    now = timezone.now()
    with transaction.atomic():
        job.refresh_from_db()
        if job.state == JobState.CANCELED:
            raise BulkRetryRefused("This job was canceled; retry the run from its own page.")
        if job.kind != JobKind.RETRY:
            # Its item replays a webhook or cancels a run: a retry would redo browser work.
            raise BulkRetryRefused("Only a bulk retry's items can be retried anyway.")
        seen = counted_retries(item.run).count()
        moved = BulkRetryItem.objects.filter(pk=item.pk, state=ItemState.UNKNOWN).update(
            state=ItemState.PENDING,
            seen_retries=seen,
            next_attempt_at=None,
            finished_at=None,
            check_note=f"Sent again by {user} at {timefmt.shown(now, "seconds")}.",
            checked_at=now,
        )
        if not moved:
            raise BulkRetryRefused("Only an item whose outcome is unknown can be retried anyway.")
        if job.state == JobState.FINISHED:
            # Running again: followed again, and its new end announced.
            BulkRetryJob.objects.filter(pk=job.pk, state=JobState.FINISHED).update(
                state=JobState.RUNNING, finished_at=None, followed_at=None, notified_at=None
            )
        _book_worker_on_commit(job.pk)
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


def bulk_item_follow_link(sender, *, retry, new_run, note, when, **kwargs) -> None:
    """A bulk item whose retry was linked to its new run (console.runs.signals
    .retry_linked, from a single run's check as well) is retried too, and
    its new run followed to its end (its job followed again if need be)."""
    items = BulkRetryItem.objects.filter(retry=retry, state=ItemState.UNKNOWN)
    if not new_run.is_terminal:
        BulkRetryJob.objects.filter(
            pk__in=items.values("job_id"), followed_at__isnull=False
        ).update(followed_at=None)
        FOLLOW.book_on_commit()
    items.update(
        state=ItemState.RETRIED,
        new_run=new_run,
        error="",
        check_note=note,
        checked_at=when,
        finished_at=when,
    )
