"""The simulator speaks Skyvern: its real HTTP answers validate against Skyvern's
openapi.json and reproduce every observed behaviour of the shared README."""

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from console.simulator import SimulatorServer

from .conftest import (
    KEY,
    OTHER_KEY,
    ROOT_SCHEMAS,
    SHARED_OPENAPI,
    VENDORED,
    all_runs,
    assert_valid,
    call,
    schema_closure,
)

NAIVE_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")
TERMINAL = ("completed", "failed", "terminated", "canceled", "timed_out")
NON_TERMINAL = ("created", "queued", "running", "paused")


def test_vendored_schemas_match_shared():
    if not SHARED_OPENAPI.exists():
        pytest.skip("no shared openapi.json beside the repository")
    shared = json.loads(SHARED_OPENAPI.read_text())["components"]["schemas"]
    vendored = json.loads(VENDORED.read_text())["components"]["schemas"]
    assert vendored == schema_closure(shared, ROOT_SCHEMAS)


# --- bodies against the schemas ---------------------------------------------------


def test_list_answers_an_array_of_workflow_runs(seeded):
    rows = all_runs(seeded)
    assert isinstance(rows, list) and len(rows) == 60
    for row in rows:
        assert_valid("WorkflowRun", row)
        assert "app_url" not in row and "recording_url" not in row
        # fields newer than openapi.json, as real Skyvern sends them
        assert "run_tags" in row and "workflow_version" in row
        assert row["attempt"] == len(row["attempts"])
    # Skyvern's own retries and webhook-only failures are in the seed too
    assert any(row["attempt"] > 1 for row in rows)
    assert any(row["retry_pending"] for row in rows)
    assert any(row["webhook_failure_reason"] for row in rows)


def test_workflow_list_answers_an_array_of_workflow_runs(seeded):
    wpid = all_runs(seeded)[0]["workflow_permanent_id"]
    response = call(seeded, "GET", f"/v1/agents/{wpid}/runs", params={"page_size": 100})
    assert response.status_code == 200
    rows = response.json()
    assert rows and all(row["workflow_permanent_id"] == wpid for row in rows)
    for row in rows:
        assert_valid("WorkflowRun", row)


@pytest.mark.parametrize("status", TERMINAL + NON_TERMINAL)
def test_get_run_answers_a_workflow_run_response_in_every_status(seeded, status):
    run = next(r for r in all_runs(seeded) if r["status"] == status)
    response = call(seeded, "GET", f"/v1/runs/{run['workflow_run_id']}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert_valid("WorkflowRunResponse", body)
    assert body["run_id"] == run["workflow_run_id"]
    assert body["run_type"] == "workflow_run"
    assert body["status"] == status
    assert body["app_url"] == f"{seeded.url}/runs/{run['workflow_run_id']}"
    assert body["run_request"]["workflow_id"] == run["workflow_permanent_id"]
    assert body["run_request"]["title"] == run["workflow_title"]
    assert isinstance(body["run_request"]["parameters"], dict)
    assert body["workflow_permanent_id"] == run["workflow_permanent_id"]  # newer field
    if status in ("created", "queued"):
        assert body["recording_url"] is None and body["started_at"] is None
    if status in ("failed", "terminated", "timed_out") and not run["webhook_failure_reason"]:
        assert body["failure_reason"]
        assert body["errors"] and all(e["error_code"] for e in body["errors"])


def test_retry_answers_the_new_run(seeded):
    original = next(r for r in all_runs(seeded) if r["status"] == "failed")
    detail = call(seeded, "GET", f"/v1/runs/{original['workflow_run_id']}").json()
    response = call(seeded, "POST", f"/v1/agents/runs/{original['workflow_run_id']}/retry")
    assert response.status_code == 200
    body = response.json()
    assert_valid("WorkflowRunResponse", body)
    assert re.fullmatch(r"wr_\d+", body["run_id"])
    assert body["run_id"] != original["workflow_run_id"]
    assert body["status"] == "created"
    assert body["recording_url"] is None
    assert body["queued_at"] is None and body["started_at"] is None
    assert body["finished_at"] is None and body["failure_reason"] is None
    assert body["app_url"] == f"{seeded.url}/runs/{body['run_id']}"
    assert body["run_request"] == detail["run_request"]
    # and it is a real run now, listed first, of the same workflow; like Skyvern
    # 1.0.56 the list row has the lineage key but leaves it null for API retries
    rows = all_runs(seeded)
    assert rows[0]["workflow_run_id"] == body["run_id"]
    assert "retried_from_workflow_run_id" in rows[0]
    assert rows[0]["retried_from_workflow_run_id"] is None
    assert rows[0]["workflow_permanent_id"] == original["workflow_permanent_id"]


def test_a_json_body_on_the_retry_is_ignored(org):
    run_id = org.state.add_run(KEY, status="failed", parameters={"carrier": "MSC"})
    response = call(
        org,
        "POST",
        f"/v1/agents/runs/{run_id}/retry",
        json={"parameters": {"carrier": "XPO"}, "webhook_url": "https://evil.example/"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["run_request"]["parameters"] == {"carrier": "MSC"}
    assert body["run_request"]["webhook_url"] is None


def test_linking_retries_is_an_explicit_kinder_option(seeded):
    seeded.state.configure(link_retries=True)
    original = next(r for r in all_runs(seeded) if r["status"] == "failed")
    body = call(seeded, "POST", f"/v1/agents/runs/{original['workflow_run_id']}/retry").json()
    row = next(r for r in all_runs(seeded) if r["workflow_run_id"] == body["run_id"])
    assert row["retried_from_workflow_run_id"] == original["workflow_run_id"]


def test_app_url_uses_the_configured_app_host():
    server = SimulatorServer(port=0, app_host="http://localhost:8080/")
    server.start()
    try:
        server.state.add_org(KEY)
        run_id = server.state.add_run(KEY, status="completed")
        response = call(server, "POST", f"/v1/agents/runs/{run_id}/retry")
        new_id = response.json()["run_id"]
        assert response.json()["app_url"] == f"http://localhost:8080/runs/{new_id}"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("path", "params", "where"),
    [
        ("/v1/agents/runs", {"page": "0"}, ["query", "page"]),
        ("/v1/agents/runs", {"page": "abc"}, ["query", "page"]),
        ("/v1/agents/runs", {"page_size": "0"}, ["query", "page_size"]),
        ("/v1/agents/runs", {"status": ["failed", "bogus"]}, ["query", "status", 1]),
        ("/v1/agents/runs", {"search_key": "x" * 501}, ["query", "search_key"]),
        (
            "/v1/agents/wpid_1/runs",
            {"created_at_start": "yesterday"},
            ["query", "created_at_start"],
        ),
    ],
)
def test_invalid_queries_answer_422_http_validation_error(org, path, params, where):
    response = call(org, "GET", path, params=params)
    assert response.status_code == 422
    body = response.json()
    assert_valid("HTTPValidationError", body)
    assert [item["loc"] for item in body["detail"]] == [where]


def test_all_query_problems_are_reported_together(org):
    response = call(org, "GET", "/v1/agents/runs", params={"page": "0", "status": "nope"})
    assert response.status_code == 422
    assert len(response.json()["detail"]) == 2


def test_bad_max_steps_header_answers_422(org):
    run_id = org.state.add_run(KEY, status="failed")
    response = call(
        org, "POST", f"/v1/agents/runs/{run_id}/retry", headers={"x-max-steps-override": "lots"}
    )
    assert response.status_code == 422
    assert_valid("HTTPValidationError", response.json())
    assert response.json()["detail"][0]["loc"] == ["header", "x-max-steps-override"]
    assert org.state.retry_count(run_id) == 0


def test_max_steps_header_is_accepted(org):
    run_id = org.state.add_run(KEY, status="failed")
    response = call(
        org, "POST", f"/v1/agents/runs/{run_id}/retry", headers={"x-max-steps-override": "7"}
    )
    assert response.status_code == 200
    assert org.state.find_run(response.json()["run_id"]).max_steps_override == 7


def test_retry_webhook_answers_a_replay(org):
    run_id = org.state.add_run(KEY, status="completed", webhook_url="https://hooks.example.com/in")
    response = call(org, "POST", f"/v1/runs/{run_id}/retry_webhook")
    assert response.status_code == 200
    body = response.json()
    assert_valid("RunWebhookReplayResponse", body)
    assert body["target_webhook_url"] == "https://hooks.example.com/in"
    assert_valid("WorkflowRunResponse", json.loads(body["payload"]))
    expected = hmac.new(KEY.encode(), body["payload"].encode(), hashlib.sha256).hexdigest()
    assert body["headers"]["x-skyvern-signature"] == expected
    assert call(org, "POST", "/v1/runs/wr_404/retry_webhook").status_code == 404


# --- observed behaviour -----------------------------------------------------------

ENDPOINTS = [
    ("GET", "/v1/agents/runs"),
    ("GET", "/v1/agents/wpid_1/runs"),
    ("GET", "/v1/runs"),
    ("GET", "/v1/runs/{run}"),
    ("POST", "/v1/agents/runs/{run}/retry"),
    ("POST", "/v1/runs/{run}/cancel"),
    ("POST", "/v1/runs/{run}/retry_webhook"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("key", [None, "", "sk-wrong", KEY + "x"])
def test_missing_or_wrong_key_answers_403(org, method, path, key):
    run_id = org.state.add_run(KEY, status="failed")
    response = call(org, method, path.format(run=run_id), key=key)
    assert response.status_code == 403
    assert response.json() == {"detail": "Could not validate credentials"}
    assert org.state.retry_count(run_id) == 0


def test_unknown_run_answers_404(org):
    response = call(org, "GET", "/v1/runs/wr_1234567890")
    assert (response.status_code, response.json()) == (404, {"detail": "Task run not found"})
    response = call(org, "POST", "/v1/agents/runs/wr_1234567890/retry")
    assert response.status_code == 404
    assert response.json() == {"detail": "Workflow run not found wr_1234567890"}
    response = call(org, "POST", "/v1/runs/wr_1234567890/cancel")
    assert response.status_code == 404


def test_another_organisations_run_answers_404_like_an_unknown_one(org):
    theirs = org.state.add_run(OTHER_KEY, status="failed")
    unknown = "wr_1234567890"
    for method, template in ENDPOINTS[3:]:
        mine = call(org, method, template.format(run=theirs))
        missing = call(org, method, template.format(run=unknown))
        assert mine.status_code == missing.status_code == 404
        assert mine.json()["detail"] == missing.json()["detail"].replace(unknown, theirs)
    assert theirs not in json.dumps(all_runs(org))
    assert org.state.retry_count(theirs) == 0
    assert org.state.find_run(theirs).status == "failed"
    # and the owner still sees it
    assert call(org, "GET", f"/v1/runs/{theirs}", key=OTHER_KEY).status_code == 200


@pytest.mark.parametrize("status", NON_TERMINAL)
def test_retrying_a_non_terminal_run_answers_400(org, status):
    run_id = org.state.add_run(KEY, status=status)
    response = call(org, "POST", f"/v1/agents/runs/{run_id}/retry")
    assert response.status_code == 400
    assert response.json() == {"detail": "Only terminal workflow runs can be retried"}
    assert org.state.retry_count(run_id) == 0
    assert len(all_runs(org)) == 1


@pytest.mark.parametrize("status", TERMINAL)
def test_every_terminal_run_can_be_retried(org, status):
    run_id = org.state.add_run(KEY, status=status)
    assert call(org, "POST", f"/v1/agents/runs/{run_id}/retry").status_code == 200


def test_trailing_slash_answers_307_to_the_url_without_it(org):
    run_id = org.state.add_run(KEY, status="failed")
    response = call(org, "POST", f"/v1/agents/runs/{run_id}/retry/")
    assert response.status_code == 307
    assert response.headers["location"] == f"{org.url}/v1/agents/runs/{run_id}/retry"
    assert org.state.retry_count(run_id) == 0
    response = call(org, "GET", "/v1/agents/runs/", params={"page": 2})
    assert response.status_code == 307
    assert response.headers["location"] == f"{org.url}/v1/agents/runs?page=2"


def test_wrong_method_answers_405(org):
    run_id = org.state.add_run(KEY, status="failed")
    response = call(org, "GET", f"/v1/agents/runs/{run_id}/retry")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert call(org, "DELETE", f"/v1/runs/{run_id}").status_code == 405
    assert call(org, "POST", "/v1/agents/runs").status_code == 405
    assert org.state.retry_count(run_id) == 0


def test_unknown_path_answers_404(org):
    assert call(org, "GET", "/v1/nothing/here").json() == {"detail": "Not Found"}


def test_cancel_of_a_finished_run_answers_null_and_changes_nothing(org):
    run_id = org.state.add_run(KEY, status="completed")
    before = call(org, "GET", f"/v1/runs/{run_id}").json()
    response = call(org, "POST", f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 200
    assert response.text == "null"
    after = call(org, "GET", f"/v1/runs/{run_id}").json()
    for field in ("status", "modified_at", "finished_at", "failure_reason", "output"):
        assert after[field] == before[field]


def test_cancel_of_a_running_run_cancels_it(org):
    run_id = org.state.add_run(KEY, status="running")
    response = call(org, "POST", f"/v1/runs/{run_id}/cancel")
    assert (response.status_code, response.text) == (200, "null")
    body = call(org, "GET", f"/v1/runs/{run_id}").json()
    assert body["status"] == "canceled"
    assert body["finished_at"] is not None


def test_page_past_the_end_is_an_empty_array(seeded):
    response = call(seeded, "GET", "/v1/agents/runs", params={"page": 7, "page_size": 10})
    assert (response.status_code, response.json()) == (200, [])
    assert len(call(seeded, "GET", "/v1/agents/runs", params={"page": 6}).json()) == 10


def test_list_defaults_to_ten_newest_first_and_pages_do_not_overlap(seeded):
    first = call(seeded, "GET", "/v1/agents/runs").json()
    assert len(first) == 10
    created = [row["created_at"] for row in all_runs(seeded)]
    assert created == sorted(created, reverse=True)
    pages = [
        call(seeded, "GET", "/v1/agents/runs", params={"page": p, "page_size": 7}).json()
        for p in range(1, 10)
    ]
    ids = [row["workflow_run_id"] for page in pages for row in page]
    assert len(ids) == len(set(ids)) == 60
    assert pages[0][:7] == first[:7]


def timestamps(data, path=""):
    """Every (path, value) of a field named like a timestamp, at any depth."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key.endswith("_at") and not isinstance(value, dict | list):
                yield f"{path}.{key}", value
            else:
                yield from timestamps(value, f"{path}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from timestamps(value, f"{path}[{i}]")


def test_timestamps_are_naive_utc(org):
    run_id = org.state.add_run(KEY, status="completed", attempt=2)
    org.state.add_run(KEY, status="failed", retry_pending=True)
    new = call(org, "POST", f"/v1/agents/runs/{run_id}/retry").json()
    bodies = [
        new,
        call(org, "GET", f"/v1/runs/{run_id}").json(),
        *all_runs(org),
        *call(org, "GET", "/v1/runs").json(),
    ]
    found = dict(timestamps(bodies))
    # nested ones too: attempts, downloaded files, next_attempt_at
    assert any(".attempts" in path for path in found)
    assert any(".downloaded_files" in path for path in found)
    assert any(path.endswith("next_attempt_at") and value for path, value in found.items())
    for path, value in found.items():
        assert value is None or NAIVE_TIMESTAMP.fullmatch(value), (path, value)
    created = datetime.fromisoformat(new["created_at"]).replace(tzinfo=UTC)
    assert abs(created - datetime.now(UTC)) < timedelta(seconds=5)


def test_status_filter_is_repeatable(seeded):
    response = call(
        seeded, "GET", "/v1/agents/runs", params={"status": ["failed", "canceled"], "page_size": 99}
    )
    statuses = {row["status"] for row in response.json()}
    assert statuses == {"failed", "canceled"}
    expected = [r for r in all_runs(seeded) if r["status"] in ("failed", "canceled")]
    assert len(response.json()) == len(expected)


def test_search_key_matches_id_workflow_id_and_title_case_insensitively(seeded):
    rows = all_runs(seeded)
    run = rows[5]
    for needle in (run["workflow_run_id"][3:12], run["workflow_permanent_id"].upper()):
        found = call(seeded, "GET", "/v1/agents/runs", params={"search_key": needle}).json()
        assert run["workflow_run_id"] in [r["workflow_run_id"] for r in found]
    title = call(
        seeded, "GET", "/v1/agents/runs", params={"search_key": "CARRIER INV", "page_size": 99}
    ).json()
    assert title and {r["workflow_title"] for r in title} == {"Download carrier invoices"}


def test_error_code_filter_is_exact(seeded):
    rows = call(
        seeded, "GET", "/v1/agents/runs", params={"error_code": "INVALID_INPUT", "page_size": 99}
    ).json()
    assert rows
    for row in rows:
        detail = call(seeded, "GET", f"/v1/runs/{row['workflow_run_id']}").json()
        assert "INVALID_INPUT" in [e["error_code"] for e in detail["errors"]]
    assert call(seeded, "GET", "/v1/agents/runs", params={"error_code": "INVALID"}).json() == []


def test_workflow_list_filters_by_creation_time(org):
    wpid = "wpid_42"
    base = datetime(2026, 11, 1, 12, 0, 0)
    ids = [
        org.state.add_run(
            KEY, status="completed", workflow_permanent_id=wpid, created_at=base + timedelta(days=d)
        )
        for d in range(5)
    ]
    org.state.add_run(KEY, status="completed", workflow_permanent_id="wpid_other", created_at=base)
    params = {"created_at_start": "2026-11-02T12:00:00", "created_at_end": "2026-11-04T12:00:00Z"}
    rows = call(org, "GET", f"/v1/agents/{wpid}/runs", params=params).json()
    assert [r["workflow_run_id"] for r in rows] == [ids[2], ids[1]]  # end is exclusive
    assert len(call(org, "GET", f"/v1/agents/{wpid}/runs").json()) == 5
    assert call(org, "GET", "/v1/agents/wpid_nothing/runs").json() == []
