"""Run lifecycle, retry counting, seeding, persistence, the control API, the
command line, the app page and the media files."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from console.simulator import SimulatorServer, SimulatorState
from console.simulator.render import Links
from console.simulator.seed import ALL_STATUSES, CATEGORIES, WORKFLOWS, generate_runs
from console.simulator.state import utcnow

from .conftest import KEY, OTHER_KEY, REPO, all_runs, assert_valid, call
from .gif import decode_frames

ANCHOR = datetime(2026, 11, 28, 9, 0, 0)


# --- lifecycle ----------------------------------------------------------------


def test_lifecycle_is_derived_from_the_time_since_creation(org):
    org.state.configure(queued_after=10, running_after=20, finished_after=30, failure_rate=0.0)
    original = org.state.add_run(KEY, status="failed")
    new_id = call(org, "POST", f"/v1/agents/runs/{original}/retry").json()["run_id"]
    stored = org.state._runs[new_id]
    created = stored.created_at
    seen = {}
    for seconds in (0, 9.9, 10, 19.9, 20, 25, 29.9, 30, 3600):
        view = stored.view(created + timedelta(seconds=seconds))
        seen[seconds] = view.status
        if view.status in ("created", "queued"):
            assert view.started_at is None and not view.recording_available
        if view.status == "running":
            assert view.started_at == created + timedelta(seconds=20)
            assert view.recording_available and view.finished_at is None
        if view.status == "completed":
            assert view.finished_at == created + timedelta(seconds=30)
            assert view.failure_reason is None and view.output is not None
    assert list(seen.values()) == [
        "created", "created", "queued", "queued", "running", "running", "running",
        "completed", "completed",
    ]  # fmt: skip


def test_a_retried_run_progresses_over_http(org):
    org.state.configure(queued_after=0.05, running_after=0.15, finished_after=0.3, failure_rate=1)
    original = org.state.add_run(KEY, status="failed")
    first = call(org, "POST", f"/v1/agents/runs/{original}/retry").json()
    new_id = first["run_id"]
    statuses = [first["status"]]
    deadline = time.monotonic() + 3
    body = first
    while body["status"] != "failed" and time.monotonic() < deadline:
        time.sleep(0.03)
        body = call(org, "GET", f"/v1/runs/{new_id}").json()
        assert_valid("WorkflowRunResponse", body)
        if body["status"] != statuses[-1]:
            statuses.append(body["status"])
        if body["status"] == "running":
            assert body["recording_url"] and body["started_at"] and not body["finished_at"]
    order = ["created", "queued", "running", "failed"]
    assert statuses[-1] == "failed"
    assert statuses == sorted(statuses, key=order.index)
    assert body["finished_at"] and body["recording_url"]
    assert body["failure_reason"] and body["errors"][0]["error_code"]
    listed = next(r for r in all_runs(org) if r["workflow_run_id"] == new_id)
    assert listed["status"] == "failed"
    assert listed["failure_reason"] == body["failure_reason"]


def test_outcome_follows_the_failure_rate_deterministically(org):
    original = org.state.add_run(KEY, status="failed")
    org.state.configure(queued_after=0, running_after=0, finished_after=0, failure_rate=0.0)
    done = [org.state.retry(KEY, original) for _ in range(10)]
    assert {run.status for run in done} == {"completed"}
    org.state.configure(failure_rate=1.0)
    assert {org.state.retry(KEY, original).status for _ in range(10)} == {"failed"}
    org.state.configure(failure_rate=0.5)
    outcomes = Counter(org.state.retry(KEY, original).status for _ in range(200))
    assert 60 < outcomes["failed"] < 140
    # an outcome belongs to the run: asking again gives the same answer
    run = org.state.retry(KEY, original)
    assert org.state.find_run(run.run_id).status == run.status


def test_set_status_forces_a_run_and_ends_its_lifecycle(org):
    original = org.state.add_run(KEY, status="failed")
    new_id = org.state.retry(KEY, original).run_id
    org.state.set_status(new_id, "running")
    assert org.state.find_run(new_id).status == "running"
    org.state.set_status(new_id, "failed", failure_reason="Portal down <b>again</b>")
    run = org.state.find_run(new_id)
    assert (run.status, run.failure_reason) == ("failed", "Portal down <b>again</b>")
    assert run.finished_at is not None and run.errors
    org.state.set_status(new_id, "completed")
    run = org.state.find_run(new_id)
    assert run.failure_reason is None and run.errors == [] and run.output is not None
    with pytest.raises(KeyError):
        org.state.set_status("wr_missing", "failed")
    with pytest.raises(ValueError):
        org.state.set_status(new_id, "exploded")


# --- retry counting -------------------------------------------------------------


def test_retry_counts_every_created_run_per_original(org):
    a = org.state.add_run(KEY, status="failed")
    b = org.state.add_run(KEY, status="completed")
    busy = org.state.add_run(KEY, status="running")
    for _ in range(3):
        assert call(org, "POST", f"/v1/agents/runs/{a}/retry").status_code == 200
    new_b = call(org, "POST", f"/v1/agents/runs/{b}/retry").json()["run_id"]
    org.state.set_status(new_b, "failed")
    call(org, "POST", f"/v1/agents/runs/{new_b}/retry")
    call(org, "POST", f"/v1/agents/runs/{busy}/retry")  # 400
    call(org, "POST", "/v1/agents/runs/wr_404/retry")  # 404
    call(org, "POST", f"/v1/agents/runs/{a}/retry", key=OTHER_KEY)  # 404
    assert org.state.retry_count(a) == 3
    assert org.state.retry_count(b) == 1
    assert org.state.retry_count(new_b) == 1
    assert org.state.retry_count(busy) == 0
    assert org.state.retry_counts() == {a: 3, b: 1, new_b: 1}
    assert requests.get(org.url + "/_sim/retries", timeout=5).json() == {a: 3, b: 1, new_b: 1}


# --- seeding --------------------------------------------------------------------


def test_seeding_is_deterministic():
    assert generate_runs("acme", 50, ANCHOR) == generate_runs("acme", 50, ANCHOR)
    one, two = SimulatorState(), SimulatorState()
    ids_one = one.add_org("key-1", seed="acme", seed_runs=40)
    ids_two = two.add_org("key-2", seed="acme", seed_runs=40)
    assert ids_one == ids_two
    for run_id in ids_one:
        a, b = one.find_run(run_id), two.find_run(run_id)
        assert (a.workflow_title, a.status, a.parameters, a.failure_reason, a.errors) == (
            b.workflow_title, b.status, b.parameters, b.failure_reason, b.errors,
        )  # fmt: skip
    other = [r.run_id for r in generate_runs("globex", 40, ANCHOR)]
    assert not set(other) & set(ids_one)
    # ids do not depend on the day
    later = [r.run_id for r in generate_runs("acme", 40, ANCHOR + timedelta(days=3))]
    assert sorted(later) == sorted(ids_one)


def test_seeded_history_is_varied_and_realistic():
    runs = generate_runs("demo", 300, ANCHOR)
    statuses = Counter(run.status for run in runs)
    assert set(statuses) == set(ALL_STATUSES)
    assert statuses["completed"] + statuses["failed"] > 0.75 * len(runs)
    assert sum(statuses[s] for s in ("created", "queued", "running", "paused")) <= 0.08 * len(runs)
    assert {run.workflow_title for run in runs} == {w.title for w in WORKFLOWS}
    assert len(WORKFLOWS) == 8
    oldest = min(run.created_at for run in runs)
    assert ANCHOR - timedelta(days=31) < oldest < ANCHOR - timedelta(days=25)
    for run in runs:
        assert re.fullmatch(r"wr_\d{18}", run.run_id)
        if run.status in ("created", "queued", "running"):
            assert ANCHOR - run.created_at < timedelta(hours=1)
        if run.webhook_failure_reason:  # the automation worked, its webhook did not
            assert run.status == "failed" and run.output and run.failure_reason
            assert not run.errors and run.failure_category is None
        elif run.status in ("failed", "terminated", "timed_out"):
            assert run.failure_reason and run.errors[0]["error_code"]
            assert run.failure_category[0]["category"] in CATEGORIES
        if run.status == "completed":
            assert run.output and not run.failure_reason
        if run.finished_at:
            assert run.created_at <= run.queued_at <= run.finished_at <= ANCHOR
    codes = {e["error_code"] for run in runs for e in run.errors}
    assert {"LOGIN_FAILED", "CAPTCHA_DETECTED", "MFA_CODE_EXPIRED", "INVALID_INPUT"} <= codes
    assert any("<script>alert(1)</script>" in (run.failure_reason or "") for run in runs)


def test_every_status_with_as_few_as_nine_runs():
    assert {run.status for run in generate_runs("tiny", 9, ANCHOR)} == set(ALL_STATUSES)
    assert len(generate_runs("none", 0, ANCHOR)) == 0


def test_add_org_is_idempotent_and_refuses_a_seed_of_another_org(simulator):
    ids = simulator.state.add_org(KEY, name="Acme", seed="acme", seed_runs=20)
    assert simulator.state.add_org(KEY, seed="acme", seed_runs=20) == ids
    assert len(simulator.state.list_runs(KEY, page_size=100)) == 20
    with pytest.raises(ValueError):
        simulator.state.add_org(OTHER_KEY, seed="acme", seed_runs=20)
    with pytest.raises(ValueError):
        simulator.state.add_org("")
    with pytest.raises(ValueError):
        simulator.state.add_run("sk-nobody", status="failed")


def test_add_run_keeps_what_it_is_told(org):
    when = datetime(2026, 11, 20, 10, 30, 0)
    run_id = org.state.add_run(
        KEY,
        status="failed",
        workflow_title="Submit customs declaration",
        workflow_permanent_id="wpid_777",
        failure_reason="Login failed for <admin>",
        created_at=when,
        run_id="wr_555",
    )
    assert run_id == "wr_555"
    body = call(org, "GET", "/v1/runs/wr_555").json()
    assert body["failure_reason"] == "Login failed for <admin>"
    assert body["run_request"]["workflow_id"] == "wpid_777"
    assert body["run_request"]["title"] == "Submit customs declaration"
    assert body["created_at"] == "2026-11-20T10:30:00.000000"
    with pytest.raises(ValueError):
        org.state.add_run(KEY, run_id="wr_555")
    with pytest.raises(ValueError):
        org.state.add_run(KEY, status="sleeping")


# --- persistence ---------------------------------------------------------------------


def test_state_survives_a_restart(tmp_path):
    path = tmp_path / "var" / "simulator.json"
    first = SimulatorServer(port=0, state_file=path).start()
    try:
        ids = first.state.add_org(KEY, name="Acme", seed="acme", seed_runs=15)
        failed = next(i for i in ids if first.state.find_run(i).status == "failed")
        first.state.configure(queued_after=0, running_after=0, finished_after=3600)
        new = call(first, "POST", f"/v1/agents/runs/{failed}/retry").json()
        before = all_runs(first)
    finally:
        first.stop()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in path.parent.iterdir()] == ["simulator.json"]  # no temp files
    json.loads(path.read_text())

    second = SimulatorServer(port=0, state_file=path).start()
    try:
        assert second.state.retry_count(failed) == 1
        after = all_runs(second)
        assert [r["workflow_run_id"] for r in after] == [r["workflow_run_id"] for r in before]
        assert after[0]["workflow_run_id"] == new["run_id"]
        assert after[0]["status"] == "running"  # its lifecycle goes on
        assert second.state.config()["finished_after"] == 25.0  # knobs are not kept
        second.state.reset()
    finally:
        second.stop()
    assert json.loads(path.read_text())["runs"] == []


def test_a_broken_state_file_is_an_error_not_a_wipe(tmp_path):
    path = tmp_path / "simulator.json"
    path.write_text("{not json")
    with pytest.raises(RuntimeError, match="cannot read"):
        SimulatorState(path)
    assert path.read_text() == "{not json"


# --- control API -----------------------------------------------------------------------


def test_control_api_drives_everything(simulator):
    url = simulator.url + "/_sim"
    created = requests.post(
        url + "/orgs",
        json={"api_key": KEY, "name": "Acme", "seed": "acme", "seed_runs": 12},
        timeout=5,
    )
    assert created.status_code == 201
    run_ids = created.json()["run_ids"]
    assert len(run_ids) == 12 and created.json()["organization_id"].startswith("o_")
    added = requests.post(url + "/runs", json={"api_key": KEY, "status": "running"}, timeout=5)
    run_id = added.json()["run_id"]
    forced = requests.post(
        f"{url}/runs/{run_id}/status", json={"status": "failed", "failure_reason": "x"}, timeout=5
    )
    assert forced.json() == {"run_id": run_id, "status": "failed"}
    assert simulator.state.find_run(run_id).failure_reason == "x"
    missing = requests.post(f"{url}/runs/wr_0/status", json={"status": "failed"}, timeout=5)
    assert missing.status_code == 404
    assert requests.post(url + "/orgs", json={}, timeout=5).status_code == 400
    assert requests.post(url + "/orgs", data="{", timeout=5).status_code == 400
    assert requests.get(url + "/nothing", timeout=5).status_code == 404
    assert requests.post(url + "/reset", timeout=5).json() == {"ok": True}
    assert simulator.state.find_run(run_id) is None


# --- command line ------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_command_line_prints_its_url_and_stops_cleanly(tmp_path, sig):
    state_file = tmp_path / "sim.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "console.simulator",
            "--port",
            "0",
            "--state-file",
            str(state_file),
            "--org",
            f"{KEY}:10:acme",
        ],  # fmt: skip
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"Skyvern simulator listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        rows = requests.get(
            match.group(1) + "/v1/agents/runs", headers={"x-api-key": KEY}, timeout=5
        ).json()
        assert len(rows) == 10
        process.send_signal(sig)
        assert process.wait(timeout=5) == 0
        assert process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
    assert len(json.loads(state_file.read_text())["runs"]) == 10


# --- app page and media ----------------------------------------------------------------------


def test_app_page_escapes_everything(org):
    run_id = org.state.add_run(
        KEY,
        status="failed",
        workflow_title='<img src=x onerror="alert(2)">',
        failure_reason="<script>alert(1)</script> & more",
        parameters={"note": "</pre><script>alert(3)</script>"},
    )
    response = requests.get(f"{org.url}/runs/{run_id}", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert requests.get(f"{org.url}/runs/wr_404", timeout=5).status_code == 404


def test_recording_is_a_real_animated_gif_behind_a_signed_url(org):
    run_id = org.state.add_run(KEY, status="failed")
    body = call(org, "GET", f"/v1/runs/{run_id}").json()
    response = requests.get(body["recording_url"], timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    width, height, frames = decode_frames(response.content)
    assert (width, height) == (160, 90) and len(frames) > 5
    assert len(set(frames)) > 1  # it moves
    assert (
        f'src="{body["recording_url"].replace("&", "&amp;")}"'
        in requests.get(body["app_url"], timeout=5).text
    )

    url = urlsplit(body["recording_url"])
    query = parse_qs(url.query)
    tampered = f"{org.url}{url.path}?expires={query['expires'][0]}&signature={'0' * 32}"
    assert requests.get(tampered, timeout=5).status_code == 403
    links = Links(org.url, org.url, org.state.secret)
    past = int(time.time()) - 10
    expired = f"{org.url}{url.path}?expires={past}&signature={links.signature(run_id, past)}"
    response = requests.get(expired, timeout=5)
    assert (response.status_code, response.text) == (403, "Request has expired")


def test_no_recording_before_the_run_starts(org):
    run_id = org.state.add_run(KEY, status="queued")
    body = call(org, "GET", f"/v1/runs/{run_id}").json()
    assert body["recording_url"] is None and body["screenshot_urls"] == []
    links = Links(org.url, org.url, org.state.secret)
    expires = int(time.time()) + 60
    url = f"{org.url}/recordings/{run_id}.gif?expires={expires}&signature="
    assert requests.get(url + links.signature(run_id, expires), timeout=5).status_code == 404


def test_screenshots_and_downloaded_files_are_served(org):
    run_id = org.state.add_run(KEY, status="completed", workflow_title="Download carrier invoices")
    body = call(org, "GET", f"/v1/runs/{run_id}").json()
    assert body["screenshot_urls"]
    shot = requests.get(body["screenshot_urls"][0], timeout=5)
    assert shot.headers["content-type"] == "image/png"
    assert shot.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert body["downloaded_files"]
    for item in body["downloaded_files"]:
        content = requests.get(item["url"], timeout=5).content
        assert content.startswith(b"%PDF-1.4") and content.rstrip().endswith(b"%%EOF")
        assert hashlib.sha256(content).hexdigest() == item["checksum"]
        assert len(content) == item["file_size"]


def test_recordings_of_old_runs_are_archived(simulator):
    simulator.state.add_org(KEY, seed="archive", seed_runs=80)
    now = utcnow()
    for run in simulator.state.list_runs(KEY, page_size=100):
        if run.started_at and now - run.created_at > timedelta(days=22):
            body = call(simulator, "GET", f"/v1/runs/{run.run_id}").json()
            assert body["recording_archived"] is True and body["recording_url"] is None
            return
    pytest.fail("no old started run in the seeded history")


def test_recording_url_ttl_sets_the_expiry(org):
    run_id = org.state.add_run(KEY, status="completed")
    org.state.configure(recording_url_ttl=120)
    url = call(org, "GET", f"/v1/runs/{run_id}").json()["recording_url"]
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    assert time.time() + 120 <= expires <= time.time() + 181
