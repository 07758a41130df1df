"""The simulator's bulk cancel, workflows and their versions, and running a
workflow: answers valid against openapi.json, and Skyvern's behaviour where
the spec is silent (404 / 400 bodies from its source, versions kept per run)."""

import json

import pytest

from console.simulator import SimulatorServer

from .conftest import KEY, OTHER_KEY, all_runs, assert_valid, call

NEW_ENDPOINTS = [
    ("POST", "/v1/runs/cancel", {"run_ids": ["wr_1"]}),
    ("GET", "/v1/agents/{wpid}", None),
    ("GET", "/v1/agents/{wpid}/versions", None),
    ("POST", "/v1/run/agents", {"workflow_id": "{wpid}"}),
]


def a_workflow(org, key=KEY, **run) -> tuple[str, str]:
    """(workflow permanent id, run id) of a new failed run of a new workflow
    (with no inputs unless `parameters` are given)."""
    run.setdefault("parameters", {})
    run_id = org.state.add_run(key, status=run.pop("status", "failed"), **run)
    return org.state.find_run(run_id).workflow_permanent_id, run_id


def row_of(org, run_id, key=KEY) -> dict:
    return next(r for r in all_runs(org, key) if r["workflow_run_id"] == run_id)


@pytest.mark.parametrize(("method", "path", "body"), NEW_ENDPOINTS)
@pytest.mark.parametrize("key", [None, "sk-wrong"])
def test_missing_or_wrong_key_answers_403(org, method, path, body, key):
    wpid, _ = a_workflow(org)
    body = json.loads(json.dumps(body).replace("{wpid}", wpid)) if body else None
    response = call(org, method, path.format(wpid=wpid), key=key, json=body)
    assert (response.status_code, response.json()) == (
        403,
        {"detail": "Could not validate credentials"},
    )
    assert len(all_runs(org)) == 1


# --- bulk cancel ---------------------------------------------------------------------


def test_bulk_cancel_cancels_what_is_still_going_and_fails_the_rest(org):
    running = org.state.add_run(KEY, status="running")
    queued = org.state.add_run(KEY, status="queued")
    finished = org.state.add_run(KEY, status="completed")
    theirs = org.state.add_run(OTHER_KEY, status="running")
    before = call(org, "GET", f"/v1/runs/{finished}").json()

    run_ids = [running, finished, "wr_1234567890", queued, theirs]
    response = call(org, "POST", "/v1/runs/cancel", json={"run_ids": run_ids})

    assert response.status_code == 200
    body = response.json()
    assert_valid("BulkCancelRunsResponse", body)
    assert body == {"cancelled": [running, queued], "failed": [finished, "wr_1234567890", theirs]}
    assert org.state.find_run(running).status == "canceled"
    assert org.state.find_run(queued).status == "canceled"
    assert org.state.find_run(theirs).status == "running"
    after = call(org, "GET", f"/v1/runs/{finished}").json()
    assert (after["status"], after["modified_at"]) == (before["status"], before["modified_at"])


def test_bulk_cancel_takes_at_most_100_ids(org):
    run_ids = [org.state.add_run(KEY, status="running") for _ in range(101)]
    response = call(org, "POST", "/v1/runs/cancel", json={"run_ids": run_ids})
    assert response.status_code == 422
    body = response.json()
    assert_valid("HTTPValidationError", body)
    assert body["detail"][0]["type"] == "too_long"
    assert body["detail"][0]["loc"] == ["body", "run_ids"]
    assert all(org.state.find_run(r).status == "running" for r in run_ids)
    assert_valid("BulkCancelRunsRequest", {"run_ids": run_ids[:100]})
    ok = call(org, "POST", "/v1/runs/cancel", json={"run_ids": run_ids[:100]})
    assert len(ok.json()["cancelled"]) == 100


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (None, ["body"]),
        ({}, ["body", "run_ids"]),
        ({"run_ids": "wr_1"}, ["body", "run_ids"]),
        ({"run_ids": ["wr_1", 2]}, ["body", "run_ids", 1]),
        ([], ["body"]),
    ],
)
def test_a_bad_bulk_cancel_body_answers_422(org, body, loc):
    kwargs = {"json": body} if body is not None else {}
    response = call(org, "POST", "/v1/runs/cancel", **kwargs)
    assert response.status_code == 422
    assert_valid("HTTPValidationError", response.json())
    assert response.json()["detail"][0]["loc"] == loc


def test_a_body_that_is_not_json_answers_422(org):
    response = call(
        org,
        "POST",
        "/v1/runs/cancel",
        data=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


# --- workflows and versions ---------------------------------------------------------------


def test_get_workflow_answers_its_current_version(org):
    wpid, run_id = a_workflow(org, parameters={"carrier": "MSC", "month": "2026-11"})
    response = call(org, "GET", f"/v1/agents/{wpid}")
    assert response.status_code == 200
    body = response.json()
    assert_valid("Workflow", body)
    assert (body["workflow_permanent_id"], body["agent_id"], body["version"]) == (wpid, wpid, 1)
    row = row_of(org, run_id)
    assert body["workflow_id"] == row["workflow_id"] and row["workflow_version"] == 1
    keys = [p["key"] for p in body["workflow_definition"]["parameters"]]
    assert keys == ["carrier", "month"]


def test_a_published_version_becomes_current_and_runs_keep_theirs(org):
    wpid, run_id = a_workflow(org)
    first = call(org, "GET", f"/v1/agents/{wpid}").json()

    assert org.state.publish_workflow_version(KEY, wpid) == 2
    assert org.state.publish_workflow_version(KEY, wpid, title="Invoices v3") == 3

    current = call(org, "GET", f"/v1/agents/{wpid}").json()
    assert (current["version"], current["title"]) == (3, "Invoices v3")
    assert current["workflow_id"] != first["workflow_id"]
    assert current["created_at"] > first["created_at"]
    versions = call(org, "GET", f"/v1/agents/{wpid}/versions").json()
    for item in versions:
        assert_valid("Workflow", item)
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert len({v["workflow_id"] for v in versions}) == 3
    # the run still names the version it ran, and a retry re-runs that one
    row = row_of(org, run_id)
    assert (row["workflow_id"], row["workflow_version"]) == (first["workflow_id"], 1)
    new_id = call(org, "POST", f"/v1/agents/runs/{run_id}/retry").json()["run_id"]
    assert row_of(org, new_id)["workflow_id"] == first["workflow_id"]
    # an older version by number
    pinned = call(org, "GET", f"/v1/agents/{wpid}", params={"version": 2}).json()
    assert (pinned["version"], pinned["workflow_id"]) == (2, versions[1]["workflow_id"])


def test_a_run_of_an_older_version_can_be_added(org):
    run_id = org.state.add_run(KEY, workflow_permanent_id="wpid_900", workflow_version=3)
    versions = call(org, "GET", "/v1/agents/wpid_900/versions").json()
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert row_of(org, run_id)["workflow_version"] == 3
    org.state.publish_workflow_version(KEY, "wpid_900")
    org.state.publish_workflow_version(KEY, "wpid_900")
    assert call(org, "GET", "/v1/agents/wpid_900").json()["version"] == 5
    assert row_of(org, run_id)["workflow_version"] == 3


def test_publishing_through_the_control_api(org):
    wpid, _ = a_workflow(org)
    response = call(
        org, "POST", f"/_sim/workflows/{wpid}/versions", key=None, json={"api_key": KEY}
    )
    assert response.status_code == 201
    assert response.json() == {"workflow_permanent_id": wpid, "version": 2}
    missing = call(
        org, "POST", "/_sim/workflows/wpid_404/versions", key=None, json={"api_key": KEY}
    )
    assert missing.status_code == 404


def test_unknown_or_another_organisations_workflow_answers_404(org):
    theirs, _ = a_workflow(org, key=OTHER_KEY, workflow_permanent_id="wpid_777")
    for wpid in (theirs, "wpid_404"):
        for path in (f"/v1/agents/{wpid}", f"/v1/agents/{wpid}/versions"):
            response = call(org, "GET", path)
            assert response.status_code == 404
            assert response.json() == {
                "detail": f"Workflow not found. workflow_permanent_id={wpid}"
            }
    mine, _ = a_workflow(org, workflow_permanent_id="wpid_778")
    response = call(org, "GET", f"/v1/agents/{mine}", params={"version": 9})
    assert response.status_code == 404
    assert response.json() == {
        "detail": f"Workflow not found. workflow_permanent_id={mine}, version=9"
    }
    response = call(org, "GET", f"/v1/agents/{mine}", params={"version": "latest"})
    assert response.status_code == 422
    assert_valid("HTTPValidationError", response.json())


def test_workflow_versions_survive_a_restart(tmp_path):
    state_file = tmp_path / "sim.json"
    server = SimulatorServer(port=0, state_file=state_file)
    server.start()
    try:
        server.state.add_org(KEY)
        run_id = server.state.add_run(KEY, workflow_permanent_id="wpid_5")
        server.state.publish_workflow_version(KEY, "wpid_5")
    finally:
        server.stop()
    again = SimulatorServer(port=0, state_file=state_file)
    again.start()
    try:
        assert [v["version"] for v in call(again, "GET", "/v1/agents/wpid_5/versions").json()] == [
            1,
            2,
        ]
        assert row_of(again, run_id)["workflow_version"] == 1
    finally:
        again.stop()


# --- running a workflow ---------------------------------------------------------------------


def test_running_a_workflow_starts_its_current_version(org):
    wpid, run_id = a_workflow(org, parameters={"carrier": "MSC"}, browser_session_id="pbs_42")
    org.state.publish_workflow_version(KEY, wpid)
    current = call(org, "GET", f"/v1/agents/{wpid}").json()
    request = {
        "workflow_id": wpid,
        "parameters": {"carrier": "MSC"},
        "webhook_url": "https://hooks.example.com/rerun",
        "title": "Rerun of " + run_id,
    }
    assert_valid("WorkflowRunRequest-Input", {**request, "agent_id": wpid})

    response = call(org, "POST", "/v1/run/agents", json=request)

    assert response.status_code == 200
    body = response.json()
    assert_valid("WorkflowRunResponse", body)
    assert body["status"] == "created" and body["run_id"] != run_id
    assert body["run_request"]["parameters"] == {"carrier": "MSC"}
    assert body["run_request"]["webhook_url"] == "https://hooks.example.com/rerun"
    assert body["browser_session_id"] is None
    row = row_of(org, body["run_id"])
    assert (row["workflow_id"], row["workflow_version"]) == (current["workflow_id"], 2)
    assert row["retried_from_workflow_run_id"] is None
    assert row["workflow_title"] == "Rerun of " + run_id
    # agent_id is the field's own name
    again = call(
        org, "POST", "/v1/run/agents", json={"agent_id": wpid, "parameters": {"carrier": "X"}}
    )
    assert again.status_code == 200


def test_a_retry_copies_the_browser_session_and_a_run_request_may_name_one(org):
    wpid, run_id = a_workflow(org, browser_session_id="pbs_42")
    new = call(org, "POST", f"/v1/agents/runs/{run_id}/retry").json()
    assert new["browser_session_id"] == "pbs_42"
    assert new["run_request"]["browser_session_id"] == "pbs_42"
    assert row_of(org, run_id)["browser_session_id"] == "pbs_42"
    named = call(
        org, "POST", "/v1/run/agents", json={"workflow_id": wpid, "browser_session_id": "pbs_7"}
    ).json()
    assert named["browser_session_id"] == "pbs_7"


def test_a_missing_required_input_answers_400_and_makes_no_run(org):
    wpid, _ = a_workflow(org, parameters={"carrier": "MSC"})
    org.state.publish_workflow_version(
        KEY, wpid, add_parameters={"po_number": None, "region": "EU"}
    )
    definition = call(org, "GET", f"/v1/agents/{wpid}").json()["workflow_definition"]
    assert {p["key"]: p["default_value"] for p in definition["parameters"]} == {
        "carrier": None,
        "po_number": None,
        "region": "EU",
    }
    response = call(
        org, "POST", "/v1/run/agents", json={"workflow_id": wpid, "parameters": {"carrier": "MSC"}}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Missing value for parameter po_number")
    assert len(all_runs(org)) == 1
    ok = call(
        org,
        "POST",
        "/v1/run/agents",
        json={"workflow_id": wpid, "parameters": {"carrier": "MSC", "po_number": "PO-1"}},
    )
    assert ok.json()["run_request"]["parameters"] == {
        "carrier": "MSC",
        "po_number": "PO-1",
        "region": "EU",
    }


def test_running_an_unknown_workflow_answers_404(org):
    theirs, _ = a_workflow(org, key=OTHER_KEY, workflow_permanent_id="wpid_31")
    for wpid in (theirs, "wpid_404"):
        response = call(org, "POST", "/v1/run/agents", json={"workflow_id": wpid})
        assert response.status_code == 404
        assert response.json() == {"detail": f"Workflow not found. workflow_permanent_id={wpid}"}
    assert all_runs(org) == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (None, ["body"]),
        ({}, ["body", "agent_id"]),
        ({"workflow_id": 5}, ["body", "agent_id"]),
        ({"workflow_id": "wpid_1", "parameters": ["a"]}, ["body", "parameters"]),
        ({"workflow_id": "wpid_1", "webhook_url": 3}, ["body", "webhook_url"]),
    ],
)
def test_a_bad_run_request_answers_422(org, body, loc):
    kwargs = {"json": body} if body is not None else {}
    response = call(org, "POST", "/v1/run/agents", **kwargs)
    assert response.status_code == 422
    assert_valid("HTTPValidationError", response.json())
    assert response.json()["detail"][0]["loc"] == loc


def test_busy_answers_503_with_retry_after_and_makes_no_run(org):
    wpid, _ = a_workflow(org)
    org.state.configure(busy=True, busy_retry_after=3)
    response = call(org, "POST", "/v1/run/agents", json={"workflow_id": wpid})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert "No run was created" in response.json()["detail"]
    assert len(all_runs(org)) == 1
    # busy is about submitting runs: reading and cancelling still work
    assert call(org, "GET", f"/v1/agents/{wpid}").status_code == 200
    assert call(org, "POST", "/v1/runs/cancel", json={"run_ids": []}).status_code == 200


def test_faults_can_be_limited_to_the_new_endpoint_groups(org):
    wpid, run_id = a_workflow(org)
    org.state.configure(error_rates={500: 1.0}, fault_endpoints=["workflows"])
    assert call(org, "GET", f"/v1/agents/{wpid}").status_code == 500
    assert call(org, "GET", f"/v1/agents/{wpid}/versions").status_code == 500
    assert call(org, "POST", "/v1/run/agents", json={"workflow_id": wpid}).status_code == 200
    org.state.configure(fault_endpoints=["run_workflow"])
    assert call(org, "GET", f"/v1/agents/{wpid}").status_code == 200
    assert call(org, "POST", "/v1/run/agents", json={"workflow_id": wpid}).status_code == 500


def test_seeded_history_has_an_edited_workflow_with_runs_behind(seeded):
    rows = all_runs(seeded)
    behind = [r for r in rows if r["workflow_version"] == 1]
    edited = {r["workflow_permanent_id"] for r in rows if r["workflow_version"] == 2}
    assert len(edited) == 1
    [wpid] = edited
    current = call(seeded, "GET", f"/v1/agents/{wpid}").json()
    assert current["version"] == 2
    runs = [r for r in rows if r["workflow_permanent_id"] == wpid]
    older = [r for r in runs if r["workflow_id"] != current["workflow_id"]]
    assert older and len(older) < len(runs)
    assert max(r["created_at"] for r in older) < current["created_at"]
    assert min(r["created_at"] for r in runs if r not in older) > current["created_at"]
    assert len(behind) > len(older)  # every other workflow is at its first version
    # seeding again changes nothing
    seeded.state.add_org(KEY, seed="acme", seed_runs=60)
    assert call(seeded, "GET", f"/v1/agents/{wpid}").json()["version"] == 2


# --- retry policies and browser sessions ----------------------------------------------------


def test_seeded_workflows_have_a_retry_policy_and_added_ones_none(org):
    seeded = org.state.add_org("sk-test-seeded-000111", name="Seeded", seed="s", seed_runs=40)
    wpid = org.state.find_run(seeded[0]).workflow_permanent_id
    body = call(org, "GET", f"/v1/agents/{wpid}", key="sk-test-seeded-000111").json()
    assert_valid("Workflow", body)
    assert body["workflow_definition"]["retry_policy"]["max_retries"] == 2
    mine, _ = a_workflow(org)
    body = call(org, "GET", f"/v1/agents/{mine}").json()
    assert body["workflow_definition"]["retry_policy"] is None
    org.state.set_retry_policy(KEY, mine, {"max_retries": 3})
    body = call(org, "GET", f"/v1/agents/{mine}").json()
    assert_valid("Workflow", body)
    assert body["workflow_definition"]["retry_policy"]["max_retries"] == 3
    # a new version keeps its policy
    org.state.publish_workflow_version(KEY, mine)
    versions = call(org, "GET", f"/v1/agents/{mine}/versions").json()
    assert [v["workflow_definition"]["retry_policy"]["max_retries"] for v in versions] == [3, 3]
    with pytest.raises(ValueError):
        org.state.set_retry_policy(KEY, mine, {"max_retries": 6})


def test_the_retry_policy_control_api(org):
    wpid, _ = a_workflow(org)
    response = call(
        org,
        "POST",
        f"/_sim/workflows/{wpid}/retry_policy",
        json={"api_key": KEY, "retry_policy": {"max_retries": 1}},
    )
    assert response.status_code == 200
    assert org.state.workflow(KEY, wpid).retry_policy["max_retries"] == 1


def test_get_browser_session_answers_a_browser_session_response(org):
    run_id = org.state.add_run(KEY, status="failed", browser_session_id="pbs_777")
    response = call(org, "GET", "/v1/browser_sessions/pbs_777")
    assert response.status_code == 200
    body = response.json()
    assert_valid("BrowserSessionResponse", body)
    assert (body["browser_session_id"], body["status"], body["runnable_id"]) == (
        "pbs_777",
        "running",
        run_id,
    )
    assert body["completed_at"] is None and body["timeout"] == 60
    assert call(org, "POST", "/_sim/browser_sessions/pbs_777/close").status_code == 200
    body = call(org, "GET", "/v1/browser_sessions/pbs_777").json()
    assert_valid("BrowserSessionResponse", body)
    assert body["status"] == "completed" and body["completed_at"] is not None


def test_a_browser_session_times_out_an_hour_after_it_started(org):
    from datetime import UTC, datetime, timedelta

    org.state.add_run(
        KEY,
        status="failed",
        browser_session_id="pbs_778",
        created_at=datetime.now(UTC) - timedelta(minutes=90),
    )
    body = call(org, "GET", "/v1/browser_sessions/pbs_778").json()
    assert_valid("BrowserSessionResponse", body)
    assert body["status"] == "timeout"


def test_another_organisations_or_an_unknown_browser_session_answers_404(org):
    org.state.add_run(OTHER_KEY, status="failed", browser_session_id="pbs_779")
    for session_id in ("pbs_779", "pbs_780"):
        response = call(org, "GET", f"/v1/browser_sessions/{session_id}")
        assert (response.status_code, response.json()) == (
            404,
            {"detail": "Browser session not found"},
        )
    assert call(org, "GET", "/v1/browser_sessions/pbs_779", key=OTHER_KEY).status_code == 200
    assert call(org, "GET", "/v1/browser_sessions/pbs_779", key="sk-wrong").status_code == 403
