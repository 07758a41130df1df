"""The simulator delivers run-finished webhooks like Skyvern 1.0.56: signed
over the compact JSON body, with the timestamp off by the Skyvern host's UTC
offset (5 h by default), re-delivered up to 3 times on 403/408/425/429/5xx
and network errors, off the state lock, with a short timeout;
retry_webhook sends one again, once."""

import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from console.simulator import SimulatorServer, SimulatorState, webhooks

from .conftest import KEY, OTHER_KEY, assert_valid, call

FAST = {"queued_after": 0, "running_after": 0.05, "finished_after": 0.1}
#: Re-deliveries 100 times sooner (0.01, 0.02, 0.04 s) to keep the tests fast.
QUICK_REDELIVERY = {"webhook_backoff_scale": 0.01}
NEW_YORK_SKEW = 18000  # seconds: Skyvern's utcnow().timestamp() on a UTC-5 host


class Receiver:
    """A tiny HTTP server that records every POST it gets."""

    def __init__(self, status: int = 200, delay: float = 0.0, statuses=(), headers=None):
        self.status = status
        self.statuses = list(statuses)  # answered in turn, then `status`
        self.extra_headers = headers or {}
        self.delay = delay
        self.requests: list[dict] = []
        self.got = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if receiver.delay:
                    time.sleep(receiver.delay)
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                receiver.got.set()
                answer = b'{"ok": true}'
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.status
                with contextlib.suppress(OSError):  # the sender may have given up
                    self.send_response(status)
                    for name, value in receiver.extra_headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook/") -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.requests)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def wait_for_deliveries(state, count: int, timeout: float = 5.0) -> list:
    deadline = time.monotonic() + timeout
    while len(state.deliveries()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return sent(state)


def sent(state) -> list[tuple]:
    """(run_id, url, status_code) of each attempt, in order."""
    return [(d.run_id, d.url, d.status_code) for d in state.deliveries()]


def retry(server, run_id: str, key: str = KEY) -> str:
    response = call(server, "POST", f"/v1/agents/runs/{run_id}/retry", key=key)
    assert response.status_code == 200
    return response.json()["run_id"]


def assert_signed(request: dict, key: str = KEY, skew: int = NEW_YORK_SKEW) -> dict:
    headers = request["headers"]
    expected = hmac.new(key.encode(), request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-skyvern-signature"], expected)
    assert abs(int(headers["x-skyvern-timestamp"]) - skew - time.time()) < 30
    assert headers["content-type"] == "application/json"
    body = json.loads(request["body"])
    # Signed as sent: compact JSON, non-ASCII as UTF-8.
    compact = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert request["body"] == compact
    assert_valid("WorkflowRunResponse", body)
    # The status response merged with the run response, as Skyvern sends it.
    assert body["workflow_run_id"] == body["run_id"]
    assert body["outputs"] == body["output"]
    return body


# --- delivery when a run finishes ---------------------------------------------------


def test_a_retried_run_delivers_its_webhook_once_when_it_finishes(org, receiver):
    org.state.configure(**FAST, failure_rate=1.0)
    original = org.state.add_run(KEY, status="failed", webhook_url=receiver.url())
    new_id = retry(org, original)

    [request] = receiver.wait_for(1)
    time.sleep(0.5)  # several more ticks: still one delivery

    assert len(receiver.requests) == 1
    assert request["path"] == "/hook/"
    body = assert_signed(request)
    assert body["run_id"] == new_id
    assert body["status"] == "failed"
    assert body["failure_reason"]
    assert body["app_url"].endswith(f"/runs/{new_id}")
    assert body["recording_url"]
    assert sent(org.state) == [(new_id, receiver.url(), 200)]


def test_the_organisation_url_is_used_when_the_run_has_none(org, receiver):
    org.state.configure(**FAST, failure_rate=0.0)
    org.state.add_org(KEY, webhook_url=receiver.url("/org-hook/"))
    new_id = retry(org, org.state.add_run(KEY, status="failed"))

    [request] = receiver.wait_for(1)

    assert request["path"] == "/org-hook/"
    assert assert_signed(request)["status"] == "completed"
    assert sent(org.state) == [(new_id, receiver.url("/org-hook/"), 200)]


def test_the_runs_own_url_wins_over_the_organisations(org, receiver):
    org.state.configure(**FAST)
    org.state.add_org(KEY, webhook_url=receiver.url("/org-hook/"))
    retry(org, org.state.add_run(KEY, status="failed", webhook_url=receiver.url("/run-hook/")))

    [request] = receiver.wait_for(1)

    assert request["path"] == "/run-hook/"


def test_the_organisation_url_can_be_set_through_the_control_api(org, receiver):
    org.state.configure(**FAST)
    response = call(
        org, "POST", "/_sim/orgs", key=None, json={"api_key": KEY, "webhook_url": receiver.url()}
    )
    assert response.status_code == 201
    retry(org, org.state.add_run(KEY, status="failed"))

    assert len(receiver.wait_for(1)) == 1
    listed = call(org, "GET", "/_sim/deliveries", key=None).json()
    assert listed[0]["url"] == receiver.url() and listed[0]["status_code"] == 200


def test_a_bad_organisation_url_is_refused(org):
    response = call(
        org, "POST", "/_sim/orgs", key=None, json={"api_key": KEY, "webhook_url": "ftp://x"}
    )
    assert response.status_code == 400


def test_each_organisation_signs_with_its_own_key(org, receiver):
    org.state.configure(**FAST)
    org.state.add_org(OTHER_KEY, webhook_url=receiver.url())
    retry(org, org.state.add_run(OTHER_KEY, status="failed"), key=OTHER_KEY)

    [request] = receiver.wait_for(1)

    assert_signed(request, OTHER_KEY)
    wrong = hmac.new(KEY.encode(), request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["x-skyvern-signature"] != wrong


def test_set_status_and_cancel_deliver_but_finished_history_does_not(org, receiver):
    org.state.add_org(KEY, webhook_url=receiver.url())
    org.state.add_run(KEY, status="failed")  # history: never announced
    org.state.add_run(KEY, status="completed", webhook_url=receiver.url("/own/"))
    running = org.state.add_run(KEY, status="running")
    queued = org.state.add_run(KEY, status="queued")

    org.state.set_status(running, "timed_out")
    assert call(org, "POST", f"/v1/runs/{queued}/cancel").status_code == 200
    requests_seen = receiver.wait_for(2)
    time.sleep(0.5)

    assert len(receiver.requests) == 2
    statuses = {
        json.loads(r["body"])["run_id"]: json.loads(r["body"])["status"] for r in requests_seen
    }
    assert statuses == {running: "timed_out", queued: "canceled"}


def test_a_run_still_going_is_not_delivered(org, receiver):
    org.state.configure(queued_after=0, running_after=0, finished_after=60)
    org.state.add_org(KEY, webhook_url=receiver.url())
    retry(org, org.state.add_run(KEY, status="failed"))
    time.sleep(0.6)
    assert receiver.requests == []
    assert sent(org.state) == []


def test_the_timestamp_is_off_by_the_hosts_utc_offset_and_not_signed(org, receiver):
    org.state.configure(**FAST)
    org.state.add_org(KEY, webhook_url=receiver.url())
    retry(org, org.state.add_run(KEY, status="failed"))

    [request] = receiver.wait_for(1)

    # 5 h ahead, like Skyvern's utcnow().timestamp() on an America/New_York
    # host; the signature covers the body alone, whatever the timestamp.
    skew = int(request["headers"]["x-skyvern-timestamp"]) - time.time()
    assert abs(skew - NEW_YORK_SKEW) < 30
    assert_signed(request)
    assert org.state.deliveries()[0].timestamp == request["headers"]["x-skyvern-timestamp"]


def test_a_utc_host_is_the_explicit_option(org, receiver):
    org.state.configure(**FAST, webhook_timestamp_skew_seconds=0)
    org.state.add_org(KEY, webhook_url=receiver.url())
    retry(org, org.state.add_run(KEY, status="failed"))

    [request] = receiver.wait_for(1)

    assert_signed(request, skew=0)


def test_the_body_is_compact_json_with_non_ascii_as_utf8(org, receiver):
    org.state.add_org(KEY, webhook_url=receiver.url())
    running = org.state.add_run(KEY, status="running", workflow_title="Rechnungsübersicht")
    org.state.set_status(running, "failed", "Zeitüberschreitung")

    [request] = receiver.wait_for(1)

    assert "Rechnungsübersicht".encode() in request["body"]
    assert b"\\u00fc" not in request["body"]
    assert assert_signed(request)["failure_reason"] == "Zeitüberschreitung"


@pytest.mark.parametrize("status", [503, 429, 403, 425])
def test_a_retryable_answer_is_redelivered_with_the_same_body_and_timestamp(org, status):
    receiver = Receiver(statuses=[status, status])
    try:
        org.state.configure(**FAST, **QUICK_REDELIVERY)
        org.state.add_org(KEY, webhook_url=receiver.url())
        new_id = retry(org, org.state.add_run(KEY, status="failed"))

        first, second, third = receiver.wait_for(3)
        time.sleep(0.3)  # answered 200 the third time: no more

        assert len(receiver.requests) == 3
        assert first["body"] == second["body"] == third["body"]
        assert first["headers"] == second["headers"] == third["headers"]
        assert sent(org.state) == [
            (new_id, receiver.url(), status),
            (new_id, receiver.url(), status),
            (new_id, receiver.url(), 200),
        ]
        assert [d.attempt for d in org.state.deliveries()] == [1, 2, 3]
    finally:
        receiver.close()


@pytest.mark.parametrize("status", [401, 404, 422])
def test_another_4xx_answer_is_final(org, status):
    receiver = Receiver(status=status)
    try:
        org.state.configure(**FAST, **QUICK_REDELIVERY)
        org.state.add_org(KEY, webhook_url=receiver.url())
        new_id = retry(org, org.state.add_run(KEY, status="failed"))

        receiver.wait_for(1)
        time.sleep(0.4)

        assert sent(org.state) == [(new_id, receiver.url(), status)]
    finally:
        receiver.close()


def test_a_server_error_gets_at_most_three_redeliveries(org):
    receiver = Receiver(status=500)
    try:
        org.state.configure(**FAST, **QUICK_REDELIVERY)
        org.state.add_org(KEY, webhook_url=receiver.url())
        retry(org, org.state.add_run(KEY, status="failed"))

        receiver.wait_for(4)
        time.sleep(0.5)

        assert len(receiver.requests) == 4
    finally:
        receiver.close()


def test_redeliveries_back_off_exponentially_or_as_retry_after_says():
    answer = webhooks.DeliveryResult(status_code=503)
    assert [webhooks.redelivery_delay(n, answer) for n in (1, 2, 3)] == [1, 2, 4]
    asked = webhooks.DeliveryResult(status_code=429, retry_after=7)
    assert webhooks.redelivery_delay(1, asked) == 7
    too_long = webhooks.DeliveryResult(status_code=503, retry_after=31)
    assert webhooks.redelivery_delay(3, too_long) == 4


def test_the_redelivery_waits_for_retry_after(org):
    receiver = Receiver(statuses=[503], headers={"Retry-After": "20"})
    try:
        # Scaled by 0.01: Retry-After 20 s waits 0.2 s, where the backoff
        # alone would wait 0.01 s.
        org.state.configure(**FAST, **QUICK_REDELIVERY)
        org.state.add_org(KEY, webhook_url=receiver.url())
        retry(org, org.state.add_run(KEY, status="failed"))

        receiver.wait_for(1)
        first_at = time.monotonic()
        receiver.wait_for(2)

        assert len(receiver.requests) == 2
        assert time.monotonic() - first_at >= 0.15
    finally:
        receiver.close()


def test_the_default_backoff_is_skyverns_one_second(org):
    receiver = Receiver(statuses=[503])
    try:
        org.state.configure(**FAST)
        org.state.add_org(KEY, webhook_url=receiver.url())
        retry(org, org.state.add_run(KEY, status="failed"))

        receiver.wait_for(1)
        time.sleep(0.6)
        assert len(receiver.requests) == 1  # not yet
        assert len(receiver.wait_for(2, timeout=3)) == 2
    finally:
        receiver.close()


def test_a_reserved_domain_is_not_redelivered(org):
    org.state.configure(**FAST, **QUICK_REDELIVERY)
    org.state.add_org(KEY, webhook_url="https://hooks.example.com/skyvern/x")
    retry(org, org.state.add_run(KEY, status="failed"))

    wait_for_deliveries(org.state, 1)
    time.sleep(0.3)

    assert len(org.state.deliveries()) == 1


def test_every_attempt_is_listed_by_the_control_api(org):
    receiver = Receiver(statuses=[503])
    try:
        org.state.configure(**FAST, **QUICK_REDELIVERY)
        org.state.add_org(KEY, webhook_url=receiver.url())
        new_id = retry(org, org.state.add_run(KEY, status="failed"))
        receiver.wait_for(2)
        wait_for_deliveries(org.state, 2)

        listed = call(org, "GET", "/_sim/deliveries", key=None).json()

        assert [(d["run_id"], d["attempt"], d["status_code"]) for d in listed] == [
            (new_id, 1, 503),
            (new_id, 2, 200),
        ]
        sent_timestamp = receiver.requests[0]["headers"]["x-skyvern-timestamp"]
        assert listed[0]["timestamp"] == listed[1]["timestamp"] == sent_timestamp
    finally:
        receiver.close()


def test_a_reset_drops_pending_redeliveries(org):
    receiver = Receiver(status=503)
    try:
        org.state.configure(**FAST, webhook_backoff_scale=0.3)
        org.state.add_org(KEY, webhook_url=receiver.url())
        retry(org, org.state.add_run(KEY, status="failed"))
        receiver.wait_for(1)

        org.state.reset()
        time.sleep(0.8)

        assert len(receiver.requests) == 1
        assert org.state.deliveries() == []
    finally:
        receiver.close()


# --- retry_webhook -----------------------------------------------------------------


def test_retry_webhook_sends_it_again_and_says_how_it_went(org, receiver):
    run_id = org.state.add_run(KEY, status="failed", webhook_url=receiver.url())

    response = call(org, "POST", f"/v1/runs/{run_id}/retry_webhook")

    assert response.status_code == 200
    answer = response.json()
    assert_valid("RunWebhookReplayResponse", answer)
    assert answer["status_code"] == 200 and answer["error"] is None
    assert isinstance(answer["latency_ms"], int)
    [request] = receiver.requests
    assert request["body"] == answer["payload"].encode()
    assert request["headers"]["x-skyvern-signature"] == answer["headers"]["x-skyvern-signature"]
    assert assert_signed(request)["run_id"] == run_id
    assert sent(org.state) == [(run_id, receiver.url(), 200)]

    call(org, "POST", f"/v1/runs/{run_id}/retry_webhook")
    assert len(receiver.requests) == 2


def test_retry_webhook_without_a_url_sends_nothing(org):
    """Skyvern's MissingWebhookTarget: 400, nothing sent."""
    run_id = org.state.add_run(KEY, status="failed")
    response = call(org, "POST", f"/v1/runs/{run_id}/retry_webhook")
    assert response.status_code == 400
    assert response.json() == {"detail": "No webhook URL configured for the run."}
    assert sent(org.state) == []


def test_retry_webhook_to_another_url_sends_it_there_signed_the_same(org, receiver):
    run_id = org.state.add_run(
        KEY, status="failed", webhook_url="https://hooks.example.com/customer"
    )
    response = call(
        org, "POST", f"/v1/runs/{run_id}/retry_webhook", json={"webhook_url": receiver.url()}
    )
    assert response.status_code == 200
    answer = response.json()
    assert_valid("RunWebhookReplayResponse", answer)
    assert answer["default_webhook_url"] == "https://hooks.example.com/customer"
    assert answer["target_webhook_url"] == receiver.url()
    assert answer["status_code"] == 200
    [request] = receiver.requests
    assert assert_signed(request)["run_id"] == run_id
    assert sent(org.state) == [(run_id, receiver.url(), 200)]
    # and a run without a URL of its own can be replayed to one
    bare = org.state.add_run(KEY, status="completed")
    response = call(
        org, "POST", f"/v1/runs/{bare}/retry_webhook", json={"webhook_url": receiver.url()}
    )
    assert response.status_code == 200 and len(receiver.requests) == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"webhook_url": "ftp://hooks.example.com/x"}, 400),
        ({"webhook_url": "not a url"}, 400),
        ({"webhook_url": 7}, 422),
        ([1, 2], 422),
    ],
)
def test_retry_webhook_refuses_a_bad_target(org, body, status):
    run_id = org.state.add_run(KEY, status="failed", webhook_url="https://hooks.example.com/in")
    response = call(org, "POST", f"/v1/runs/{run_id}/retry_webhook", json=body)
    assert response.status_code == status
    if status == 422:
        assert_valid("HTTPValidationError", response.json())
    assert sent(org.state) == []


def test_reserved_example_domains_are_never_contacted(org, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to connect")

    monkeypatch.setattr(webhooks.http.client.HTTPSConnection, "connect", no_network)
    run_id = org.state.add_run(
        KEY, status="failed", webhook_url="https://hooks.example.com/skyvern/x"
    )
    answer = call(org, "POST", f"/v1/runs/{run_id}/retry_webhook").json()
    assert answer["status_code"] is None
    assert "reserved" in answer["error"]
    assert sent(org.state) == [(run_id, "https://hooks.example.com/skyvern/x", None)]


# --- bounded, off the lock -----------------------------------------------------------


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook/"


def test_an_unreachable_receiver_gets_three_redeliveries_then_no_more(org):
    url = closed_port_url()
    org.state.configure(**FAST, **QUICK_REDELIVERY)
    org.state.add_org(KEY, webhook_url=url)
    new_id = retry(org, org.state.add_run(KEY, status="failed"))

    deliveries = wait_for_deliveries(org.state, 4)
    time.sleep(0.5)

    assert deliveries == [(new_id, url, None)] * 4
    assert [d.attempt for d in org.state.deliveries()] == [1, 2, 3, 4]
    assert all("Connection" in d.error for d in org.state.deliveries())


def test_a_slow_receiver_holds_neither_the_lock_nor_other_requests(org):
    slow = Receiver(delay=1.0)
    try:
        org.state.add_org(KEY, webhook_url=slow.url())
        org.state.set_status(org.state.add_run(KEY, status="running"), "failed")
        assert slow.got.wait(0) is False
        deadline = time.monotonic() + 2
        while not slow.requests and time.monotonic() < deadline:
            started = time.monotonic()
            assert call(org, "GET", "/v1/agents/runs").status_code == 200
            with org.state._lock:  # free: the delivery waits outside it
                pass
            assert time.monotonic() - started < 0.5
            time.sleep(0.05)
        assert len(slow.requests) == 1
    finally:
        slow.close()


def test_delivery_gives_up_after_the_timeout():
    slow = Receiver(delay=2.0)
    try:
        started = time.monotonic()
        result = webhooks.post(slow.url(), b"{}", {"Content-Type": "application/json"}, 0.3)
        assert time.monotonic() - started < 1.5
        assert result.status_code is None and "timed out" in result.error.lower()
    finally:
        slow.close()


def test_stop_ends_the_ticker():
    server = SimulatorServer(host="127.0.0.1", port=0).start()
    ticker = server._ticker
    assert ticker.is_alive()
    server.stop()
    assert not ticker.is_alive()


def test_reset_forgets_pending_and_sent_webhooks(org, receiver):
    org.state.add_org(KEY, webhook_url=receiver.url())
    run_id = org.state.add_run(KEY, status="failed")
    call(org, "POST", f"/v1/runs/{run_id}/retry_webhook")
    assert org.state.deliveries()
    org.state.configure(queued_after=0, running_after=0, finished_after=0.3)
    retry(org, run_id)
    org.state.reset()
    time.sleep(0.6)
    assert sent(org.state) == []
    assert len(receiver.requests) == 1


def test_the_organisation_url_and_pending_webhooks_survive_a_restart(tmp_path):
    path = tmp_path / "state.json"
    first = SimulatorState(path)
    first.add_org(KEY, webhook_url="http://127.0.0.1:9/hook/")
    running = first.add_run(KEY, status="running")
    first.set_status(running, "failed")

    again = SimulatorState(path)
    assert again.org(KEY).webhook_url == "http://127.0.0.1:9/hook/"
    [due] = again.due_webhooks()
    assert due.run.run_id == running and due.url == "http://127.0.0.1:9/hook/"
    assert again.due_webhooks() == []
