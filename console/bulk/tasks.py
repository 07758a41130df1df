"""Bulk retry on Django's Tasks framework (the db_worker runs these).

Tasks take ids and call the bulk services; nothing else happens here.
"""

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.tasks import task
from django.utils import timezone

from console.worker.chains import chain_book, chain_ensure

from .models import BulkRetryJob, JobState
from .services import bulk_job_work, bulk_jobs_revive

log = logging.getLogger(__name__)

#: How often the watchdog looks for jobs whose worker died, while any job is active.
WATCHDOG_INTERVAL = timedelta(seconds=30)
#: A watchdog round (a few queries) still running after this has lost its worker.
WATCHDOG_ROUND_STALE = timedelta(minutes=5)


@task
def bulk_retry_work(job_id: int) -> str:
    """Work one job's due items, then exit (booking itself again if items wait)."""
    return bulk_job_work(job_id=job_id)


@task
def bulk_retry_watchdog() -> list[int]:
    """Pick up jobs whose worker died; books its next round while any job is active."""
    try:
        return bulk_jobs_revive()
    finally:
        if BulkRetryJob.objects.filter(state__in=[JobState.QUEUED, JobState.RUNNING]).exists():
            bulk_watchdog_schedule(delay=WATCHDOG_INTERVAL)


def _waiting(task_path: str):
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(task_path=task_path, status="READY")


def waiting_job_ids() -> set[int]:
    """Jobs with a worker task booked and not yet started."""
    rows = _waiting(bulk_retry_work.module_path).values_list("args_kwargs", flat=True)
    return {args["args"][0] for args in rows if isinstance(args, dict) and args.get("args")}


def bulk_job_enqueue(job_id: int, *, run_after: datetime | None = None) -> bool:
    """Book a worker pass for the job (at `run_after`), unless one is already
    waiting that starts no later. True when one was booked. Extra passes are
    harmless (claims are atomic); this only avoids piling them up."""
    with transaction.atomic():
        booked = [
            (row.args_kwargs, row.run_after)
            for row in _waiting(bulk_retry_work.module_path).only("args_kwargs", "run_after")
        ]
        for args, at in booked:
            mine = isinstance(args, dict) and args.get("args") == [job_id]
            if mine and (at is None or at <= (run_after or timezone.now())):
                return False
        if run_after is not None and run_after > timezone.now():
            bulk_retry_work.using(run_after=run_after).enqueue(job_id)
        else:
            bulk_retry_work.enqueue(job_id)
    return True


def bulk_watchdog_schedule(*, delay: timedelta = WATCHDOG_INTERVAL) -> bool:
    """Make sure exactly one watchdog round is waiting; True when one was booked."""
    return chain_book(bulk_retry_watchdog, delay=delay)


def bulk_watchdog_ensure() -> str:
    """While any job is active, keep the watchdog going, also after a worker
    was killed in one of its rounds (what every db_worker does); see `chain_ensure`."""
    if not BulkRetryJob.objects.filter(state__in=[JobState.QUEUED, JobState.RUNNING]).exists():
        return "idle"
    return chain_ensure(bulk_retry_watchdog, stale_after=WATCHDOG_ROUND_STALE)
