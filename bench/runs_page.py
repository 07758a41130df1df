"""Runs page vs. Django admin changelist on a large cache of runs.

Fills a database with N cached runs (default 1,000,000: 20 teams, one of
them with half of all runs), then times, through Django's test Client:

  console: /t/<big team>/runs/?status=failed            (page 1; again with
                                                         the card cache emptied
                                                         before each request)
           ... &after=<cursor of page 200>               (deep page)
           ?q=<part of a workflow title> / <8 digits of a run id> / 1234
  admin:   /admin/runs/run/?status__exact=failed&team__id__exact=N  (page 1)
           ... &p=200                                              (deep page)
           ?team__id__exact=N&q=<same terms>

Usage (see docs/performance.md):

  .venv/bin/python bench/runs_page.py --var-dir /tmp/bench-var
  .venv/bin/python bench/runs_page.py \
      --database-url postgres://postgres@127.0.0.1:5432/bench_console
  .venv/bin/python bench/runs_page.py --runs 20000 --var-dir /tmp/bench-small   # quick check

A database already holding exactly N benchmark runs is reused as it is.
"""

import argparse
import importlib
import json
import os
import random
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import machine_info, setup_django, summary  # noqa: E402

TEAMS = 20
BIG_TEAM_SHARE = 0.5
BIG_SLUG = "bench-big"
MEMBER = "bench-member"
ADMIN = "bench-admin"
PASSWORD = "bench-password-not-secret"
SEED = 20261128

# Weighted like a real Skyvern history: mostly finished, a few in flight.
STATUSES = [
    ("completed", 68.0),
    ("failed", 20.0),
    ("terminated", 3.0),
    ("canceled", 3.0),
    ("timed_out", 3.0),
    ("running", 1.5),
    ("queued", 1.0),
    ("created", 0.3),
    ("paused", 0.2),
]
WORKFLOW_TITLES = [
    "Invoice reconciliation",
    "Download monthly bank statements",
    "Submit insurance claim",
    "Vendor onboarding form",
    "Check order status",
    "Renew business license",
    "Scrape competitor pricing",
    "Update CRM contact",
    "File sales tax return",
    "Book freight shipment",
    "Pull payroll report",
    "Patient eligibility check",
    "Request W-9 from supplier",
    "Reset customer password",
    "Export timesheets",
    "Apply for building permit",
    "Reconcile credit card charges",
    "Fetch utility bill",
    "Create purchase order",
    "Verify employment history",
    "Register domain renewal",
    "Upload compliance documents",
    "Quote home insurance",
    "Cancel subscription",
    "Track parcel delivery",
    "Download tax transcript",
    "Submit expense report",
    "Claim warranty repair",
    "Schedule vehicle inspection",
    "Collect carrier invoices",
]
FAILURES = [
    "Timed out waiting for the login page to load.",
    "Element not found: the 'Submit' button was not on the page.",
    "The website asked for a CAPTCHA that could not be solved.",
    "Invalid credentials: the portal rejected the username or password given in the "
    "workflow parameters. Check the credential stored for this organisation, make sure it "
    "has not expired, and that multi-factor authentication is not required for this account.",
    "Navigation failed: net::ERR_NAME_NOT_RESOLVED",
    "The extracted data did not match the expected schema (missing field 'total').",
]


# --- loading ------------------------------------------------------------------


def run_id_for(i: int) -> str:
    # A bijection of 0..10**18-1 (the multiplier is prime to 10), so ids are
    # unique, 18 digits, and look random.
    return f"wr_{(i * 982_451_653_117 + 314_159_265_358_979) % 10**18:018d}"


def ensure_data(n_runs: int) -> dict:
    from django.contrib.auth import get_user_model

    from console.runs.models import Run
    from console.teams.models import Team

    User = get_user_model()
    have = Run.objects.count() if Team.objects.filter(slug=BIG_SLUG).exists() else -1
    if have == n_runs:
        print(f"reusing the database: it already holds {have:,} benchmark runs", flush=True)
        return {"load_s": None, "reused": True, "analyze_s": analyze()}
    if Run.objects.exists() or Team.objects.exists():
        print(f"database holds {have:,} runs, not {n_runs:,}: emptying it", flush=True)
        empty_database()
    load = load_data(n_runs)
    analyze_s = analyze()
    assert Run.objects.count() == n_runs
    assert User.objects.filter(username=MEMBER).exists()
    return {**load, "reused": False, "analyze_s": analyze_s}


def empty_database() -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor == "sqlite":
        path = Path(settings.DATABASES["default"]["NAME"])
        connection.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        call_command("migrate", verbosity=0)
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE runs_retry, runs_run, teams_connection, teams_membership, teams_team, "
                "django_session RESTART IDENTITY CASCADE"
            )
            cursor.execute("DELETE FROM auth_user WHERE username LIKE 'bench-%%'")


def load_data(n_runs: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from console.runs.models import Retry, Run, search_text_for
    # The statements live in the migration that creates the index.
    search_index = importlib.import_module("console.runs.migrations.0002_search_index")
    from console.teams.models import Connection, Membership, Role, Team

    rng = random.Random(SEED)
    User = get_user_model()
    started = time.perf_counter()

    teams = []
    for t in range(TEAMS):
        slug = BIG_SLUG if t == 0 else f"bench-team-{t:02d}"
        teams.append(Team.objects.create(name=f"Bench team {t:02d}", slug=slug))
    connections = []
    for team in teams:
        conn = Connection(team=team, label="Production", base_url="http://127.0.0.1:9")
        conn.set_api_key(f"sk-bench-{team.slug}-0123456789abcdef")
        conn.save()
        connections.append(conn)
    member = User.objects.create_user(MEMBER, password=PASSWORD)
    Membership.objects.create(team=teams[0], user=member, role=Role.OPERATOR)
    Membership.objects.create(team=teams[3], user=member, role=Role.VIEWER)
    User.objects.create_superuser(ADMIN, password=PASSWORD)
    other_member = User.objects.create_user("bench-other", password=PASSWORD)
    for team in teams[1:]:
        Membership.objects.create(team=team, user=other_member, role=Role.OPERATOR)

    # The other teams get uneven shares, like real customers.
    weights = [rng.uniform(0.3, 3.0) for _ in teams[1:]]
    status_names = [s for s, _ in STATUSES]
    status_weights = [w for _, w in STATUSES]
    wpids = {
        title: f"wpid_{rng.randrange(10**17, 10**18)}" for title in WORKFLOW_TITLES
    }
    year_ago = datetime(2025, 11, 28, tzinfo=UTC)
    span = 365 * 24 * 3600

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            # For the load only: this connection, not the application's settings.
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute("PRAGMA cache_size=-1000000")
            cursor.execute("PRAGMA temp_store=MEMORY")
    else:
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '512MB'")
            # The trigram GIN index is built once after the load, not row by row.
            for statement in search_index.POSTGRES_DROP:
                cursor.execute(statement)

    chunk = 50_000
    # Times increase with the row number (a sync stores runs roughly in the
    # order Skyvern made them), with jitter so ids and times don't match exactly.
    step = span / n_runs
    print(f"loading {n_runs:,} runs on {connection.vendor}…", flush=True)
    for start in range(0, n_runs, chunk):
        objs = []
        for i in range(start, min(start + chunk, n_runs)):
            t = 0 if rng.random() < BIG_TEAM_SHARE else rng.choices(range(1, TEAMS), weights)[0]
            status = rng.choices(status_names, status_weights)[0]
            title = WORKFLOW_TITLES[rng.randrange(len(WORKFLOW_TITLES))]
            run_id = run_id_for(i)
            created = year_ago + timedelta(seconds=i * step + rng.uniform(0, step * 20))
            terminal = status not in ("created", "queued", "running", "paused")
            started_at = created + timedelta(seconds=rng.uniform(1, 30))
            finished = started_at + timedelta(seconds=rng.uniform(20, 900)) if terminal else None
            failure = rng.choice(FAILURES) if status in ("failed", "terminated") else ""
            app_url = f"https://app.skyvern.com/runs/{run_id}"
            objs.append(
                Run(
                    team_id=teams[t].pk,
                    connection_id=connections[t].pk,
                    run_id=run_id,
                    status=status,
                    workflow_permanent_id=wpids[title],
                    workflow_title=title,
                    failure_reason=failure,
                    created_at=created,
                    modified_at=finished or started_at,
                    queued_at=created,
                    started_at=started_at if status not in ("created", "queued") else None,
                    finished_at=finished,
                    app_url=app_url,
                    recording_url=(
                        f"https://artifacts.skyvern.com/{run_id}/recording.webm"
                        if status not in ("created", "queued")
                        else ""
                    ),
                    screenshot_urls=[f"https://artifacts.skyvern.com/{run_id}/final.png"]
                    if terminal
                    else [],
                    output={"extracted": {"total": "1,024.00"}} if status == "completed" else None,
                    raw={"workflow_run_id": run_id, "status": status, "proxy_location": "US"},
                    search_text=search_text_for(run_id, wpids[title], title),
                    synced_at=created,
                )
            )
        with transaction.atomic():
            Run.objects.bulk_create(objs, batch_size=2000 if connection.vendor != "sqlite" else 500)
        done = min(start + chunk, n_runs)
        elapsed = time.perf_counter() - started
        print(f"  {done:>9,} runs  {elapsed:6.1f}s", flush=True)
    runs_s = time.perf_counter() - started

    # Some failed runs of the big team were retried: the newest pages show lineage.
    retry_started = time.perf_counter()
    newest_failed = list(
        Run.objects.filter(team=teams[0], status="failed")
        .order_by("-created_at", "-id")
        .values_list("id", "created_at")[:20_000]
    )
    failed_ids = newest_failed[::10]
    # One retry in four failed again: its new run is a later failed run.
    failed_again = [pk for pk, _created in newest_failed[5::10]]
    completed = list(
        Run.objects.filter(team=teams[0], status="completed")
        .order_by("-created_at", "-id")
        .values_list("id", "created_at")[: len(failed_ids) * 4]
    )
    retries, lineage = [], []
    used = set()
    j = 0
    for n, (run_pk, created) in enumerate(failed_ids):
        # The retry is a later completed run not used yet.
        while j < len(completed) and (completed[j][0] in used):
            j += 1
        if j >= len(completed):
            break
        new_pk = completed[j][0]
        if n % 4 == 0 and n // 4 < len(failed_again):
            new_pk = failed_again[n // 4]
        else:
            j += 1
        used.add(new_pk)
        retries.append(
            Retry(run_id=run_pk, number=1, state="retried", requested_by=member,
                  requested_at=created + timedelta(hours=1), finished_at=created
                  + timedelta(hours=1, seconds=2), new_run_id=new_pk)
        )
        lineage.append((new_pk, run_pk, created + timedelta(hours=1)))
    with transaction.atomic():
        Retry.objects.bulk_create(retries, batch_size=1000)
        with connection.cursor() as cursor:
            cursor.executemany(
                "UPDATE runs_run SET retried_from_id = %s, retried_by_id = %s, retried_at = %s "
                "WHERE id = %s",
                [(old, member.pk, when, new) for new, old, when in lineage],
            )
    retry_s = time.perf_counter() - retry_started

    index_s = 0.0
    if connection.vendor == "postgresql":
        index_started = time.perf_counter()
        with connection.cursor() as cursor:
            for statement in search_index.POSTGRES_CREATE:
                cursor.execute(statement)
        index_s = time.perf_counter() - index_started
    total_s = time.perf_counter() - started
    print(
        f"loaded in {total_s:.1f}s (runs {runs_s:.1f}s, retries {retry_s:.1f}s, "
        f"search index {index_s:.1f}s)",
        flush=True,
    )
    return {"load_s": total_s, "runs_s": runs_s, "retries": len(retries), "index_s": index_s}


def analyze() -> float:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("ANALYZE")
        else:
            cursor.execute("VACUUM ANALYZE runs_run")
            cursor.execute("ANALYZE")
    return time.perf_counter() - started


# --- measuring ----------------------------------------------------------------

RESULT_COUNT = re.compile(r'id="result-count"[^>]*>(More than )?(\d+)')
NEXT_LINK = re.compile(r'href="\?([^"]*after=[A-Za-z0-9_-]+)"')


def warm_up(client, url: str, times: int) -> None:
    for _ in range(times):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)


def time_pair(console, console_url, admin, admin_url, reps, before=None):
    """Samples of the console's and the admin's URL, taken in turns, so that
    the machine's drift over the run weighs on both alike; `before` runs
    untimed before each console request."""
    samples = {"console": [], "admin": []}
    for _ in range(reps):
        for name, client, url, prepare in (
            ("console", console, console_url, before),
            ("admin", admin, admin_url, None),
        ):
            if prepare is not None:
                prepare()
            t0 = time.perf_counter()
            response = client.get(url)
            samples[name].append(time.perf_counter() - t0)
            assert response.status_code == 200, (url, response.status_code)
    return samples["console"], samples["admin"]


def deep_console_url(client, base: str, pages: int) -> str:
    """Follow the "Older runs" link `pages - 1` times; the URL of page `pages`."""
    url = base
    for _ in range(pages - 1):
        html = client.get(url).content.decode()
        match = NEXT_LINK.search(html)
        assert match, f"no next link on {url}"
        url = base.split("?")[0] + "?" + match.group(1).replace("&amp;", "&")
    return url


def search_terms(team) -> dict:
    from console.runs.models import Run

    newest = Run.objects.filter(team=team).order_by("-created_at", "-id").first()
    return {
        # A substring of a workflow title (about 1 in 30 runs match).
        "title": "reconcil",
        # Eight digits out of the middle of a real run id (matches that run, maybe a few).
        "run_id": newest.run_id[8:16],
        # Four digits, as someone pasting part of a run id might: ~1,500 runs
        # in all teams at 1M, half of them in the big team; too many for
        # SQLite's id probe, too few for its newest-first scan.
        "digits": "1234",
    }


class FilterScenarios(list):
    clock: datetime


def new_filter_scenarios(base: str, team) -> FilterScenarios:
    """(name, URL) of each new filter on the big team's runs page."""
    from console.runs.models import Run

    newest = Run.objects.filter(team=team).order_by("-created_at").first()
    clock = newest.created_at + timedelta(minutes=1)
    day = (clock - timedelta(days=30)).date()
    wpid = newest.workflow_permanent_id
    scenarios = FilterScenarios(
        [
            ("created last hour", f"{base}?created_within=1h"),
            ("failed, finished last 4 hours", f"{base}?status=failed&finished_within=4h"),
            ("finished last 7 days", f"{base}?finished_within=7d"),
            (
                "created 09:00–17:30 one day (Europe/Berlin)",
                f"{base}?created_from={day}T09:00&created_to={day}T17:30",
            ),
            ("failed, not yet retried", f"{base}?status=failed&retry=not_retried"),
            ("retried and failed again", f"{base}?retry=failed_again"),
            ("one workflow", f"{base}?workflow={wpid}"),
        ]
    )
    scenarios.clock = clock
    return scenarios


def time_filters(client, scenarios: FilterScenarios, reps: int, warmup: int) -> list[dict]:
    from unittest import mock

    from django.utils import timezone

    from console.teams.timezones import SESSION_KEY

    session = client.session
    session[SESSION_KEY] = "Europe/Berlin"
    session.save()
    results = []
    with mock.patch.object(timezone, "now", lambda: scenarios.clock):
        for name, url in scenarios:
            warm_up(client, url, warmup)
            samples = []
            for _ in range(reps):
                t0 = time.perf_counter()
                response = client.get(url)
                samples.append(time.perf_counter() - t0)
            found = RESULT_COUNT.search(response.content.decode())
            matches, capped = found.group(2), bool(found.group(1))
            results.append(
                {
                    "scenario": name,
                    "console_url": url,
                    "console": summary(samples),
                    "matches": f"{matches}{'+' if capped else ''}",
                    "console_queries": count_queries(client, url),
                }
            )
    return results


def count_queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        client.get(url)
    return len(ctx.captured_queries)


def explain(url_params: dict, team, member) -> None:
    """Print the plans of the console page's queries (--explain)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from console.runs.listing import run_page
    from console.runs.models import Run

    with CaptureQueriesContext(connection) as ctx:
        run_page(
            Run.objects.restrict(member).filter(team=team),
            statuses=url_params.get("status", ()),
            search=url_params.get("q", ""),
            after=url_params.get("after"),
        )
    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ANALYZE "
    for query in ctx.captured_queries:
        sql = query["sql"]
        print("\n--", sql[:300])
        with connection.cursor() as cursor:
            cursor.execute(prefix + sql)
            for row in cursor.fetchall():
                print("   ", " | ".join(str(c) for c in row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs in the dataset")
    parser.add_argument("--reps", type=int, default=40, help="timed requests per scenario")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--deep", type=int, default=200, help="page number of the deep page")
    parser.add_argument("--var-dir", help="CONSOLE_VAR_DIR for the SQLite file")
    parser.add_argument("--database-url", help="DATABASE_URL (e.g. PostgreSQL)")
    parser.add_argument("--explain", action="store_true", help="print the console's plans")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--page-one-only",
        action="store_true",
        help="time only page 1, cards cached and not (quicker on a busy machine)",
    )
    parser.add_argument(
        "--layout",
        choices=("rows", "cards"),
        default="rows",
        help="the runs page as compact rows (its default) or cards",
    )
    parser.add_argument(
        "--without-javascript",
        action="store_true",
        help="the console as a browser without JavaScript gets it (counts drawn in)",
    )
    args = parser.parse_args()

    if not args.database_url and not args.var_dir and not os.environ.get("CONSOLE_VAR_DIR"):
        args.var_dir = "/tmp/bench-var"  # noqa: S108 (a benchmark scratch dir)
    setup_django(var_dir=args.var_dir, database_url=args.database_url)

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from console.runs.listing import PAGE_SIZE, decode_cursor
    from console.teams.models import Team

    call_command("migrate", verbosity=0)
    load = ensure_data(args.runs)

    User = get_user_model()
    team = Team.objects.get(slug=BIG_SLUG)
    member = User.objects.get(username=MEMBER)
    admin_user = User.objects.get(username=ADMIN)
    console = Client(HTTP_HOST="localhost")
    console.force_login(member)
    console.cookies["console_runs_layout"] = args.layout
    if not args.without_javascript:
        # As a browser running console.js: a searched or filtered page leaves
        # its counts to the request the script makes as it loads.
        console.cookies["console_js"] = "1"
    admin = Client(HTTP_HOST="localhost")
    admin.force_login(admin_user)

    terms = search_terms(team)
    base = f"/t/{team.slug}/runs/"
    page1 = f"{base}?status=failed"
    # Don't ask for a page past the end on a small dataset.
    from console.runs.models import Run

    failed = Run.objects.filter(team=team, status="failed").count()
    deep = max(2, min(args.deep, failed // PAGE_SIZE))
    admin_deep = max(2, min(args.deep, failed // 100))
    deep_url = page1 if args.page_one_only else deep_console_url(console, page1, deep)
    after = decode_cursor(deep_url.split("after=")[1]) if "after=" in deep_url else None

    admin_base = "/admin/runs/run/"
    scenarios = [
        ("filtered, page 1", page1, f"{admin_base}?status__exact=failed&team__id__exact={team.pk}"),
        (
            f"filtered, deep (console page {deep}, admin p={admin_deep})",
            deep_url,
            f"{admin_base}?status__exact=failed&team__id__exact={team.pk}&p={admin_deep}",
        ),
        (
            f"search title {terms['title']!r}",
            f"{base}?q={terms['title']}",
            f"{admin_base}?team__id__exact={team.pk}&q={terms['title']}",
        ),
        (
            f"search run id {terms['run_id']!r}",
            f"{base}?q={terms['run_id']}",
            f"{admin_base}?team__id__exact={team.pk}&q={terms['run_id']}",
        ),
        (
            f"search 4 digits {terms['digits']!r}",
            f"{base}?q={terms['digits']}",
            f"{admin_base}?team__id__exact={team.pk}&q={terms['digits']}",
        ),
    ]

    filter_scenarios = new_filter_scenarios(base, team)

    if args.explain:
        explain({"status": ["failed"]}, team, member)
        explain({"status": ["failed"], "after": after}, team, member)
        explain({"q": terms["title"]}, team, member)
        explain({"q": terms["run_id"]}, team, member)
        explain({"q": terms["digits"]}, team, member)

    info = machine_info()
    print(
        f"\n{connection.vendor}  runs={args.runs:,}  big team={team.runs.count():,} runs "
        f"({failed:,} failed)  reps={args.reps} warmup={args.warmup}"
    )
    print(f"machine: {json.dumps(info)}")
    if load.get("load_s") is not None:
        print(f"load: {load['load_s']:.1f}s  (analyze {load['analyze_s']:.1f}s)")

    # Run cards are cached by what they show (console/runs/cards.py); the first
    # view after a run changed draws its card again. This row draws all 50.
    from django.core.cache import caches

    from console.runs.cards import CACHE as CARD_CACHE

    scenarios.insert(1, ("filtered, page 1, no card cached", page1, scenarios[0][2]))
    if args.page_one_only:
        del scenarios[2:]
    def nothing_cached():
        # No card drawn, and nothing else the page keeps per process (the
        # team's workflow list): the first view after the team's runs changed.
        caches[CARD_CACHE].clear()
        caches["default"].clear()

    uncached = {"filtered, page 1, no card cached": nothing_cached}

    # Every URL warm before any is timed: the first scenario timed used to
    # pay for the database's pages coming into memory (its admin median was
    # 1.5x the same URL's a minute later).
    for _name, console_url, admin_url in scenarios:
        warm_up(console, console_url, args.warmup)
        warm_up(admin, admin_url, args.warmup)

    results = []
    for name, console_url, admin_url in scenarios:
        console_samples, admin_samples = time_pair(
            console, console_url, admin, admin_url, args.reps, uncached.get(name)
        )
        c, a = summary(console_samples), summary(admin_samples)
        results.append(
            {
                "scenario": name,
                "console_url": console_url if "after=" not in console_url else "(deep cursor)",
                "admin_url": admin_url,
                "console": c,
                "admin": a,
                "console_queries": count_queries(console, console_url),
                "admin_queries": count_queries(admin, admin_url),
            }
        )

    header = (
        f"{'scenario':<44} {'console med':>11} {'p95':>7} {'admin med':>10} {'p95':>8} "
        f"{'admin÷console':>13}"
    )
    print("\n" + header)
    print("-" * len(header))
    for r in results:
        ratio = r["admin"]["median"] / r["console"]["median"]
        r["ratio"] = ratio
        print(
            f"{r['scenario']:<44} {r['console']['median']:>9.1f}ms {r['console']['p95']:>5.1f}ms "
            f"{r['admin']['median']:>8.1f}ms {r['admin']['p95']:>6.1f}ms {ratio:>12.1f}×"
        )
    print("\nqueries per request (console / admin):")
    for r in results:
        print(f"  {r['scenario']:<44} {r['console_queries']:>3} / {r['admin_queries']}")

    # The filters of issue 13.1, console only (the admin has none of them).
    # "Last …" ranges count back from the bench's clock, set to just after its
    # newest run: the real clock would find no runs in a dataset made once.
    filter_results = time_filters(console, filter_scenarios, args.reps, args.warmup)
    print(f"\nfilters (console only, clock at {filter_scenarios.clock:%Y-%m-%d %H:%M} UTC):")
    print(f"{'scenario':<44} {'median':>9} {'p95':>8} {'matches':>8} {'queries':>8}")
    for r in filter_results:
        print(
            f"{r['scenario']:<44} {r['console']['median']:>7.1f}ms {r['console']['p95']:>6.1f}ms "
            f"{r['matches']:>8} {r['console_queries']:>8}"
        )
    results += filter_results

    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"vendor": connection.vendor, "runs": args.runs, "machine": info, "load": load,
                 "results": results},
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
