"""The simulator delivers run-finished webhooks like Skyvern: signed, once,
off the state lock, with a short timeout; retry_webhook sends one again."""

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


class Receiver:
    """A tiny HTTP server that records every POST it gets."""

    def __init__(self, status: int = 200, delay: float = 0.0):
        self.status = status
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
                with contextlib.suppress(OSError):  # the sender may have given up
                    self.send_response(receiver.status)
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
    return state.deliveries()


def retry(server, run_id: str, key: str = KEY) -> str:
    response = call(server, "POST", f"/v1/agents/runs/{run_id}/retry", key=key)
    assert response.status_code == 200
    return response.json()["run_id"]


def assert_signed(request: dict, key: str = KEY) -> dict:
    headers = request["headers"]
    expected = hmac.new(key.encode(), request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-skyvern-signature"], expected)
    assert abs(int(headers["x-skyvern-timestamp"]) - time.time()) < 30
    assert headers["content-type"] == "application/json"
    body = json.loads(request["body"])
    assert_valid("WorkflowRunResponse", body)
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
    assert org.state.deliveries() == [(new_id, receiver.url(), 200)]


def test_the_organisation_url_is_used_when_the_run_has_none(org, receiver):
    org.state.configure(**FAST, failure_rate=0.0)
    org.state.add_org(KEY, webhook_url=receiver.url("/org-hook/"))
    new_id = retry(org, org.state.add_run(KEY, status="failed"))

    [request] = receiver.wait_for(1)

    assert request["path"] == "/org-hook/"
    assert assert_signed(request)["status"] == "completed"
    assert org.state.deliveries() == [(new_id, receiver.url("/org-hook/"), 200)]


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
    assert org.state.deliveries() == []


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
    assert org.state.deliveries() == [(run_id, receiver.url(), 200)]

    call(org, "POST", f"/v1/runs/{run_id}/retry_webhook")
    assert len(receiver.requests) == 2


def test_retry_webhook_without_a_url_sends_nothing(org):
    run_id = org.state.add_run(KEY, status="failed")
    answer = call(org, "POST", f"/v1/runs/{run_id}/retry_webhook").json()
    assert answer["target_webhook_url"] is None
    assert answer["error"] and answer["status_code"] is None
    assert org.state.deliveries() == []


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
    assert org.state.deliveries() == [(run_id, "https://hooks.example.com/skyvern/x", None)]


# --- bounded, off the lock -----------------------------------------------------------


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook/"


def test_an_unreachable_receiver_is_tried_once(org):
    url = closed_port_url()
    org.state.configure(**FAST)
    org.state.add_org(KEY, webhook_url=url)
    new_id = retry(org, org.state.add_run(KEY, status="failed"))

    deliveries = wait_for_deliveries(org.state, 1)
    time.sleep(0.5)

    assert deliveries == [(new_id, url, None)]
    assert org.state.deliveries() == deliveries


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
    assert org.state.deliveries() == []
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
