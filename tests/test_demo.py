"""`manage.py demo` (what `make demo` runs) from an empty var dir, twice.

It must start the simulator, the worker and the web server, seed both teams
with their runs on the first start without a single failed step, serve the
sign-in page, print the logins, and stop every process it started on
SIGTERM, as on Ctrl-C.
"""

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_demo(var_dir: Path, log: Path, *, ignore_sigint=False):
    web, simulator = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(var_dir),
        "CONSOLE_VAR_DIR": str(var_dir),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(  # noqa: S603 (our own command)
        [
            sys.executable,
            "manage.py",
            "demo",
            "--port",
            str(web),
            "--simulator-port",
            str(simulator),
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # What a shell does to a job it starts in the background (`make demo &`).
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        if ignore_sigint
        else None,
    )
    deadline = time.monotonic() + 120
    while "Press Ctrl-C to stop everything." not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    return process, web


def stop(process) -> float:
    """Stop the demo as `kill` would; how long it took."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    return time.monotonic() - started


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_demo_starts_seeds_serves_and_stops_cleanly_twice(tmp_path):
    var_dir = tmp_path / "var"
    for start in ("first", "second, in the background"):
        log = tmp_path / f"demo-{start.split(',')[0]}.log"
        process, web = start_demo(var_dir, log, ignore_sigint="background" in start)
        try:
            children = children_of(process.pid)
            assert len(children) == 3  # simulator, worker, web server
            page = urllib.request.urlopen(f"http://127.0.0.1:{web}/login/", timeout=10)
            assert page.status == 200 and b"Sign in" in page.read()
        finally:
            took = stop(process)
        # Not the 10 s the demo waits before it kills a child that won't stop.
        assert took < 8, f"{start} start took {took:.1f} s to stop"
        output = log.read_text()
        for login in ("admin", "acme-operator", "globex-viewer"):
            assert re.search(rf"^\s+{login}\s", output, re.M), login
        assert "failed" not in output.lower(), output[-3000:]
        assert "Traceback" not in output, output[-3000:]
        for child in children:
            assert not Path(f"/proc/{child}").exists() or _is_zombie(child), f"{child} survived"

    with sqlite3.connect(var_dir / "console.sqlite3") as db:
        teams = dict(
            db.execute(
                "SELECT t.slug, COUNT(r.id) FROM teams_team t "
                "JOIN runs_run r ON r.team_id = t.id GROUP BY t.slug"
            ).fetchall()
        )
    # Seeded once (~200 runs a team), not again on the second start.
    assert set(teams) == {"acme", "globex"}
    assert all(190 <= count <= 260 for count in teams.values()), teams


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_demo_teams_get_their_runs_and_the_consoles_webhook_url(db, simulator, settings):
    """The seeded organisations call this console back when a run finishes
    (a retry inherits no webhook of its own from most seeded runs)."""
    from console.demo.seed import seed_people_and_teams, seed_simulator_and_runs
    from console.runs.models import Run
    from console.sync.services import sync_state_for
    from console.teams.models import Connection

    settings.SKYVERN_ALLOW_LOOPBACK = True
    seed_people_and_teams(simulator_url=simulator.url)
    seed_simulator_and_runs(simulator_url=simulator.url, console_url="http://127.0.0.1:8000/")
    for connection in Connection.objects.all():
        token = sync_state_for(connection).webhook_token
        org = simulator.state.org(connection.api_key())
        assert org.webhook_url == f"http://127.0.0.1:8000/webhooks/skyvern/{token}/"
        assert Run.objects.filter(connection=connection).count() >= 190
