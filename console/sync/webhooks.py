"""Skyvern's run-finished webhooks: the console learns of a finished run at once.

Skyvern POSTs the run's status response merged with its `WorkflowRunResponse`
(compact JSON) to `/webhooks/skyvern/<token>/`, where the token
(ConnectionSync.webhook_token) says which connection the delivery is for, and
signs it: `x-skyvern-signature` is the hex HMAC-SHA256 of the raw body keyed
with the organisation's API key, i.e. the connection's key.

`x-skyvern-timestamp` decides nothing. Skyvern 1.0.56 does not sign it and
computes it as `datetime.utcnow().timestamp()`, which is off by the Skyvern
host's UTC offset (5 h from an America/New_York host): a freshness window
refused every delivery of such a host, and stopped no replay (anyone holding
a captured body can put a fresh timestamp beside it). It is read and logged
for information only; the signature and the body's own facts decide.

Guarantees:
- A delivery changes the cached run only when the token is known, the body
  is at most WEBHOOK_MAX_BODY_BYTES (never more than that + 1 bytes are
  read), the signature is right (constant-time comparison on bytes) and the
  body is a workflow run. Every refusal changes nothing in the database and
  answers only a status code with `{"ok": false}`, each final for Skyvern
  (it re-delivers only 403, 408, 425, 429 and 5xx): 404 unknown token, 405
  not a POST, 413 too big, 401 signature, 400 not a run.
- Deduplicated by content, not by time: a delivery of a run whose cached
  full view (one with an app_url) has the same status, `modified_at` and
  `attempt` is a no-op answered 200, as is the same payload again, so
  Skyvern's re-deliveries (up to 3, same body) and replays of a captured
  body change nothing (not even `synced_at`); a delivery older than the
  cached run (by `modified_at`, else by `attempt`) never overwrites it.
  The comparison and the write are console.runs.store.run_store_delivery,
  under the connection's runs lock that every writer of the cached runs
  takes: another delivery or a sync can't store in between.
- A database that fails for a moment (a lock timeout, a lost connection)
  answers 503 with Retry-After, so that Skyvern re-delivers; nothing is
  half-stored (one transaction).
- One log line per refusal (reason, connection id, remote address) and per
  accepted delivery (with the timestamp's offset from now); never the key,
  the signature or the body. Each refusal of a known token is also one
  audit row (webhook_rejected, with the status and reason, in the
  connection's team), and the newest are shown to the team's admins on the
  Connections page (`webhook_refusals`). A delivery to an unknown token
  belongs to no team and could be sent by anyone, as often as they like: it
  gets the log line only, no row anywhere.
"""

import hashlib
import hmac
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, DataError
from django.http import HttpResponseNotAllowed, JsonResponse, UnreadablePostError
from django.views.decorators.csrf import csrf_exempt

from console.audit.models import Action, AuditEntry, Outcome
from console.audit.services import audit_record
from console.runs.models import Run, Status
from console.runs.store import run_store_delivery
from console.skyvern import BadResponse, InvalidRunId, RunDetail, validate_run_id
from console.teams.models import Connection
from console.teams.secrets import ApiKeyUnreadable

from .models import ConnectionSync

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: How many refused deliveries of a connection its Connections page shows.
REFUSALS_SHOWN = 10
#: Seconds Skyvern is asked to wait before re-delivering after a database hiccup.
RETRY_AFTER_SECONDS = 5
READ_CHUNK = 64 * 1024
HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what new_webhook_token() makes, at most 64 long
# Text columns with a length limit: a longer value is not a run we can store.
LIMITED_FIELDS = ("app_url", "recording_url", "workflow_permanent_id", "workflow_title")


class Rejected(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def max_body_bytes() -> int:
    return int(getattr(settings, "WEBHOOK_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


def _remote(request) -> str:
    return request.META.get("REMOTE_ADDR") or "?"


def _reject(request, status: int, reason: str, connection_id=None) -> JsonResponse:
    """Log and audit one refused delivery (once), and answer it."""
    _audit_rejection(request, status, reason, connection_id)
    log.warning(
        "Skyvern webhook rejected with %s: %s (connection %s, from %s)",
        status,
        reason,
        connection_id if connection_id is not None else "-",
        _remote(request),
    )
    return JsonResponse({"ok": False}, status=status)


def _audit_rejection(request, status: int, reason: str, connection_id) -> None:
    # A delivery to no connection of ours belongs to no team and could be sent
    # by anyone, as often as they like: it gets the log line, not an audit row.
    found = (
        Connection.objects.filter(pk=connection_id).values_list("team_id", "label").first()
        if connection_id is not None
        else None
    )
    if not found:
        return
    team_id, target = found[0], ("connection", connection_id, found[1])
    audit_record(
        action=Action.WEBHOOK_REJECTED,
        request=request,
        team=team_id,
        outcome=Outcome.REFUSED,
        target=target,
        details={"status": status, "reason": reason},
    )


def _find_sync(token: str) -> ConnectionSync | None:
    """The connection's sync row for this token: one indexed lookup, then a
    constant-time comparison (in case a database compares case-insensitively)."""
    if not TOKEN.fullmatch(token):  # e.g. a NUL, which PostgreSQL can't even compare
        return None
    sync = ConnectionSync.objects.select_related("connection").filter(webhook_token=token).first()
    if sync is None or not hmac.compare_digest(sync.webhook_token.encode(), token.encode()):
        return None
    return sync


def _read_body(request, limit: int) -> bytes:
    """The raw body, reading at most limit + 1 bytes; Rejected(413) above the limit."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0  # Django reads nothing of a body with a garbled length
    if declared > limit:
        raise Rejected(413, f"Content-Length {declared} over the {limit} byte limit")
    chunks, size = [], 0
    try:
        while size <= limit:
            chunk = request.read(min(READ_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except UnreadablePostError:
        raise Rejected(400, "the body could not be read") from None
    if size > limit:
        raise Rejected(413, f"body over the {limit} byte limit")
    return b"".join(chunks)


def _verify(request, connection, body: bytes) -> None:
    """Rejected(401) unless the signature is right (the timestamp is not signed)."""
    signature = request.META.get("HTTP_X_SKYVERN_SIGNATURE", "").strip()
    if not signature:
        raise Rejected(401, "no signature")
    if not HEX_SHA256.fullmatch(signature):
        raise Rejected(401, "malformed signature")
    try:
        key = connection.api_key()
    except ApiKeyUnreadable:
        raise Rejected(401, "the connection's stored key cannot be decrypted") from None
    expected = hmac.new(key.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, bytes.fromhex(signature)):
        raise Rejected(401, "wrong signature")


def _timestamp_note(request) -> str:
    """What x-skyvern-timestamp said, for the log only: its offset from now
    (Skyvern's is off by its host's UTC offset, e.g. +18000 s)."""
    timestamp = request.META.get("HTTP_X_SKYVERN_TIMESTAMP", "").strip()
    if not timestamp:
        return "no timestamp"
    if not UNIX_SECONDS.fullmatch(timestamp):
        return "a garbled timestamp"
    return f"timestamp {int(timestamp) - int(time.time()):+d} s from now"


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON a database can store")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: infinity, which no JSON column takes
        raise ValueError(f"{text:.20} is not a number a database can store")
    return value


def _holds_nul(data) -> bool:
    """Is there a NUL in any key or text? PostgreSQL can store none (not in
    text, not in jsonb), so no database takes one: the same answer on both."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _parse(body: bytes) -> RunDetail:
    """The workflow run in the body; Rejected(400) when it isn't one."""
    try:
        data = json.loads(body, parse_constant=_no_constants, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise Rejected(400, "the body is not JSON") from None
    if _holds_nul(data):
        raise Rejected(400, "a NUL character in the body")
    if isinstance(data, dict) and "output" in data:
        # The status response half of the body repeats the output as
        # `outputs`: keep it once.
        data.pop("outputs", None)
    try:
        detail = RunDetail.from_json(data)
    except BadResponse:
        raise Rejected(400, "the body is not a run") from None
    try:
        validate_run_id(detail.run_id)
    except InvalidRunId:
        raise Rejected(400, "the run id is not a workflow run id") from None
    if detail.status not in Status.values:
        raise Rejected(400, "unknown run status")
    for name in LIMITED_FIELDS:
        value = getattr(detail, name)
        if value and len(value) > Run._meta.get_field(name).max_length:
            raise Rejected(400, f"{name} too long")
    return detail


@dataclass(frozen=True)
class Refusal:
    """One refused delivery, as a connection's admins see it."""

    at: datetime
    status: int | None
    reason: str
    remote_address: str


def webhook_refusals(connection, *, limit: int = REFUSALS_SHOWN) -> list[Refusal]:
    """The connection's newest refused deliveries (from the audit log, in the
    connection's own team): when, why, from where. Never the body or the key:
    the audit rows hold neither."""
    rows = AuditEntry.objects.filter(
        team=connection.team_id,
        action=Action.WEBHOOK_REJECTED,
        target_type="connection",
        target_id=str(connection.pk),
    ).order_by("-id")[:limit]
    return [
        Refusal(
            at=row.created_at,
            status=row.details.get("status"),
            reason=str(row.details.get("reason") or ""),
            remote_address=row.ip_address or "unknown",
        )
        for row in rows
    ]


# CSRF protection exists for requests a browser sends with the user's
# cookies; this endpoint takes no cookies and no session. The sender is
# authenticated by the HMAC signature of the body with the connection's API
# key instead, so CSRF does not apply (and Skyvern can't send a CSRF token).
# This is the only csrf_exempt view in the project.
@csrf_exempt
@login_not_required
def skyvern_webhook(request, token):
    """Receive one run-finished webhook from Skyvern (see the module docstring)."""
    if request.method != "POST":
        _reject(request, 405, f"method {request.method}")
        return HttpResponseNotAllowed(["POST"])
    sync = _find_sync(token)
    if sync is None:
        return _reject(request, 404, "unknown token")
    connection_id = sync.connection_id
    try:
        body = _read_body(request, max_body_bytes())
        _verify(request, sync.connection, body)
        detail = _parse(body)
        outcome = run_store_delivery(connection=sync.connection, detail=detail)
    except Rejected as rejected:
        return _reject(request, rejected.status, rejected.reason, connection_id)
    except DataError:
        return _reject(request, 400, "the database refused a value of the run", connection_id)
    except DatabaseError as exc:
        # Not the delivery's fault, and nothing was stored: ask Skyvern to
        # send it again (it does on a 5xx, honouring a short Retry-After).
        log.warning(
            "Skyvern webhook for connection %s not stored, Skyvern will re-deliver: %s",
            connection_id,
            type(exc).__name__,
        )
        response = JsonResponse({"ok": False}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    log.info(
        "Skyvern webhook for connection %s: run %s (%s) %s (%s, from %s)",
        connection_id,
        detail.run_id,
        detail.status,
        outcome,
        _timestamp_note(request),
        _remote(request),
    )
    return JsonResponse({"ok": True})
