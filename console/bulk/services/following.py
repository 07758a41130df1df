"""Following a bulk retry's retries to their end: which new runs completed,
which failed again, which are still running, and whether the job is over.

Skyvern keeps no lineage for API retries: the console knows each new run
from Skyvern's answer to the retry (the item's `new_run`). That run's status
reaches the cache like any other run's, through `console.runs.store` (a
webhook, the sync, a card's refresh); the follow pass (`bulk_job_follow`,
the FOLLOW chain's work) also asks Skyvern about the new runs not finished
yet, so that a job is followed to its end without webhooks or a sync.

Guarantees:
- an item's outcome is read from the cache, never kept twice: whatever
  brings the new run's status (webhook or sync or poll) moves it
  (`BulkRetryItem.objects.with_outcome`);
- a job is followed (`followed_at`) once sending is over and every new run
  has ended, or the follow's time limit (from the end of sending) passed:
  runs still going then stay "still running". Only then is its end
  announced, with how many succeeded.
"""

from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from console.runs.models import Run
from console.runs.services import run_refresh
from console.skyvern import TERMINAL_STATUSES

from ..models import (
    ACTIVE_JOB_STATES,
    BulkRetryItem,
    BulkRetryJob,
    ItemState,
    JobKind,
    Outcome,
)
from .common import FOLLOW, log

#: New runs asked about per job and pass, those heard of least recently first.
FOLLOW_PER_PASS = 50


def follow_limit() -> timedelta:
    """How long after sending ends a job's new runs are followed."""
    return timedelta(seconds=settings.BULK_RETRY_FOLLOW_LIMIT_SECONDS)


@dataclass(frozen=True)
class FollowUp:
    """What became of a job's sent retries. `sent` = every other count
    added up: the retries Skyvern took (followed to their end) plus those
    whose outcome is unknown."""

    completed: int = 0
    failed_again: int = 0
    still_running: int = 0
    canceled: int = 0
    unknown: int = 0

    @property
    def sent(self) -> int:
        return sum(asdict(self).values())

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, **asdict(self)}

    def in_words(self) -> str:
        """ "18 succeeded, 6 failed again, 1 still running (25 sent)"."""
        parts = [f"{self.completed} succeeded", f"{self.failed_again} failed again"]
        if self.still_running:
            parts.append(f"{self.still_running} still running")
        if self.canceled:
            parts.append(f"{self.canceled} canceled at Skyvern")
        if self.unknown:
            parts.append(f"{self.unknown} outcome unknown")
        return f"{', '.join(parts)} ({self.sent} sent)"


def item_outcomes(job_id: int) -> FollowUp:
    """How many of a job's sent retries reached each outcome, as the cache has it now."""
    counts = {
        outcome: n
        for outcome, n in BulkRetryItem.objects.filter(job_id=job_id)
        .with_outcome()
        .exclude(outcome="")
        .order_by()
        .values_list("outcome")
        .annotate(n=Count("pk"))
    }
    return FollowUp(**{outcome.value: counts.get(outcome.value, 0) for outcome in Outcome})


def _kind_counts(job_id: int, job) -> str:
    """A replay or cancel job's items by state, in its own words."""
    counts = (
        BulkRetryItem.objects.filter(job_id=job_id)
        .order_by()
        .values_list("state")
        .annotate(n=Count("pk"))
    )
    return ", ".join(f"{n} {job.item_state_label(state).lower()}" for state, n in counts if n)


def _runs_to_follow(job_id: int):
    """The job's new runs that have not ended, least recently heard of first."""
    new_runs = BulkRetryItem.objects.filter(
        job_id=job_id, state=ItemState.RETRIED, new_run__isnull=False
    ).values("new_run_id")
    return (
        Run.objects.filter(pk__in=new_runs)
        .exclude(status__in=TERMINAL_STATUSES)
        .select_related("connection")
        .order_by("synced_at", "pk")
    )


def bulk_job_follow(*, job_id: int) -> bool:
    """One look at a job's unfinished new runs at Skyvern (each stored through
    `console.runs.store`, so a newer webhook or sync is never overwritten),
    then settle the job if it is over. Returns whether it is followed now.

    A connection Skyvern does not answer for is left until the next pass."""
    if not BulkRetryJob.objects.filter(pk=job_id, followed_at__isnull=True).exists():
        return True
    failing: set[int] = set()
    for run in _runs_to_follow(job_id)[:FOLLOW_PER_PASS]:
        if run.connection_id in failing:
            continue
        error = run_refresh(run=run)
        if error is not None:
            failing.add(run.connection_id)
            log.info("bulk retry #%s: could not follow %s: %s", job_id, run.run_id, error)
    return bulk_job_settle(job_id=job_id)


def bulk_job_settle(*, job_id: int) -> bool:
    """Mark the job followed to its end when sending is over and none of its
    new runs is still running, or the follow's time limit has passed.
    Returns whether this call did."""
    now = timezone.now()
    with transaction.atomic():
        job = (
            BulkRetryJob.objects.select_for_update()
            .filter(pk=job_id, followed_at__isnull=True)
            .exclude(state__in=ACTIVE_JOB_STATES)
            .first()
        )
        if job is None:
            return False
        running = BulkRetryItem.objects.filter(job_id=job_id).outcome(Outcome.STILL_RUNNING)
        if running.exists() and (job.finished_at or now) + follow_limit() > now:
            return False
        BulkRetryJob.objects.filter(pk=job_id).update(followed_at=now)
    if job.kind == JobKind.RETRY:
        log.info("%s followed to its end: %s", job.title, item_outcomes(job_id).in_words())
    else:
        log.info("%s ended: %s", job.title, _kind_counts(job_id, job))
    return True


def bulk_jobs_follow() -> list[int]:
    """One follow pass over every job not yet followed to its end (what the
    FOLLOW chain runs). Returns the jobs followed to their end by it."""
    done = []
    for job_id in BulkRetryJob.objects.filter(followed_at__isnull=True).values_list(
        "pk", flat=True
    ):
        FOLLOW.beat()
        if bulk_job_follow(job_id=job_id):
            done.append(job_id)
    return done
