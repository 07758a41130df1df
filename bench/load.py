"""Load: N signed-in people on the shipped server, the runs page vs. Django's
admin changelist of runs, on the same box and the same data.

Starts a Skyvern simulator (seeded with --runs runs, a few of them still
going) and syncs them into a fresh database, then the shipped server
(`gunicorn -c gunicorn.conf.py`, its default workers and threads) on a free
loopback port, and signs in --sessions sessions of one superuser. Then two
phases of --seconds each, one after the other:

  console: each session loads /t/<team>/runs/, then polls as the page does:
           every unfinished card on it every 3 s (its own hx-trigger), the
           page's updates every RUNS_PAGE_POLL_SECONDS (10 s), and loads the
           page again every 30 s;
  admin:   each session loads /admin/runs/run/ and loads it again every 3 s
           (the admin's only way to see the same changes as fast).

Reports, per phase: requests, errors (non-200 answers and failed requests),
throughput, p50/p95/max per kind of request and overall, and the load
average before and after. Everything is on loopback and stops by itself:
each phase ends after --seconds (a request waits 30 s at most), then the
server and the simulator are stopped.

Usage (see docs/performance.md):

  .venv/bin/python bench/load.py --database-url postgres://postgres@127.0.0.1:5432/bench_load
  .venv/bin/python bench/load.py --var-dir /tmp/bench-load          # SQLite
  .venv/bin/python bench/load.py --sessions 5 --seconds 5 --runs 200  # quick check
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import ROOT, SimulatorProcess, machine_info, percentile, setup_django  # noqa: E402

KEY = "sk-bench-load-0123456789abcdef"
SLUG = "bench-load"
TERMINAL = {"completed", "failed", "terminated", "canceled", "timed_out"}
CARD_EVERY = 3.0  # the card's own hx-trigger ("every 3s")
PAGE_EVERY = 30.0
REQUEST_TIMEOUT = 30
CARD_URL = re.compile(r'hx-get="([^"]*/card/\?shown=[^"]*)"')
UPDATES_URL = re.compile(r'id="run-updates" hx-get="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def settle_most(simulator_url: str, in_flight: int) -> None:
    """Finish every seeded run still going but the `in_flight` newest, so the
    runs page shows a few unfinished cards (the seed leaves most of its
    newest runs going: a page of polling cards, a worst case)."""
    listing = requests.get(
        simulator_url + "/v1/agents/runs",
        headers={"x-api-key": KEY},
        params={"page_size": 100000},
        timeout=60,
    )
    listing.raise_for_status()
    going = [r["workflow_run_id"] for r in listing.json() if r["status"] not in TERMINAL]
    for run_id in going[in_flight:]:
        requests.post(
            f"{simulator_url}/_sim/runs/{run_id}/status", json={"status": "completed"}, timeout=10
        ).raise_for_status()


def prepare(runs: int, simulator_url: str, in_flight: int) -> str:
    """A team with a connection to the simulator, its runs synced, a superuser;
    returns the superuser's username."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from console.sync.services import connection_sync
    from console.teams.models import Connection, Team

    call_command("migrate", verbosity=0)
    requests.post(
        simulator_url + "/_sim/orgs",
        json={"api_key": KEY, "name": "Bench Load", "seed": "bench-load", "seed_runs": runs},
        timeout=60,
    ).raise_for_status()
    settle_most(simulator_url, in_flight)
    team, _ = Team.objects.get_or_create(slug=SLUG, defaults={"name": "Bench Load"})
    connection = Connection.objects.filter(team=team).first()
    if connection is None:
        connection = Connection(team=team, label="Skyvern", base_url=simulator_url)
        connection.set_api_key(KEY)
        connection.save()
    Connection.objects.filter(pk=connection.pk).update(base_url=simulator_url)
    connection.refresh_from_db()
    connection_sync(connection=connection, full=True)
    user, _ = get_user_model().objects.get_or_create(
        username="bench-load", defaults={"is_staff": True, "is_superuser": True}
    )
    return user.username


def sessions_for(username: str, n: int) -> list[dict]:
    """n signed-in sessions of the person (made as a sign-in makes them)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.get(username=username)
    cookies = []
    for _ in range(n):
        client = Client()
        client.force_login(user)
        cookies.append({"sessionid": client.cookies["sessionid"].value})
    return cookies


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.samples: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.error_examples: list[str] = []

    def get(self, session: requests.Session, url: str, kind: str, htmx=False) -> str | None:
        """GET as the browser would (htmx's polls with its header); None on an error."""
        headers = {"HX-Request": "true"} if htmx else {}
        t0 = time.perf_counter()
        try:
            answer = session.get(
                url, headers=headers, timeout=REQUEST_TIMEOUT, allow_redirects=False
            )
            ok, what = answer.status_code == 200, f"{answer.status_code} {url}"
            body = answer.text
        except requests.RequestException as error:
            ok, what, body = False, f"{type(error).__name__} {url}", None
        elapsed = time.perf_counter() - t0
        with self.lock:
            self.samples.setdefault(kind, []).append(elapsed)
            if not ok:
                self.errors[kind] = self.errors.get(kind, 0) + 1
                if len(self.error_examples) < 5:
                    self.error_examples.append(what)
        return body if ok else None


def console_person(base: str, cookies: dict, deadline: float, rec: Recorder, poll: float):
    session = requests.Session()
    session.cookies.update(cookies)
    page_url = f"{base}/t/{SLUG}/runs/"
    next_page = next_updates = time.monotonic()
    cards: list[str] = []
    updates = None
    next_cards = time.monotonic() + CARD_EVERY
    while True:
        now = time.monotonic()
        if now >= deadline:
            return
        if now >= next_page:
            body = rec.get(session, page_url, "runs page")
            if body is not None:
                cards = [base + url.replace("&amp;", "&") for url in CARD_URL.findall(body)]
                found = UPDATES_URL.search(body)
                updates = base + found.group(1).replace("&amp;", "&") if found else None
            next_page = now + PAGE_EVERY
            next_updates = now + poll
            next_cards = now + CARD_EVERY
        if now >= next_cards:
            for url in cards:
                if time.monotonic() < deadline:
                    rec.get(session, url, "card", htmx=True)
            next_cards += CARD_EVERY
        if updates and now >= next_updates:
            rec.get(session, updates, "updates", htmx=True)
            next_updates += poll
        wait = min(next_page, next_cards, next_updates if updates else next_page) - time.monotonic()
        time.sleep(max(0.0, min(wait, deadline - time.monotonic())))


def admin_person(base: str, cookies: dict, deadline: float, rec: Recorder):
    session = requests.Session()
    session.cookies.update(cookies)
    url = f"{base}/admin/runs/run/"
    while time.monotonic() < deadline:
        started = time.monotonic()
        rec.get(session, url, "admin changelist")
        time.sleep(max(0.0, min(CARD_EVERY - (time.monotonic() - started), deadline - started)))


def phase(name: str, target, cookies: list[dict], seconds: float) -> dict:
    rec = Recorder()
    load_before = loadavg()
    started = time.monotonic()
    deadline = started + seconds
    threads = [
        threading.Thread(target=target, args=(c, deadline, rec), daemon=True) for c in cookies
    ]
    for thread in threads:
        thread.start()
        time.sleep(
            min(0.05, seconds / max(1, len(cookies)) / 10)
        )  # people don't all arrive at once
    for thread in threads:
        thread.join(timeout=seconds + REQUEST_TIMEOUT + 5)
    wall = time.monotonic() - started
    everything = [s for samples in rec.samples.values() for s in samples]
    kinds = {
        kind: {
            "n": len(samples),
            "errors": rec.errors.get(kind, 0),
            "p50_ms": round(percentile(samples, 50) * 1000, 1),
            "p95_ms": round(percentile(samples, 95) * 1000, 1),
            "max_ms": round(max(samples) * 1000, 1),
        }
        for kind, samples in sorted(rec.samples.items())
    }
    return {
        "phase": name,
        "sessions": len(cookies),
        "seconds": round(wall, 1),
        "requests": len(everything),
        "errors": sum(rec.errors.values()),
        "error_examples": rec.error_examples,
        "throughput_rps": round(len(everything) / wall, 1),
        "p50_ms": round(percentile(everything, 50) * 1000, 1) if everything else None,
        "p95_ms": round(percentile(everything, 95) * 1000, 1) if everything else None,
        "by_kind": kinds,
        "load_before": load_before,
        "load_after": loadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="default: SQLite in --var-dir")
    parser.add_argument("--var-dir", default=None, help="default: a new temporary directory")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument(
        "--in-flight", type=int, default=5, help="runs left going (their cards poll)"
    )
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--admin-first", action="store_true", help="the admin phase first")
    parser.add_argument("--json", action="store_true", help="print the results as JSON only")
    args = parser.parse_args()

    var_dir = args.var_dir or tempfile.mkdtemp(prefix="bench-load-")
    os.environ["SKYVERN_ALLOW_LOOPBACK"] = "1"
    setup_django(var_dir=var_dir, database_url=args.database_url)
    from django.conf import settings
    from django.db import connections

    simulator = SimulatorProcess(
        [sys.executable, "-m", "console.simulator", "--host", "127.0.0.1", "--port", "0"]
    )
    server = None
    try:
        username = prepare(args.runs, simulator.url, args.in_flight)
        cookies = sessions_for(username, args.sessions)
        connections.close_all()
        port = free_port()
        env = {
            **os.environ,
            "WEB_BIND": f"127.0.0.1:{port}",
            "WEB_ACCESS_LOG": os.devnull,
            "SECRET_KEY": settings.SECRET_KEY,
            "CONSOLE_ENCRYPTION_KEYS": ",".join(settings.CONSOLE_ENCRYPTION_KEYS),
        }
        server = subprocess.Popen(  # noqa: S603 - our own interpreter and config
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            raise RuntimeError("the server did not start")
        # Every worker imported and warm before anything is timed.
        warm = requests.Session()
        warm.cookies.update(cookies[0])
        for _ in range(20):
            warm.get(f"{base}/t/{SLUG}/runs/", timeout=REQUEST_TIMEOUT)
            warm.get(f"{base}/admin/runs/run/", timeout=REQUEST_TIMEOUT)

        poll = float(settings.RUNS_PAGE_POLL_SECONDS)
        phases = {
            "console": lambda c, d, r: console_person(base, c, d, r, poll),
            "admin": lambda c, d, r: admin_person(base, c, d, r),
        }
        order = ["admin", "console"] if args.admin_first else ["console", "admin"]
        results = [phase(name, phases[name], cookies, args.seconds) for name in order]
        from django.db import connection

        info = {
            "machine": machine_info(),
            "database": connection.vendor,
            "runs": args.runs,
            "in_flight": args.in_flight,
            "order": order,
            "web_workers": env.get("WEB_CONCURRENCY") or "gunicorn.conf.py default",
        }
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        simulator.stop()

    console, admin = sorted(results, key=lambda r: r["phase"] != "console")
    if args.json:
        print(json.dumps({"info": info, "phases": results}, indent=2))
        return 0
    print(json.dumps(info))
    for result in results:
        print(
            f"\n{result['phase']}: {result['sessions']} sessions, {result['seconds']} s, "
            f"{result['requests']} requests ({result['throughput_rps']}/s), "
            f"{result['errors']} errors; p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms; "
            f"load {result['load_before']} -> {result['load_after']}"
        )
        for kind, row in result["by_kind"].items():
            print(
                f"  {kind:18} n={row['n']:6} errors={row['errors']:3} p50={row['p50_ms']:8} ms "
                f"p95={row['p95_ms']:8} ms max={row['max_ms']:8} ms"
            )
        for example in result["error_examples"]:
            print(f"  error: {example}")
    if console["p95_ms"] and admin["p95_ms"]:
        print(
            f"\np95 console / admin: {console['p95_ms'] / admin['p95_ms']:.2f}; "
            f"throughput console / admin: {console['throughput_rps'] / admin['throughput_rps']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
