"""Exactly one periodic sync chain: two bookers at once make one round, and
a round whose worker was killed (left RUNNING, its `finally` never run) is
replaced by the next look of any worker.

On SQLite and on PostgreSQL (DATABASE_URL): the race only bites on
PostgreSQL, where two transactions can both see "no round waiting".
"""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.models import DBTaskResult

from console.bulk import tasks as bulk_tasks
from console.bulk.services.common import WATCHDOG
from console.sync import tasks
from console.sync.models import ConnectionSync
from tests.bulk.conftest import make_job
from tests.helpers import run_in_threads

SYNC = tasks.sync_all_connections.module_path


def rounds(status, task_path=SYNC):
    return DBTaskResult.objects.filter(task_path=task_path, status=status)


def at_once(*targets):
    return sorted(run_in_threads(*targets), key=str)


@pytest.fixture
def slow_bookings(monkeypatch):
    """Every booking dawdles between its look for a waiting round and its
    insert, as on a busy database: without a lock both bookers see none."""
    enqueue = DatabaseBackend.enqueue

    def slow(self, task, args, kwargs):
        time.sleep(0.3)
        return enqueue(self, task, args, kwargs)

    monkeypatch.setattr(DatabaseBackend, "enqueue", slow)


def killed_round(task_path=SYNC, *, started=timedelta(hours=1)):
    """A round as SIGKILL leaves it: RUNNING for good, and no next round booked."""
    task = tasks.sync_all_connections if task_path == SYNC else bulk_tasks.bulk_retry_watchdog
    result = task.enqueue()
    DBTaskResult.objects.filter(pk=result.id).update(
        status="RUNNING", started_at=timezone.now() - started, worker_ids=["killed-worker"]
    )
    return DBTaskResult.objects.get(pk=result.id)


@pytest.mark.django_db(transaction=True)
def test_two_bookings_at_once_make_one_round(slow_bookings):
    results = at_once(tasks.PERIODIC_SYNC.book, tasks.PERIODIC_SYNC.book)

    assert results == [False, True]
    assert rounds("READY").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_starting_at_once_start_one_chain(slow_bookings):
    results = at_once(tasks.PERIODIC_SYNC.ensure, tasks.PERIODIC_SYNC.ensure)

    assert results == ["booked", "waiting"]
    assert rounds("READY").count() == 1
    assert DBTaskResult.objects.ready().filter(task_path=SYNC).exists()  # starts at once


@pytest.mark.django_db(transaction=True)
def test_a_round_ending_while_a_worker_revives_its_chain_leaves_one_chain(slow_bookings, settings):
    killed_round(started=timedelta(seconds=settings.SYNC_ROUND_STALE_SECONDS + 1))

    results = at_once(tasks.PERIODIC_SYNC.ensure, tasks.PERIODIC_SYNC.book)

    assert results in ([False, "revived"], [True, "waiting"])
    assert rounds("READY").count() == 1


@pytest.mark.django_db
def test_a_round_whose_worker_was_killed_is_replaced(settings):
    from console.background.models import TaskChain

    dead = killed_round(started=timedelta(seconds=settings.SYNC_ROUND_STALE_SECONDS + 1))

    assert tasks.PERIODIC_SYNC.ensure() == "revived"

    dead.refresh_from_db()
    assert dead.status == "FAILED" and dead.finished_at is not None
    assert dead.exception_class_path == "console.background.chains.RoundLost"
    assert "its worker was stopped without finishing it" in dead.traceback
    assert DBTaskResult.objects.ready().filter(task_path=SYNC).exists()  # starts at once
    chain = TaskChain.objects.get(task_path=SYNC)
    assert chain.revivals == 1 and chain.revived_at is not None
    # Every other worker's next look finds the new round: one chain.
    assert tasks.PERIODIC_SYNC.ensure() == "waiting"
    assert not tasks.PERIODIC_SYNC.book()
    assert rounds("READY").count() == 1


@pytest.mark.django_db
def test_a_round_within_its_limit_is_left_to_finish(settings):
    killed_round(started=timedelta(seconds=settings.SYNC_ROUND_STALE_SECONDS - 5))

    assert tasks.PERIODIC_SYNC.ensure() == "running"
    assert not rounds("READY").exists()


@pytest.mark.django_db
def test_a_long_round_that_shows_progress_is_left_to_finish(settings):
    long_ago = timedelta(seconds=settings.SYNC_ROUND_STALE_SECONDS * 3)
    tasks.PERIODIC_SYNC.book()  # the chain's row, as any booking makes it
    rounds("READY").delete()
    killed_round(started=long_ago)
    tasks.PERIODIC_SYNC.beat()  # a connection synced just now

    assert tasks.PERIODIC_SYNC.ensure() == "running"
    assert not rounds("READY").exists()


@pytest.mark.django_db
def test_a_round_books_its_successor_after_syncing(world, settings):
    assert tasks.PERIODIC_SYNC.ensure() == "booked"
    rounds("READY").delete()

    tasks.sync_all_connections.call()

    interval = timedelta(seconds=settings.SYNC_INTERVAL_SECONDS)
    assert rounds("READY").get().run_after > timezone.now() + interval - timedelta(seconds=5)
    assert ConnectionSync.objects.get(connection=world.connection_a).last_success_at


@pytest.mark.django_db(transaction=True)
def test_the_bulk_watchdog_is_kept_while_a_job_is_active_even_after_a_kill(world):
    watchdog = bulk_tasks.bulk_retry_watchdog.module_path
    assert WATCHDOG.ensure() == "idle"  # no job: no watchdog needed

    world.add_run(status="failed")
    make_job(world)  # books the job's worker and the watchdog, on commit
    assert WATCHDOG.ensure() == "waiting"
    rounds("READY", watchdog).delete()
    dead = killed_round(watchdog)

    assert WATCHDOG.ensure() == "revived"
    assert rounds("READY", watchdog).count() == 1
    dead.refresh_from_db()
    assert dead.status == "FAILED"
