"""Every fault knob does what it says, only where it is asked to, and never to
the control API, the app page or the media."""

import http.client
import json
import threading
import time

import pytest
import requests

from .conftest import KEY, OTHER_KEY, all_runs, call


@pytest.fixture
def run_id(org):
    return org.state.add_run(KEY, status="failed")


def retry(server, run_id, **kwargs):
    return call(server, "POST", f"/v1/agents/runs/{run_id}/retry", **kwargs)


def test_knobs_start_off_and_reset_turns_them_off(org):
    defaults = org.state.config()
    assert defaults["error_rates"] == {} and defaults["busy"] == 0.0
    assert defaults["fault_endpoints"] is None and defaults["hang_seconds"] == 0
    org.state.configure(latency_ms=5, error_rates={500: 0.5}, busy=True, fault_endpoints={"retry"})
    org.state.reset()
    assert org.state.config() == defaults


@pytest.mark.parametrize(
    "knobs",
    [
        {"no_such_knob": 1},
        {"latency_ms": -1},
        {"error_rates": {200: 1.0}},
        {"error_rates": {500: 0.7, 503: 0.7}},
        {"error_rates": {"abc": 1.0}},
        {"busy": 2},
        {"fault_endpoints": {"retry", "everything"}},
        {"redirect_to": "ftp://x"},
        {"apply_then_fail": "yes"},
        {"rate_limit_per_second": -3},
        {"failure_rate": 1.5},
    ],
)
def test_bad_knobs_are_refused(simulator, knobs):
    with pytest.raises(ValueError):
        simulator.state.configure(**knobs)
    assert simulator.state.config()["error_rates"] == {}


def test_latency_is_added_to_api_answers_only(org, run_id):
    org.state.configure(latency_ms=250)
    started = time.monotonic()
    assert call(org, "GET", "/v1/agents/runs").status_code == 200
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    assert requests.get(org.url + "/_sim/config", timeout=5).status_code == 200
    assert requests.get(f"{org.url}/runs/{run_id}", timeout=5).status_code == 200
    assert time.monotonic() - started < 0.2


def test_fault_endpoints_limit_where_faults_apply(org, run_id):
    org.state.configure(error_rates={500: 1.0}, latency_ms=200, fault_endpoints={"get_run"})
    started = time.monotonic()
    assert call(org, "GET", "/v1/agents/runs").status_code == 200
    assert retry(org, run_id).status_code == 200
    assert time.monotonic() - started < 0.15
    assert call(org, "GET", f"/v1/runs/{run_id}").status_code == 500
    org.state.configure(fault_endpoints=["list"], latency_ms=0)
    assert call(org, "GET", "/v1/agents/runs").status_code == 500
    assert call(org, "GET", "/v1/agents/wpid_1/runs").status_code == 500
    assert call(org, "GET", f"/v1/runs/{run_id}").status_code == 200


def test_control_api_and_pages_are_never_faulted(org, run_id):
    org.state.configure(
        error_rates={500: 1.0}, drop_connection=True, malformed_json=True, hang_seconds=5
    )
    assert requests.get(org.url + "/_sim/health", timeout=2).json() == {"ok": True}
    assert requests.get(org.url + "/_sim/retries", timeout=2).json() == {}
    assert requests.get(f"{org.url}/runs/{run_id}", timeout=2).status_code == 200
    assert requests.post(org.url + "/_sim/reset", timeout=2).status_code == 200
    assert org.state.config()["error_rates"] == {}


def test_error_rate_500_is_plain_and_ambiguous(org, run_id):
    org.state.configure(error_rates={500: 1.0})
    response = retry(org, run_id)
    assert response.status_code == 500
    assert "retry-after" not in response.headers
    assert response.text == "Internal Server Error"
    # by default the 5xx hides a run that WAS created
    assert org.state.retry_count(run_id) == 1
    assert len(org.state.list_runs(KEY, page_size=100)) == 2


def test_apply_then_fail_false_fails_before_acting(org, run_id):
    org.state.configure(error_rates={500: 1.0}, apply_then_fail=False)
    assert retry(org, run_id).status_code == 500
    assert org.state.retry_count(run_id) == 0


def test_error_rate_503_carries_no_retry_after(org, run_id):
    org.state.configure(error_rates={503: 1.0})
    response = retry(org, run_id)
    assert response.status_code == 503
    assert "retry-after" not in response.headers


def test_error_rate_502_looks_like_a_proxy_page(org):
    org.state.configure(error_rates={502: 1.0})
    response = call(org, "GET", "/v1/agents/runs")
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"


def test_injected_4xx_acts_before_the_request(org, run_id):
    org.state.configure(error_rates={404: 1.0})
    response = retry(org, run_id)
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
    assert org.state.retry_count(run_id) == 0


def test_error_rates_are_probabilities_and_fault_seed_repeats_them(org):
    def sample():
        org.state.configure(error_rates={503: 0.5}, fault_seed=1234)
        return [call(org, "GET", "/v1/agents/runs").status_code for _ in range(60)]

    first = sample()
    assert set(first) == {200, 503}
    assert 15 <= first.count(503) <= 45
    assert sample() == first


def test_rate_limit_is_per_organisation_and_says_when(org):
    org.state.configure(rate_limit_per_second=3, rate_limit_retry_after=1)
    codes = [call(org, "GET", "/v1/agents/runs").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200]
    assert 429 in codes[3:]
    response = call(org, "GET", "/v1/agents/runs")
    if response.status_code == 429:
        assert response.headers["retry-after"] == "1"
        assert response.json()["detail"]
    assert call(org, "GET", "/v1/agents/runs", key=OTHER_KEY).status_code == 200
    time.sleep(1.05)
    assert call(org, "GET", "/v1/agents/runs").status_code == 200


def test_busy_answers_503_with_retry_after_and_creates_nothing(org, run_id):
    org.state.configure(busy=True, busy_retry_after=3)
    response = retry(org, run_id)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert "No run was created" in response.json()["detail"]
    assert org.state.retry_count(run_id) == 0
    assert len(all_runs(org)) == 1
    # only run submissions are busy
    assert call(org, "GET", f"/v1/runs/{run_id}").status_code == 200


def test_hang_provokes_a_read_timeout_and_the_run_exists(org, run_id):
    org.state.configure(hang_seconds=2)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        retry(org, run_id, timeout=(2, 0.3))
    assert time.monotonic() - started < 1.5
    assert org.state.retry_count(run_id) == 1


def test_a_hanging_request_does_not_block_others(org, run_id):
    org.state.configure(hang_seconds=3, fault_endpoints={"retry"})
    outcome = {}

    def slow():
        try:
            retry(org, run_id, timeout=(2, 5))
        except requests.RequestException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    for _ in range(5):
        assert call(org, "GET", "/v1/agents/runs").status_code == 200
    assert time.monotonic() - started < 1.0
    org.state.reset()  # wakes the hanging request, which is then dropped
    thread.join(timeout=3)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), requests.ConnectionError)


def test_malformed_json_is_a_200_with_a_truncated_body(org, run_id):
    org.state.configure(malformed_json=True)
    response = call(org, "GET", f"/v1/runs/{run_id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(ValueError):
        json.loads(response.content)
    assert response.text.startswith('{"run_id":')


def test_malformed_json_only_touches_successful_answers(org):
    org.state.configure(malformed_json=True)
    response = call(org, "GET", "/v1/runs/wr_404")
    assert response.json() == {"detail": "Task run not found"}


def test_drop_connection_sends_nothing(org, run_id):
    org.state.configure(drop_connection=True)
    with pytest.raises(requests.ConnectionError) as caught:
        retry(org, run_id)
    assert isinstance(caught.value.__context__ or caught.value.args[0], Exception)
    assert org.state.retry_count(run_id) == 1  # it acted, then hung up
    connection = http.client.HTTPConnection(org.url.removeprefix("http://"), timeout=2)
    connection.request("GET", "/v1/agents/runs", headers={"x-api-key": KEY})
    with pytest.raises(http.client.RemoteDisconnected):
        connection.getresponse()


def test_truncate_body_cuts_the_answer_midway(org, run_id):
    org.state.configure(truncate_body=True)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        call(org, "GET", f"/v1/runs/{run_id}")


def test_redirect_to_sends_every_api_call_elsewhere(org):
    org.state.configure(redirect_to="https://elsewhere.example/")
    response = call(org, "GET", "/v1/agents/runs", key=None, params={"page": 2})
    assert response.status_code == 307
    assert response.headers["location"] == "https://elsewhere.example/v1/agents/runs?page=2"


def test_knobs_over_http(simulator):
    response = requests.post(
        simulator.url + "/_sim/config",
        json={"error_rates": {"500": 1.0}, "fault_endpoints": ["retry"], "busy": 0.25},
        timeout=5,
    )
    assert response.status_code == 200
    config = requests.get(simulator.url + "/_sim/config", timeout=5).json()
    assert config["error_rates"] == {"500": 1.0}
    assert config["fault_endpoints"] == ["retry"]
    assert config["busy"] == 0.25
    assert simulator.state.config() == config
    bad = requests.post(simulator.url + "/_sim/config", json={"nope": 1}, timeout=5)
    assert bad.status_code == 400 and "nope" in bad.json()["detail"]
