"""Bulk retry on Django's Tasks framework (the db_worker runs these).

Tasks take ids and call the bulk services, which book them
(`console.bulk.services.common`); nothing else happens here.
"""

from django.tasks import task

from .services import bulk_job_work, bulk_jobs_follow, bulk_jobs_revive
from .services.common import FOLLOW, JOB_PASS, WATCHDOG


@JOB_PASS.bind
@task
def bulk_retry_work(job_id: int) -> str:
    """Work one job's due items, then exit (booking itself again if items wait)."""
    return bulk_job_work(job_id=job_id)


@WATCHDOG.bind
@task
def bulk_retry_watchdog() -> list[int]:
    """Pick up jobs whose worker died; books its next round while any job is active."""
    try:
        return bulk_jobs_revive()
    finally:
        WATCHDOG.book_next()


@FOLLOW.bind
@task
def bulk_retry_follow() -> list[int]:
    """Ask Skyvern about jobs' unfinished new runs; books its next round while
    a job is not followed to its end."""
    try:
        return bulk_jobs_follow()
    finally:
        FOLLOW.book_next()
