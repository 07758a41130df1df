"""Concurrency and crashes: two workers on one job, a single-run Retry racing
a bulk item on the same run, and a real worker process SIGKILLed mid-job."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from console.bulk import services
from console.bulk.models import BulkRetryItem, BulkRetryJob, ConnectionThrottle, ItemState, JobState
from console.bulk.services import bulk_job_work, bulk_jobs_revive
from console.runs.models import Run
from console.runs.services import run_retry
from tests.helpers import run_in_threads

from .conftest import add_failed_runs, database_url, make_job


@pytest.mark.django_db(transaction=True)
def test_two_workers_on_one_job_send_every_item_exactly_once(world):
    run_ids = add_failed_runs(world, 16)
    job = make_job(world, run_ids)
    world.simulator.state.configure(latency_ms=40)

    run_in_threads(lambda: bulk_job_work(job_id=job.pk), lambda: bulk_job_work(job_id=job.pk))

    assert world.simulator.state.retry_counts() == {run_id: 1 for run_id in run_ids}
    assert set(BulkRetryItem.objects.values_list("state", "attempts")) == {(ItemState.RETRIED, 1)}
    assert Run.objects.filter(retried_from__run_id__in=run_ids).count() == 16
    assert BulkRetryJob.objects.get(pk=job.pk).state == JobState.FINISHED


@pytest.mark.django_db(transaction=True)
def test_a_single_retry_and_a_bulk_item_on_the_same_run_make_one_skyvern_call(world):
    run_id = world.add_run(status="failed")
    job = make_job(world, [run_id])
    original = Run.objects.get(run_id=run_id)
    world.simulator.state.configure(latency_ms=300)

    run_in_threads(
        lambda: run_retry(run=original, user=world.admin, seen_retries=0),
        lambda: bulk_job_work(job_id=job.pk),
    )

    assert world.simulator.state.retry_count(run_id) == 1
    assert Run.objects.filter(retried_from=original).count() == 1
    item = BulkRetryItem.objects.get(job=job)
    assert item.state in (ItemState.RETRIED, ItemState.SKIPPED)
    if item.state == ItemState.SKIPPED:
        assert item.skip_reason == "retried_meanwhile"


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_job_loses_nothing_and_sends_nothing_twice(world):
    """SIGKILL a real `manage.py db_worker` in the middle of a job, then start
    a worker again: the job completes, the simulator counts no duplicate, and
    the items caught in flight become unknown."""
    run_ids = add_failed_runs(world, 16)
    ConnectionThrottle.objects.create(
        connection=world.connection_a, max_in_flight=4, per_second=1000
    )
    world.simulator.state.configure(latency_ms=500)
    job = make_job(world, run_ids)  # books its worker task (no open transaction here)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "SKYVERN_ALLOW_LOOPBACK": "1",
        "BULK_RETRY_WORKER_THREADS": "4",
    }
    worker = [sys.executable, "manage.py", "db_worker", "--no-startup-delay", "--interval", "0.1"]
    child = subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    items = BulkRetryItem.objects.filter(job=job)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (
                items.filter(state=ItemState.RETRIED).count() >= 4
                and items.filter(state=ItemState.SENDING).exists()
            ):
                break
            time.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    caught = set(items.filter(state=ItemState.SENDING).values_list("run__run_id", flat=True))
    done_before = set(items.filter(state=ItemState.RETRIED).values_list("run__run_id", flat=True))
    assert caught and len(done_before) >= 4 and len(done_before) + len(caught) < 16
    time.sleep(0.6)  # the killed requests still reach the simulator

    # Time passes beyond the lease of the dead worker's sends...
    past = timezone.now() - services.sending_lease() - timedelta(seconds=1)
    items.filter(state=ItemState.SENDING).update(sent_at=past)
    BulkRetryJob.objects.filter(pk=job.pk).update(heartbeat_at=past)
    # ...the watchdog books a worker for the job, and a worker starts again.
    assert bulk_jobs_revive() == [job.pk]
    world.simulator.state.configure(latency_ms=0)
    subprocess.run([*worker, "--batch"], env=env, timeout=60, check=True, capture_output=True)

    assert BulkRetryJob.objects.get(pk=job.pk).state == JobState.FINISHED
    states = dict(items.values_list("run__run_id", "state"))
    assert {run_id for run_id, state in states.items() if state == ItemState.UNKNOWN} == caught
    assert {run_id for run_id, state in states.items() if state == ItemState.RETRIED} == (
        set(run_ids) - caught
    )
    counts = world.simulator.state.retry_counts()
    assert all(counts.get(run_id) == 1 for run_id in set(run_ids) - caught)
    assert all(counts.get(run_id, 0) <= 1 for run_id in caught)  # never re-sent
    assert max(counts.values()) == 1
