"""What Skyvern 1.0.56 says about a run beyond its status: its own automatic
retries (attempt, attempts[], retry_pending, next_attempt_at under the same
run id), the failure classifier (`failure_category`) and runs that failed only
because their webhook did (`webhook_failure_reason`)."""

from datetime import UTC, datetime, timedelta

import pytest

from console.simulator import SimulatorServer
from console.simulator.seed import CATEGORIES, generate_runs
from console.simulator.state import utcnow

from .conftest import KEY, all_runs, assert_valid, call

ANCHOR = datetime(2026, 11, 28, 9, 0, 0)


def row_of(server, run_id: str) -> dict:
    return next(r for r in all_runs(server) if r["workflow_run_id"] == run_id)


def detail_of(server, run_id: str) -> dict:
    response = call(server, "GET", f"/v1/runs/{run_id}")
    assert response.status_code == 200
    return response.json()


def as_utc(value: str) -> datetime:
    """Skyvern's naive timestamps mean UTC."""
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is None, value
    return parsed.replace(tzinfo=UTC)


# --- Skyvern's own retries ------------------------------------------------------


def test_a_run_completed_on_its_third_attempt_shows_every_attempt(org):
    run_id = org.state.add_run(KEY, status="completed", attempt=3)
    row, detail = row_of(org, run_id), detail_of(org, run_id)
    assert_valid("WorkflowRun", row)
    assert_valid("WorkflowRunResponse", detail)
    for body in (row, detail):
        assert body["attempt"] == 3
        assert body["retry_pending"] is False and body["next_attempt_at"] is None
        attempts = body["attempts"]
        assert [a["attempt_number"] for a in attempts] == [1, 2, 3]
        for earlier in attempts[:2]:
            assert earlier["status"] == "failed"
            assert earlier["error_codes"] and earlier["failure_reason"]
            assert earlier["retry_decision"] == "retry" and earlier["decision_reason"]
            assert as_utc(earlier["finished_at"]) <= as_utc(earlier["next_attempt_at"])
        assert attempts[2]["status"] == "completed" and attempts[2]["retry_decision"] is None
        # each attempt starts after the one before it, the last one is the run's own
        starts = [as_utc(a["started_at"]) for a in attempts]
        assert starts == sorted(starts)
        assert attempts[2]["started_at"] == body["started_at"]
    assert detail["output"] and detail["status"] == "completed"


def test_a_run_failed_for_good_after_its_last_attempt_says_so(org):
    run_id = org.state.add_run(KEY, status="failed", attempt=2)
    last = detail_of(org, run_id)["attempts"][-1]
    assert (last["attempt_number"], last["status"], last["retry_decision"]) == (2, "failed", "stop")
    assert last["error_codes"]


def test_a_run_waiting_for_skyverns_own_retry(org):
    run_id = org.state.add_run(KEY, status="failed", retry_pending=True)
    row, detail = row_of(org, run_id), detail_of(org, run_id)
    for body in (row, detail):
        assert body["status"] == "failed"
        assert body["attempt"] == 1 and body["retry_pending"] is True
        assert as_utc(body["next_attempt_at"]) > datetime.now(UTC)
        current = body["attempts"][-1]
        assert current["retry_decision"] == "retry"
        assert current["next_attempt_at"] == body["next_attempt_at"]
    # Skyvern answers a manual retry all the same: a second run beside its own
    response = call(org, "POST", f"/v1/agents/runs/{run_id}/retry")
    assert response.status_code == 200
    assert response.json()["run_id"] != run_id
    assert row_of(org, run_id)["retry_pending"] is True


@pytest.mark.parametrize(
    ("ago", "status"), [(timedelta(seconds=2), "queued"), (timedelta(seconds=30), "running")]
)
def test_skyvern_starts_its_next_attempt_under_the_same_run_id(org, ago, status):
    failed_at = utcnow() - timedelta(minutes=20)
    run_id = org.state.add_run(
        KEY,
        status="failed",
        created_at=failed_at,
        retry_pending=True,
        next_attempt_at=utcnow() - ago,
    )
    rows = all_runs(org)
    assert len(rows) == 1  # no new run: the same one goes on
    row = rows[0]
    assert row["workflow_run_id"] == run_id
    assert row["status"] == status
    assert row["attempt"] == 2 and row["retry_pending"] is False
    assert row["next_attempt_at"] is None
    assert row["failure_reason"] is None and row["failure_category"] is None
    first, second = row["attempts"]
    assert first["status"] == "failed" and first["retry_decision"] == "retry"
    assert as_utc(row["modified_at"]) > as_utc(first["finished_at"])
    assert second["attempt_number"] == 2 and second["status"] == status


def test_skyverns_next_attempt_finishes_deterministically(org):
    run_id = org.state.add_run(
        KEY, status="failed", retry_pending=True, next_attempt_at=utcnow() - timedelta(minutes=10)
    )
    detail = detail_of(org, run_id)
    assert detail["status"] in ("completed", "failed")
    assert detail["attempt"] == 2 and detail["finished_at"]
    if detail["status"] == "completed":
        assert detail["output"] and detail["failure_reason"] is None
    else:
        assert detail["errors"] and row_of(org, run_id)["failure_category"]
    assert detail_of(org, run_id) == detail


def test_add_run_refuses_impossible_retry_facts(org):
    with pytest.raises(ValueError, match="retry_pending"):
        org.state.add_run(KEY, status="completed", retry_pending=True)
    with pytest.raises(ValueError, match="attempt"):
        org.state.add_run(KEY, status="failed", attempt=0)
    with pytest.raises(ValueError, match="attempts"):
        org.state.add_run(KEY, status="failed", attempt=3, attempts=[{"attempt_number": 1}])
    with pytest.raises(ValueError, match="next_attempt_at"):
        org.state.add_run(KEY, status="failed", next_attempt_at="2026-12-01T00:00:00")


def test_retry_facts_over_the_control_api_and_across_a_restart(tmp_path):
    path = tmp_path / "simulator.json"
    earlier = {
        "attempt_number": 1,
        "status": "failed",
        "failure_reason": "Portal down",
        "error_codes": ["PORTAL_UNAVAILABLE"],
        "started_at": "2026-11-28T08:00:00.000000",
        "finished_at": "2026-11-28T08:01:00.000000",
        "retry_decision": "retry",
        "decision_reason": "retryable",
        "next_attempt_at": "2026-11-28T08:06:00.000000",
        "webhook_sent_at": None,
    }
    when = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    first = SimulatorServer(port=0, state_file=path).start()
    try:
        first.state.add_org(KEY)
        response = call(
            first,
            "POST",
            "/_sim/runs",
            key=None,
            json={
                "api_key": KEY,
                "status": "failed",
                "attempt": 2,
                "attempts": [earlier],
                "retry_pending": True,
                "next_attempt_at": when.isoformat() + "Z",
            },
        )
        assert response.status_code == 201, response.text
        run_id = response.json()["run_id"]
        before = row_of(first, run_id)
    finally:
        first.stop()
    second = SimulatorServer(port=0, state_file=path).start()
    try:
        after = row_of(second, run_id)
    finally:
        second.stop()
    assert after == before
    assert after["attempts"][0] == earlier
    assert after["attempt"] == 2 and after["retry_pending"] is True
    assert after["next_attempt_at"] == when.strftime("%Y-%m-%dT%H:%M:%S.%f")


# --- failure_category -------------------------------------------------------------


def test_failed_runs_carry_a_plausible_failure_category(seeded):
    expected_top = {
        "CAPTCHA_DETECTED": "ANTI_BOT_DETECTION",
        "LOGIN_FAILED": "AUTH_FAILURE",
        "PAGE_LOAD_TIMEOUT": "PAGE_LOAD_TIMEOUT",
        "INVALID_INPUT": "PARAMETER_BINDING_ERROR",
        "MAX_ELAPSED_TIME_EXCEEDED": "MAX_STEPS_EXCEEDED",
    }
    checked = 0
    for row in all_runs(seeded):
        category = row["failure_category"]
        if row["status"] not in ("failed", "terminated", "timed_out"):
            assert category is None, row["status"]
            continue
        if row["webhook_failure_reason"]:
            continue
        assert category, row["workflow_run_id"]
        for item in category:
            assert set(item) == {"category", "confidence_float", "reasoning"}
            assert item["category"] in CATEGORIES
            assert 0 < item["confidence_float"] <= 1 and item["reasoning"]
        confidences = [item["confidence_float"] for item in category]
        assert confidences == sorted(confidences, reverse=True)
        code = detail_of(seeded, row["workflow_run_id"])["errors"][0]["error_code"]
        if code in expected_top:
            assert category[0]["category"] == expected_top[code], code
            checked += 1
    assert checked


def test_the_seventeen_categories():
    assert len(CATEGORIES) == len(set(CATEGORIES)) == 17
    assert {"ANTI_BOT_DETECTION", "PARAMETER_BINDING_ERROR", "UNKNOWN"} <= set(CATEGORIES)


def test_failure_category_can_be_given_and_is_ordered_by_confidence(org):
    given = [
        {"category": "PROXY_ERROR", "confidence_float": 0.2, "reasoning": "slow proxy"},
        {"category": "ANTI_BOT_DETECTION", "confidence_float": 0.9, "reasoning": "captcha"},
    ]
    run_id = org.state.add_run(KEY, status="failed", failure_category=given)
    assert row_of(org, run_id)["failure_category"] == [given[1], given[0]]
    none = org.state.add_run(KEY, status="failed", failure_category=[])
    assert row_of(org, none)["failure_category"] is None
    with pytest.raises(ValueError):
        org.state.add_run(KEY, status="failed", failure_category=[{"category": "BAD_LUCK"}])


def test_failure_category_follows_the_status(org):
    run_id = org.state.add_run(KEY, status="running")
    assert row_of(org, run_id)["failure_category"] is None
    org.state.set_status(run_id, "timed_out")
    assert row_of(org, run_id)["failure_category"][0]["category"] in CATEGORIES
    org.state.set_status(run_id, "completed")
    assert row_of(org, run_id)["failure_category"] is None


def test_a_failed_retry_is_classified_too(org):
    org.state.configure(queued_after=0, running_after=0, finished_after=0, failure_rate=1.0)
    run_id = org.state.add_run(KEY, status="failed")
    new_id = call(org, "POST", f"/v1/agents/runs/{run_id}/retry").json()["run_id"]
    row = row_of(org, new_id)
    assert row["status"] == "failed"
    assert row["failure_category"][0]["category"] in CATEGORIES


# --- webhook-only failures --------------------------------------------------------


def test_a_run_failed_only_by_its_webhook_keeps_its_output(org):
    why = "Webhook https://hooks.example.com/in answered HTTP 500 after 3 attempts."
    run_id = org.state.add_run(
        KEY,
        status="failed",
        workflow_title="Download carrier invoices",
        webhook_url="https://hooks.example.com/in",
        webhook_failure_reason=why,
    )
    row, detail = row_of(org, run_id), detail_of(org, run_id)
    assert row["status"] == detail["status"] == "failed"
    assert row["webhook_failure_reason"] == why
    assert "webhook" in detail["failure_reason"].lower()
    assert detail["output"] and detail["downloaded_files"]
    assert detail["errors"] == [] and row["failure_category"] is None
    # an ordinary failure has none
    other = org.state.add_run(KEY, status="failed")
    assert row_of(org, other)["webhook_failure_reason"] is None
    with pytest.raises(ValueError):
        org.state.add_run(KEY, status="completed", webhook_failure_reason=why)


def test_the_seed_has_a_few_of_each_kind():
    runs = generate_runs("demo", 300, ANCHOR)
    retried = [r for r in runs if r.attempt > 1]
    pending = [r for r in runs if r.retry_pending]
    webhook_only = [r for r in runs if r.webhook_failure_reason]
    assert 5 <= len(retried) <= 60
    assert {r.status for r in retried} == {"completed", "failed"}
    assert all(len(r.attempts) == r.attempt - 1 for r in runs)
    assert 1 <= len(pending) <= 5
    for run in pending:
        assert run.status == "failed" and run.finished_at <= ANCHOR
        # still waiting at any time in the anchor's hour (the seed's "now")
        assert run.next_attempt_at > ANCHOR + timedelta(hours=1)
    assert 2 <= len(webhook_only) <= 15
    assert all(r.status == "failed" and r.output and r.webhook_url for r in webhook_only)
    assert not {r.run_id for r in pending} & {r.run_id for r in webhook_only}
    # small seeds used by tests have one of each too
    small = generate_runs("acme", 30, ANCHOR)
    assert any(r.attempt > 1 for r in small)
    assert any(r.retry_pending for r in small)
    assert any(r.webhook_failure_reason for r in small)


def test_skyverns_own_next_attempt_sends_its_webhook_when_it_ends(org):
    org.state.add_org(KEY, webhook_url="https://hooks.example.com/acme")
    due_at = utcnow() + timedelta(hours=1)
    run_id = org.state.add_run(KEY, status="failed", retry_pending=True, next_attempt_at=due_at)
    # waiting, then running: nothing to announce yet
    assert org.state.due_webhooks(now=utcnow()) == []
    assert org.state.due_webhooks(now=due_at + timedelta(minutes=1)) == []
    (due,) = org.state.due_webhooks(now=due_at + timedelta(minutes=4))
    assert due.run.run_id == run_id and due.run.attempt == 2
    assert due.run.status in ("completed", "failed")
    assert due.url == "https://hooks.example.com/acme"
    assert org.state.due_webhooks(now=due_at + timedelta(minutes=5)) == []  # once
