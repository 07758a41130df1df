"""The console's SkyvernClient against the simulator: one test per way a call
can fail, lenient parsing, paging, and keeping the API key secret."""

from datetime import UTC, datetime

import pytest

from console.skyvern import (
    BadResponse,
    InvalidRunId,
    KeyRejected,
    NotRetryable,
    RateLimited,
    RunDetail,
    RunNotFound,
    RunSummary,
    SkyvernBusy,
    SkyvernClient,
    SkyvernError,
    SkyvernServerError,
    SkyvernTimeout,
    SkyvernUnreachable,
    ValidationFailed,
    validate_run_id,
)
from console.skyvern.errors import ConnectionDropped

from .conftest import KEY, OTHER_KEY, NoNetworkSession, assert_key_hidden

WRONG_KEY = "sk-live-WRONG-" + "5e6f7a8b"


def runs_of(org, key=KEY):
    return org.state.list_runs(key, page_size=1000)


# --- success --------------------------------------------------------------------


def test_retry_returns_the_new_run(org, skyvern):
    original = org.state.add_run(KEY, status="failed", workflow_title="Book freight pickup")
    new = skyvern.retry_run(original)
    assert isinstance(new, RunDetail)
    assert new.run_id != original and new.run_id.startswith("wr_")
    assert new.status == "created" and not new.is_terminal
    assert new.recording_url is None and new.queued_at is None and new.started_at is None
    assert new.app_url == f"{org.url}/runs/{new.run_id}"
    assert new.workflow_title == "Book freight pickup"
    assert new.workflow_permanent_id == org.state.find_run(original).workflow_permanent_id
    assert new.created_at.tzinfo is UTC
    assert org.state.retry_count(original) == 1


def test_max_steps_override_is_sent(org, skyvern):
    original = org.state.add_run(KEY, status="failed")
    new = skyvern.retry_run(original, max_steps_override=12)
    assert org.state.find_run(new.run_id).max_steps_override == 12


def test_get_run_parses_a_finished_run(org, skyvern):
    run_id = org.state.add_run(KEY, status="completed", workflow_title="Download carrier invoices")
    run = skyvern.get_run(run_id)
    assert (run.run_id, run.status, run.run_type) == (run_id, "completed", "workflow_run")
    assert run.is_terminal
    assert run.recording_url and run.recording_url.startswith(org.url + "/recordings/")
    assert run.screenshot_urls and run.downloaded_files and run.output
    assert run.step_count and run.errors == []
    assert run.failure_reason is None
    naive = datetime.fromisoformat(run.raw["finished_at"])
    assert naive.tzinfo is None
    assert run.finished_at == naive.replace(tzinfo=UTC)


def test_check_key(org, skyvern):
    skyvern.check_key()
    with pytest.raises(KeyRejected):
        SkyvernClient(org.url, "sk-wrong").check_key()


# --- one test per error -----------------------------------------------------------


def test_not_retryable_400(org, skyvern):
    run_id = org.state.add_run(KEY, status="running")
    with pytest.raises(NotRetryable) as caught:
        skyvern.retry_run(run_id)
    assert caught.value.status_code == 400
    assert caught.value.detail == "Only terminal workflow runs can be retried"
    assert caught.value.run_may_exist is False
    assert org.state.retry_count(run_id) == 0


def test_run_not_found_404(org, skyvern):
    with pytest.raises(RunNotFound) as caught:
        skyvern.retry_run("wr_1234567890")
    assert caught.value.detail == "Workflow run not found wr_1234567890"
    assert caught.value.run_may_exist is False
    with pytest.raises(RunNotFound):
        skyvern.get_run("wr_1234567890")


def test_another_organisations_run_is_not_found(org, skyvern):
    theirs = org.state.add_run(OTHER_KEY, status="failed")
    with pytest.raises(RunNotFound):
        skyvern.retry_run(theirs)
    with pytest.raises(RunNotFound):
        skyvern.get_run(theirs)
    assert org.state.retry_count(theirs) == 0


def test_validation_failed_422(org, skyvern):
    with pytest.raises(ValidationFailed) as caught:
        skyvern.list_runs(page=0)
    assert "greater than or equal to 1" in caught.value.detail
    assert "greater than or equal to 1" in str(caught.value)
    assert caught.value.run_may_exist is False


def test_unknown_status_is_refused_before_any_request():
    session = NoNetworkSession()
    skyvern = SkyvernClient("http://skyvern.invalid", KEY, session=session)
    with pytest.raises(ValidationFailed):
        skyvern.list_runs(statuses=["failed", "exploded"])
    assert session.calls == []


def test_rate_limited_429(org, skyvern):
    org.state.configure(rate_limit_per_second=1, rate_limit_retry_after=2)
    skyvern.list_runs()
    with pytest.raises(RateLimited) as caught:
        skyvern.list_runs()
    assert caught.value.retry_after == 2 and isinstance(caught.value.retry_after, int)
    assert caught.value.status_code == 429
    assert caught.value.run_may_exist is False
    assert "2 s" in str(caught.value)


def test_busy_503_with_retry_after_created_nothing(org, skyvern):
    run_id = org.state.add_run(KEY, status="failed")
    org.state.configure(busy=True, busy_retry_after=4)
    with pytest.raises(SkyvernBusy) as caught:
        skyvern.retry_run(run_id)
    assert caught.value.retry_after == 4
    assert caught.value.run_may_exist is False
    assert "No run was created" in caught.value.detail
    assert org.state.retry_count(run_id) == 0
    assert len(runs_of(org)) == 1


def test_key_rejected_403(org):
    with pytest.raises(KeyRejected) as caught:
        SkyvernClient(org.url, "sk-wrong").list_runs()
    assert caught.value.status_code == 403
    assert caught.value.detail == "Could not validate credentials"
    assert caught.value.run_may_exist is False
    with pytest.raises(KeyRejected):
        SkyvernClient(org.url, "").list_runs()


def test_server_error_500_may_have_created_a_run(org, skyvern):
    run_id = org.state.add_run(KEY, status="failed")
    org.state.configure(error_rates={500: 1.0})
    with pytest.raises(SkyvernServerError) as caught:
        skyvern.retry_run(run_id)
    assert caught.value.status_code == 500
    assert caught.value.run_may_exist is True
    assert org.state.retry_count(run_id) == 1  # it did, and the client sent it only once


def test_503_without_retry_after_is_a_server_error_not_busy(org, skyvern):
    run_id = org.state.add_run(KEY, status="failed")
    org.state.configure(error_rates={503: 1.0})
    with pytest.raises(SkyvernServerError) as caught:
        skyvern.retry_run(run_id)
    assert not isinstance(caught.value, SkyvernBusy)
    assert caught.value.status_code == 503
    assert caught.value.run_may_exist is True


def test_timeout_may_have_created_a_run(org):
    run_id = org.state.add_run(KEY, status="failed")
    org.state.configure(hang_seconds=2)
    skyvern = SkyvernClient(org.url, KEY, read_timeout=0.3)
    with pytest.raises(SkyvernTimeout) as caught:
        skyvern.retry_run(run_id)
    assert caught.value.run_may_exist is True
    assert org.state.retry_count(run_id) == 1


def test_unreachable_when_nothing_listens(dead_url):
    skyvern = SkyvernClient(dead_url, KEY)
    with pytest.raises(SkyvernUnreachable) as caught:
        skyvern.retry_run("wr_1")
    assert not isinstance(caught.value, ConnectionDropped)
    assert caught.value.run_may_exist is False


def test_connection_dropped_may_have_created_a_run(org, skyvern):
    run_id = org.state.add_run(KEY, status="failed")
    org.state.configure(drop_connection=True)
    with pytest.raises(ConnectionDropped) as caught:
        skyvern.retry_run(run_id)
    assert caught.value.run_may_exist is True
    assert org.state.retry_count(run_id) == 1  # never sent twice


@pytest.mark.parametrize("call", ["retry", "get", "list"])
def test_bad_response_for_malformed_json(org, skyvern, call):
    run_id = org.state.add_run(KEY, status="failed")
    org.state.configure(malformed_json=True)
    with pytest.raises(BadResponse) as caught:
        if call == "retry":
            skyvern.retry_run(run_id)
        elif call == "get":
            skyvern.get_run(run_id)
        else:
            skyvern.list_runs()
    assert caught.value.run_may_exist is True


def test_body_cut_short_means_the_run_may_exist(org, skyvern):
    """Headers arrived, then the body broke off: Skyvern did answer (and act)."""
    run_id = org.state.add_run(KEY, status="failed")
    org.state.configure(truncate_body=True)
    with pytest.raises(ConnectionDropped) as caught:
        skyvern.retry_run(run_id)
    assert org.state.retry_count(run_id) == 1
    assert caught.value.run_may_exist is True


@pytest.mark.parametrize(
    "bad_id",
    [
        "wr_1/../x",
        "wr_1?x",
        "wr_1#x",
        "wr_1/retry",
        "../wr_1",
        "wr_1%2F..",
        "",
        None,
        "wr_",
        "WR_1",
        "tsk_123",
        " wr_1",
        "wr_1\n",
        "wr_1 ",
        "wr_ü",
        "wr_" + "1" * 101,
        123,
        b"wr_1",
    ],
)
def test_invalid_run_ids_are_refused_before_any_request(bad_id):
    session = NoNetworkSession()
    skyvern = SkyvernClient("http://skyvern.invalid", KEY, session=session)
    for method in (skyvern.retry_run, skyvern.get_run):
        with pytest.raises(InvalidRunId):
            method(bad_id)
    assert session.calls == []
    assert issubclass(InvalidRunId, ValueError)


def test_real_run_ids_are_valid():
    assert validate_run_id("wr_602035243965149958") == "wr_602035243965149958"
    assert validate_run_id("wr_abc-DEF_123") == "wr_abc-DEF_123"


# --- lenient parsing ------------------------------------------------------------------


def test_unknown_fields_are_ignored_and_optional_ones_may_be_missing():
    summary = RunSummary.from_json(
        {"workflow_run_id": "wr_1", "status": "failed", "brand_new_field": {"x": 1}}
    )
    assert summary.run_id == "wr_1" and summary.created_at is None
    assert summary.workflow_title is None and summary.failure_reason is None
    detail = RunDetail.from_json(
        {
            "run_id": "wr_2",
            "status": "completed",
            "attempts": [{"whatever": True}],
            "screenshot_urls": None,
            "downloaded_files": None,
            "errors": None,
            "step_count": "many",
        }
    )
    assert detail.screenshot_urls == [] and detail.downloaded_files == [] and detail.errors == []
    assert detail.step_count is None
    assert detail.workflow_permanent_id is None and detail.recording_archived is False


def test_naive_timestamps_are_utc():
    run = RunSummary.from_json(
        {
            "workflow_run_id": "wr_1",
            "status": "completed",
            "created_at": "2026-11-28T08:44:13.373593",
            "finished_at": "2026-11-28T08:50:00Z",
            "started_at": "2026-11-28T09:45:00+01:00",
        }
    )
    assert run.created_at == datetime(2026, 11, 28, 8, 44, 13, 373593, tzinfo=UTC)
    assert run.finished_at == datetime(2026, 11, 28, 8, 50, tzinfo=UTC)
    assert run.started_at.astimezone(UTC) == datetime(2026, 11, 28, 8, 45, tzinfo=UTC)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"status": "failed"},
        {"workflow_run_id": "", "status": "failed"},
        {"workflow_run_id": "wr_1"},
        {"workflow_run_id": "wr_1", "status": "failed", "created_at": "yesterday"},
        {"workflow_run_id": "wr_1", "status": "failed", "created_at": 1764319453},
    ],
)
def test_records_without_meaning_are_bad_responses(data):
    with pytest.raises(BadResponse):
        RunSummary.from_json(data)


def test_a_whole_seeded_history_parses(simulator):
    simulator.state.add_org(KEY, seed="history", seed_runs=80)
    skyvern = SkyvernClient(simulator.url, KEY)
    runs = skyvern.list_runs(page_size=100)
    assert len(runs) == 80
    for run in runs:
        assert run.created_at.tzinfo is UTC and run.workflow_title
        assert skyvern.get_run(run.run_id).status == run.status


def test_skyverns_own_retries_categories_and_webhook_failures_parse(org, skyvern):
    """Fields a 1.0.56 server sends that the client does not model yet are kept
    in `raw`, and never stop a run from parsing."""
    pending = org.state.add_run(KEY, status="failed", retry_pending=True)
    third = org.state.add_run(KEY, status="completed", attempt=3)
    hook = org.state.add_run(KEY, status="failed", webhook_failure_reason="HTTP 500")
    listed = {run.run_id: run for run in skyvern.list_runs(page_size=10)}
    assert listed[pending].status == "failed" and listed[pending].raw["retry_pending"] is True
    assert listed[pending].raw["failure_category"][0]["category"]
    assert listed[third].raw["attempt"] == 3 and len(listed[third].raw["attempts"]) == 3
    assert listed[hook].raw["webhook_failure_reason"] == "HTTP 500"
    detail = skyvern.get_run(hook)
    assert detail.status == "failed" and detail.output and detail.errors == []
    assert skyvern.get_run(third).raw["attempts"][0]["status"] == "failed"


# --- paging and filters ---------------------------------------------------------------


def test_list_pages_newest_first(simulator):
    simulator.state.add_org(KEY, seed="paging", seed_runs=25)
    skyvern = SkyvernClient(simulator.url, KEY)
    pages = [skyvern.list_runs(page=p, page_size=10) for p in (1, 2, 3, 4)]
    assert [len(p) for p in pages] == [10, 10, 5, 0]
    runs = [run for page in pages for run in page]
    assert len({run.run_id for run in runs}) == 25
    assert [r.created_at for r in runs] == sorted((r.created_at for r in runs), reverse=True)


def test_list_filters(simulator):
    simulator.state.add_org(KEY, seed="filters", seed_runs=40)
    skyvern = SkyvernClient(simulator.url, KEY)
    everything = skyvern.list_runs(page_size=100)
    failed = skyvern.list_runs(statuses=["failed", "timed_out"], page_size=100)
    assert failed and {r.status for r in failed} <= {"failed", "timed_out"}
    assert len(failed) == sum(r.status in ("failed", "timed_out") for r in everything)
    target = everything[3]
    assert target.run_id in [r.run_id for r in skyvern.list_runs(search_key=target.run_id)]
    code = simulator.state.find_run(failed[0].run_id).errors[0]["error_code"]
    coded = skyvern.list_runs(error_code=code, page_size=100)
    assert failed[0].run_id in [r.run_id for r in coded]


# --- the key stays secret, redirects are not followed ----------------------------------


def test_the_key_is_not_in_the_clients_str_or_repr(org):
    skyvern = SkyvernClient(org.url, KEY)
    assert KEY not in str(skyvern) and KEY not in repr(skyvern)
    assert KEY not in repr(vars(skyvern).get("timeout")) and KEY not in repr(skyvern.session)


SCENARIOS = {
    "400": ({}, "running"),
    "404": ({}, None),
    "422": ({}, "page0"),
    "429": ({"rate_limit_per_second": 1}, "twice"),
    "503-busy": ({"busy": True}, "failed"),
    "500": ({"error_rates": {500: 1.0}}, "failed"),
    "502": ({"error_rates": {502: 1.0}}, "failed"),
    "timeout": ({"hang_seconds": 2}, "failed"),
    "dropped": ({"drop_connection": True}, "failed"),
    "malformed": ({"malformed_json": True}, "failed"),
    "truncated": ({"truncate_body": True}, "failed"),
    "redirect": ({"redirect_to": "http://127.0.0.1:9"}, "failed"),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_key_is_in_no_exception(org, scenario):
    knobs, kind = SCENARIOS[scenario]
    skyvern = SkyvernClient(org.url, KEY, read_timeout=0.3)
    run_id = org.state.add_run(KEY, status=kind) if kind in ("running", "failed") else "wr_404"
    org.state.configure(**knobs)
    with pytest.raises(SkyvernError) as caught:
        if kind == "page0":
            skyvern.list_runs(page=0)
        elif kind == "twice":
            skyvern.list_runs()
            skyvern.list_runs()
        else:
            skyvern.retry_run(run_id)
    assert_key_hidden(caught.value)


def test_the_key_is_in_no_exception_when_unreachable(dead_url):
    with pytest.raises(SkyvernUnreachable) as caught:
        SkyvernClient(dead_url, KEY).get_run("wr_1")
    assert_key_hidden(caught.value)


def test_the_key_is_in_no_exception_of_a_wrong_key(org):
    with pytest.raises(KeyRejected) as caught:
        SkyvernClient(org.url, WRONG_KEY).list_runs()
    assert_key_hidden(caught.value, WRONG_KEY)


@pytest.mark.parametrize("key", [KEY + "\n", " " + KEY, KEY + "\r\nX-Evil: 1"])
def test_the_key_is_in_no_exception_even_when_malformed(org, key):
    """requests' InvalidHeader would quote the value: the client refuses it first."""
    with pytest.raises(KeyRejected) as caught:
        SkyvernClient(org.url, key).list_runs()
    assert_key_hidden(caught.value, KEY)  # the secret part, however it is wrapped
    assert caught.value.run_may_exist is False


def test_a_non_latin1_key_fails_as_a_skyvern_error(org):
    """Not a bare UnicodeEncodeError from http.client."""
    with pytest.raises(KeyRejected):
        SkyvernClient(org.url, "sk-ключ").list_runs()


def test_redirects_are_not_followed(org, skyvern, recording_server):
    run_id = org.state.add_run(KEY, status="failed")
    org.state.configure(redirect_to=recording_server.url)
    with pytest.raises(BadResponse) as caught:
        skyvern.retry_run(run_id)
    assert "redirect" in str(caught.value)
    with pytest.raises(BadResponse):
        skyvern.list_runs()
    with pytest.raises(BadResponse):
        skyvern.get_run(run_id)
    assert recording_server.requests == []  # the key never went elsewhere
    assert org.state.retry_count(run_id) == 0
