"""The retry view's own overhead, with Skyvern's time taken out.

Starts the Skyvern simulator in this process with an injected latency on
every API answer, caches N failed runs in a throw-away SQLite database,
then POSTs the htmx retry (as an operator, through Django's test Client)
for each run once and reports the view time minus the injected latency.

The same is done with no injected latency as a control: the difference
between the two overheads is how exactly the latency is added (sleep
granularity), the remaining overhead is the console's work plus one HTTP
round trip to the simulator over loopback.

  .venv/bin/python bench/retry_overhead.py            # 200 retries, latency 50 ms
  .venv/bin/python bench/retry_overhead.py --runs 50 --latency-ms 100
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import machine_info, setup_django, summary  # noqa: E402

API_KEY = "sk-bench-retry-0123456789abcdef-R3TY"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="retries timed (one per run)")
    parser.add_argument("--latency-ms", type=int, default=50, help="injected Skyvern latency")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-control", action="store_true", help="skip the 0 ms control run")
    parser.add_argument("--var-dir", help="SQLite var dir (default: a new temporary one)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    tmp = None
    if not args.var_dir:
        tmp = tempfile.TemporaryDirectory(prefix="bench-retry-")
        args.var_dir = tmp.name
    os.environ["SKYVERN_ALLOW_LOOPBACK"] = "1"  # the simulator listens on loopback
    setup_django(var_dir=args.var_dir)

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from console.runs.models import Run
    from console.runs.store import run_fields_from_detail
    from console.simulator import SimulatorServer
    from console.skyvern import SkyvernClient
    from console.teams.models import Connection, Membership, Role, Team

    call_command("migrate", verbosity=0)

    server = SimulatorServer(host="127.0.0.1", port=0)
    server.start()
    try:
        server.state.add_org(API_KEY, name="Bench retry org")
        team = Team.objects.create(name="Bench retry team", slug="bench-retry")
        conn = Connection(team=team, label="Simulator", base_url=server.url)
        conn.set_api_key(API_KEY)
        conn.save()
        operator = get_user_model().objects.create_user("bench-operator", password="x-not-used")
        Membership.objects.create(team=team, user=operator, role=Role.OPERATOR)
        client = Client(HTTP_HOST="localhost")
        client.force_login(operator)
        skyvern = SkyvernClient(server.url, API_KEY)

        def cache_failed_runs(n: int) -> list[str]:
            run_ids = []
            for i in range(n):
                run_id = server.state.add_run(
                    API_KEY, status="failed", workflow_title=f"Bench workflow {i % 30}"
                )
                detail = skyvern.get_run(run_id)
                Run.objects.create(
                    team=team,
                    connection=conn,
                    run_id=run_id,
                    **run_fields_from_detail(detail),
                )
                run_ids.append(run_id)
            return run_ids

        def retry_all(run_ids: list[str]) -> list[float]:
            samples = []
            for run_id in run_ids:
                url = f"/t/{team.slug}/runs/{run_id}/retry/"
                t0 = time.perf_counter()
                response = client.post(url, {"seen_retries": "0"}, HTTP_HX_REQUEST="true")
                samples.append(time.perf_counter() - t0)
                html = response.content.decode()
                assert response.status_code == 200, (run_id, response.status_code)
                # The retried card and the new run's card: the retry went through.
                assert html.count('class="run-card') == 2, html[:500]
            return samples

        results = {}
        plan = [("control", 0)] if not args.no_control else []
        plan.append(("injected", args.latency_ms))
        for name, latency in plan:
            server.state.configure(latency_ms=0)
            run_ids = cache_failed_runs(args.runs + args.warmup)
            server.state.configure(latency_ms=latency)
            retry_all(run_ids[: args.warmup])
            samples = retry_all(run_ids[args.warmup :])
            overhead = [s - latency / 1000 for s in samples]
            results[name] = {
                "latency_ms": latency,
                "view": summary(samples),
                "overhead": summary(overhead),
            }
    finally:
        server.stop()
        if tmp is not None:
            tmp.cleanup()

    print(f"machine: {json.dumps(machine_info())}")
    print(
        f"{args.runs} retries per row (after {args.warmup} warm-up), SQLite, htmx POST\n"
    )
    header = (
        f"{'injected latency':>16} {'view median':>12} {'view p95':>9} "
        f"{'overhead median':>16} {'overhead p95':>13}"
    )
    print(header)
    print("-" * len(header))
    for r in results.values():
        print(
            f"{r['latency_ms']:>14}ms {r['view']['median']:>10.1f}ms {r['view']['p95']:>7.1f}ms "
            f"{r['overhead']['median']:>14.1f}ms {r['overhead']['p95']:>11.1f}ms"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
