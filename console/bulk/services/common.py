"""What the bulk retry modules share: the refusal support staff see when the
console won't do something, the audit row about a bulk retry job, the
background tasks they book, and the package's logger. (Who may act: the
team's one rule, `console.teams.access.require`.)"""

import logging
from datetime import timedelta

from django.conf import settings

from console.audit.services import audit_record
from console.background.chains import Chain
from console.background.queue import TaskSlot, enqueue_on_commit

from ..models import BulkRetryJob, JobState

# One logger for the whole package, named as before the split into modules,
# so log lines and any logging set up for it stay the same.
log = logging.getLogger("console.bulk.services")


class BulkRetryRefused(Exception):
    """The console won't do this; the message says why, for the user."""


def _audit(action, *, job, user=None, request=None, target=None, outcome="ok", **details):
    """One audit row about `job` (or one of its runs, as `target`)."""
    # A row about the job keeps its kind, for the log to say "Bulk cancel
    # paused"; a row about one of its runs names the job.
    details = {**details, "kind": job.kind} if target is None else {"job": job.pk, **details}
    audit_record(
        action=action,
        request=request,
        user=user,
        team=job.team_id,
        outcome=outcome,
        target=job if target is None else target,
        details=details,
    )


def bulk_jobs_active() -> bool:
    """Whether a job is queued or running (one its worker may have lost)."""
    return BulkRetryJob.objects.filter(state__in=[JobState.QUEUED, JobState.RUNNING]).exists()


#: A worker pass over one job's due items (`console.bulk.tasks.bulk_retry_work`).
JOB_PASS = TaskSlot("bulk retry job pass")
#: Picks up jobs whose worker died (`bulk_jobs_revive`), every 30 s while any
#: job is queued or running (`console.bulk.tasks.bulk_retry_watchdog`); a round
#: (a few queries) still running after 5 minutes has lost its worker.
WATCHDOG = Chain(
    "bulk retry watchdog",
    every=lambda: timedelta(seconds=30),
    stale_after=lambda: timedelta(minutes=5),
    needed=bulk_jobs_active,
)


def bulk_jobs_following() -> bool:
    """Whether some job's retries are not yet followed to their end."""
    return BulkRetryJob.objects.filter(followed_at__isnull=True).exists()


#: Follows every job's new runs to their end (`following.bulk_jobs_follow`,
#: `console.bulk.tasks.bulk_retry_follow`), every BULK_RETRY_FOLLOW_EVERY_SECONDS
#: while a job is not followed to its end.
FOLLOW = Chain(
    "bulk retry follow",
    every=lambda: timedelta(seconds=settings.BULK_RETRY_FOLLOW_EVERY_SECONDS),
    stale_after=lambda: timedelta(minutes=5),
    needed=bulk_jobs_following,
)


def _book_worker_on_commit(job_id: int) -> None:
    """Once the job's changes commit: a worker pass for it (unless one is
    waiting already), the watchdog that picks it up if that worker dies, and
    the follow of its retries."""
    enqueue_on_commit(JOB_PASS, job_id, once=True)
    WATCHDOG.book_on_commit()
    FOLLOW.book_on_commit()
