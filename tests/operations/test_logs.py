"""LOG_FORMAT=json: one JSON object per line, and never a key, even when one
is in an exception's message or in the request that failed."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from django.test import RequestFactory

from console.operations.logs import JsonFormatter, redact
from console.skyvern import SkyvernClient
from tests.conftest import KEY_A

ROOT = Path(__file__).resolve().parent.parent.parent


def format_record(message, *args, exc=None, **extra):
    record = logging.LogRecord("console.test", logging.ERROR, __file__, 1, message, args, None)
    if exc is not None:
        try:
            raise exc
        except type(exc):
            record.exc_info = sys.exc_info()
    for name, value in extra.items():
        setattr(record, name, value)
    return JsonFormatter().format(record)


def test_one_json_object_per_line_with_the_request():
    request = RequestFactory().post("/t/acme/runs/wr_1/retry/?x=1", {"reason": "outage"})
    line = format_record("Retry failed for %s", "wr_1", request=request, status_code=500)
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "ERROR" and data["logger"] == "console.test"
    assert data["message"] == "Retry failed for wr_1"
    assert data["request"] == {"method": "POST", "path": "/t/acme/runs/wr_1/retry/"}
    assert data["status"] == 500
    assert data["time"].endswith("+00:00")


def test_a_key_in_an_exception_or_a_request_never_reaches_the_log():
    SkyvernClient("https://api.skyvern.com", KEY_A)  # this process now knows the key
    request = RequestFactory().post(
        f"/t/acme/connections/new/?api_key={KEY_A}",
        {"api_key": KEY_A},
        headers={"x-api-key": KEY_A},
    )
    line = format_record(
        "Could not save %s",
        {"api_key": KEY_A},
        exc=ValueError(f"bad key {KEY_A} for https://api.skyvern.com"),
        request=request,
        extra_detail=f"x-api-key: {KEY_A}",
    )
    data = json.loads(line)
    assert KEY_A not in line and KEY_A[8:20] not in line
    assert "ValueError: bad key [redacted]" in data["exception"]
    assert data["extra_detail"] == "x-api-key: [redacted]"


def test_keys_never_seen_by_this_process_are_removed_by_their_shape():
    unseen = "sk-never-seen-by-a-client-42"
    for text in (
        f"x-api-key: {unseen}",
        f"{{'api_key': '{unseen}'}}",
        f"Authorization: Bearer {unseen}",
        f"password={unseen}",
    ):
        assert unseen not in redact(text), text
    # Ordinary words stay.
    assert redact("Skyvern webhook rejected with 404: unknown token") == (
        "Skyvern webhook rejected with 404: unknown token"
    )


def test_the_settings_secrets_are_removed(settings):
    settings.METRICS_TOKEN = "metrics-token-abcdef123"
    line = format_record("token is %s; secret %s", settings.METRICS_TOKEN, settings.SECRET_KEY)
    assert settings.METRICS_TOKEN not in line and settings.SECRET_KEY not in line


def test_a_server_error_is_logged_as_json_without_the_key(tmp_path):
    """A real process with LOG_FORMAT=json: Django's own request logger, an
    exception carrying the key, and nothing but JSON lines on stderr."""
    script = (
        "import django, logging; django.setup()\n"
        "from console.skyvern import SkyvernClient\n"
        f"SkyvernClient('https://api.skyvern.com', {KEY_A!r})\n"
        "log = logging.getLogger('django.request')\n"
        "try:\n"
        f"    raise RuntimeError('Skyvern refused ' + {KEY_A!r})\n"
        "except RuntimeError:\n"
        "    log.exception('Internal Server Error: /t/acme/runs/')\n"
        "logging.getLogger('console.sync').info('synced %s runs', 3)\n"
        "logging.getLogger('django.server').info('\"GET /healthz HTTP/1.1\" 200 16')\n"
    )
    env = {
        **os.environ,
        "LOG_FORMAT": "json",
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "CONSOLE_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert KEY_A not in result.stderr
    error = next(line for line in lines if line["logger"] == "django.request")
    assert "RuntimeError: Skyvern refused [redacted]" in error["exception"]
    assert any(line["message"] == "synced 3 runs" for line in lines)
    assert any(line["logger"] == "django.server" for line in lines)  # runserver's, too


def test_a_webhook_token_never_reaches_a_json_line():
    token = "tok3n-Of-A-Connection-0123456789ab"
    request = RequestFactory().post(f"/webhooks/skyvern/{token}/")
    line = format_record("Forbidden: %s", request.path, request=request, status_code=403)
    data = json.loads(line)
    assert token not in line
    assert data["message"] == "Forbidden: /webhooks/skyvern/[redacted]/"
    assert data["request"]["path"] == "/webhooks/skyvern/[redacted]/"
