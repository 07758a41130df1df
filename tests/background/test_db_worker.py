"""A real `manage.py db_worker` is all the periodic sync needs.

Against the test database (a SQLite file, or PostgreSQL with DATABASE_URL)
and the simulator: started alone, the worker syncs every connection; SIGKILLed
in the middle of a round, the round stays RUNNING with no next one booked,
and a worker started again replaces it and the syncs go on.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from console.background.models import WorkerBeat
from console.runs.models import Run
from console.sync.models import ConnectionSync
from console.sync.tasks import sync_all_connections
from tests.bulk.conftest import database_url

ROOT = Path(__file__).resolve().parent.parent.parent
STALE_SECONDS = 4


def wait_for(condition, *, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)


def sync_of(connection) -> ConnectionSync:
    return ConnectionSync.objects.get(connection=connection)


def rounds(status):
    return DBTaskResult.objects.filter(task_path=sync_all_connections.module_path, status=status)


@pytest.mark.django_db(transaction=True)
def test_the_worker_alone_keeps_the_periodic_sync_going_across_a_kill(world, tmp_path):
    run_ids = [world.add_run(status="completed", cache=False) for _ in range(3)]
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "SKYVERN_ALLOW_LOOPBACK": "1",
        "SYNC_INTERVAL_SECONDS": "1",
        "SYNC_ROUND_STALE_SECONDS": str(STALE_SECONDS),
    }
    command = [sys.executable, "manage.py", "db_worker", "--no-startup-delay", "--interval", "0.1"]

    def start(name):
        log = (tmp_path / f"{name}.log").open("w")
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    assert not DBTaskResult.objects.exists()  # nothing booked a sync
    worker = start("first")
    try:
        wait_for(
            lambda: set(Run.objects.values_list("run_id", flat=True)) == set(run_ids),
            seconds=15,
            what="the first worker syncs the new runs by itself",
        )
        # It says it is alive, for /readyz, the metrics and `manage.py doctor`.
        assert WorkerBeat.objects.get().worker.endswith(f":{worker.pid}")
        # Each Skyvern call now takes a second: catch a round in its first call.
        world.simulator.state.configure(latency_ms=1000)
        slow_since = timezone.now()
        wait_for(
            lambda: (
                rounds("RUNNING").filter(started_at__gt=slow_since).exists()
                and (sync_of(world.connection_a).running_since or slow_since) > slow_since
            ),
            seconds=10,
            what="a round syncing team A's connection",
        )
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    killed_at = timezone.now()
    dead = rounds("RUNNING").get()
    assert not rounds("READY").exists()  # its `finally` never ran: the chain has stopped
    world.simulator.state.configure(latency_ms=0)

    worker = start("second")
    try:
        wait_for(
            lambda: rounds("SUCCESSFUL").filter(started_at__gt=killed_at).count() >= 2,
            seconds=STALE_SECONDS + 12,
            what="the second worker replaces the dead round and the syncs go on",
        )
    finally:
        worker.terminate()
        worker.wait(timeout=15)
    # Stopped on purpose, it no longer counts as alive; the killed one still
    # does until it ages out.
    assert not WorkerBeat.objects.filter(worker__endswith=f":{worker.pid}").exists()
    assert WorkerBeat.objects.count() == 1

    dead.refresh_from_db()
    assert dead.status == "FAILED" and "stopped without finishing it" in dead.traceback
    # Team B's connection syncs again; team A's waits for the dead sync's lease to expire.
    assert sync_of(world.connection_b).last_finished_at > killed_at
    assert rounds("READY").count() == 1  # one chain
