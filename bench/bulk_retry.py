"""Bulk retry of N failed runs against a slow, rate-limited Skyvern simulator.

Starts the simulator in a SUBPROCESS (`python -m console.simulator --port 0`)
and drives it only through its HTTP control API: one organisation
(`POST /_sim/orgs`), 2 x N failed runs (`POST /_sim/runs`), cached in the
console through the real client (`get_run`), then `POST /_sim/config` with
`latency_ms` and `rate_limit_per_second`. Then, in the same run:

  1. bulk retry: `bulk_retry_create(...)` over N runs, worked by the real
     worker code path. `--worker db_worker` (default): `manage.py db_worker`
     subprocess(es) pick up the `bulk_retry_work` task the job books on
     commit, exactly as in production; `--worker inline`: this process calls
     the task function (`bulk_retry_work.call(job_id)`) until the job ends.
     C, R and the worker threads are set through the settings' environment
     variables (BULK_RETRY_MAX_IN_FLIGHT, BULK_RETRY_PER_SECOND,
     BULK_RETRY_WORKER_THREADS) for this process and the workers alike.
  2. sequential: `run_retry(...)` for N *other* (fresh) failed runs, one
     after another, same simulator settings: the plain loop.

Reported: wall time of the job (created -> finished, and first send ->
finished), the floor max(N x latency / C, N / R) and wall / floor; 429s
(each one is a failed Retry intent with the rate-limit message, which is
also attempts - 1 summed over the items: nothing else makes an item go
again here); the most sends the console started in any 1-second window
(from the intents' `requested_at`); duplicates by the simulator's own
count (`GET /_sim/retries`: every original must have exactly 1); item
states at the end; the sequential loop's time and its 429s.

  .venv/bin/python bench/bulk_retry.py                        # SQLite, temp var dir, N=1000
  .venv/bin/python bench/bulk_retry.py --runs 200             # quick check
  .venv/bin/python bench/bulk_retry.py \\
      --database-url postgres://postgres@127.0.0.1:5432/bench_bulk
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import ROOT, SimulatorProcess, machine_info, percentile, setup_django  # noqa: E402

API_KEY = "sk-bench-bulk-0123456789abcdef-BULK"
TEAM_SLUG = "bench-bulk"
RATE_LIMIT_WORDS = "rate limiting"  # in RateLimited's message, kept on the failed intent


# --- the simulator, in a subprocess ---------------------------------------------


class Simulator(SimulatorProcess):
    """`python -m console.simulator` on a free port, driven by its control API."""

    def __init__(self):
        import requests

        self.http = requests.Session()
        super().__init__([sys.executable, "-m", "console.simulator", "--port", "0"])

    def control(self, method: str, path: str, body: dict | None = None):
        response = self.http.request(method, f"{self.url}/_sim/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()


# --- data -------------------------------------------------------------------------


def fresh_team(sim: Simulator):
    """A new bench team with one connection to the simulator and an operator."""
    from django.contrib.auth import get_user_model
    from django_tasks_db.models import DBTaskResult

    from console.bulk.tasks import bulk_retry_watchdog, bulk_retry_work
    from console.teams.models import Connection, Membership, Role, Team

    # A rerun on the same database starts clean (a bench database only!).
    Team.objects.filter(slug=TEAM_SLUG).delete()
    DBTaskResult.objects.filter(
        task_path__in=[bulk_retry_work.module_path, bulk_retry_watchdog.module_path]
    ).delete()
    team = Team.objects.create(name="Bench bulk retry", slug=TEAM_SLUG)
    conn = Connection(team=team, label="Simulator", base_url=sim.url)
    conn.set_api_key(API_KEY)
    conn.save()
    user_model = get_user_model()
    user_model.objects.filter(username="bench-bulk-operator").delete()
    operator = user_model.objects.create_user("bench-bulk-operator", password="x-not-used")
    Membership.objects.create(team=team, user=operator, role=Role.OPERATOR)
    return team, conn, operator


def cache_failed_runs(sim: Simulator, team, conn, n: int, label: str) -> list:
    """N failed runs at the simulator, cached in the console as a sync would."""
    from console.runs.models import Run
    from console.runs.store import run_fields_from_detail
    from console.teams.clients import client_for

    client = client_for(conn)
    runs = []
    for i in range(n):
        run_id = sim.control(
            "POST",
            "runs",
            {
                "api_key": API_KEY,
                "status": "failed",
                "workflow_title": f"Bench {label} workflow {i % 30}",
            },
        )["run_id"]
        detail = client.get_run(run_id)
        runs.append(
            Run(
                team=team,
                connection=conn,
                run_id=run_id,
                **run_fields_from_detail(detail),
            )
        )
    Run.objects.bulk_create(runs, batch_size=500)
    return list(Run.objects.filter(team=team, run_id__in=[r.run_id for r in runs]))


# --- the worker -----------------------------------------------------------------


class DbWorkers:
    """`manage.py db_worker` subprocesses (the production worker)."""

    def __init__(self, count: int, log_dir: Path):
        self.processes = []
        self.logs = []
        for n in range(count):
            log = open(log_dir / f"db_worker-{n}.log", "w")  # noqa: SIM115 (closed in stop)
            self.logs.append(log)
            self.processes.append(
                subprocess.Popen(  # noqa: S603 (our own interpreter and manage.py)
                    [sys.executable, "manage.py", "db_worker", "--no-startup-delay", "--no-reload"],
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            )

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.processes)

    def log_tail(self, lines: int = 30) -> str:
        for log in self.logs:
            log.flush()
        return "\n".join(
            "\n".join(Path(log.name).read_text().splitlines()[-lines:]) for log in self.logs
        )

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.processes:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in self.logs:
            log.close()


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """Most events in any half-open window [t, t + window)."""
    times = sorted(times)
    best = lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def gaps_ms(times: list[float]) -> dict:
    """Time between consecutive sends started (ideal: 1/R each)."""

    times = sorted(times)
    gaps = [(b - a) * 1000 for a, b in zip(times, times[1:], strict=False)]
    if not gaps:
        return {}
    return {
        "mean": sum(gaps) / len(gaps),
        "median": percentile(gaps, 50),
        "p95": percentile(gaps, 95),
        "max": max(gaps),
    }


def run_bulk(args, sim: Simulator, team, operator, runs, log_dir: Path) -> dict:
    from console.bulk.models import BulkRetryItem, JobState
    from console.bulk.services import bulk_retry_create
    from console.bulk.tasks import bulk_retry_work
    from console.runs.models import Retry, Run

    workers = None
    if args.worker == "db_worker":
        workers = DbWorkers(args.workers, log_dir)
        time.sleep(3)  # let them import Django and start polling: not the job's time
        if not workers.alive():
            workers.stop()
            raise RuntimeError(f"db_worker died at start:\n{workers.log_tail()}")
    try:
        started = time.perf_counter()
        job = bulk_retry_create(
            team=team,
            user=operator,
            runs=Run.objects.filter(pk__in=[r.pk for r in runs]),
            reason="bench: the portal was down overnight",
            include_already_retried=False,
            max_steps_override=None,
            selection={"ids": len(runs)},
            canary_over=args.canary_over,
        )
        created_s = time.perf_counter() - started
        deadline = started + args.timeout
        while True:
            if args.worker == "inline":
                bulk_retry_work.call(job.pk)
            job.refresh_from_db()
            if job.state in (JobState.FINISHED, JobState.CANCELED):
                break
            if job.state == JobState.PAUSED:
                # Its canary's retries failed again (the simulator's outcomes
                # are drawn at random): nothing more will be sent.
                raise RuntimeError(f"job {job.pk} paused itself: {job.halt_reason or 'paused'}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"job {job.pk} not finished after {args.timeout} s")
            if workers is not None and not workers.alive():
                raise RuntimeError(f"a db_worker died:\n{workers.log_tail()}")
            time.sleep(0.05)
        wall = time.perf_counter() - started
    finally:
        if workers is not None:
            workers.stop()

    items = BulkRetryItem.objects.filter(job=job)
    states = Counter(items.values_list("state", flat=True))
    attempts = list(items.values_list("attempts", flat=True))
    intents = Retry.objects.filter(run__in=runs)
    rate_limited = intents.filter(state="failed", error__icontains=RATE_LIMIT_WORDS).count()
    other_failed = intents.filter(state="failed").exclude(error__icontains=RATE_LIMIT_WORDS)
    sends = [r.timestamp() for r in intents.values_list("requested_at", flat=True)]
    first_send_to_end = (job.finished_at - job.started_at).total_seconds()
    # An item counts against C from its claim (sent_at) until its outcome is
    # stored (finished_at): the HTTP call plus the console's work around it.
    held = [
        (done - sent).total_seconds() * 1000
        for sent, done in items.filter(attempts=1).values_list("sent_at", "finished_at")
        if sent and done
    ]
    return {
        "job": job.pk,
        "state": job.state,
        "wall_s": wall,
        "create_s": created_s,
        "pickup_s": (job.started_at - job.created_at).total_seconds(),
        "first_send_to_end_s": first_send_to_end,
        "items": dict(states),
        "attempts": sum(attempts),
        "resent_items": sum(1 for a in attempts if a > 1),
        "max_attempts": max(attempts, default=0),
        "rate_limited_429": rate_limited,
        "other_failed_intents": other_failed.count(),
        "sends_started": len(sends),
        "max_sends_in_1s": max_in_window(sends),
        "send_gap_ms": gaps_ms(sends),
        "in_flight_ms": {"median": percentile(held, 50), "p95": percentile(held, 95)},
    }


def run_sequential(runs, operator) -> dict:
    from console.runs.models import Retry
    from console.runs.services import run_retry

    outcomes = Counter()
    started = time.perf_counter()
    for run in runs:
        outcome = run_retry(run=run, user=operator, seen_retries=0)
        if outcome.error is not None:
            outcomes[type(outcome.error).__name__] += 1
        elif outcome.sent:
            outcomes["retried"] += 1
        else:
            outcomes["not sent"] += 1
    wall = time.perf_counter() - started
    rate_limited = Retry.objects.filter(
        run__in=runs, state="failed", error__icontains=RATE_LIMIT_WORDS
    ).count()
    return {"wall_s": wall, "outcomes": dict(outcomes), "rate_limited_429": rate_limited}


def duplicates(counts: dict, runs) -> dict:
    """The simulator's own retry count of each original: exactly 1 each, or not."""
    per_run = [counts.get(run.run_id, 0) for run in runs]
    return {
        "originals": len(per_run),
        "exactly_once": sum(1 for c in per_run if c == 1),
        "never": sum(1 for c in per_run if c == 0),
        "duplicates": sum(c - 1 for c in per_run if c > 1),
    }


# --- main ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs in the bulk job (N)")
    parser.add_argument("--latency-ms", type=int, default=100, help="simulator latency")
    parser.add_argument("--rate-limit", type=float, default=20, help="simulator requests/s")
    parser.add_argument("--max-in-flight", type=int, default=4, help="C (BULK_RETRY_MAX_IN_FLIGHT)")
    parser.add_argument("--per-second", type=float, default=20, help="R (BULK_RETRY_PER_SECOND)")
    parser.add_argument("--threads", type=int, default=4, help="BULK_RETRY_WORKER_THREADS")
    parser.add_argument("--worker", choices=["db_worker", "inline"], default="db_worker")
    parser.add_argument("--workers", type=int, default=1, help="db_worker processes")
    parser.add_argument("--no-sequential", action="store_true", help="skip the plain loop")
    parser.add_argument("--timeout", type=float, default=900, help="give up on the job after")
    parser.add_argument(
        "--canary-over",
        type=int,
        default=None,
        help="send a canary first above this many runs (default BULK_RETRY_CANARY_OVER)",
    )
    parser.add_argument("--var-dir", help="SQLite var dir (default: a new temporary one)")
    parser.add_argument("--database-url", help="DATABASE_URL (e.g. PostgreSQL)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="bench-bulk-")
    if not args.database_url and not args.var_dir:
        args.var_dir = tmp.name
    # Read by settings at import, here and in the db_worker subprocesses alike.
    os.environ.update(
        {
            "DEBUG": "0",
            "SKYVERN_ALLOW_LOOPBACK": "1",  # the simulator listens on loopback
            "BULK_RETRY_MAX_IN_FLIGHT": str(args.max_in_flight),
            "BULK_RETRY_PER_SECOND": str(args.per_second),
            "BULK_RETRY_WORKER_THREADS": str(args.threads),
            "LOG_LEVEL": "WARNING",
        }
    )
    if args.var_dir:
        # Same encryption key and database for the workers: export, don't just pass.
        os.environ["CONSOLE_VAR_DIR"] = args.var_dir
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    setup_django(var_dir=args.var_dir, database_url=args.database_url)

    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    info = machine_info()
    print(f"{connection.vendor}; machine: {json.dumps(info)}", flush=True)

    n = args.runs
    sim = Simulator()
    try:
        sim.control("POST", "orgs", {"api_key": API_KEY, "name": "Bench bulk org"})
        team, conn, operator = fresh_team(sim)
        t0 = time.perf_counter()
        bulk_runs = cache_failed_runs(sim, team, conn, n, "bulk")
        loop_runs = [] if args.no_sequential else cache_failed_runs(sim, team, conn, n, "loop")
        print(
            f"{len(bulk_runs) + len(loop_runs)} failed runs made and cached in "
            f"{time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        sim.control(
            "POST",
            "config",
            {"latency_ms": args.latency_ms, "rate_limit_per_second": args.rate_limit},
        )
        print(
            f"bulk: N={n} C={args.max_in_flight} R={args.per_second} "
            f"threads={args.threads} worker={args.worker} x{args.workers}",
            flush=True,
        )
        bulk = run_bulk(args, sim, team, operator, bulk_runs, Path(tmp.name))
        print(f"bulk done in {bulk['wall_s']:.1f} s", flush=True)
        sequential = None
        if loop_runs:
            sequential = run_sequential(loop_runs, operator)
            print(f"sequential done in {sequential['wall_s']:.1f} s", flush=True)
        counts = sim.control("GET", "retries")
        bulk["simulator"] = duplicates(counts, bulk_runs)
        if sequential is not None:
            sequential["simulator"] = duplicates(counts, loop_runs)
    finally:
        sim.stop()
        tmp.cleanup()

    latency = args.latency_ms / 1000
    floor = max(n * latency / args.max_in_flight, n / args.per_second)
    results = {
        "vendor": connection.vendor,
        "machine": info,
        "n": n,
        "latency_ms": args.latency_ms,
        "rate_limit": args.rate_limit,
        "C": args.max_in_flight,
        "R": args.per_second,
        "threads": args.threads,
        "worker": args.worker,
        "workers": args.workers,
        "floor_s": floor,
        "bulk": bulk,
        "sequential": sequential,
    }
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


def report(r: dict) -> None:
    b, s = r["bulk"], r["sequential"]
    print()
    print(
        f"{r['vendor']}, N={r['n']}, simulator latency {r['latency_ms']} ms, "
        f"limit {r['rate_limit']:g} r/s; C={r['C']}, R={r['R']:g}, "
        f"{r['threads']} threads, worker: {r['worker']} x{r['workers']}"
    )
    print(f"floor max(N*latency/C, N/R) = {r['floor_s']:.1f} s")
    rows = [
        ("bulk wall (created -> finished)", f"{b['wall_s']:.1f} s"),
        ("  ratio wall / floor", f"{b['wall_s'] / r['floor_s']:.2f}x"),
        (
            "  first send -> finished",
            f"{b['first_send_to_end_s']:.1f} s"
            f" ({b['first_send_to_end_s'] / r['floor_s']:.2f}x floor)",
        ),
        ("  created -> first send (worker pickup)", f"{b['pickup_s']:.2f} s"),
        ("  bulk_retry_create", f"{b['create_s'] * 1000:.0f} ms"),
        ("  sends started / 429s", f"{b['sends_started']} / {b['rate_limited_429']}"),
        ("  items re-sent (max attempts)", f"{b['resent_items']} ({b['max_attempts']})"),
        ("  most sends started in 1 s", f"{b['max_sends_in_1s']}"),
        (
            "  gap between sends mean / median / p95",
            "{mean:.1f} / {median:.1f} / {p95:.1f} ms".format(**b["send_gap_ms"]),
        ),
        (
            "  one item in flight (claim -> stored) median / p95",
            "{median:.0f} / {p95:.0f} ms".format(**b["in_flight_ms"]),
        ),
        ("  other failed intents", f"{b['other_failed_intents']}"),
        ("  items at the end", json.dumps(b["items"], sort_keys=True)),
        (
            "  simulator: exactly once / never / duplicates",
            f"{b['simulator']['exactly_once']} / {b['simulator']['never']} / "
            f"{b['simulator']['duplicates']}",
        ),
    ]
    if s is not None:
        rows += [
            ("sequential run_retry loop", f"{s['wall_s']:.1f} s"),
            ("  loop / bulk", f"{s['wall_s'] / b['wall_s']:.2f}x"),
            ("  outcomes / 429s", f"{json.dumps(s['outcomes'])} / {s['rate_limited_429']}"),
            (
                "  simulator: exactly once / never / duplicates",
                f"{s['simulator']['exactly_once']} / {s['simulator']['never']} / "
                f"{s['simulator']['duplicates']}",
            ),
        ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
