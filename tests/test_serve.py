"""The shipped production server: `gunicorn -c gunicorn.conf.py` from the
checkout, with the settings docs/deploy.md sets, behind a TLS proxy (played
here by the headers nginx adds). Started for real on a loopback port against
the test database: a person signs in, pages and static files are served (the
compressed copies `collectstatic` made, through whitenoise), a reload
replaces the workers without dropping the server, and nothing is written
under var/."""

import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.db import connection

from tests.test_deploy import ROOT, manage, production_env

HOST = "console.example.com"
PROXIED = {"Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
PASSWORD = "a long production password 7"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_under_test() -> str:
    """The URL of the database this test runs on, for the server's processes."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return (
        f"postgres://{db['USER']}{password}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}"
        f"/{db['NAME']}"
    )


class Server:
    def __init__(self, process: subprocess.Popen, url: str, log: Path):
        self.process, self.url, self.log = process, url, log

    def get(self, path: str, **kwargs) -> requests.Response:
        headers = {**PROXIED, **kwargs.pop("headers", {})}
        return requests.get(
            self.url + path, headers=headers, allow_redirects=False, timeout=10, **kwargs
        )

    def post(self, path: str, **kwargs) -> requests.Response:
        headers = {**PROXIED, "Origin": f"https://{HOST}", **kwargs.pop("headers", {})}
        return requests.post(
            self.url + path, headers=headers, allow_redirects=False, timeout=10, **kwargs
        )

    def log_text(self) -> str:
        return self.log.read_text()


def wait_until(condition, *, seconds: float, what: str, process: subprocess.Popen, log: Path):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} within {seconds} s:\n{log.read_text()}")


def answers(url: str) -> bool:
    try:
        requests.get(url, timeout=5)
    except requests.RequestException:
        return False
    return True


@pytest.fixture
def deployment(tmp_path, transactional_db):
    """The guide's environment, on the test database, with static files collected."""
    env = production_env(
        tmp_path,
        CONSOLE_VAR_DIR=str(tmp_path / "var"),
        STATIC_ROOT=str(tmp_path / "static"),
        DATABASE_URL=database_url_under_test(),
        CONSOLE_PROXY_SSL_HEADER="X-Forwarded-Proto",
        CONSOLE_PROXY_COUNT="1",
    )
    collected = manage("collectstatic", "--noinput", env=env)
    assert collected.returncode == 0, collected.stderr
    return env


@pytest.fixture
def server(deployment, tmp_path):
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {**deployment, "WEB_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2"}
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: answers(url), seconds=30, what="nothing answered", process=process, log=log
        )
        yield Server(process, url, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sign_in(server: Server, username: str) -> dict:
    page = server.get("/login/")
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    # Secure cookies: requests would keep them from plain http, so they are passed by hand.
    cookies = {"csrftoken": page.cookies["csrftoken"]}
    answer = server.post(
        "/login/",
        data={"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD},
        cookies=cookies,
    )
    assert answer.status_code == 302, answer.text
    assert "Secure" in answer.headers["Set-Cookie"]
    return {**cookies, "sessionid": answer.cookies["sessionid"]}


def test_the_shipped_server_serves_signed_in_pages_and_static_files(server, deployment, tmp_path):
    made = manage(
        "createsuperuser",
        "--noinput",
        env={
            **deployment,
            "DJANGO_SUPERUSER_USERNAME": "ops",
            "DJANGO_SUPERUSER_EMAIL": "ops@example.com",
            "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
        },
    )
    assert made.returncode == 0, made.stderr

    home = server.get("/", cookies=sign_in(server, "ops"))
    assert home.status_code == 200
    assert "Create the first team" in home.text
    assert home.headers["Strict-Transport-Security"].startswith("max-age=")

    css = server.get("/static/console/console.css", headers={"Accept-Encoding": "gzip"})
    assert css.status_code == 200
    assert css.headers["Content-Encoding"] == "gzip"  # collectstatic's copy, from STATIC_ROOT
    assert "text/css" in css.headers["Content-Type"]
    assert (tmp_path / "static" / "console" / "console.css.gz").exists()

    # Straight to the server, not through the proxy: sent to https.
    plain = requests.get(server.url + "/login/", headers={"Host": HOST}, allow_redirects=False)
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://{HOST}/login/"

    log = server.log_text()
    assert re.search(r'^203\.0\.113\.9 127\.0\.0\.1 .* "GET / HTTP/1\.1" 200 \d+ \d+ms', log, re.M)
    # Production takes its secrets from the environment and puts static files
    # elsewhere: nothing of the demo's is made under var/.
    assert [p.name for p in (tmp_path / "var").glob("*")] == []


def test_a_reload_replaces_the_workers_and_keeps_serving(server):
    def booted() -> int:
        return server.log_text().count("Booting worker with pid")

    wait_until(
        lambda: booted() == 2,
        seconds=30,
        what="two workers",
        process=server.process,
        log=server.log,
    )
    server.process.send_signal(signal.SIGHUP)
    wait_until(
        lambda: booted() == 4,
        seconds=30,
        what="new workers",
        process=server.process,
        log=server.log,
    )
    assert server.get("/login/").status_code == 200
    assert server.process.poll() is None
    assert "Handling signal: hup" in server.log_text()


def test_the_access_log_records_webhook_deliveries_without_their_token(server):
    token = "Zq8" + secrets.token_urlsafe(24)
    answer = server.post(
        f"/webhooks/skyvern/{token}/",
        data=b"{}",
        headers={"Content-Type": "application/json", "x-skyvern-signature": "0" * 64},
    )
    assert answer.status_code == 404  # no connection has this token

    def logged() -> bool:
        return '"POST /webhooks/skyvern/[redacted]/ HTTP/1.1" 404' in server.log_text()

    wait_until(
        logged, seconds=10, what="the delivery logged", process=server.process, log=server.log
    )
    # Nor in Django's own line about the 404 (same output in this set-up).
    assert "Not Found: /webhooks/skyvern/[redacted]/" in server.log_text()
    assert token not in server.log_text()
