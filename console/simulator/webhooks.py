"""Sending run-finished webhooks the way Skyvern 1.0.56 does.

Skyvern POSTs the run's status response merged with its run response
(compact JSON: `separators=(",", ":")`, `ensure_ascii=False`, see
render.webhook_payload) with `x-skyvern-signature` (hex HMAC-SHA256 of that
body as sent, keyed with the organisation's API key),
`x-skyvern-timestamp` and `Content-Type: application/json`.

The timestamp is NOT covered by the signature, and Skyvern computes it as
`int(datetime.utcnow().timestamp())`: a naive UTC wall clock read back as
local time, so it is off by the Skyvern host's UTC offset (observed: 5 h
ahead from an America/New_York host). `skyvern_timestamp(skew)` reproduces
that; the state's `webhook_timestamp_skew_seconds` knob says by how much.

Guarantees:
- `post` makes one attempt: a short timeout, no redirects followed, no
  proxy from the environment (plain http.client). Re-deliveries are the
  ticker's (server.py), decided by `should_redeliver` and `redelivery_delay`:
  up to MAX_REDELIVERIES more attempts, same body and headers, on 403, 408,
  425, 429, 5xx and network errors; other answers are final.
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
#: Skyvern re-delivers a webhook at most this many times after the first try.
MAX_REDELIVERIES = 3
#: Answers Skyvern re-delivers after (besides 5xx and no answer at all).
REDELIVER_STATUSES = frozenset({403, 408, 425, 429})
#: A longer Retry-After is not honoured: the plain backoff applies.
MAX_RETRY_AFTER_SECONDS = 30
MAX_RESPONSE_BYTES = 2000
RESERVED_DOMAINS = ("example.com", "example.net", "example.org", "example", "invalid", "test")


@dataclass(frozen=True)
class DeliveryResult:
    status_code: int | None = None  # None: no HTTP answer
    latency_ms: int | None = None
    response_body: str | None = None
    error: str | None = None
    retry_after: int | None = None  # the receiver's Retry-After, in seconds
    network_error: bool = False  # tried, but no HTTP answer came back


def sign(body: bytes, api_key: str) -> str:
    return hmac.new(api_key.encode(), body, hashlib.sha256).hexdigest()


def skyvern_timestamp(skew_seconds: int = 0) -> int:
    """`int(datetime.utcnow().timestamp())` as computed on a Skyvern host whose
    zone is `skew_seconds` behind UTC (America/New_York in winter: 18000)."""
    return int(time.time()) + skew_seconds


def signed_headers(body: bytes, api_key: str, timestamp: int | None = None) -> dict[str, str]:
    """Skyvern's headers; the timestamp is true time unless given (it is not signed)."""
    return {
        "x-skyvern-signature": sign(body, api_key),
        "x-skyvern-timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "Content-Type": "application/json",
    }


def should_redeliver(result: DeliveryResult) -> bool:
    """Does Skyvern try this delivery again? Never after a local refusal
    (a reserved domain, a bad URL): only after the receiver's answer or the
    network said so."""
    if result.status_code is None:
        return result.network_error
    return result.status_code in REDELIVER_STATUSES or 500 <= result.status_code <= 599


def redelivery_delay(redelivery: int, result: DeliveryResult) -> float:
    """Seconds before re-delivery number `redelivery` (1, 2, 3): 1 s·2ⁿ
    (1, 2, 4), or the receiver's Retry-After when it asks for at most 30 s."""
    if result.retry_after is not None and result.retry_after <= MAX_RETRY_AFTER_SECONDS:
        return float(result.retry_after)
    return float(2 ** (redelivery - 1))


def _retry_after(value: str | None) -> int | None:
    try:
        seconds = int((value or "").strip())
    except ValueError:
        return None  # an HTTP date, or garbage: not honoured
    return seconds if seconds >= 0 else None


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
            retry_after=_retry_after(response.getheader("Retry-After")),
        )
    except (OSError, http.client.HTTPException) as exc:
        return DeliveryResult(
            latency_ms=int((time.monotonic() - started) * 1000),
            error=f"{type(exc).__name__}: {exc}"[:300],
            network_error=True,
        )
    finally:
        connection.close()
