"""Runs of a bulk retry whose outcome is unknown: check at Skyvern whether
the retry created a new run, or retry anyway on a person's say-so."""

from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from console.runs.models import Retry, RetryState, Run
from console.runs.services import counted_retries, retry_lineage_store
from console.skyvern import SkyvernError
from console.teams.clients import client_for
from console.teams.secrets import ApiKeyUnreadable

from ..models import BulkRetryItem, BulkRetryJob, ItemState, JobState
from .common import BulkRetryRefused, _audit, _require_operator, log
from .jobs import _enqueue_on_commit

#: An unknown item's check looks for runs created this long before the attempt
#: (clocks differ a little) and reads at most this many pages.
CHECK_CLOCK_MARGIN = timedelta(seconds=5)
CHECK_MAX_PAGES = 10
CHECK_PAGE_SIZE = 100


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
