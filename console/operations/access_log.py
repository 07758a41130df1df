"""gunicorn's access log without secrets (gunicorn.conf.py's `logger_class`).

A connection's webhook URL carries its token (`/webhooks/skyvern/<token>/`):
whoever reads the journal could post deliveries for that connection with it
(only Skyvern's signature keeps them out). The access log still records
every request, with the token replaced by "[redacted]" in every value the
log format could use (the request line, the path, the raw URI, the referer).

No Django here: gunicorn's master process loads this before any app.
"""

import re

from gunicorn.glogging import Logger

REDACTED = "[redacted]"
WEBHOOK_TOKEN = re.compile(r"(/webhooks/skyvern/)[^/?#\s\"]+")


def redact_path(text: str) -> str:
    return WEBHOOK_TOKEN.sub(lambda m: m.group(1) + REDACTED, text)


class RedactingLogger(Logger):
    """gunicorn's logger, minus the webhook tokens in access log lines."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            name: redact_path(value) if isinstance(value, str) and "/webhooks/" in value else value
            for name, value in atoms.items()
        }
