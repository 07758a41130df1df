"""The failure inbox on a large cache: stored group keys vs. grouping per request.

Fills a database with N cached runs (default 1,000,000) in two teams: the
measured team holds half of them, with F failed, terminated or timed-out
runs (default 100,000) spread over 30 days and a burst in the last hours,
their reasons made from templates with ids, numbers, URLs and quoted values
in them, across 30 workflows; some of them retried (the console's lineage).
Then times, through Django's test Client and as plain queries:

  inbox:    GET /t/<team>/failures/          (the page, whole)
            team_failure_groups([team])      (the service alone: the stored counts)
            failure_groups(team's runs)      (counting the runs per request, as before)
  across:   GET /failures/                   (the inbox across teams, as a
            person in both teams: operator in one, viewer in the other)
  baseline: the team's failed runs' raw columns (reason, workflow, Skyvern's
            failure_category JSON), normalised and grouped in Python per
            request, as without stored keys

Usage (see docs/performance.md):

  .venv/bin/python bench/failure_inbox.py --var-dir /tmp/bench-inbox
  .venv/bin/python bench/failure_inbox.py \
      --database-url postgres://postgres@127.0.0.1:5432/bench_inbox
  .venv/bin/python bench/failure_inbox.py --runs 20000 --failed 2000 --var-dir /tmp/x  # quick

A database already holding exactly N benchmark runs is reused as it is.
"""

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import setup_django, summary  # noqa: E402

SLUG = "bench-inbox"
OTHER_SLUG = "bench-inbox-other"
MEMBER = "bench-inbox-member"
ACROSS_MEMBER = "bench-inbox-two-teams"  # added to a loaded database as it is
PASSWORD = "bench-password-not-secret"
SEED = 20261206
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

CATEGORIES = [
    "ANTI_BOT_DETECTION", "PROXY_ERROR", "BROWSER_ERROR", "NAVIGATION_FAILURE",
    "PAGE_LOAD_TIMEOUT", "ELEMENT_STATE_TIMEOUT", "AUTH_FAILURE", "LLM_ERROR",
    "CREDENTIAL_ERROR", "DATA_EXTRACTION_FAILURE", "ELEMENT_NOT_FOUND", "WRONG_PAGE_STATE",
    "MAX_STEPS_EXCEEDED", "LLM_REASONING_ERROR", "INFRASTRUCTURE_ERROR",
    "PARAMETER_BINDING_ERROR", "UNKNOWN",
]  # fmt: skip
# Failure reasons as Skyvern words them, with what differs per run in braces.
REASONS = [
    ("Element #btn-{n} not found on {url}", "ELEMENT_NOT_FOUND"),
    ("Timed out after {n} ms waiting for the login page to load.", "PAGE_LOAD_TIMEOUT"),
    ("Login failed: portal rejected the password for {email}", "AUTH_FAILURE"),
    ("Navigation to {url} failed: net::ERR_NAME_NOT_RESOLVED", "NAVIGATION_FAILURE"),
    ("The extracted data did not match the schema (missing field '{word}').",
     "DATA_EXTRACTION_FAILURE"),
    ("The website asked for a CAPTCHA that could not be solved (attempt {n}).",
     "ANTI_BOT_DETECTION"),
    ("Proxy {ip} refused the connection", "PROXY_ERROR"),
    ("Browser crashed in task tsk_{id}", "BROWSER_ERROR"),
    ("Step budget of {n} steps used up in run wr_{id}", "MAX_STEPS_EXCEEDED"),
    ('Parameter "{word}" had a value the site rejected: "{word}"', "PARAMETER_BINDING_ERROR"),
    ("LLM call failed with HTTP {n} (request {uuid})", "LLM_ERROR"),
    ("Unexpected error {uuid}", "UNKNOWN"),
]  # fmt: skip
WORDS = ["total", "invoice_no", "Acme Corp", "due date", "PO-77", "zip", "carrier"]


def reason_text(rng, template: str) -> str:
    return template.format(
        n=rng.randrange(1, 100_000),
        url=f"https://portal{rng.randrange(9)}.example.com/p/{rng.randrange(10**6)}",
        email=f"ops{rng.randrange(999)}@customer{rng.randrange(50)}.example",
        word=rng.choice(WORDS),
        ip=f"10.{rng.randrange(255)}.{rng.randrange(255)}.{rng.randrange(255)}",
        id=rng.randrange(10**17, 10**18),
        uuid="-".join(f"{rng.randrange(16**k):0{k}x}" for k in (8, 4, 4, 4, 12)),
    )


def categories_json(rng, main: str) -> list:
    second = rng.choice(CATEGORIES)
    return [
        {"category": second, "confidence_float": 0.31, "reasoning": "less likely"},
        {"category": main, "confidence_float": 0.88, "reasoning": "most likely"},
    ]


def ensure_data(n_runs: int, n_failed: int) -> dict:
    from console.runs.models import Run
    from console.teams.models import Team

    loaded = Run.objects.exclude(run_id__startswith="wr_retry_")  # not the retries' new runs
    have = loaded.count() if Team.objects.filter(slug=SLUG).exists() else -1
    if have == n_runs:
        print(f"reusing the database: it already holds {have:,} benchmark runs", flush=True)
        return {"load_s": None}
    if Run.objects.exists() or Team.objects.exists():
        sys.exit("the database holds other data: give an empty one")
    return load(n_runs, n_failed)


def load(n_runs: int, n_failed: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from console.runs.failures import failure_fields, first_failure_category
    from console.runs.models import Retry, Run, search_text_for
    from console.teams.models import Connection, Membership, Role, Team

    rng = random.Random(SEED)
    started = time.perf_counter()
    team = Team.objects.create(name="Bench inbox", slug=SLUG)
    other = Team.objects.create(name="Bench other", slug=OTHER_SLUG)
    conns = {}
    for t in (team, other):
        conn = Connection(team=t, label="Production", base_url="http://127.0.0.1:9")
        conn.set_api_key(f"sk-bench-{t.slug}-0123456789abcdef")
        conn.save()
        conns[t.pk] = conn
    member = get_user_model().objects.create_user(MEMBER, password=PASSWORD)
    Membership.objects.create(team=team, user=member, role=Role.OPERATOR)
    workflows = [(f"wpid_{rng.randrange(10**17, 10**18)}", f"Workflow {w:02d}") for w in range(30)]

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute("PRAGMA cache_size=-1000000")
    # Which rows fail: n_failed of the measured team's n_runs / 2.
    team_rows = n_runs // 2
    failed_rows = set(rng.sample(range(team_rows), n_failed))
    # A few templates per workflow, so there are a few hundred groups.
    by_workflow = {wpid: rng.sample(REASONS, 5) for wpid, _ in workflows}
    chunk = 50_000
    print(f"loading {n_runs:,} runs ({n_failed:,} failed) on {connection.vendor}…", flush=True)
    for start in range(0, n_runs, chunk):
        rows = []
        for i in range(start, min(start + chunk, n_runs)):
            mine = i < team_rows
            t = team if mine else other
            wpid, title = workflows[rng.randrange(len(workflows))]
            if mine and i in failed_rows:
                status = rng.choices(["failed", "terminated", "timed_out"], [85, 5, 10])[0]
                template, main = rng.choice(by_workflow[wpid])
                reason = reason_text(rng, template)
                category = categories_json(rng, main)
                # Spread over 30 days, a tenth in a burst in the last 6 hours.
                if rng.random() < 0.1:
                    created = NOW - timedelta(seconds=rng.uniform(0, 6 * 3600))
                else:
                    created = NOW - timedelta(seconds=rng.uniform(0, 30 * 86400))
            else:
                status = rng.choices(["completed", "running", "canceled"], [95, 3, 2])[0]
                reason, category = "", None
                created = NOW - timedelta(seconds=rng.uniform(0, 30 * 86400))
            run_id = f"wr_{(i * 982_451_653_117 + 314_159_265_358_979) % 10**18:018d}"
            rows.append(
                Run(
                    team_id=t.pk,
                    connection_id=conns[t.pk].pk,
                    run_id=run_id,
                    status=status,
                    workflow_permanent_id=wpid,
                    workflow_title=title,
                    failure_reason=reason,
                    created_at=created,
                    modified_at=created,
                    raw={"workflow_run_id": run_id, "failure_category": category},
                    search_text=search_text_for(run_id, wpid, title),
                    synced_at=created,
                    # As the store writes them.
                    **failure_fields(
                        status=status,
                        failure_reason=reason,
                        category=first_failure_category(category),
                        workflow=wpid,
                    ),
                )
            )
        with transaction.atomic():
            Run.objects.bulk_create(rows, batch_size=500)
        print(f"  {min(start + chunk, n_runs):>9,} runs  {time.perf_counter() - started:6.1f}s",
              flush=True)  # fmt: skip

    # Retries of one failed run in twenty, two in three of which completed.
    failed = list(
        Run.objects.filter(team=team).exclude(failure_group="").values_list("pk", "created_at")
    )
    retried = rng.sample(failed, len(failed) // 20)
    news, retries = [], []
    for n, (pk, created) in enumerate(retried):
        status = "completed" if rng.random() < 0.66 else "failed"
        news.append(
            Run(
                team_id=team.pk,
                connection_id=conns[team.pk].pk,
                run_id=f"wr_retry_{n}",
                status=status,
                failure_reason="",
                created_at=created + timedelta(minutes=10),
                retried_from_id=pk,
                raw={},
                **failure_fields(status=status, failure_reason="", category="", workflow=""),
            )
        )
    with transaction.atomic():
        made = Run.objects.bulk_create(news, batch_size=500)
        new_pks = dict(
            Run.objects.filter(run_id__startswith="wr_retry_").values_list("run_id", "pk")
        )
        for (pk, created), new in zip(retried, made, strict=True):
            retries.append(
                Retry(
                    run_id=pk,
                    number=1,
                    state="retried",
                    requested_at=created,
                    new_run_id=new_pks[new.run_id],
                )  # fmt: skip
            )
        Retry.objects.bulk_create(retries, batch_size=500)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE" if connection.vendor == "sqlite" else "VACUUM ANALYZE")
    return {"load_s": time.perf_counter() - started, "retries": len(retries)}


def two_teams_member(team, other):
    """A person in both teams, for the inbox across teams."""
    from django.contrib.auth import get_user_model

    from console.teams.models import Membership, Role

    user, _ = get_user_model().objects.get_or_create(username=ACROSS_MEMBER)
    Membership.objects.get_or_create(team=team, user=user, defaults={"role": Role.OPERATOR})
    Membership.objects.get_or_create(team=other, user=user, defaults={"role": Role.VIEWER})
    return user


def baseline(team) -> int:
    """Group the team's failed runs as without stored keys: read the raw
    columns and normalise each reason, per request."""
    from console.runs.failures import FAILED_STATUSES, first_failure_category
    from console.runs.failures import normalise_failure_reason as normalise
    from console.runs.models import Run

    groups: dict = {}
    rows = (
        Run.objects.filter(team=team, status__in=FAILED_STATUSES)
        .order_by()
        .values_list("failure_reason", "workflow_permanent_id", "raw", "created_at")
    )
    for reason, workflow, raw, created in rows.iterator(chunk_size=10_000):
        key = (first_failure_category((raw or {}).get("failure_category")), normalise(reason),
               workflow)  # fmt: skip
        count, first, last = groups.get(key, (0, created, created))
        groups[key] = (count + 1, min(first, created), max(last, created))
    return len(groups)


def timed(fn, reps: int) -> list[float]:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--failed", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--baseline-reps", type=int, default=5)
    parser.add_argument("--var-dir")
    parser.add_argument("--database-url")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    setup_django(var_dir=args.var_dir, database_url=args.database_url)

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from console.runs.inbox import failure_groups, team_failure_groups
    from console.runs.models import Run
    from console.teams.models import Team

    call_command("migrate", verbosity=0)
    load_info = ensure_data(args.runs, args.failed)
    team = Team.objects.get(slug=SLUG)
    client = Client(HTTP_HOST="localhost")
    client.force_login(get_user_model().objects.get(username=MEMBER))
    url = f"/t/{SLUG}/failures/"
    across = Client(HTTP_HOST="localhost")
    across.force_login(two_teams_member(team, Team.objects.get(slug=OTHER_SLUG)))

    if True:

        def page():
            response = client.get(url)
            assert response.status_code == 200, response.status_code

        page()  # warm up: connection, templates
        with CaptureQueriesContext(connection) as queries:
            page()
        inbox = team_failure_groups([team.pk])
        counted = failure_groups(Run.objects.filter(team=team))
        assert (inbox.total_groups, inbox.total_runs) == (counted.total_groups, counted.total_runs)

        def across_page():
            response = across.get("/failures/")
            assert response.status_code == 200, response.status_code

        across_page()
        with CaptureQueriesContext(connection) as across_queries:
            across_page()
        # Read now: captured_queries reads the log, which each request empties.
        across_query_count = len(across_queries.captured_queries)
        results = {
            "vendor": connection.vendor,
            "runs": args.runs,
            "failed": Run.objects.filter(team=team).exclude(failure_group="").count(),
            "groups": inbox.total_groups,
            "page_queries": len(queries.captured_queries),
            "load": load_info,
            "inbox_page": summary(timed(page, args.reps)),
            "across_page": summary(timed(across_page, args.reps)),
            "across_queries": across_query_count,
            "inbox_service": summary(timed(lambda: team_failure_groups([team.pk]), args.reps)),
            "inbox_counting": summary(
                timed(lambda: failure_groups(Run.objects.filter(team=team)), args.reps)
            ),
        }
        groups = baseline(team)
        results["baseline_groups"] = groups
        results["baseline"] = summary(timed(lambda: baseline(team), args.baseline_reps))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return
    print(f"\n{results['vendor']}: {results['runs']:,} runs, {results['failed']:,} failed in "
          f"{results['groups']} groups (baseline finds {groups}); page: "
          f"{results['page_queries']} queries")  # fmt: skip
    print(f"  across teams: {results['across_queries']} queries")
    for name in ("inbox_page", "across_page", "inbox_service", "inbox_counting", "baseline"):
        s = results[name]
        print(f"  {name:14} median {s['median']:8.1f} ms  p95 {s['p95']:8.1f} ms  "
              f"min {s['min']:8.1f} ms  (n={s['n']})")  # fmt: skip


if __name__ == "__main__":
    main()
