"""The benchmarks under bench/ still run, on a tiny scale.

They are scripts, not tests, and two of them had quietly stopped working
after a change to how runs are cached; nothing here times anything, it
only checks that each one gets to its results and reports no duplicates.
"""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, *args: str, tmp_path) -> str:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        # Each benchmark makes its own throw-away SQLite database.
        "CONSOLE_VAR_DIR": str(tmp_path / "var"),
    }
    # In its own process group: a benchmark that runs out of time is stopped
    # with the workers and servers it started, not leaving them behind.
    bench = subprocess.Popen(  # noqa: S603 (our own interpreter and script)
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(bench.pid, signal.SIGKILL)
        stdout, stderr = bench.communicate()
        pytest.fail(f"{script} ran out of time:\n{stdout[-3000:]}{stderr[-3000:]}")
    assert bench.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout


def test_runs_page_benchmark_runs(tmp_path):
    out = run_bench(
        "runs_page.py",
        *("--runs", "3000", "--reps", "2", "--warmup", "1", "--deep", "3"),
        *("--var-dir", str(tmp_path / "runs-page")),
        tmp_path=tmp_path,
    )
    for scenario in (
        "filtered, page 1",
        "filtered, page 1, no card cached",
        "filtered, deep",
        "search title",
        "search run id",
    ):
        assert scenario in out
    assert "admin÷console" in out


def test_retry_overhead_benchmark_runs(tmp_path):
    out = run_bench(
        "retry_overhead.py",
        *("--runs", "5", "--warmup", "1", "--latency-ms", "5"),
        tmp_path=tmp_path,
    )
    assert "overhead median" in out and "5ms" in out


def test_sync_benchmark_runs(tmp_path):
    out = run_bench("sync.py", "--runs", "1000", "--no-tracemalloc", tmp_path=tmp_path)
    assert "full sync" in out


def test_bulk_retry_benchmark_runs_and_retries_each_run_once(tmp_path):
    out = run_bench(
        "bulk_retry.py",
        *("--runs", "30", "--latency-ms", "5", "--rate-limit", "1000", "--per-second", "200"),
        # No canary: the simulator fails some retries again at random, and a
        # canary whose retries fail again pauses the job (not what this is about).
        *("--canary-over", "1000"),
        tmp_path=tmp_path,
    )
    assert "exactly once / never / duplicates       30 / 0 / 0" in out


def test_failure_inbox_benchmark_runs_and_finds_the_groups_the_baseline_finds(tmp_path):
    out = run_bench(
        "failure_inbox.py",
        *("--runs", "2000", "--failed", "300", "--reps", "2", "--baseline-reps", "1"),
        *("--var-dir", str(tmp_path / "inbox")),
        tmp_path=tmp_path,
    )
    found = re.search(r"in (\d+) groups \(baseline finds (\d+)\)", out)
    assert found and found.group(1) == found.group(2), out
    for name in ("inbox_page", "across_page", "inbox_service", "baseline"):
        assert name in out


def test_load_benchmark_runs_both_phases_without_errors(tmp_path):
    out = run_bench(
        "load.py",
        *("--sessions", "2", "--seconds", "3", "--runs", "100", "--json"),
        *("--var-dir", str(tmp_path / "load")),
        tmp_path=tmp_path,
    )
    phases = {p["phase"]: p for p in json.loads(out[out.index("{") :])["phases"]}
    assert set(phases) == {"console", "admin"}
    assert phases["console"]["by_kind"]["runs page"]["n"] >= 2
    assert phases["admin"]["by_kind"]["admin changelist"]["n"] >= 2
    assert phases["console"]["errors"] == phases["admin"]["errors"] == 0
