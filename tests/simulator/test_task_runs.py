"""`GET /v1/runs`, Skyvern's lightweight run history: TaskRunListItem rows,
newest first, filterable, and capped at page 100 x page size 100."""

import pytest

from console.simulator import SimulatorState

from .conftest import KEY, OTHER_KEY, all_runs, assert_valid, call


def task_runs(server, key=KEY, **params):
    response = call(server, "GET", "/v1/runs", key=key, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_rows_are_task_run_list_items_newest_first(seeded):
    rows = task_runs(seeded, page_size=100)
    assert len(rows) == 60
    for row in rows:
        assert_valid("TaskRunListItem", row)
        assert row["task_run_type"] == "workflow_run"
        assert row["task_run_id"].startswith("tr_")
        # a summary: no failure reason, app_url or recording here
        assert not {"failure_reason", "app_url", "recording_url"} & set(row)
    agents = all_runs(seeded)
    assert [r["run_id"] for r in rows] == [r["workflow_run_id"] for r in agents]
    assert [r["title"] for r in rows] == [r["workflow_title"] for r in agents]
    assert [r["status"] for r in rows] == [r["status"] for r in agents]
    # another organisation's runs are not there
    theirs = {r["run_id"] for r in task_runs(seeded, key=OTHER_KEY, page_size=100)}
    assert not theirs & {r["run_id"] for r in rows}


def test_default_page_is_ten_and_pages_do_not_overlap(seeded):
    first = task_runs(seeded)
    assert len(first) == 10
    pages = [task_runs(seeded, page=p, page_size=25) for p in (1, 2, 3, 4)]
    ids = [r["run_id"] for page in pages for r in page]
    assert len(ids) == len(set(ids)) == 60
    assert pages[3] == []


@pytest.mark.parametrize(
    ("params", "where", "kind"),
    [
        ({"page": "0"}, ["query", "page"], "greater_than_equal"),
        ({"page": "101"}, ["query", "page"], "less_than_equal"),
        ({"page_size": "101"}, ["query", "page_size"], "less_than_equal"),
        ({"status": "bogus"}, ["query", "status", 0], "enum"),
        ({"run_type": "task_v9"}, ["query", "run_type", 0], "enum"),
        ({"search_key": "wr"}, ["query", "search_key"], "string_too_short"),
        ({"failure_category": "X" * 101}, ["query", "failure_category"], "string_too_long"),
        (
            {"workflow_permanent_id": [f"wpid_{i}" for i in range(51)]},
            ["query", "workflow_permanent_id"],
            "too_long",
        ),
    ],
)
def test_bad_queries_answer_422(org, params, where, kind):
    response = call(org, "GET", "/v1/runs", params=params)
    assert response.status_code == 422
    body = response.json()
    assert_valid("HTTPValidationError", body)
    assert [(item["loc"], item["type"]) for item in body["detail"]] == [(where, kind)]


def test_only_the_newest_ten_thousand_runs_can_be_reached(simulator):
    simulator.state.add_org(KEY, seed="big", seed_runs=10_005)
    newest = SimulatorState.list_runs(simulator.state, KEY, page=1, page_size=10_005)
    last_page = task_runs(simulator, page=100, page_size=100)
    assert len(last_page) == 100
    assert last_page[-1]["run_id"] == newest[9_999].run_id
    # the five oldest are out of reach: page 101 or a bigger page is refused
    assert call(simulator, "GET", "/v1/runs", params={"page": 101}).status_code == 422
    assert call(simulator, "GET", "/v1/runs", params={"page_size": 200}).status_code == 422
    # /v1/agents/runs has no such cap
    response = call(simulator, "GET", "/v1/agents/runs", params={"page": 2, "page_size": 10_000})
    assert [r["workflow_run_id"] for r in response.json()] == [r.run_id for r in newest[10_000:]]


def test_status_workflow_and_run_type_filters(seeded):
    rows = task_runs(seeded, status=["failed", "canceled"], page_size=100)
    assert rows and {r["status"] for r in rows} == {"failed", "canceled"}
    wpids = sorted({r["workflow_permanent_id"] for r in task_runs(seeded, page_size=100)})[:2]
    rows = task_runs(seeded, workflow_permanent_id=wpids, page_size=100)
    assert rows and {r["workflow_permanent_id"] for r in rows} == set(wpids)
    assert len(task_runs(seeded, run_type="workflow_run", page_size=100)) == 60
    assert task_runs(seeded, run_type="task_v2") == []
    assert task_runs(seeded, tags="env:prod") == []  # no run has tags


def test_failure_category_filter_matches_the_top_category_of_failures_only(org):
    captcha = [
        {"category": "ANTI_BOT_DETECTION", "confidence_float": 0.9, "reasoning": "captcha"},
        {"category": "PROXY_ERROR", "confidence_float": 0.3, "reasoning": "proxy"},
    ]
    proxy_first = [{"category": "PROXY_ERROR", "confidence_float": 0.8, "reasoning": "proxy"}]
    hit = org.state.add_run(KEY, status="failed", failure_category=captcha)
    org.state.add_run(KEY, status="timed_out", failure_category=proxy_first)
    org.state.add_run(KEY, status="canceled", failure_reason="Canceled by the customer")
    rows = task_runs(org, failure_category="ANTI_BOT_DETECTION")
    assert [r["run_id"] for r in rows] == [hit]
    assert len(task_runs(org, failure_category="PROXY_ERROR")) == 1  # top category only


def test_search_key_looks_in_ids_title_inputs_and_webhook_url(org):
    run_id = org.state.add_run(
        KEY,
        status="completed",
        workflow_title="Book freight pickup",
        parameters={"origin_zip": "73301", "carrier": "Maersk"},
        webhook_url="https://hooks.example.com/acme-pickups",
    )
    org.state.add_run(KEY, status="completed", parameters={"carrier": "XPO"})
    for needle in ("73301", "acme-pickups", "FREIGHT PICK", run_id.upper()):
        assert [r["run_id"] for r in task_runs(org, search_key=needle)] == [run_id], needle


def test_it_is_authenticated_and_faulted_like_the_other_lists(org):
    assert call(org, "GET", "/v1/runs", key=None).status_code == 403
    assert call(org, "GET", "/v1/runs", key="sk-wrong").json() == {
        "detail": "Could not validate credentials"
    }
    response = call(org, "GET", "/v1/runs/", params={"page": 2})
    assert response.status_code == 307
    assert response.headers["location"] == f"{org.url}/v1/runs?page=2"
    assert call(org, "POST", "/v1/runs").status_code == 405
    org.state.configure(error_rates={500: 1.0}, fault_endpoints=["list"])
    assert call(org, "GET", "/v1/runs").status_code == 500
    org.state.configure(fault_endpoints=["get_run"])
    assert call(org, "GET", "/v1/runs").status_code == 200
