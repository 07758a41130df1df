"""Full sync of N runs from the Skyvern simulator into an empty cache.

Starts the simulator in a SUBPROCESS (so this process holds only the
console side), seeds one organisation with N runs through its control API
(`POST /_sim/orgs`, seed "bench"), and times `connection_sync(full=True)`
of a new connection into an empty runs table: wall time, rows/s, pages,
where the time went (HTTP + JSON vs SQL vs the rest) and the peak memory of
this process. Then, in the same run and against the same data:

  - an incremental sync right after the full one (`full=False`);
  - the full sync again under tracemalloc (Python allocation peak), for
    20,000 runs and for N runs: memory must not grow with N;
  - listing only: every page through SkyvernClient.list_runs, no database;
  - bare bulk insert: `Run.objects.bulk_create` of already-built Run
    objects (the same rows the sync stores), 100 per call, no HTTP;
  - bulk upsert: `runs_upsert` (what the sync calls per page) on the same
    already-fetched pages, no HTTP.

Each of these starts from an empty runs table (SQLite: DELETE + VACUUM,
PostgreSQL: TRUNCATE).

The simulator's list endpoint as shipped views and sorts ALL of an
organisation's runs for every page (O(N) per page, so a full sync is
O(N^2) in the simulator); with `--simulator indexed` (the default) the
subprocess runs the same simulator with list_runs replaced by a version that
keeps the runs sorted once and views only the requested page (see
docs/performance.md, "Sync from Skyvern"). `--simulator as-shipped` runs
`python -m console.simulator` unchanged.

  .venv/bin/python bench/sync.py                                   # SQLite, temp var dir
  .venv/bin/python bench/sync.py \
      --database-url postgres://postgres@127.0.0.1:5432/bench_sync
  .venv/bin/python bench/sync.py --runs 5000                       # quick check
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import (  # noqa: E402
    ROOT,
    SimulatorProcess,
    cpu_seconds,
    machine_info,
    proc_status_kib,
    reset_peak_rss,
    setup_django,
)

API_KEY = "sk-bench-sync-0123456789abcdef-SYNC"
SEED = "bench"
SERVE_FLAG = "--serve-indexed-simulator"


# --- the simulator, in a subprocess ---------------------------------------------


def indexed_list_runs(original):
    """SimulatorState.list_runs without the O(N) work per page (the proposed fix).

    The order (created_at, seq) newest first never changes once a run exists
    (a run's view changes its status, never these two), so the runs are
    sorted once per organisation and only the requested page is viewed. Any
    filter (status, search, error code, workflow, dates) goes to the
    original. The index is rebuilt when a run is added or the state reset.
    """
    from console.simulator.state import utcnow

    def list_runs(self, api_key, *, page=1, page_size=10, **filters):
        if any(value for value in filters.values()):
            return original(self, api_key, page=page, page_size=page_size, **filters)
        now = utcnow()
        with self._lock:
            version = (len(self._runs), self._seq, self._generation)
            index = getattr(self, "_bench_index", None)
            if index is None or index[0] != version:
                by_org: dict[str, list] = {}
                for run in self._runs.values():
                    by_org.setdefault(run.org_key, []).append(run)
                for runs in by_org.values():
                    runs.sort(key=lambda r: (r.created_at, r.seq), reverse=True)
                index = self._bench_index = (version, by_org)
            start = (page - 1) * page_size
            return [run.view(now) for run in index[1].get(api_key, [])[start : start + page_size]]

    return list_runs


def serve_indexed_simulator(argv: list[str]) -> int:
    """The child process of `--simulator indexed`: the simulator, list_runs patched."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from console.simulator.__main__ import main as simulator_main
    from console.simulator.state import SimulatorState

    SimulatorState.list_runs = indexed_list_runs(SimulatorState.list_runs)
    return simulator_main(argv)


class Simulator(SimulatorProcess):
    """A simulator subprocess seeded with one organisation of `runs` runs."""

    def __init__(self, mode: str, runs: int):
        if mode == "as-shipped":
            command = [sys.executable, "-m", "console.simulator", "--port", "0"]
        else:
            command = [sys.executable, str(Path(__file__).resolve()), SERVE_FLAG, "--port", "0"]
        super().__init__(command)

        import requests

        started = time.perf_counter()
        response = requests.post(
            f"{self.url}/_sim/orgs",
            json={"api_key": API_KEY, "name": "Bench sync org", "seed": SEED, "seed_runs": runs},
            timeout=900,
        )
        response.raise_for_status()
        self.seed_s = time.perf_counter() - started
        self.runs = runs
        self.rss_kib = proc_status_kib("VmRSS", self.pid)

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid) or 0.0


# --- the console side ----------------------------------------------------------------


def empty_cache() -> float:
    """No runs, no bench team: every measured phase starts from an empty cache."""
    from django.db import connection

    from console.teams.models import Team

    started = time.perf_counter()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # CASCADE: other apps' rows that point at retries (none in a bench database).
            cursor.execute("TRUNCATE runs_retry, runs_run CASCADE")
        else:
            cursor.execute("DELETE FROM runs_retry")
            cursor.execute("DELETE FROM runs_run")
    Team.objects.filter(slug__startswith="bench-sync").delete()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE")
        else:
            cursor.execute("VACUUM")
    return time.perf_counter() - started


def new_connection(url: str, label: str):
    from console.teams.models import Connection, Team

    team = Team.objects.create(name=f"Bench sync {label}", slug=f"bench-sync-{label}")
    conn = Connection(team=team, label="Simulator", base_url=url)
    conn.set_api_key(API_KEY)
    conn.save()
    return conn


class Probe:
    """Where a sync's time goes, by wrapping the service's steps in place.

    Buckets: the sync's steps (listing, refresh of unfinished runs, failure
    details) and inside each: the HTTP request (requests, incl. waiting for
    the simulator), JSON decoding, RunSummary/RunDetail building, SQL
    execution (Django's execute wrapper: the driver call and the database),
    and runs_upsert / runs_insert (building the Run objects and their SQL:
    a page's runs already cached, and its new ones). The wrappers
    cost well under 1 % of the sync.
    """

    STEPS = ("_sync_listing", "_refresh_unfinished", "_fetch_failure_details")

    def __init__(self):
        self.times = defaultdict(float)
        self.counts = defaultdict(int)
        self.stack: list[str] = []

    def _add(self, key: str, seconds: float) -> None:
        self.times[key] += seconds
        self.counts[key] += 1

    def timed(self, name, fn):
        def wrapper(*args, **kwargs):
            self.stack.append(name)
            key = "/".join(self.stack)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._add(key, time.perf_counter() - t0)
                self.stack.pop()

        return wrapper

    def sql(self, execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self._add("/".join([*self.stack, "sql"]), time.perf_counter() - t0)

    @contextmanager
    def installed(self):
        from django.db import connection

        from console.runs import store
        from console.skyvern import client as client_module
        from console.skyvern import types as types_module
        from console.sync import services

        saved = [(services, name, getattr(services, name)) for name in self.STEPS]
        saved += [
            (store, "_runs_upsert", store._runs_upsert),
            (store, "_runs_insert", store._runs_insert),
            (services, "client_for", services.client_for),
            (client_module.SkyvernClient, "_parse", client_module.SkyvernClient._parse),
            (types_module.RunSummary, "from_json", types_module.RunSummary.__dict__["from_json"]),
            (types_module.RunDetail, "from_json", types_module.RunDetail.__dict__["from_json"]),
        ]
        for name in self.STEPS:
            setattr(services, name, self.timed(name.strip("_"), getattr(services, name)))
        store._runs_upsert = self.timed("runs_upsert", store._runs_upsert)
        store._runs_insert = self.timed("runs_insert", store._runs_insert)
        original_client_for = services.client_for

        def client_for(conn):
            client = original_client_for(conn)
            client.session.request = self.timed("http", client.session.request)
            return client

        services.client_for = client_for
        client_module.SkyvernClient._parse = self.timed("json", client_module.SkyvernClient._parse)
        for cls in (types_module.RunSummary, types_module.RunDetail):
            raw = cls.__dict__["from_json"].__func__
            cls.from_json = classmethod(self.timed("from_json", raw))
        try:
            with connection.execute_wrapper(self.sql):
                yield self
        finally:
            for owner, name, value in saved:
                setattr(owner, name, value)
            # The pooled session's request method was patched on the instance.
            from console.teams import clients

            for session in clients._sessions.values():
                session.__dict__.pop("request", None)

    def breakdown(self) -> dict:
        return {key: round(value, 3) for key, value in sorted(self.times.items())}


def sync_once(conn, *, full: bool, simulator: Simulator, memory: str = "rss", profile=None):
    """One connection_sync, measured. memory: "rss" (peak RSS) or "tracemalloc"."""
    from console.sync.services import connection_sync

    db_cpu_before = db_backend_cpu()
    sim_cpu_before = simulator.cpu_s()
    probe = Probe()
    rss_before = proc_status_kib("VmRSS")
    rss_reset = reset_peak_rss()
    if memory == "tracemalloc":
        tracemalloc.start()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    with probe.installed():
        if profile is not None:
            profile.enable()
        result = connection_sync(connection=conn, full=full)
        if profile is not None:
            profile.disable()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    out = {
        "full": full,
        "wall_s": wall,
        "console_cpu_s": cpu,
        "simulator_cpu_s": simulator.cpu_s() - sim_cpu_before,
        "pages": result.pages,
        "checked": result.checked,
        "created": result.created,
        "updated": result.updated,
        "refreshed": result.refreshed,
        "detailed": result.detailed,
        "stopped_early": result.stopped_early,
        "error": result.error,
        "breakdown": probe.breakdown(),
        "calls": dict(probe.counts),
    }
    db_cpu_after = db_backend_cpu()
    if db_cpu_before is not None and db_cpu_after is not None:
        out["db_server_cpu_s"] = db_cpu_after - db_cpu_before
    if memory == "tracemalloc":
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["tracemalloc_peak_mib"] = peak / 2**20
    else:
        hwm = proc_status_kib("VmHWM")
        if rss_reset and hwm is not None and rss_before is not None:
            out["rss_before_mib"] = rss_before / 1024
            out["rss_peak_growth_mib"] = (hwm - rss_before) / 1024
    assert not result.error, result.error
    return out


def db_backend_cpu() -> float | None:
    """CPU time of this connection's PostgreSQL backend process (same machine)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    return cpu_seconds(pid)


def each_page(url: str):
    """Every page through the console's client, no database: (page, seconds it took)."""
    from console.skyvern import SkyvernClient
    from console.sync.services import SYNC_PAGE_SIZE

    client = SkyvernClient(url, API_KEY)
    page = 1
    while True:
        t0 = time.perf_counter()
        summaries = client.list_runs(page=page, page_size=SYNC_PAGE_SIZE)
        seconds = time.perf_counter() - t0
        if not summaries:
            return
        yield summaries, seconds
        if len(summaries) < SYNC_PAGE_SIZE:
            return
        page += 1


def built_rows(conn, summaries) -> list:
    """The Run objects runs_upsert builds for these summaries (same fields)."""
    from console.runs.store import _runs_from_listing

    return _runs_from_listing(connection=conn, summaries=summaries)


def listing_and_bulk_insert(conn, url: str) -> tuple[dict, dict]:
    """Listing only (timed), then bulk_create of each page's already-built
    objects, one call (= one autocommit) per page (timed apart).

    Page by page, like the sync: holding all N runs at once made every
    Python step slower (a heap of ~1 GB), which is not what is compared.
    """
    from django.db import connection

    from console.runs.models import Run

    probe = Probe()
    list_s = build_s = insert_s = 0.0
    pages = rows = 0
    with connection.execute_wrapper(probe.sql):
        for summaries, seconds in each_page(url):
            list_s += seconds
            t0 = time.perf_counter()
            batch = built_rows(conn, summaries)
            t1 = time.perf_counter()
            Run.objects.bulk_create(batch)
            insert_s += time.perf_counter() - t1
            build_s += t1 - t0
            pages += 1
            rows += len(batch)
    assert Run.objects.filter(connection=conn).count() == rows
    return (
        {"pages": pages, "rows": rows, "wall_s": list_s},
        {"rows": rows, "build_s": build_s, "insert_s": insert_s, "sql_s": probe.times["sql"]},
    )


def bare_upsert(conn, url: str) -> dict:
    """runs_upsert (what the sync does per page) on each fetched page, timed alone."""
    from django.db import connection

    from console.runs.models import Run
    from console.runs.store import _runs_upsert as runs_upsert

    probe = Probe()
    upsert_s = 0.0
    rows = 0
    with connection.execute_wrapper(probe.sql):
        for summaries, _ in each_page(url):
            t0 = time.perf_counter()
            runs_upsert(connection=conn, summaries=summaries)
            upsert_s += time.perf_counter() - t0
            rows += len(summaries)
    assert Run.objects.filter(connection=conn).count() == rows
    return {"rows": rows, "upsert_s": upsert_s, "sql_s": probe.times["sql"]}


# --- one size ---------------------------------------------------------------------------


def measure(runs: int, args, *, full_set: bool) -> dict:
    """Everything for one organisation size. full_set: also the no-HTTP comparisons."""
    print(f"\n== {runs:,} runs: starting the simulator ({args.simulator})…", flush=True)
    simulator = Simulator(args.simulator, runs)
    sim_rss = (simulator.rss_kib or 0) / 1024
    out = {"runs": runs, "seed_s": simulator.seed_s, "simulator_rss_mib": sim_rss}
    print(f"   seeded in {simulator.seed_s:.1f}s (simulator RSS {sim_rss:.0f} MiB)", flush=True)
    try:
        empty_cache()
        conn = new_connection(simulator.url, f"{runs}")
        profile = cProfile.Profile() if (args.profile and full_set) else None
        out["full"] = sync_once(conn, full=True, simulator=simulator, profile=profile)
        report_sync(f"full sync ({runs:,})", out["full"])
        out["incremental"] = sync_once(conn, full=False, simulator=simulator)
        report_sync(f"incremental sync right after ({runs:,})", out["incremental"])
        if profile is not None:
            stream = io.StringIO()
            stats = pstats.Stats(profile, stream=stream)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)
            Path(args.profile).write_text(stream.getvalue())
            print(f"   cProfile of the full sync written to {args.profile}", flush=True)

        if not args.no_tracemalloc:
            empty_cache()
            conn = new_connection(simulator.url, f"{runs}-traced")
            out["traced"] = sync_once(conn, full=True, simulator=simulator, memory="tracemalloc")
            traced = out["traced"]
            print(
                f"   tracemalloc peak of a full sync: {traced['tracemalloc_peak_mib']:.1f} MiB"
                f" (that sync took {traced['wall_s']:.1f}s under tracemalloc)",
                flush=True,
            )

        if full_set:
            empty_cache()
            conn = new_connection(simulator.url, f"{runs}-bulk")
            out["listing_only"], out["bulk_insert"] = listing_and_bulk_insert(conn, simulator.url)
            lo = out["listing_only"]
            print(f"   listing only (HTTP + JSON + RunSummary, no DB): {lo['pages']} pages, "
                  f"{lo['wall_s']:.1f}s, {lo['rows'] / lo['wall_s']:,.0f} rows/s", flush=True)
            b = out["bulk_insert"]
            print(f"   bare bulk_create (100/call, objects pre-built): {b['insert_s']:.1f}s, "
                  f"{b['rows'] / b['insert_s']:,.0f} rows/s (SQL {b['sql_s']:.1f}s; building the "
                  f"objects before: {b['build_s']:.1f}s)", flush=True)
            empty_cache()
            conn = new_connection(simulator.url, f"{runs}-upsert")
            out["bulk_upsert"] = bare_upsert(conn, simulator.url)
            u = out["bulk_upsert"]
            print(f"   runs_upsert per page, no HTTP: {u['upsert_s']:.1f}s, "
                  f"{u['rows'] / u['upsert_s']:,.0f} rows/s (SQL {u['sql_s']:.1f}s)", flush=True)
    finally:
        simulator.stop()
    return out


def warm_up(args) -> None:
    """A small sync first, so one-off costs (imports, caches, the first
    connection) land in no measured phase."""
    simulator = Simulator(args.simulator, 300)
    try:
        empty_cache()
        conn = new_connection(simulator.url, "warm-up")
        sync_once(conn, full=True, simulator=simulator)
    finally:
        simulator.stop()


def report_sync(name: str, r: dict) -> None:
    memory = (
        f", RSS peak +{r['rss_peak_growth_mib']:.1f} MiB" if "rss_peak_growth_mib" in r else ""
    )
    rate = r["checked"] / r["wall_s"] if r["wall_s"] else 0
    print(
        f"   {name}: {r['wall_s']:.2f}s, {r['pages']} pages, {r['checked']:,} rows checked "
        f"({rate:,.0f} rows/s), {r['created']:,} new, {r['refreshed']} refreshed, "
        f"{r['detailed']} detailed{memory}",
        flush=True,
    )
    db = f", database server {r['db_server_cpu_s']:.1f}s" if "db_server_cpu_s" in r else ""
    print(
        f"     CPU: console {r['console_cpu_s']:.1f}s, simulator {r['simulator_cpu_s']:.1f}s{db}",
        flush=True,
    )
    print(f"     breakdown (s): {json.dumps(r['breakdown'])}", flush=True)


def table(vendor: str, results: dict) -> None:
    big = results["sizes"][-1]
    full, inc = big["full"], big["incremental"]
    n = full["checked"]
    sync_rate = n / full["wall_s"]
    listing = full["breakdown"].get("sync_listing", full["wall_s"])
    print(f"\n{vendor}: {n:,} runs, simulator {results['simulator']}\n")
    rows = [
        ("full sync (connection_sync, full=True)", full["wall_s"], n / full["wall_s"]),
        ("  of which the listing (pages + upserts)", listing, n / listing),
        ("listing only: HTTP + JSON + RunSummary, no DB", big["listing_only"]["wall_s"],
         n / big["listing_only"]["wall_s"]),
        ("runs_upsert per page, no HTTP", big["bulk_upsert"]["upsert_s"],
         n / big["bulk_upsert"]["upsert_s"]),
        ("bare bulk_create, 100 per call, pre-built", big["bulk_insert"]["insert_s"],
         n / big["bulk_insert"]["insert_s"]),
    ]
    print(f"{'what':<48} {'time':>9} {'rows/s':>10}")
    print("-" * 69)
    for name, seconds, rate in rows:
        print(f"{name:<48} {seconds:>8.1f}s {rate:>10,.0f}")
    bulk_rate = n / big["bulk_insert"]["insert_s"]
    print(f"\nbare bulk insert ÷ full sync (rows/s): {bulk_rate / sync_rate:.1f}×")
    print(f"pages: full {full['pages']}, incremental {inc['pages']} "
          f"({'stopped early' if inc['stopped_early'] else 'did NOT stop early'}), "
          f"incremental sync {inc['wall_s']:.2f}s")
    print("\nmemory of this process during a full sync:")
    for size in results["sizes"]:
        rss = size["full"].get("rss_peak_growth_mib")
        traced = size.get("traced", {}).get("tracemalloc_peak_mib")
        rss_text = f"{rss:.1f} MiB" if rss is not None else "n/a"
        traced_text = f"{traced:.1f} MiB" if traced is not None else "n/a"
        print(f"  {size['runs']:>9,} runs: peak RSS growth {rss_text:>10}, "
              f"tracemalloc peak {traced_text:>10}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == SERVE_FLAG:
        sys.exit(serve_indexed_simulator(sys.argv[2:]))

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the organisation")
    parser.add_argument(
        "--memory-small", type=int, default=20_000,
        help="also sync this many runs to compare memory (skipped if >= --runs)",
    )
    parser.add_argument("--simulator", choices=["indexed", "as-shipped"], default="indexed")
    parser.add_argument("--var-dir", help="SQLite var dir (default: a new temporary one)")
    parser.add_argument("--database-url", help="DATABASE_URL (e.g. PostgreSQL)")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the traced syncs")
    parser.add_argument(
        "--profile",
        help="run the big full sync under cProfile, stats to this file (inflates its time: "
        "use in a separate run)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    tmp = None
    if not args.database_url and not args.var_dir:
        tmp = tempfile.TemporaryDirectory(prefix="bench-sync-")
        args.var_dir = tmp.name
    os.environ["DEBUG"] = "0"  # no query log growing with every statement
    # The simulator listens on loopback, which connections may call only here.
    os.environ["SKYVERN_ALLOW_LOOPBACK"] = "1"
    setup_django(var_dir=args.var_dir, database_url=args.database_url)

    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    info = machine_info()
    print(f"{connection.vendor}; machine: {json.dumps(info)}", flush=True)

    results = {"vendor": connection.vendor, "simulator": args.simulator, "machine": info,
               "sizes": []}
    try:
        warm_up(args)
        if args.memory_small and args.memory_small < args.runs:
            results["sizes"].append(measure(args.memory_small, args, full_set=False))
        results["sizes"].append(measure(args.runs, args, full_set=True))
        empty_cache()
    finally:
        if tmp is not None:
            tmp.cleanup()
    table(connection.vendor, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
