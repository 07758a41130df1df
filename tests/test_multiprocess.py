"""Several processes, proven (issue 16): the shipped server (gunicorn, two
workers) and two `manage.py db_worker`s on one PostgreSQL database, against
the Skyvern simulator on loopback. A person signs in over HTTP, syncs,
retries single runs and a bulk of a few hundred; one db_worker is SIGKILLed
while it sends the bulk, one web worker while it waits on Skyvern for a
retry. Afterwards, by the simulator's own count: no run retried twice, no
item lost, nothing left half-written, and the periodic sync still going.

PostgreSQL only (SQLite has one writer: several processes is not what it
is for). Alone: `pytest -m multiprocess` with DATABASE_URL set.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
from django.db import connection as db_connection
from django.utils import timezone
from requests.adapters import HTTPAdapter

from console.background.queue import FAILED, RUNNING, task_results
from console.bulk.models import (
    DONE_ITEM_STATES,
    BulkRetryJob,
    ItemState,
    SkipReason,
)
from console.bulk.services.common import JOB_PASS
from console.runs.models import Retry, RetryState, Run
from console.runs.services import SENDING_GIVES_UP_AFTER
from console.simulator import SimulatorServer
from console.sync.tasks import PERIODIC_SYNC
from console.teams.models import Connection, Team
from tests.test_serve import database_url_under_test, free_port

pytestmark = [
    pytest.mark.multiprocess,
    pytest.mark.skipif(
        db_connection.vendor != "postgresql",
        reason="several web and worker processes need PostgreSQL (SQLite has one writer); "
        "run with DATABASE_URL=postgres://…",
    ),
]

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-multiprocess-0123456789abcdef-MP01"
PASSWORD = "a long multiprocess password 9"
BULK_RUNS = 200
#: Waits on Skyvern: long enough to catch a retry in flight, short of the read timeout.
SEND_LATENCY_MS = 200
WEB_KILL_LATENCY_MS = 2000


def wait_for(condition, *, seconds: float, what: str, logs=()):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    tails = "\n".join(f"--- {log.name}:\n{log.read_text()[-3000:]}" for log in logs)
    pytest.fail(f"{what} within {seconds} s\n{tails}")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (name) state ppid ...": the name may hold spaces, so split after ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def serving(port: int, client_port: int, pids: list[int]) -> list[int]:
    """Which of `pids` hold the connection from `client_port` accepted on
    `port` (read from /proc: the kernel's TCP table, each process's sockets)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if (local_port, remote_port) == (port, client_port) and fields[3] == "01":
                inodes.add(f"socket:[{fields[9]}]")
    holders = []
    for pid in pids:
        try:
            links = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        except OSError:
            continue
        if links & inodes:
            holders.append(pid)
    return holders


class Processes:
    def __init__(self, directory: Path, env: dict):
        self.directory, self.env = directory, env
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, *args: str) -> tuple[subprocess.Popen, Path]:
        log = self.directory / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started.append(process)
        return process, log

    def stop(self):
        for process in self.started:
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class FromPort(HTTPAdapter):
    """Connects from a chosen local port, so the server's side can be found."""

    def __init__(self, port: int):
        self.port = port
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = ("127.0.0.1", self.port)
        super().init_poolmanager(*args, **kwargs)


class Console:
    """A signed-in person's browser, as far as the server can tell: a session
    with its cookies, sending the CSRF token as htmx does."""

    def __init__(self, url: str):
        self.url = url
        self.session = requests.Session()

    def sign_in(self, username: str):
        page = self.session.get(self.url + "/login/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        answer = self.session.post(
            self.url + "/login/",
            data={"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code == 302, answer.text

    def post(self, path: str, data=None, **kwargs) -> requests.Response:
        headers = {"X-CSRFToken": self.session.cookies["csrftoken"], **kwargs.pop("headers", {})}
        return self.session.post(
            self.url + path,
            data=data or {},
            headers=headers,
            allow_redirects=False,
            timeout=kwargs.pop("timeout", 15),
            **kwargs,
        )


@pytest.fixture
def simulator():
    server = SimulatorServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


def test_several_web_and_worker_processes_retry_each_run_once(
    transactional_db, simulator, tmp_path
):
    # --- the world: a team, its connection to the simulator, its failed runs, a person.
    team = Team.objects.create(name="Acme Logistics", slug="acme")
    simulator.state.add_org(KEY, name=team.name)
    run_ids = [simulator.state.add_run(KEY, status="failed") for _ in range(BULK_RUNS + 5)]
    connection = Connection(team=team, label="Skyvern", base_url=simulator.url)
    connection.set_api_key(KEY)
    connection.save()
    get_user_model().objects.create(
        username="ops",
        email="ops@example.com",
        is_staff=True,
        is_superuser=True,
        password=make_password(PASSWORD, hasher=PBKDF2PasswordHasher()),
    )

    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        "DATABASE_URL": database_url_under_test(),
        "CONSOLE_VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": settings.SECRET_KEY,
        "CONSOLE_ENCRYPTION_KEYS": ",".join(settings.CONSOLE_ENCRYPTION_KEYS),
        "SKYVERN_ALLOW_LOOPBACK": "1",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "WEB_THREADS": "4",
        # Short enough to see a dead worker's work picked up within the test.
        "SKYVERN_CONNECT_TIMEOUT": "1",
        "SKYVERN_READ_TIMEOUT": "4",
        "SYNC_INTERVAL_SECONDS": "3",
        "SYNC_ROUND_STALE_SECONDS": "15",
        "BULK_RETRY_PER_SECOND": "50",
        "BULK_RETRY_MAX_IN_FLIGHT": "8",
        "BULK_RETRY_WORKER_THREADS": "4",
        "READY_WORKER_SECONDS": "30",
        # No canary batch: this test is about the send loop surviving kills (the
        # canary's own waits and kills are tests/bulk/test_canary.py's).
        "BULK_RETRY_CANARY_OVER": "1000000",
    }
    processes = Processes(tmp_path, env)
    try:
        web, web_log = processes.start("gunicorn", "-m", "gunicorn", "-c", "gunicorn.conf.py")
        workers = {
            name: processes.start(name, "manage.py", "db_worker", "--worker-id", name)
            for name in ("worker-1", "worker-2")
        }
        logs = [web_log, *(log for _, log in workers.values())]
        url = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: (
                requests.get(url + "/readyz", timeout=5).status_code == 200
                if _answers(url)
                else False
            ),
            seconds=30,
            what="the console ready (web up, a worker seen)",
            logs=logs,
        )
        person = Console(url)
        person.sign_in("ops")

        # --- Sync now, through the page's button: the worker caches every run.
        assert person.post("/t/acme/sync/now/").status_code == 302
        wait_for(
            lambda: Run.objects.filter(connection=connection).count() == len(run_ids),
            seconds=30,
            what="every run cached by the sync",
            logs=logs,
        )
        runs = {run.run_id: run for run in Run.objects.filter(connection=connection)}

        # --- Single retries from cards, as htmx sends them.
        singles = run_ids[:3]
        for run_id in singles:
            answer = person.post(
                f"/t/acme/runs/{run_id}/retry/",
                {"seen_retries": "0"},
                headers={"HX-Request": "true"},
            )
            assert answer.status_code == 200, answer.text[:500]
        assert {r: simulator.state.retry_count(r) for r in singles} == dict.fromkeys(singles, 1)

        # --- A web worker killed while it waits on Skyvern for a retry.
        cut_off = run_ids[3]
        simulator.state.configure(fault_endpoints=["retry"], latency_ms=WEB_KILL_LATENCY_MS)
        web_workers = children_of(web.pid)
        assert len(web_workers) == 2, web_workers
        outcome = {}

        # The click goes on a connection of its own, from a known port: the web
        # worker holding its other end is the one handling it.
        click_port = free_port()
        clicker = Console(url)
        clicker.session.cookies.update(person.session.cookies)
        clicker.session.mount(url, FromPort(click_port))

        def click():
            try:
                outcome["answer"] = clicker.post(
                    f"/t/acme/runs/{cut_off}/retry/",
                    {"seen_retries": "0"},
                    headers={"HX-Request": "true"},
                )
            except requests.RequestException as error:
                outcome["error"] = error

        clicking = threading.Thread(target=click)
        clicking.start()
        wait_for(
            lambda: Retry.objects.filter(run__run_id=cut_off).exists(),
            seconds=10,
            what="the retry's intent recorded",
            logs=logs,
        )
        time.sleep(0.5)  # sent right after: now waiting for Skyvern's answer
        busy = serving(port, click_port, web_workers)
        assert len(busy) == 1, busy
        os.kill(busy[0], signal.SIGKILL)
        clicking.join(timeout=15)
        assert "error" in outcome, outcome  # the connection died with its worker
        # Skyvern got the retry; the console's intent stays recorded as sending.
        wait_for(
            lambda: simulator.state.retry_count(cut_off) == 1,
            seconds=10,
            what="the cut-off retry reaching Skyvern",
        )
        simulator.state.configure(latency_ms=SEND_LATENCY_MS)
        # The master replaced the worker; the server answers as before.
        wait_for(
            lambda: len([p for p in children_of(web.pid) if p not in busy]) == 2,
            seconds=20,
            what="a new web worker",
            logs=logs,
        )
        assert person.session.get(url + "/t/acme/runs/", timeout=10).status_code == 200

        # --- A bulk retry of the rest, plus two runs already retried (skipped).
        bulk = run_ids[4:] + singles[:2]
        answer = person.post(
            "/t/acme/bulk/new/",
            {"scope": "ids", "run": [runs[r].pk for r in bulk], "reason": "Portal down overnight"},
        )
        assert answer.status_code in (302, 303), answer.text[:500]
        job = BulkRetryJob.objects.get()
        assert job.items.count() == len(bulk)

        # One db_worker SIGKILLed while it sends the job's items, early enough
        # that its sending lease is over by the watchdog's round 30 s into the
        # job, which then revives it.
        wait_for(
            lambda: job.items.filter(state=ItemState.RETRIED).count() >= 20,
            seconds=30,
            what="the bulk retry under way",
            logs=logs,
        )
        sending = task_results(JOB_PASS).filter(status=RUNNING).values_list("worker_ids", flat=True)
        killed = next(iter(sending))[-1]
        killed_at = timezone.now()
        workers[killed][0].send_signal(signal.SIGKILL)
        assert job.items.exclude(state__in=DONE_ITEM_STATES).exists()  # mid-bulk indeed

        # The other worker picks the job up (the watchdog, once the dead one's
        # lease is over: 30 s after the job began, 60 s on a machine slow
        # enough to kill it later than 10 s in) and ends it.
        wait_for(
            lambda: not job.items.exclude(state__in=DONE_ITEM_STATES).exists(),
            seconds=80,
            what="every item of the bulk retry settled",
            logs=logs,
        )
        # The periodic sync goes on: a round started after the kill, and finished.
        wait_for(
            lambda: (
                task_results(PERIODIC_SYNC)
                .filter(started_at__gt=killed_at, finished_at__isnull=False)
                .exclude(status=FAILED)
                .exists()
            ),
            seconds=15,
            what="a periodic sync round after the kill",
            logs=logs,
        )

        # --- What Skyvern saw, item by item: no run retried twice, none lost.
        counts = simulator.state.retry_counts()
        assert max(counts.values()) == 1, {r: n for r, n in counts.items() if n > 1}
        items = {item.run.run_id: item for item in job.items.select_related("run", "retry")}
        assert set(items) == set(bulk)  # no item lost
        for run_id in singles[:2]:
            assert items[run_id].state == ItemState.SKIPPED
            assert items[run_id].skip_reason == SkipReason.ALREADY_RETRIED
        states = {}
        for run_id in run_ids[4:]:
            item = items[run_id]
            states[item.state] = states.get(item.state, 0) + 1
            if item.state == ItemState.RETRIED:
                assert counts.get(run_id) == 1, run_id
                assert item.retry.state == RetryState.RETRIED and item.new_run is not None
            else:
                # Cut off mid-send by the kill: counted as a retry, never re-sent.
                assert item.state == ItemState.UNKNOWN, (run_id, item.state, item.error)
                assert item.retry.state == RetryState.UNKNOWN
                assert counts.get(run_id, 0) <= 1
        assert states[ItemState.RETRIED] >= BULK_RUNS - 8, states  # at most one worker's in flight
        assert job.items.filter(state=ItemState.SENDING).count() == 0
        job.refresh_from_db()
        assert job.state == "finished"

        # --- The web worker's cut-off retry: recorded as sending, and never sent again.
        cut = Retry.objects.get(run__run_id=cut_off)
        assert cut.state == RetryState.SENDING
        again = person.post(
            f"/t/acme/runs/{cut_off}/retry/", {"seen_retries": "0"}, headers={"HX-Request": "true"}
        )
        assert again.status_code == 200
        assert simulator.state.retry_count(cut_off) == 1
        # Once it is older than the console's limit (time moved on here), it is
        # outcome unknown: the next click resolves it and still sends nothing.
        Retry.objects.filter(pk=cut.pk).update(
            requested_at=cut.requested_at - SENDING_GIVES_UP_AFTER - timedelta(seconds=1)
        )
        person.post(
            f"/t/acme/runs/{cut_off}/retry/", {"seen_retries": "1"}, headers={"HX-Request": "true"}
        )
        cut.refresh_from_db()
        assert cut.state == RetryState.UNKNOWN
        assert simulator.state.retry_count(cut_off) == 1
        assert not Retry.objects.filter(state=RetryState.SENDING).exists()
        assert web.poll() is None and workers[_other(killed)][0].poll() is None
    finally:
        processes.stop()


def _other(name: str) -> str:
    return "worker-2" if name == "worker-1" else "worker-1"


def _answers(url: str) -> bool:
    try:
        requests.get(url + "/healthz", timeout=2)
    except requests.RequestException:
        return False
    return True
