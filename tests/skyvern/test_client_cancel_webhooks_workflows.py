"""The client's calls for issue 14 against the simulator: webhook replay,
cancel (one, 100 a call, any number), workflows and their versions, running
a workflow; each with every error the spec allows, and the run fields a
retry decision needs, parsed."""

import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from console.skyvern import (
    BULK_CANCEL_LIMIT,
    BadResponse,
    BrowserSession,
    BrowserSessionNotFound,
    BulkCancelResult,
    ConnectionDropped,
    InvalidBrowserSessionId,
    InvalidRunId,
    InvalidWebhookUrl,
    InvalidWorkflowId,
    KeyRejected,
    RateLimited,
    RunAttempt,
    RunDetail,
    RunNotFound,
    RunRequestRefused,
    RunSummary,
    SkyvernBusy,
    SkyvernClient,
    SkyvernServerError,
    SkyvernTimeout,
    SkyvernUnreachable,
    TooManyRunIds,
    ValidationFailed,
    WebhookReplay,
    WebhookReplayRefused,
    Workflow,
    WorkflowNotFound,
    run_id_batches,
)

from .conftest import KEY, OTHER_KEY, NoNetworkSession, assert_key_hidden

HOOK = "https://hooks.example.com/customer"  # reserved: the simulator never calls it


class Receiver:
    """A webhook receiver that answers `status` with `body`."""

    def __init__(self, status=200, body=b'{"received": true}'):
        self.requests: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.requests.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


class CountingSession(requests.Session):
    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def request(self, method, url, *args, **kwargs):
        self.calls.append((method, url))
        return super().request(method, url, *args, **kwargs)


def workflow(org, *, parameters=None, key=KEY, **run) -> tuple[str, str]:
    """(workflow permanent id, run id) of a new failed run of a new workflow."""
    run_id = org.state.add_run(key, status="failed", parameters=parameters or {}, **run)
    return org.state.find_run(run_id).workflow_permanent_id, run_id


# --- every call, every transport and HTTP failure ------------------------------------


def _call(name: str, skyvern: SkyvernClient, org):
    running = org.state.add_run(KEY, status="running")
    hooked = org.state.add_run(
        KEY, status="failed", webhook_url=HOOK, browser_session_id="pbs_4242"
    )
    wpid, _ = workflow(org, workflow_permanent_id="wpid_4242")
    return {
        "retry_webhook": lambda: skyvern.retry_webhook(hooked),
        "cancel_run": lambda: skyvern.cancel_run(running),
        "cancel_runs": lambda: skyvern.cancel_runs([running]),
        "get_workflow": lambda: skyvern.get_workflow(wpid),
        "workflow_versions": lambda: skyvern.workflow_versions(wpid),
        "run_workflow": lambda: skyvern.run_workflow(wpid, parameters={}),
        "get_browser_session": lambda: skyvern.get_browser_session("pbs_4242"),
    }[name]


CALLS = [
    "retry_webhook",
    "cancel_run",
    "cancel_runs",
    "get_workflow",
    "workflow_versions",
    "run_workflow",
    "get_browser_session",
]
FAULTS = {
    # name: (knobs, error, may Skyvern have acted?)
    "403": ({}, KeyRejected, False),
    "422": ({"error_rates": {422: 1.0}}, ValidationFailed, False),
    "429": ({"error_rates": {429: 1.0}, "rate_limit_retry_after": 5}, RateLimited, False),
    "500": ({"error_rates": {500: 1.0}}, SkyvernServerError, True),
    "502": ({"error_rates": {502: 1.0}}, SkyvernServerError, True),
    "503-no-retry-after": ({"error_rates": {503: 1.0}}, SkyvernServerError, True),
    "timeout": ({"hang_seconds": 2}, SkyvernTimeout, True),
    "dropped": ({"drop_connection": True}, ConnectionDropped, True),
    "malformed": ({"malformed_json": True}, BadResponse, True),
    "truncated": ({"truncate_body": True}, ConnectionDropped, True),
    "redirect": ({"redirect_to": "http://127.0.0.1:9"}, BadResponse, True),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("name", CALLS)
def test_every_call_raises_one_error_per_failure(org, name, fault):
    knobs, error, may_have_acted = FAULTS[fault]
    key = "sk-live-WRONG-0000" if fault == "403" else KEY
    skyvern = SkyvernClient(org.url, key, read_timeout=0.4)
    call = _call(name, skyvern, org)
    org.state.configure(**knobs)
    with pytest.raises(error) as caught:
        call()
    assert type(caught.value) is error
    assert caught.value.run_may_exist is may_have_acted
    if fault == "429":
        assert caught.value.retry_after == 5
    assert_key_hidden(caught.value, key)


@pytest.mark.parametrize("name", CALLS)
def test_every_call_is_unreachable_when_nothing_listens(org, name, dead_url):
    call = _call(name, SkyvernClient(dead_url, KEY), org)
    with pytest.raises(SkyvernUnreachable) as caught:
        call()
    assert not isinstance(caught.value, ConnectionDropped)
    assert caught.value.run_may_exist is False
    assert_key_hidden(caught.value)


# --- retry_webhook ---------------------------------------------------------------------


def test_replay_says_how_the_receiver_took_it(org, skyvern, receiver):
    run_id = org.state.add_run(KEY, status="completed", webhook_url=receiver.url)

    replay = skyvern.retry_webhook(run_id)

    assert isinstance(replay, WebhookReplay)
    assert (replay.run_id, replay.run_type) == (run_id, "workflow_run")
    assert replay.target_webhook_url == replay.default_webhook_url == receiver.url
    assert replay.status_code == 200 and replay.delivered and replay.error is None
    assert isinstance(replay.latency_ms, int) and replay.latency_ms >= 0
    assert replay.response_body == '{"received": true}'
    assert receiver.requests == [replay.payload.encode()]
    assert set(replay.headers) >= {"x-skyvern-signature", "x-skyvern-timestamp"}


def test_replay_to_another_url(org, skyvern, receiver):
    run_id = org.state.add_run(KEY, status="failed", webhook_url=HOOK)
    replay = skyvern.retry_webhook(run_id, webhook_url=receiver.url)
    assert (replay.default_webhook_url, replay.target_webhook_url) == (HOOK, receiver.url)
    assert replay.delivered and len(receiver.requests) == 1


def test_a_receiver_that_fails_is_an_answer_not_an_error(org, skyvern):
    failing = Receiver(status=500, body=b"x" * 5000)
    try:
        run_id = org.state.add_run(KEY, status="failed", webhook_url=failing.url)
        replay = skyvern.retry_webhook(run_id)
    finally:
        failing.close()
    assert replay.status_code == 500 and not replay.delivered
    assert 0 < len(replay.response_body) <= 2048
    unreachable = skyvern.retry_webhook(run_id, webhook_url=HOOK)
    assert unreachable.status_code is None and unreachable.error
    assert not unreachable.delivered


def test_replay_without_a_url_is_refused_400(org, skyvern):
    run_id = org.state.add_run(KEY, status="failed")
    with pytest.raises(WebhookReplayRefused) as caught:
        skyvern.retry_webhook(run_id)
    assert caught.value.status_code == 400
    assert caught.value.detail == "No webhook URL configured for the run."
    assert caught.value.run_may_exist is False
    assert org.state.deliveries() == []


def test_replay_of_an_unknown_or_another_organisations_run_is_not_found(org, skyvern):
    theirs = org.state.add_run(OTHER_KEY, status="failed", webhook_url=HOOK)
    for run_id in (theirs, "wr_1234567890"):
        with pytest.raises(RunNotFound):
            skyvern.retry_webhook(run_id)
    assert org.state.deliveries() == []


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://x.test/", "/relative", "", 5])
def test_a_bad_replay_url_is_refused_before_any_request(url):
    session = NoNetworkSession()
    skyvern = SkyvernClient("http://skyvern.invalid", KEY, session=session)
    with pytest.raises(InvalidWebhookUrl):
        skyvern.retry_webhook("wr_1", webhook_url=url)
    with pytest.raises(InvalidWebhookUrl):
        skyvern.run_workflow("wpid_1", webhook_url=url)
    assert session.calls == []


# --- cancel -----------------------------------------------------------------------------


def test_cancel_a_run_that_is_going(org, skyvern):
    run_id = org.state.add_run(KEY, status="running")
    assert skyvern.cancel_run(run_id) is None
    assert skyvern.get_run(run_id).status == "canceled"


def test_cancel_of_a_finished_run_answers_the_same_and_changes_nothing(org, skyvern):
    run_id = org.state.add_run(KEY, status="completed")
    before = skyvern.get_run(run_id)
    skyvern.cancel_run(run_id)
    after = skyvern.get_run(run_id)
    assert (after.status, after.modified_at) == (before.status, before.modified_at)


def test_cancel_of_an_unknown_or_another_organisations_run_is_not_found(org, skyvern):
    theirs = org.state.add_run(OTHER_KEY, status="running")
    for run_id in (theirs, "wr_1234567890"):
        with pytest.raises(RunNotFound):
            skyvern.cancel_run(run_id)
    assert org.state.find_run(theirs).status == "running"


def test_bulk_cancel_says_which_were_cancelled(org, skyvern):
    running = org.state.add_run(KEY, status="running")
    finished = org.state.add_run(KEY, status="failed")
    theirs = org.state.add_run(OTHER_KEY, status="queued")
    result = skyvern.cancel_runs([running, finished, theirs])
    assert result == BulkCancelResult(cancelled=(running,), failed=(finished, theirs))
    assert result.error is None and result.not_sent == () and result.unknown == ()


def test_more_than_100_ids_are_refused_before_any_request():
    session = NoNetworkSession()
    skyvern = SkyvernClient("http://skyvern.invalid", KEY, session=session)
    with pytest.raises(TooManyRunIds) as caught:
        skyvern.cancel_runs([f"wr_{i}" for i in range(BULK_CANCEL_LIMIT + 1)])
    assert (caught.value.count, caught.value.limit) == (101, 100)
    assert "at most 100" in str(caught.value)
    with pytest.raises(InvalidRunId):
        skyvern.cancel_runs(["wr_1", "wr_1/../x"])
    with pytest.raises(InvalidRunId):
        skyvern.cancel_many(["wr_1"] * 150 + ["nope"])
    assert skyvern.cancel_runs([]) == BulkCancelResult()
    assert session.calls == []


def test_cancel_many_sends_100_a_call_each_id_once(org):
    session = CountingSession()
    skyvern = SkyvernClient(org.url, KEY, session=session)
    run_ids = [org.state.add_run(KEY, status="running") for _ in range(230)]
    result = skyvern.cancel_many(run_ids + run_ids[:10])
    assert result.cancelled == tuple(run_ids) and result.failed == ()
    assert result.error is None
    assert session.calls == [("POST", org.url + "/v1/runs/cancel")] * 3
    assert [len(b) for b in run_id_batches(run_ids + run_ids[:10])] == [100, 100, 30]


def test_cancel_many_stops_at_a_refused_call_and_says_what_was_not_sent(org, skyvern):
    run_ids = [org.state.add_run(KEY, status="running") for _ in range(250)]
    org.state.configure(rate_limit_per_second=1, rate_limit_retry_after=3)
    result = skyvern.cancel_many(run_ids)
    assert result.cancelled == tuple(run_ids[:100])
    assert result.not_sent == tuple(run_ids[100:]) and result.unknown == ()
    assert isinstance(result.error, RateLimited) and result.error.retry_after == 3
    assert org.state.find_run(run_ids[100]).status == "running"


def test_cancel_many_marks_a_call_without_an_answer_unknown(org, skyvern):
    run_ids = [org.state.add_run(KEY, status="running") for _ in range(150)]
    org.state.configure(error_rates={500: 1.0})
    result = skyvern.cancel_many(run_ids)
    assert result.cancelled == ()
    assert result.unknown == tuple(run_ids[:100])  # Skyvern did cancel them, unsaid
    assert result.not_sent == tuple(run_ids[100:])
    assert isinstance(result.error, SkyvernServerError)
    assert org.state.find_run(run_ids[0]).status == "canceled"


# --- workflows and versions ---------------------------------------------------------------


def test_get_workflow_and_its_versions(org, skyvern):
    wpid, run_id = workflow(org, parameters={"carrier": "MSC"})
    first = skyvern.get_workflow(wpid)
    assert isinstance(first, Workflow)
    assert (first.workflow_permanent_id, first.version, first.status) == (wpid, 1, "published")
    assert [p.key for p in first.parameters] == ["carrier"]
    assert first.created_at.tzinfo is UTC
    org.state.publish_workflow_version(KEY, wpid, add_parameters={"po_number": None})
    org.state.publish_workflow_version(KEY, wpid)

    current = skyvern.get_workflow(wpid)
    versions = skyvern.workflow_versions(wpid)

    assert current.version == 3 and current.workflow_id != first.workflow_id
    assert [v.version for v in versions] == [1, 2, 3]
    assert versions[-1] == current and versions[0] == first
    assert skyvern.get_workflow(wpid, version=1) == first
    # the run names the version it ran, by id and by number
    [row] = [r for r in skyvern.list_runs() if r.run_id == run_id]
    assert (row.workflow_id, row.workflow_version) == (first.workflow_id, 1)
    # what a rerun on the current version would lack
    assert current.missing_parameters({"carrier": "MSC"}) == ("po_number",)
    assert first.missing_parameters({"carrier": "MSC"}) == ()


def test_unknown_workflow_or_version_is_not_found(org, skyvern):
    theirs, _ = workflow(org, key=OTHER_KEY, workflow_permanent_id="wpid_31")
    mine, _ = workflow(org, workflow_permanent_id="wpid_32")
    for call in (
        lambda: skyvern.get_workflow(theirs),
        lambda: skyvern.workflow_versions(theirs),
        lambda: skyvern.get_workflow("wpid_404"),
        lambda: skyvern.get_workflow(mine, version=7),
        lambda: skyvern.run_workflow(theirs),
    ):
        with pytest.raises(WorkflowNotFound) as caught:
            call()
        assert caught.value.status_code == 404
        assert caught.value.detail.startswith("Workflow not found.")
        assert caught.value.run_may_exist is False


@pytest.mark.parametrize("bad", ["", "wpid_", "w_123", "wpid_1/../x", "wpid_1?v=2", None, 7])
def test_invalid_workflow_ids_are_refused_before_any_request(bad):
    session = NoNetworkSession()
    skyvern = SkyvernClient("http://skyvern.invalid", KEY, session=session)
    for call in (skyvern.get_workflow, skyvern.workflow_versions, skyvern.run_workflow):
        with pytest.raises(InvalidWorkflowId):
            call(bad)
    assert session.calls == []


# --- running a workflow ---------------------------------------------------------------------


def test_run_workflow_starts_the_current_version(org, skyvern):
    wpid, run_id = workflow(org, parameters={"carrier": "MSC"})
    org.state.publish_workflow_version(KEY, wpid)

    new = skyvern.run_workflow(
        wpid,
        parameters={"carrier": "MSC"},
        webhook_url=HOOK,
        title="Rerun on the latest version",
        browser_session_id="pbs_9",
        max_steps_override=12,
    )

    assert isinstance(new, RunDetail) and new.status == "created" and new.run_id != run_id
    assert new.parameters == {"carrier": "MSC"} and new.webhook_url == HOOK
    assert new.workflow_permanent_id == wpid and new.browser_session_id == "pbs_9"
    assert org.state.find_run(new.run_id).max_steps_override == 12
    [row] = [r for r in skyvern.list_runs() if r.run_id == new.run_id]
    assert row.workflow_version == 2
    assert row.workflow_id == skyvern.get_workflow(wpid).workflow_id


def test_run_workflow_refused_400_creates_no_run(org, skyvern):
    wpid, _ = workflow(org, parameters={"carrier": "MSC"})
    org.state.publish_workflow_version(KEY, wpid, add_parameters={"po_number": None})
    with pytest.raises(RunRequestRefused) as caught:
        skyvern.run_workflow(wpid, parameters={"carrier": "MSC"})
    assert caught.value.status_code == 400
    assert "po_number" in caught.value.detail
    assert caught.value.run_may_exist is False
    assert len(skyvern.list_runs()) == 1


def test_run_workflow_busy_503_created_nothing(org, skyvern):
    wpid, _ = workflow(org)
    org.state.configure(busy=True, busy_retry_after=4)
    with pytest.raises(SkyvernBusy) as caught:
        skyvern.run_workflow(wpid)
    assert caught.value.retry_after == 4 and caught.value.run_may_exist is False
    org.state.configure(busy=False)
    assert len(skyvern.list_runs()) == 1


# --- the run fields a retry decision needs ----------------------------------------------------


def test_skyverns_own_retry_state_is_parsed(org, skyvern):
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=20)
    pending = org.state.add_run(
        KEY, status="failed", retry_pending=True, next_attempt_at=when, attempt=2
    )
    listed = {r.run_id: r for r in skyvern.list_runs()}[pending]
    detail = skyvern.get_run(pending)
    for run in (listed, detail):
        assert run.attempt == 2 and run.retry_pending is True
        assert run.next_attempt_at == when
        assert [a.number for a in run.attempts] == [1, 2]
        first, current = run.attempts
        assert isinstance(first, RunAttempt) and first.status == "failed"
        assert first.error_codes and first.finished_at.tzinfo is UTC
        assert current.retry_decision == "retry" and current.next_attempt_at == when
        assert current.decision_reason


def test_webhook_failures_sessions_credits_and_versions_are_parsed(org, skyvern):
    run_id = org.state.add_run(
        KEY,
        status="failed",
        webhook_url=HOOK,
        webhook_failure_reason="HTTP 500 from hooks.example.com",
        browser_session_id="pbs_123",
        parameters={"carrier": "MSC"},
    )
    row = {r.run_id: r for r in skyvern.list_runs()}[run_id]
    assert row.webhook_failure_reason == "HTTP 500 from hooks.example.com"
    assert row.webhook_callback_url == HOOK
    assert row.browser_session_id == "pbs_123"
    assert isinstance(row.credits_used, int) and row.credits_used > 0
    assert row.workflow_id.startswith("w_") and row.workflow_version == 1
    assert row.attempt == 1 and row.retry_pending is False and row.next_attempt_at is None
    detail = skyvern.get_run(run_id)
    assert detail.browser_session_id == "pbs_123" and detail.webhook_url == HOOK
    assert detail.parameters == {"carrier": "MSC"}
    assert detail.output  # the automation itself succeeded


def test_a_webhook_delivery_body_names_the_version_and_the_webhook_failure():
    """A delivery merges the status response: `workflow_id` is the version's."""
    run = RunDetail.from_json(
        {
            "run_id": "wr_1",
            "status": "failed",
            "workflow_id": "w_9",
            "webhook_failure_reason": "timeout",
            "credits_used": 14,
            "run_request": {"workflow_id": "wpid_1", "webhook_url": HOOK},
        }
    )
    assert (run.workflow_id, run.workflow_permanent_id) == ("w_9", "wpid_1")
    assert (run.webhook_failure_reason, run.credits_used, run.webhook_url) == ("timeout", 14, HOOK)


def test_new_fields_are_lenient():
    summary = RunSummary.from_json(
        {
            "workflow_run_id": "wr_1",
            "status": "failed",
            "attempt": "two",
            "attempts": [None, {"status": "failed"}, {"attempt_number": 1, "status": "failed"}],
            "retry_pending": "yes",
            "credits_used": True,
            "workflow_version": "3",
        }
    )
    assert summary.attempt == 1 and summary.retry_pending is False
    assert [a.number for a in summary.attempts] == [1]
    assert summary.credits_used is None and summary.workflow_version is None
    detail = RunDetail.from_json({"run_id": "wr_2", "status": "completed", "run_request": 5})
    assert detail.parameters == {} and detail.attempts == () and detail.webhook_url is None
    with pytest.raises(BadResponse):
        RunSummary.from_json(
            {"workflow_run_id": "wr_1", "status": "failed", "next_attempt_at": "soon"}
        )
    with pytest.raises(BadResponse):
        Workflow.from_json({"workflow_id": "w_1", "workflow_permanent_id": "wpid_1"})
    with pytest.raises(BadResponse):
        BulkCancelResult.from_json({"cancelled": []})
    with pytest.raises(BadResponse):
        WebhookReplay.from_json({"run_type": "workflow_run"})
    replay = WebhookReplay.from_json({"run_id": "wr_1", "response_body": "x" * 5000})
    assert len(replay.response_body) == 2048 and replay.headers == {} and replay.payload == ""


# --- Skyvern's retry policy, browser sessions --------------------------------------------


def test_a_workflow_versions_retry_policy_says_how_many_attempts(org, skyvern):
    wpid, _ = workflow(org)
    assert skyvern.get_workflow(wpid).max_attempts is None  # no policy
    org.state.set_retry_policy(KEY, wpid, {"max_retries": 2})
    org.state.publish_workflow_version(KEY, wpid)
    org.state.set_retry_policy(KEY, wpid, {"max_retries": 4})
    first, second = skyvern.workflow_versions(wpid)
    assert (first.max_retries, first.max_attempts) == (2, 3)
    assert (second.max_retries, second.max_attempts) == (4, 5)


@pytest.mark.parametrize(
    ("policy", "attempts"),
    [
        ({"retry_on": [{"status": "failed"}]}, 2),  # max_retries defaults to 1
        ({"max_retries": 3, "retry_on": []}, 4),
        ({"max_retries": 0}, None),  # outside the spec's 1..5: not trusted
        ({"max_retries": 9}, None),
        ({"max_retries": "2"}, None),
        ({"max_retries": True}, None),
        (None, None),
        ("often", None),
    ],
)
def test_retry_policy_is_read_leniently(policy, attempts):
    body = {
        "workflow_id": "w_1",
        "workflow_permanent_id": "wpid_1",
        "version": 1,
        "workflow_definition": {"parameters": [], "blocks": [], "retry_policy": policy},
    }
    assert Workflow.from_json(body).max_attempts == attempts


def test_a_browser_session_is_open_then_closed(org, skyvern):
    org.state.add_run(KEY, status="failed", browser_session_id="pbs_live1")
    session = skyvern.get_browser_session("pbs_live1")
    assert isinstance(session, BrowserSession)
    assert (session.browser_session_id, session.status, session.closed) == (
        "pbs_live1",
        "running",
        False,
    )
    org.state.close_browser_session("pbs_live1")
    session = skyvern.get_browser_session("pbs_live1")
    assert (session.status, session.closed) == ("completed", True)
    assert session.completed_at is not None


def test_a_browser_session_times_out(org, skyvern):
    old = datetime.now(UTC) - timedelta(hours=3)
    org.state.add_run(KEY, status="failed", browser_session_id="pbs_old1", created_at=old)
    session = skyvern.get_browser_session("pbs_old1")
    assert (session.status, session.closed, session.timeout_minutes) == ("timeout", True, 60)


def test_an_unknown_or_another_organisations_browser_session_is_not_found(org, skyvern):
    org.state.add_run(OTHER_KEY, status="failed", browser_session_id="pbs_theirs")
    for session_id in ("pbs_theirs", "pbs_404"):
        with pytest.raises(BrowserSessionNotFound) as caught:
            skyvern.get_browser_session(session_id)
        assert caught.value.status_code == 404 and caught.value.run_may_exist is False


@pytest.mark.parametrize("bad", ["", "pbs_", "wr_123", "pbs_1/../x", "pbs_1?x=1", None, 7])
def test_invalid_browser_session_ids_are_refused_before_any_request(bad):
    session = CountingSession()
    with pytest.raises(InvalidBrowserSessionId):
        SkyvernClient("http://127.0.0.1:9", KEY, session=session).get_browser_session(bad)
    assert session.calls == []


def test_a_browser_session_question_can_wait_less_than_the_other_calls(org):
    org.state.add_run(KEY, status="failed", browser_session_id="pbs_slow1")
    skyvern = SkyvernClient(org.url, KEY, read_timeout=10)
    org.state.configure(hang_seconds=2)
    started = datetime.now(UTC)
    with pytest.raises(SkyvernTimeout):
        skyvern.get_browser_session("pbs_slow1", read_timeout=0.3)
    assert datetime.now(UTC) - started < timedelta(seconds=1.5)


@pytest.mark.parametrize(
    "body",
    [
        {"browser_session_id": "pbs_1", "status": "failed"},
        {"browser_session_id": "pbs_1", "status": "running", "deleted_at": "2026-01-01T00:00:00"},
        {"browser_session_id": "pbs_1", "completed_at": "2026-01-01T00:00:00"},
    ],
)
def test_a_browser_session_that_ended_any_way_is_closed(body):
    assert BrowserSession.from_json(body).closed is True
    assert BrowserSession.from_json({"browser_session_id": "pbs_1"}).closed is False
    with pytest.raises(BadResponse):
        BrowserSession.from_json({"status": "running"})
    with pytest.raises(BadResponse):
        BrowserSession.from_json(["pbs_1"])
