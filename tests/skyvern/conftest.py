"""Helpers for the Skyvern client's tests against the simulator."""

import socket
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from console.skyvern import SkyvernClient

KEY = "sk-live-SECRET-4f1b9c2e7d"
OTHER_KEY = "sk-live-OTHER-0a9b8c7d6e"


@pytest.fixture
def org(simulator):
    """The simulator with organisation KEY (empty) and OTHER_KEY (empty)."""
    simulator.state.add_org(KEY, name="Acme Logistics")
    simulator.state.add_org(OTHER_KEY, name="Globex Freight")
    return simulator


@pytest.fixture
def skyvern(org):
    return SkyvernClient(org.url, KEY, connect_timeout=2, read_timeout=3)


@pytest.fixture
def dead_url():
    """A local URL where nothing listens (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class RecordingServer:
    """Answers 200 '[]' to anything and remembers every request it got."""

    def __init__(self):
        self.requests: list[tuple[str, str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(("GET", self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"[]")

            do_POST = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def recording_server():
    server = RecordingServer()
    yield server
    server.stop()


class NoNetworkSession:
    """A stand-in requests.Session that fails the test if anything is sent."""

    def __init__(self):
        self.calls = []

    def request(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        raise AssertionError("the client sent a request it should have refused")


def exception_chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and contexts, each once."""
    chain, todo = [], [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is seen for seen in chain):
            continue
        chain.append(current)
        todo += [current.__cause__, current.__context__]
        todo += [arg for arg in current.args if isinstance(arg, BaseException)]
    return chain


def assert_key_hidden(exc: BaseException, key: str = KEY) -> None:
    """The key is in no str/repr/args of the exception or any chained one,
    nor in the formatted traceback."""
    needle = key.strip()
    for item in exception_chain(exc):
        for text in (str(item), repr(item), repr(item.args)):
            assert needle not in text, f"API key leaked by {type(item).__name__}: {text[:200]}"
    formatted = "".join(traceback.format_exception(exc))
    assert needle not in formatted
