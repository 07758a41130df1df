"""Sending run-finished webhooks the way Skyvern does.

Skyvern POSTs the run's `WorkflowRunResponse` JSON to the webhook URL with
`x-skyvern-signature` (hex HMAC-SHA256 of the raw body, keyed with the
organisation's API key), `x-skyvern-timestamp` (Unix seconds) and
`Content-Type: application/json`.

Guarantees:
- One attempt per delivery: a short timeout, no retries, no redirects
  followed, no proxy from the environment (plain http.client).
- Hosts under the reserved example domains (example.com/.net/.org, .example,
  .invalid, .test; RFC 2606) are never contacted: the seeded demo runs point
  there, and a simulator must not call out to the internet on its own.
- Never raises for a network problem: the result says what happened.
"""

import hashlib
import hmac
import http.client
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

TIMEOUT_SECONDS = 3.0
MAX_RESPONSE_BYTES = 2000
RESERVED_DOMAINS = ("example.com", "example.net", "example.org", "example", "invalid", "test")


@dataclass(frozen=True)
class DeliveryResult:
    status_code: int | None = None  # None: no HTTP answer
    latency_ms: int | None = None
    response_body: str | None = None
    error: str | None = None


def sign(body: bytes, api_key: str) -> str:
    return hmac.new(api_key.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(body: bytes, api_key: str, timestamp: int | None = None) -> dict[str, str]:
    return {
        "x-skyvern-signature": sign(body, api_key),
        "x-skyvern-timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "Content-Type": "application/json",
    }


def is_reserved(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == domain or host.endswith("." + domain) for domain in RESERVED_DOMAINS)


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float = TIMEOUT_SECONDS
) -> DeliveryResult:
    """POST `body` to `url` once; what came back (or why nothing did)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        return DeliveryResult(error=f"bad webhook URL: {exc}")
    if parts.scheme not in ("http", "https") or not host:
        return DeliveryResult(error="the webhook URL is not an http(s) URL")
    if is_reserved(host):
        return DeliveryResult(error=f"not sent: {host} is a reserved example domain")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(host, port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        content = response.read(MAX_RESPONSE_BYTES)
        return DeliveryResult(
            status_code=response.status,
            latency_ms=int((time.monotonic() - started) * 1000),
            response_body=content.decode("utf-8", "replace"),
        )
    except (OSError, http.client.HTTPException) as exc:
        return DeliveryResult(
            latency_ms=int((time.monotonic() - started) * 1000),
            error=f"{type(exc).__name__}: {exc}"[:300],
        )
    finally:
        connection.close()
