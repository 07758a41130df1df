"""Logs as one JSON object per line (LOG_FORMAT=json), for a log collector.

Each line has the time (UTC, ISO 8601), level, logger, message, process and
thread, the request's method, path and status when Django logged one (never
its headers, query string or body), and the formatted exception, if any.

Never a secret: before a line is written, every secret the process knows is
replaced with "[redacted]": each API key this process has decrypted for a
Skyvern client, SECRET_KEY, the encryption keys, METRICS_TOKEN and the
database password, and whatever follows `x-api-key`, `api_key`,
`Authorization` or `Bearer` in the text (a key typed into a form that raised,
say).
"""

import json
import logging
import re
from datetime import UTC, datetime

from django.conf import settings

from console.skyvern.client import known_api_keys

from .access_log import redact_path

REDACTED = "[redacted]"
# `name: value`, `name=value`, `'name': 'value'`, and `Bearer value`.
SHAPED_SECRETS = re.compile(
    r"(?i)(\b(?:x-api-key|api[_-]?key|authorization|password|secret)[\"']?\s*[:=]\s*[\"']?"
    r"(?:bearer\s+)?|\bbearer\s+)"
    r"[^\s\"',}]{4,}"
)
# Attributes every LogRecord has: the rest were passed in `extra`.
STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _settings_secrets() -> list[str]:
    try:
        found = [settings.SECRET_KEY, *settings.CONSOLE_ENCRYPTION_KEYS]
        found.append(getattr(settings, "METRICS_TOKEN", "") or "")
        found += [db.get("PASSWORD") or "" for db in settings.DATABASES.values()]
    except Exception:  # settings not configured yet: logging starts before them
        return []
    return found


def redact(text: str) -> str:
    """The text without any secret this process knows of, or shaped like one."""
    secrets = sorted(
        {s for s in [*known_api_keys(), *_settings_secrets()] if s and len(s) >= 4},
        key=len,
        reverse=True,
    )
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return redact_path(SHAPED_SECRETS.sub(lambda m: m.group(1) + REDACTED, text))


class WebhookTokenFilter(logging.Filter):
    """Plain log lines without webhook tokens: Django logs the path of every
    request answered 4xx or 5xx ("Not Found: /webhooks/skyvern/<token>/")."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/webhooks/" in message:
            record.msg, record.args = redact_path(message), ()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        request = getattr(record, "request", None)
        if request is not None and hasattr(request, "method"):
            line["request"] = {"method": request.method, "path": request.path}
        status = getattr(record, "status_code", None)
        if isinstance(status, int):
            line["status"] = status
        for name, value in vars(record).items():
            if name not in STANDARD and name not in {"request", "status_code"}:
                line.setdefault(name, value if _plain(value) else repr(value))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(_redacted(line), default=repr, ensure_ascii=False)


def _redacted(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    return value


def _plain(value) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
