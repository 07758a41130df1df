"""The HTTP side of the simulator: Skyvern's /v1 API, the app, media, control.

Guarantees:
- Every /v1 request needs `x-api-key` of a known organisation (else 403
  `{"detail":"Could not validate credentials"}`); another organisation's run
  answers 404 exactly like an unknown one.
- Unknown paths answer 404 `{"detail":"Not Found"}`, a wrong method 405 with
  `Allow`, and a trailing slash on a known /v1 path 307 to the path without it
  (as FastAPI does), before authentication and faults.
- Fault knobs only ever touch the /v1 endpoints named in `fault_endpoints`
  (all by default); never /_sim, the app page or media. Order for one
  faulted request:
    1. `redirect_to` (307 elsewhere), 2. `latency_ms`, 3. auth (403),
    4. `rate_limit_per_second` (429 + Retry-After), 5. an `error_rates` 4xx,
    6. `busy` (retry and run_workflow only: 503 + Retry-After, no run created),
    7. the ambiguous faults - `hang_seconds`, `drop_connection`, an
       `error_rates` 5xx (no Retry-After) - AFTER the request took effect
       when `apply_then_fail` (default: a retry behind them did create a run),
       before it otherwise,
    8. on a 2xx answer: `malformed_json` (200 with a truncated JSON body and
       a matching Content-Length) or `truncate_body` (the full Content-Length
       announced, half the body sent, connection closed).
- Request handling is threaded: a hanging or slow request never blocks
  others; a reset or stop wakes it up and its connection is dropped.
- The control API (/_sim/...) answers only loopback clients.
- Webhooks: a background ticker (every TICK_SECONDS, stopped by `stop()`)
  sends the webhook of every run that reached a terminal status (see
  state.py), each attempt with a short timeout, never while holding the
  state lock, and re-delivers it as Skyvern does (webhooks.py: up to 3
  more times, same body and timestamp, after 1 s·2ⁿ or Retry-After ≤ 30 s,
  scaled by `webhook_backoff_scale`) on 403, 408, 425, 429, 5xx and network
  errors. Pending re-deliveries live in memory only: a reset or a restart
  forgets them. `POST /v1/runs/{id}/retry_webhook` sends the run's webhook
  again (or to the body's `webhook_url`), now, once, and answers how that
  went; with nowhere to send it, 400.
- Request bodies (bulk cancel, run a workflow, replay) are validated as
  FastAPI does: 422 `HTTPValidationError` naming the field.
"""

import contextlib
import dataclasses
import heapq
import ipaddress
import json
import re
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from . import media, render, webhooks
from .state import (
    ALL_STATUSES,
    BULK_CANCEL_LIMIT,
    ApiError,
    Delivery,
    FaultRoll,
    SimulatorState,
    to_naive_utc,
)

_INT = re.compile(r"\s*[+-]?\d+\s*")


def _choices(values) -> str:
    return ", ".join(f"'{v}'" for v in values[:-1]) + f" or '{values[-1]}'"


RUN_TYPES = (
    "task_v1",
    "task_v2",
    "task_v3",
    "workflow_run",
    "openai_cua",
    "anthropic_cua",
    "ui_tars",
    "yutori_navigator",
)
#: `GET /v1/runs` answers at most page 100 of at most 100 rows: the newest
#: 10,000 runs of any filter are all it can show.
TASK_RUNS_MAX_PAGE = 100
TASK_RUNS_MAX_PAGE_SIZE = 100
MAX_BODY = 1 << 20
#: How often the webhook ticker looks for runs that finished.
TICK_SECONDS = 0.2


@dataclass(frozen=True)
class Attempt:
    """One webhook attempt to make: the first, or a re-delivery of the same
    body and headers."""

    run_id: str
    url: str
    payload: bytes
    headers: dict
    generation: int
    number: int = 1


@dataclass(frozen=True)
class Route:
    method: str
    pattern: tuple[str, ...]
    name: str
    group: str  # the name used in `fault_endpoints`


ROUTES = (
    Route("GET", ("v1", "agents", "runs"), "list", "list"),
    Route("GET", ("v1", "agents", "*", "runs"), "list_workflow", "list"),
    Route("GET", ("v1", "runs"), "list_task_runs", "list"),
    Route("GET", ("v1", "runs", "*"), "get_run", "get_run"),
    Route("POST", ("v1", "agents", "runs", "*", "retry"), "retry", "retry"),
    Route("POST", ("v1", "runs", "*", "cancel"), "cancel", "cancel"),
    Route("POST", ("v1", "runs", "*", "retry_webhook"), "retry_webhook", "retry_webhook"),
    Route("POST", ("v1", "runs", "cancel"), "bulk_cancel", "cancel"),
    # After /v1/agents/runs, which it would also match (FastAPI's order too).
    Route("GET", ("v1", "agents", "*"), "get_workflow", "workflows"),
    Route("GET", ("v1", "agents", "*", "versions"), "workflow_versions", "workflows"),
    Route("POST", ("v1", "run", "agents"), "run_workflow", "run_workflow"),
    Route("GET", ("v1", "browser_sessions", "*"), "get_browser_session", "browser_sessions"),
)


def match_routes(segments: list[str]) -> list[tuple[Route, list[str]]]:
    found = []
    for route in ROUTES:
        if len(route.pattern) != len(segments):
            continue
        args = []
        for want, got in zip(route.pattern, segments, strict=True):
            if want == "*":
                if not got:
                    break
                args.append(got)
            elif want != got:
                break
        else:
            found.append((route, args))
    return found


# --- query validation, FastAPI/pydantic style -----------------------------------


def _int_param(query, name, default, loc, errors, maximum=None):
    values = query.get(name)
    if not values:
        return default
    raw = values[-1]
    if not _INT.fullmatch(raw):
        errors.append(
            {
                "type": "int_parsing",
                "loc": [loc, name],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": raw,
            }
        )
        return default
    value = int(raw)
    if value < 1:
        errors.append(
            {
                "type": "greater_than_equal",
                "loc": [loc, name],
                "msg": "Input should be greater than or equal to 1",
                "input": raw,
                "ctx": {"ge": 1},
            }
        )
    elif maximum is not None and value > maximum:
        errors.append(
            {
                "type": "less_than_equal",
                "loc": [loc, name],
                "msg": f"Input should be less than or equal to {maximum}",
                "input": raw,
                "ctx": {"le": maximum},
            }
        )
    return value


def _str_param(query, name, errors, max_length=500, min_length=0):
    values = query.get(name)
    if not values:
        return None
    value = values[-1]
    if len(value) < min_length:
        errors.append(
            {
                "type": "string_too_short",
                "loc": ["query", name],
                "msg": f"String should have at least {min_length} characters",
                "input": value,
                "ctx": {"min_length": min_length},
            }
        )
    if len(value) > max_length:
        errors.append(
            {
                "type": "string_too_long",
                "loc": ["query", name],
                "msg": f"String should have at most {max_length} characters",
                "input": value,
                "ctx": {"max_length": max_length},
            }
        )
    return value or None


def _datetime_param(query, name, errors):
    values = query.get(name)
    if not values or not values[-1]:
        return None
    raw = values[-1]
    try:
        return to_naive_utc(raw)
    except ValueError:
        errors.append(
            {
                "type": "datetime_parsing",
                "loc": ["query", name],
                "msg": "Input should be a valid datetime",
                "input": raw,
            }
        )
        return None


def _enum_list(query, name, choices, errors) -> list[str]:
    values = query.get(name, [])
    for i, value in enumerate(values):
        if value not in choices:
            expected = _choices(choices)
            errors.append(
                {
                    "type": "enum",
                    "loc": ["query", name, i],
                    "msg": f"Input should be {expected}",
                    "input": value,
                    "ctx": {"expected": expected},
                }
            )
    return values


def _list_param(query, name, max_items, errors) -> list[str]:
    values = query.get(name, [])
    if len(values) > max_items:
        errors.append(
            {
                "type": "too_long",
                "loc": ["query", name],
                "msg": f"List should have at most {max_items} items after validation, "
                f"not {len(values)}",
                "input": values,
                "ctx": {
                    "field_type": "List",
                    "max_length": max_items,
                    "actual_length": len(values),
                },
            }
        )
    return values


def task_runs_params(query: dict) -> dict:
    """`GET /v1/runs`'s query, validated like Skyvern (page and page_size
    at most 100); ApiError(422) listing every problem."""
    errors: list[dict] = []
    params = {
        "page": _int_param(query, "page", 1, "query", errors, TASK_RUNS_MAX_PAGE),
        "page_size": _int_param(query, "page_size", 10, "query", errors, TASK_RUNS_MAX_PAGE_SIZE),
        "statuses": _enum_list(query, "status", ALL_STATUSES, errors),
        "search_key": _str_param(query, "search_key", errors, max_length=10**6, min_length=3),
        "run_types": _enum_list(query, "run_type", RUN_TYPES, errors),
        "workflow_permanent_ids": _list_param(query, "workflow_permanent_id", 50, errors),
        # Repeated or comma-separated, as Skyvern takes them.
        "tags": [t for v in _list_param(query, "tags", 20, errors) for t in v.split(",") if t],
        "failure_category": _str_param(query, "failure_category", errors, max_length=100),
    }
    if errors:
        raise ApiError(422, errors)
    return params


def list_params(query: dict, *, with_dates: bool) -> dict:
    """The list endpoints' query, validated; ApiError(422) listing every problem."""
    errors: list[dict] = []
    params = {
        "page": _int_param(query, "page", 1, "query", errors),
        "page_size": _int_param(query, "page_size", 10, "query", errors),
        "statuses": _enum_list(query, "status", ALL_STATUSES, errors),
        "search_key": _str_param(query, "search_key", errors),
        "error_code": _str_param(query, "error_code", errors),
    }
    if with_dates:
        params["created_at_start"] = _datetime_param(query, "created_at_start", errors)
        params["created_at_end"] = _datetime_param(query, "created_at_end", errors)
    if errors:
        raise ApiError(422, errors)
    return params


def max_steps_header(value: str | None) -> int | None:
    if value is None:
        return None
    if not _INT.fullmatch(value):
        raise ApiError(
            422,
            [
                {
                    "type": "int_parsing",
                    "loc": ["header", "x-max-steps-override"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "input": value,
                }
            ],
        )
    return int(value)


def json_body(body: bytes, *, required: bool):
    """The request's JSON body, FastAPI style: 422 when it is not JSON, or
    missing while required; None when optional and absent (or `null`)."""
    if not body.strip():
        if required:
            raise ApiError(
                422, [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
            )
        return None
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ApiError(
            422,
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", getattr(exc, "pos", 0)],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": getattr(exc, "msg", "Expecting value")},
                }
            ],
        ) from None
    if data is None and not required:
        return None
    if not isinstance(data, dict):
        raise ApiError(
            422,
            [
                {
                    "type": "model_attributes_type",
                    "loc": ["body"],
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": data,
                }
            ],
        )
    return data


def _optional_str(data: dict, name: str, errors: list) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        errors.append(
            {
                "type": "string_type",
                "loc": ["body", name],
                "msg": "Input should be a valid string",
                "input": value,
            }
        )
        return None
    return value


def bulk_cancel_body(body: bytes) -> list[str]:
    """`BulkCancelRunsRequest`: `run_ids`, a list of at most 100 strings."""
    data = json_body(body, required=True)
    run_ids = data.get("run_ids")
    if "run_ids" not in data:
        error = {"type": "missing", "loc": ["body", "run_ids"], "msg": "Field required"}
        raise ApiError(422, [{**error, "input": data}])
    if not isinstance(run_ids, list):
        raise ApiError(
            422,
            [
                {
                    "type": "list_type",
                    "loc": ["body", "run_ids"],
                    "msg": "Input should be a valid list",
                    "input": run_ids,
                }
            ],
        )
    errors = [
        {
            "type": "string_type",
            "loc": ["body", "run_ids", i],
            "msg": "Input should be a valid string",
            "input": value,
        }
        for i, value in enumerate(run_ids)
        if not isinstance(value, str)
    ]
    if len(run_ids) > BULK_CANCEL_LIMIT:
        errors.append(
            {
                "type": "too_long",
                "loc": ["body", "run_ids"],
                "msg": f"List should have at most {BULK_CANCEL_LIMIT} items after validation, "
                f"not {len(run_ids)}",
                "input": run_ids,
                "ctx": {
                    "field_type": "List",
                    "max_length": BULK_CANCEL_LIMIT,
                    "actual_length": len(run_ids),
                },
            }
        )
    if errors:
        raise ApiError(422, errors)
    return run_ids


def run_workflow_body(body: bytes) -> dict:
    """`WorkflowRunRequest`: the workflow (`agent_id`, alias `workflow_id`),
    `parameters` (an object or null) and the optional strings the console sends."""
    data = json_body(body, required=True)
    errors: list[dict] = []
    wpid = data.get("agent_id", data.get("workflow_id"))
    if wpid is None:
        errors.append(
            {"type": "missing", "loc": ["body", "agent_id"], "msg": "Field required", "input": data}
        )
    elif not isinstance(wpid, str):
        errors.append(
            {
                "type": "string_type",
                "loc": ["body", "agent_id"],
                "msg": "Input should be a valid string",
                "input": wpid,
            }
        )
    parameters = data.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        errors.append(
            {
                "type": "dict_type",
                "loc": ["body", "parameters"],
                "msg": "Input should be a valid dictionary",
                "input": parameters,
            }
        )
    fields = {
        name: _optional_str(data, name, errors)
        for name in ("title", "webhook_url", "browser_session_id")
    }
    if errors:
        raise ApiError(422, errors)
    return {"workflow_permanent_id": wpid, "parameters": parameters, **fields}


def replay_target(body: bytes, run_url: str | None) -> str:
    """Where a webhook replay goes: `RetryRunWebhookRequest.webhook_url`, else
    the run's own; 400 (MissingWebhookTarget, or a URL Skyvern won't call)."""
    data = json_body(body, required=False) or {}
    errors: list[dict] = []
    override = _optional_str(data, "webhook_url", errors)
    if errors:
        raise ApiError(422, errors)
    if override:
        parts = urlsplit(override)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiError(400, "Invalid webhook URL. Use http(s) and a valid host.")
        return override
    if not run_url:
        raise ApiError(400, "No webhook URL configured for the run.")
    return run_url


def version_param(query: dict) -> int | None:
    errors: list[dict] = []
    values = query.get("version")
    if not values or values[-1] == "":
        return None
    raw = values[-1]
    if not _INT.fullmatch(raw):
        errors.append(
            {
                "type": "int_parsing",
                "loc": ["query", "version"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": raw,
            }
        )
        raise ApiError(422, errors)
    return int(raw)


# --- the handler -----------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY a
    # keep-alive client waits for its delayed ACK on every request
    # (docs/performance.md, "Nagle's algorithm in the simulator").
    disable_nagle_algorithm = True
    server: "_HTTPServer"

    def version_string(self) -> str:
        return "uvicorn"  # what a real Skyvern answers with

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_OPTIONS(self):
        self._handle("OPTIONS")

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's name
        if self.server.sim.verbose:
            super().log_message(format, *args)

    # --- plumbing --------------------------------------------------------------

    @property
    def sim(self) -> "SimulatorServer":
        return self.server.sim

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True  # not supported: don't try to reuse
            return b""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict | None = None,
        *,
        truncate: bool = False,
    ) -> None:
        self.send_response(status)
        if body or status not in (204, 307):
            self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if truncate:
            self.wfile.write(body[: len(body) // 2])
            self._drop()
            return
        self.wfile.write(body)

    def _json(self, status: int, data, headers: dict | None = None) -> None:
        self._send(status, render.dumps(data), headers=headers)

    def _drop(self) -> None:
        """Close the connection without (another) byte: the client sees it cut."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _handle(self, method: str) -> None:
        try:
            self._read_body_and_dispatch(method)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            # A bug in the simulator must not look like the drop_connection knob.
            traceback.print_exc()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(500, b"Simulator bug (see its stderr)", "text/plain; charset=utf-8")

    def _read_body_and_dispatch(self, method: str) -> None:
        body = self._read_body()
        url = urlsplit(self.path)
        segments = [unquote(s) for s in url.path.split("/")[1:]]
        query = parse_qs(url.query, keep_blank_values=True)
        if segments[:1] == ["v1"]:
            self._api(method, segments, url, body)
        elif segments[:1] == ["_sim"]:
            self._control(method, segments, body)
        else:
            self._public(method, segments, query)

    # --- /v1: the Skyvern API ----------------------------------------------------

    def _api(self, method: str, segments: list[str], url, body: bytes = b"") -> None:
        state = self.sim.state
        matches = match_routes(segments)
        query_string = f"?{url.query}" if url.query else ""
        if not matches:
            if len(segments) > 1 and segments[-1] == "" and match_routes(segments[:-1]):
                location = self.sim.url + url.path[:-1] + query_string
                return self._send(307, b"", headers={"location": location})
            return self._json(404, {"detail": "Not Found"})
        found = [(route, args) for route, args in matches if route.method == method]
        if not found:
            allow = ", ".join(sorted({route.method for route, _ in matches}))
            return self._json(405, {"detail": "Method Not Allowed"}, headers={"allow": allow})
        route, args = found[0]

        knobs = state.knobs()
        endpoints = knobs["fault_endpoints"]
        faulted = endpoints is None or route.group in endpoints
        generation = state.generation
        if faulted and knobs["redirect_to"]:
            return self._send(
                307, b"", headers={"location": knobs["redirect_to"] + url.path + query_string}
            )
        if faulted and knobs["latency_ms"] and not state.sleep(knobs["latency_ms"] / 1000):
            return self._drop()

        api_key = self.headers.get("x-api-key")
        org = state.org(api_key)
        if org is None:
            return self._json(403, {"detail": "Could not validate credentials"})

        roll = FaultRoll()
        if faulted:
            if state.rate_limited(api_key, knobs["rate_limit_per_second"]):
                return self._json(
                    429,
                    {"detail": "Rate limit exceeded for this organization. Slow down."},
                    headers={"retry-after": str(knobs["rate_limit_retry_after"])},
                )
            roll = state.roll_faults(route.group, knobs)
            if roll.error_status and roll.error_status < 500:
                return self._injected(roll.error_status, knobs)
            if roll.busy:
                wait = knobs["busy_retry_after"]
                return self._json(
                    503,
                    {
                        "detail": "Skyvern is busy dispatching other runs. No run was "
                        f"created; retry after {wait} seconds."
                    },
                    headers={"retry-after": str(wait)},
                )
            if not knobs["apply_then_fail"] and self._ambiguous(roll, knobs, generation):
                return

        status, data = self._call(route, args, org, url, body)

        if faulted:
            if knobs["apply_then_fail"] and self._ambiguous(roll, knobs, generation):
                return
            if 200 <= status < 300 and roll.malformed:
                body = render.dumps(data)
                return self._send(status, body[: max(1, len(body) // 2)])
            if 200 <= status < 300 and roll.truncate:
                return self._send(status, render.dumps(data), truncate=True)
        self._json(status, data)

    def _ambiguous(self, roll: FaultRoll, knobs: dict, generation: int) -> bool:
        """Hang, drop or a 5xx: answers that say nothing about what happened."""
        state = self.sim.state
        if knobs["hang_seconds"] and not state.sleep(knobs["hang_seconds"]):
            self._drop()
            return True
        if state.generation != generation or roll.drop:
            self._drop()
            return True
        if roll.error_status:
            self._injected(roll.error_status, knobs)
            return True
        return False

    def _injected(self, status: int, knobs: dict) -> None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        if status == 500:
            return self._send(500, b"Internal Server Error", "text/plain; charset=utf-8")
        if status in (502, 504):
            page = (
                f"<html><head><title>{status} {phrase}</title></head><body>"
                f"<center><h1>{status} {phrase}</h1></center></body></html>"
            )
            return self._send(status, page.encode(), "text/html")
        headers = {"retry-after": str(knobs["rate_limit_retry_after"])} if status == 429 else None
        return self._json(status, {"detail": phrase}, headers=headers)

    def _call(self, route: Route, args: list[str], org, url, body: bytes) -> tuple[int, object]:
        state = self.sim.state
        links = self.sim.links()
        query = parse_qs(url.query, keep_blank_values=True)
        try:
            if route.name == "list_task_runs":
                runs = state.list_task_runs(org.api_key, **task_runs_params(query))
                return 200, [render.task_run_list_item(run) for run in runs]
            if route.group == "list":
                params = list_params(query, with_dates=route.name == "list_workflow")
                if route.name == "list_workflow":
                    params["workflow_permanent_id"] = args[0]
                runs = state.list_runs(org.api_key, **params)
                versions = state.workflow_version_numbers(org.api_key)
                return 200, [render.workflow_run(run, org, versions) for run in runs]
            if route.name == "get_run":
                return 200, render.workflow_run_response(state.get_run(org.api_key, args[0]), links)
            if route.name == "retry":
                steps = max_steps_header(self.headers.get("x-max-steps-override"))
                run = state.retry(org.api_key, args[0], steps)
                return 200, render.workflow_run_response(run, links)
            if route.name == "cancel":
                state.cancel(org.api_key, args[0])
                return 200, None
            if route.name == "retry_webhook":
                run = state.webhook_run(org.api_key, args[0])
                url = replay_target(body, state.webhook_url_for(run))
                payload = render.webhook_payload(run, links)
                headers = self.sim.webhook_headers(payload, org.api_key)
                result = self.sim.send_webhook(run.run_id, url, payload, headers)
                return 200, render.webhook_replay(run, url, payload, headers, result)
            if route.name == "bulk_cancel":
                cancelled, failed = state.cancel_many(org.api_key, bulk_cancel_body(body))
                return 200, {"cancelled": cancelled, "failed": failed}
            if route.name == "get_workflow":
                version = state.workflow(org.api_key, args[0], version_param(query))
                return 200, render.workflow(version, args[0], org)
            if route.name == "workflow_versions":
                versions = state.workflow_versions(org.api_key, args[0])
                return 200, [render.workflow(v, args[0], org) for v in versions]
            if route.name == "run_workflow":
                steps = max_steps_header(self.headers.get("x-max-steps-override"))
                request = run_workflow_body(body)
                run = state.run_workflow(org.api_key, **request, max_steps_override=steps)
                return 200, render.workflow_run_response(run, links)
            if route.name == "get_browser_session":
                session = state.browser_session(org.api_key, args[0])
                return 200, render.browser_session(session, org, links)
        except ApiError as exc:
            return exc.status, {"detail": exc.detail}
        raise AssertionError(f"unrouted {route}")  # pragma: no cover

    # --- the app page and media ------------------------------------------------------

    def _public(self, method: str, segments: list[str], query: dict) -> None:
        if method not in ("GET", "HEAD"):
            return self._json(405, {"detail": "Method Not Allowed"}, headers={"allow": "GET"})
        state = self.sim.state
        links = self.sim.links()
        if segments in ([""], []):
            return self._json(200, {"name": "Skyvern simulator", "api": "/v1"})
        if len(segments) == 2 and segments[0] == "runs" and segments[1]:
            run = state.find_run(segments[1])
            if run is None:
                page = "<!doctype html><title>Not found</title><h1>Run not found</h1>"
                return self._send(404, page.encode(), "text/html; charset=utf-8")
            return self._send(
                200,
                render.app_page(run, links).encode(),
                "text/html; charset=utf-8",
                {
                    "content-security-policy": "default-src 'none'; img-src 'self'; "
                    "style-src 'unsafe-inline'",
                    "x-content-type-options": "nosniff",
                },
            )
        if len(segments) == 2 and segments[0] == "recordings" and segments[1].endswith(".gif"):
            run_id = segments[1][: -len(".gif")]
            problem = links.check_recording(
                run_id, query.get("expires", [""])[-1], query.get("signature", [""])[-1]
            )
            if problem:
                return self._send(403, problem.encode(), "text/plain; charset=utf-8")
            run = state.find_run(run_id)
            if run is None or not run.recording_available:
                return self._send(404, b"NoSuchKey", "text/plain; charset=utf-8")
            kind = run.status if run.status in ("completed", "failed") else "running"
            headers = {"cache-control": "private, max-age=60"}
            return self._send(200, media.recording_gif(kind), "image/gif", headers)
        if len(segments) >= 3 and segments[0] == "artifacts":
            run = state.find_run(segments[1])
            if run is not None and run.started_at is not None:
                shot = re.fullmatch(r"screenshot_(\d{1,2})\.png", segments[2])
                if len(segments) == 3 and shot:
                    return self._send(200, media.screenshot_png(int(shot.group(1))), "image/png")
                if len(segments) == 4 and segments[2] == "files" and segments[3] in run.files:
                    content = media.file_bytes(segments[3], run.run_id)
                    return self._send(200, content, media.content_type_for(segments[3]))
        return self._json(404, {"detail": "Not Found"})

    # --- /_sim: the control API ------------------------------------------------------

    def _control(self, method: str, segments: list[str], body: bytes) -> None:
        try:
            loopback = ipaddress.ip_address(self.client_address[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return self._json(403, {"detail": "The control API is for loopback clients only."})
        state = self.sim.state
        path = "/".join(segments[1:])
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError:
            return self._json(400, {"detail": "The body is not JSON."})
        if not isinstance(data, dict):
            return self._json(400, {"detail": "The body must be a JSON object."})
        try:
            if path == "health" and method == "GET":
                return self._json(200, {"ok": True})
            if path == "config" and method == "GET":
                return self._json(200, state.config())
            if path == "config" and method == "POST":
                return self._json(200, state.configure(**data))
            if path == "retries" and method == "GET":
                return self._json(200, state.retry_counts())
            if path == "deliveries" and method == "GET":
                return self._json(
                    200,
                    [dataclasses.asdict(delivery) for delivery in state.deliveries()],
                )
            if path == "reset" and method == "POST":
                state.reset()
                return self._json(200, {"ok": True})
            if path == "orgs" and method == "POST":
                api_key = data.get("api_key")
                run_ids = state.add_org(
                    api_key,
                    name=data.get("name") or "",
                    seed=data.get("seed"),
                    seed_runs=data.get("seed_runs", 0),
                    webhook_url=data.get("webhook_url"),
                )
                org = state.org(api_key)
                return self._json(201, {"organization_id": org.organization_id, "run_ids": run_ids})
            if path == "runs" and method == "POST":
                api_key = data.pop("api_key", None)
                run_id = state.add_run(api_key, **data)
                return self._json(201, {"run_id": run_id})
            parts = segments[1:]
            if (
                len(parts) == 3
                and parts[0] == "workflows"
                and parts[2] == "versions"
                and method == "POST"
            ):
                version = state.publish_workflow_version(
                    data.get("api_key"),
                    parts[1],
                    title=data.get("title"),
                    add_parameters=data.get("add_parameters"),
                    remove_parameters=data.get("remove_parameters"),
                )
                return self._json(201, {"workflow_permanent_id": parts[1], "version": version})
            if (
                len(parts) == 3
                and parts[0] == "workflows"
                and parts[2] == "retry_policy"
                and method == "POST"
            ):
                state.set_retry_policy(
                    data.get("api_key"), parts[1], data.get("retry_policy"), data.get("version")
                )
                return self._json(200, {"workflow_permanent_id": parts[1]})
            if (
                len(parts) == 3
                and parts[0] == "browser_sessions"
                and parts[2] == "close"
                and method == "POST"
            ):
                state.close_browser_session(parts[1])
                return self._json(200, {"browser_session_id": parts[1]})
            if len(parts) == 3 and parts[0] == "runs" and parts[2] == "status" and method == "POST":
                state.set_status(parts[1], data.get("status"), data.get("failure_reason"))
                run = state.find_run(parts[1])
                return self._json(200, {"run_id": run.run_id, "status": run.status})
        except KeyError as exc:
            return self._json(404, {"detail": str(exc.args[0] if exc.args else exc)})
        except (TypeError, ValueError) as exc:
            return self._json(400, {"detail": str(exc)})
        return self._json(404, {"detail": "Not Found"})


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler, sim: "SimulatorServer"):
        self.sim = sim
        super().__init__(address, handler)

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class SimulatorServer:
    """A Skyvern simulator listening on (host, port) in a background thread.

    `port=0` picks a free port; `url` tells which after `start()`. `app_host`
    is where `app_url` points (default: this server, which serves the page).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state_file=None,
        app_host: str | None = None,
        *,
        verbose: bool = False,
    ):
        self.host = host
        self.port = port
        self.state = SimulatorState(state_file)
        self._app_host = app_host.rstrip("/") if app_host else None
        self.verbose = verbose
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._ticker_stop = threading.Event()
        # Re-deliveries to make, by when (time.monotonic()); the ticker's alone.
        self._redeliveries: list[tuple[float, int, Attempt]] = []
        self._redelivery_seq = 0

    def start(self) -> "SimulatorServer":
        """Bind and serve in a daemon thread; returns once listening."""
        if self._httpd is not None:
            raise RuntimeError("the simulator is already running")
        self._httpd = _HTTPServer((self.host, self.port), _Handler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="skyvern-simulator",
            daemon=True,
        )
        self._thread.start()
        self._ticker_stop = threading.Event()
        self._ticker = threading.Thread(
            target=self._tick,
            args=(self._ticker_stop,),
            name="skyvern-simulator-webhooks",
            daemon=True,
        )
        self._ticker.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping requests, close the socket."""
        if self._httpd is None:
            return
        self._ticker_stop.set()
        self._httpd.shutdown()
        self.state.interrupt()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._ticker is not None:
            # At most one delivery is in flight, bounded by its timeout.
            self._ticker.join(timeout=webhooks.TIMEOUT_SECONDS + 2)
        self._httpd = None
        self._thread = None
        self._ticker = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the simulator is not running: call start() first")
        host, port = self._httpd.server_address[:2]
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - only to print a reachable URL
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def app_host(self) -> str:
        return self._app_host or self.url

    # --- webhooks ------------------------------------------------------------------

    def _tick(self, stop: threading.Event) -> None:
        while not stop.wait(TICK_SECONDS):
            try:
                self.deliver_due_webhooks(stop)
            except Exception:
                traceback.print_exc()  # a simulator bug must not end the ticker

    def deliver_due_webhooks(self, stop: threading.Event | None = None) -> int:
        """Send the webhook of every run that finished since the last call, and
        every re-delivery whose time has come; how many attempts were made."""
        sent = 0
        for due in self.state.due_webhooks():
            if stop is not None and stop.is_set():
                return sent
            payload = render.webhook_payload(due.run, self.links())
            headers = self.webhook_headers(payload, due.api_key)
            self._attempt(Attempt(due.run.run_id, due.url, payload, headers, due.generation))
            sent += 1
        while self._redeliveries and self._redeliveries[0][0] <= time.monotonic():
            if stop is not None and stop.is_set():
                return sent
            attempt = heapq.heappop(self._redeliveries)[2]
            if attempt.generation != self.state.generation:
                continue  # scheduled before a reset
            self._attempt(attempt)
            sent += 1
        return sent

    def _attempt(self, attempt: Attempt) -> webhooks.DeliveryResult:
        """Make one attempt; book the next one if Skyvern would re-deliver."""
        result = self.send_webhook(
            attempt.run_id,
            attempt.url,
            attempt.payload,
            attempt.headers,
            attempt.generation,
            attempt.number,
        )
        redelivery = attempt.number  # the first try is followed by re-delivery 1
        if webhooks.should_redeliver(result) and redelivery <= webhooks.MAX_REDELIVERIES:
            scale = self.state.knobs()["webhook_backoff_scale"]
            when = time.monotonic() + scale * webhooks.redelivery_delay(redelivery, result)
            self._redelivery_seq += 1
            again = dataclasses.replace(attempt, number=attempt.number + 1)
            heapq.heappush(self._redeliveries, (when, self._redelivery_seq, again))
        return result

    def webhook_headers(self, payload: bytes, api_key: str) -> dict[str, str]:
        """Skyvern's signed headers, with its host-skewed timestamp."""
        skew = self.state.knobs()["webhook_timestamp_skew_seconds"]
        return webhooks.signed_headers(payload, api_key, webhooks.skyvern_timestamp(skew))

    def send_webhook(
        self,
        run_id: str,
        url: str,
        payload: bytes,
        headers: dict,
        generation: int | None = None,
        attempt: int = 1,
    ) -> webhooks.DeliveryResult:
        """One attempt, off the state lock; recorded in `state.deliveries()`."""
        if generation is None:
            generation = self.state.generation
        result = webhooks.post(url, payload, headers)
        delivery = Delivery(
            run_id=run_id,
            url=url,
            status_code=result.status_code,
            attempt=attempt,
            timestamp=headers.get("x-skyvern-timestamp", ""),
            error=result.error,
        )
        self.state.record_delivery(delivery, generation)
        if self.verbose:
            outcome = result.status_code if result.status_code is not None else result.error
            print(
                f"webhook {run_id} -> {url} (attempt {attempt}): {outcome}",
                file=sys.stderr,
                flush=True,
            )
        return result

    def links(self) -> render.Links:
        return render.Links(
            base_url=self.url,
            app_host=self.app_host,
            secret=self.state.secret,
            ttl=self.state.knobs()["recording_url_ttl"],
        )
