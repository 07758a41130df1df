"""Typed views of Skyvern's JSON, parsed leniently.

Skyvern adds fields often: unknown ones are ignored, optional ones may be
missing. Only the fields without which a record means nothing are required
(a run id and a status); their absence is a BadResponse.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from .errors import BadResponse, SkyvernError

TERMINAL_STATUSES = frozenset({"completed", "failed", "terminated", "canceled", "timed_out"})
ALL_STATUSES = (
    "created",
    "queued",
    "running",
    "paused",
    "completed",
    "failed",
    "terminated",
    "canceled",
    "timed_out",
)


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601; Skyvern sends UTC without an offset, so a naive time is UTC."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BadResponse(detail=f"timestamp is not a string: {value!r:.60}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # In UTC, as stored: a time that has none (year 1 at +05:00) is unreadable.
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadResponse(detail=f"unreadable timestamp {value!r:.60}") from None


def _str(data: dict, key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _list(data: dict, key: str) -> list:
    """A list field; anything else (missing, null, a number) is taken as empty."""
    value = data.get(key)
    return value if isinstance(value, list) else []


# Browsers drop or ignore these inside a URL, which can turn a harmless-looking
# string into another scheme ("java\tscript:"): such a URL is never a link.
_NOT_IN_A_LINK = re.compile(r"[\x00-\x20\x7f]")


def http_url(value: Any) -> str | None:
    """`value` if it is an absolute http(s) URL with a host, else None.

    The one rule for every URL Skyvern gives (app_url, recording_url,
    screenshots, downloaded files): anything else (javascript:, data:,
    relative, white space or control characters) never becomes a link.
    """
    if not isinstance(value, str) or not value or len(value) > 8000:
        return None
    if _NOT_IN_A_LINK.search(value):
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return value


TIMESTAMP_FIELDS = ("created_at", "modified_at", "queued_at", "started_at", "finished_at")


def _timestamps(data: dict) -> dict[str, datetime | None]:
    """A run's lifecycle times, as aware UTC datetimes (or None)."""
    return {name: parse_timestamp(data.get(name)) for name in TIMESTAMP_FIELDS}


def _int(data: dict, key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool(data: dict, key: str) -> bool:
    return data.get(key) is True


def _dict(data: dict, key: str) -> dict:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _required(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise BadResponse(detail=f"field {key!r} missing or not a string")
    return value


def _object(data: Any, what: str) -> dict:
    if not isinstance(data, dict):
        raise BadResponse(detail=f"expected a JSON object for {what}, got {type(data).__name__}")
    return data


@dataclass(frozen=True, slots=True)
class RunAttempt:
    """One of Skyvern's own attempts at a run (`WorkflowRunAttempt`), all under
    the run's one id: its outcome, and what Skyvern's retry policy decided."""

    number: int
    status: str
    failure_reason: str | None
    error_codes: tuple[str, ...]
    started_at: datetime | None
    finished_at: datetime | None
    retry_decision: str | None
    decision_reason: str | None
    next_attempt_at: datetime | None
    webhook_sent_at: datetime | None

    @classmethod
    def from_json(cls, data: Any) -> "RunAttempt | None":
        """The attempt, or None for an entry without a number and a status."""
        if not isinstance(data, dict):
            return None
        number, status = _int(data, "attempt_number"), _str(data, "status")
        if number is None or not status:
            return None
        return cls(
            number=number,
            status=status,
            failure_reason=_str(data, "failure_reason"),
            error_codes=tuple(c for c in _list(data, "error_codes") if isinstance(c, str)),
            started_at=parse_timestamp(data.get("started_at")),
            finished_at=parse_timestamp(data.get("finished_at")),
            retry_decision=_str(data, "retry_decision"),
            decision_reason=_str(data, "decision_reason"),
            next_attempt_at=parse_timestamp(data.get("next_attempt_at")),
            webhook_sent_at=parse_timestamp(data.get("webhook_sent_at")),
        )


def _attempts(data: dict) -> tuple[RunAttempt, ...]:
    parsed = (RunAttempt.from_json(item) for item in _list(data, "attempts"))
    return tuple(attempt for attempt in parsed if attempt is not None)


def _attempt_number(data: dict) -> int:
    """The current attempt, one-based; 1 when Skyvern does not say."""
    number = _int(data, "attempt")
    return number if number is not None and number >= 1 else 1


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A row of `GET /v1/agents/runs` (schema `WorkflowRun`)."""

    run_id: str
    status: str
    workflow_permanent_id: str | None
    workflow_title: str | None
    failure_reason: str | None
    created_at: datetime | None
    modified_at: datetime | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    #: Which version of the workflow the run ran: the version's own id
    #: (`workflow_id`, "w_…"; compare with `Workflow.workflow_id`), and its
    #: number where Skyvern sends it (`workflow_version`, newer than openapi.json).
    workflow_id: str | None = None
    workflow_version: int | None = None
    #: Skyvern's own retries (a workflow retry policy), all under this run id.
    attempt: int = 1
    attempts: tuple[RunAttempt, ...] = ()
    retry_pending: bool = False
    next_attempt_at: datetime | None = None
    #: Set when the run is `failed` only because its webhook could not be delivered.
    webhook_failure_reason: str | None = None
    webhook_callback_url: str | None = None
    browser_session_id: str | None = None
    credits_used: int | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> "RunSummary":
        data = _object(data, "a run")
        return cls(
            run_id=_required(data, "workflow_run_id"),
            status=_required(data, "status"),
            workflow_permanent_id=_str(data, "workflow_permanent_id"),
            workflow_title=_str(data, "workflow_title"),
            failure_reason=_str(data, "failure_reason"),
            **_timestamps(data),
            workflow_id=_str(data, "workflow_id"),
            workflow_version=_int(data, "workflow_version"),
            attempt=_attempt_number(data),
            attempts=_attempts(data),
            retry_pending=_bool(data, "retry_pending"),
            next_attempt_at=parse_timestamp(data.get("next_attempt_at")),
            webhook_failure_reason=_str(data, "webhook_failure_reason"),
            webhook_callback_url=_str(data, "webhook_callback_url"),
            browser_session_id=_str(data, "browser_session_id"),
            credits_used=_int(data, "credits_used"),
            raw=data,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class RunDetail:
    """One run in full (`WorkflowRunResponse`): what retry and get-run answer."""

    run_id: str
    status: str
    run_type: str | None
    failure_reason: str | None
    created_at: datetime | None
    modified_at: datetime | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    app_url: str | None
    recording_url: str | None
    recording_archived: bool
    screenshot_urls: list[str]
    downloaded_files: list[dict]
    output: Any
    errors: list[dict]
    step_count: int | None
    workflow_permanent_id: str | None
    workflow_title: str | None
    #: Skyvern's own retries (a workflow retry policy), all under this run id.
    attempt: int = 1
    attempts: tuple[RunAttempt, ...] = ()
    retry_pending: bool = False
    next_attempt_at: datetime | None = None
    #: The browser session the run used (`pbs_…`): a retry tries to reuse it.
    browser_session_id: str | None = None
    #: What the run was started with (`run_request`): a retry copies these,
    #: and a rerun on another version sends them again.
    parameters: dict = field(default_factory=dict)
    webhook_url: str | None = None
    #: Not in `WorkflowRunResponse`: only a webhook delivery (which merges the
    #: run's status response) or a newer Skyvern sends these; None otherwise.
    webhook_failure_reason: str | None = None
    credits_used: int | None = None
    #: The version's own id ("w_…"), top-level only (a webhook's status half
    #: has it); `run_request.workflow_id` is the permanent id instead.
    workflow_id: str | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> "RunDetail":
        data = _object(data, "a run")
        run_request = _dict(data, "run_request")
        screenshots = _list(data, "screenshot_urls")
        files = _list(data, "downloaded_files")
        errors = _list(data, "errors")
        step_count = data.get("step_count")
        return cls(
            run_id=_required(data, "run_id"),
            status=_required(data, "status"),
            run_type=_str(data, "run_type"),
            failure_reason=_str(data, "failure_reason"),
            **_timestamps(data),
            app_url=http_url(data.get("app_url")),
            recording_url=http_url(data.get("recording_url")),
            recording_archived=data.get("recording_archived") is True,
            screenshot_urls=[url for url in screenshots if http_url(url)],
            downloaded_files=[f for f in files if isinstance(f, dict)],
            output=data.get("output"),
            errors=[e for e in errors if isinstance(e, dict)],
            step_count=step_count if isinstance(step_count, int) else None,
            workflow_permanent_id=_str(run_request, "workflow_id"),
            workflow_title=_str(run_request, "title"),
            attempt=_attempt_number(data),
            attempts=_attempts(data),
            retry_pending=_bool(data, "retry_pending"),
            next_attempt_at=parse_timestamp(data.get("next_attempt_at")),
            browser_session_id=_str(data, "browser_session_id")
            or _str(run_request, "browser_session_id"),
            parameters=_dict(run_request, "parameters"),
            webhook_url=_str(run_request, "webhook_url"),
            webhook_failure_reason=_str(data, "webhook_failure_reason"),
            credits_used=_int(data, "credits_used"),
            workflow_id=_str(data, "workflow_id"),
            raw=data,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


#: How much of a webhook receiver's answer Skyvern returns (and the console shows).
RESPONSE_EXCERPT_CHARS = 2048


@dataclass(frozen=True, slots=True)
class WebhookReplay:
    """What `POST /v1/runs/{id}/retry_webhook` answers (`RunWebhookReplayResponse`):
    where the run's webhook was sent again, and how the receiver took it.

    `status_code`, `latency_ms` and `response_body` are the receiver's (None
    when no HTTP answer came back: `error` says why). `headers` are the signed
    headers Skyvern sent (a signature, never a key).
    """

    run_id: str
    run_type: str | None
    default_webhook_url: str | None
    target_webhook_url: str | None
    status_code: int | None
    latency_ms: int | None
    response_body: str | None
    error: str | None
    payload: str
    headers: dict[str, str]
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> "WebhookReplay":
        data = _object(data, "a webhook replay")
        body = _str(data, "response_body")
        headers = _dict(data, "headers")
        return cls(
            run_id=_required(data, "run_id"),
            run_type=_str(data, "run_type"),
            default_webhook_url=_str(data, "default_webhook_url"),
            target_webhook_url=_str(data, "target_webhook_url"),
            status_code=_int(data, "status_code"),
            latency_ms=_int(data, "latency_ms"),
            response_body=body[:RESPONSE_EXCERPT_CHARS] if body is not None else None,
            error=_str(data, "error"),
            payload=_str(data, "payload") or "",
            headers={k: v for k, v in headers.items() if isinstance(v, str)},
            raw=data,
        )

    @property
    def delivered(self) -> bool:
        """The receiver answered 2xx."""
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class BulkCancelResult:
    """What a bulk cancel did, per run id (`BulkCancelRunsResponse`).

    `failed` are ids Skyvern could not cancel (finished, unknown, another
    organisation's). When the console splits a long list into calls of at
    most 100 (`SkyvernClient.cancel_many`), a call that fails stops the rest:
    `not_sent` are the ids never sent, `error` why, and `unknown` the ids
    of the call that failed without an answer (Skyvern may have cancelled
    them or not: `error.run_may_exist`).
    """

    cancelled: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    not_sent: tuple[str, ...] = ()
    error: SkyvernError | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> "BulkCancelResult":
        data = _object(data, "a bulk cancel answer")
        for key in ("cancelled", "failed"):
            if not isinstance(data.get(key), list):
                raise BadResponse(detail=f"field {key!r} missing or not a list")
        return cls(
            cancelled=tuple(i for i in data["cancelled"] if isinstance(i, str)),
            failed=tuple(i for i in data["failed"] if isinstance(i, str)),
        )

    def __add__(self, other: "BulkCancelResult") -> "BulkCancelResult":
        return BulkCancelResult(
            cancelled=self.cancelled + other.cancelled,
            failed=self.failed + other.failed,
            unknown=self.unknown + other.unknown,
            not_sent=self.not_sent + other.not_sent,
            error=other.error or self.error,
        )


@dataclass(frozen=True, slots=True)
class WorkflowParameterInfo:
    """One input a workflow version takes (a `workflow` parameter)."""

    key: str
    type: str | None
    has_default: bool
    default_value: Any = None
    description: str | None = None


def _max_retries(definition: dict) -> int | None:
    """A retry policy's max_retries (openapi: 1..5, default 1), or None
    without a policy; a value outside the spec's range is not trusted."""
    policy = definition.get("retry_policy")
    if not isinstance(policy, dict):
        return None
    value = policy.get("max_retries", 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        return None
    return value


@dataclass(frozen=True, slots=True)
class Workflow:
    """One version of a workflow (`Workflow`), from `GET /v1/agents/{id}` or
    `/versions`. `workflow_id` names this version ("w_…"), as a run's
    `workflow_id` does; `workflow_permanent_id` ("wpid_…") all versions."""

    workflow_id: str
    workflow_permanent_id: str
    version: int
    title: str | None
    status: str | None
    description: str | None
    webhook_callback_url: str | None
    parameters: tuple[WorkflowParameterInfo, ...]
    created_at: datetime | None
    modified_at: datetime | None
    deleted_at: datetime | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)
    #: `workflow_definition.retry_policy.max_retries`: how many times Skyvern
    #: runs a failed run again by itself; None without a policy.
    max_retries: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> "Workflow":
        data = _object(data, "a workflow")
        version = _int(data, "version")
        if version is None:
            raise BadResponse(detail="field 'version' missing or not a whole number")
        definition = _dict(data, "workflow_definition")
        parameters = []
        for item in _list(definition, "parameters"):
            if not isinstance(item, dict) or item.get("parameter_type", "workflow") != "workflow":
                continue  # outputs, secrets, credentials: not inputs a run passes
            key = _str(item, "key")
            if key:
                parameters.append(
                    WorkflowParameterInfo(
                        key=key,
                        type=_str(item, "workflow_parameter_type"),
                        has_default=item.get("default_value") is not None,
                        default_value=item.get("default_value"),
                        description=_str(item, "description"),
                    )
                )
        return cls(
            workflow_id=_required(data, "workflow_id"),
            workflow_permanent_id=_required(data, "workflow_permanent_id"),
            version=version,
            title=_str(data, "title"),
            status=_str(data, "status"),
            description=_str(data, "description"),
            webhook_callback_url=_str(data, "webhook_callback_url"),
            parameters=tuple(parameters),
            created_at=parse_timestamp(data.get("created_at")),
            modified_at=parse_timestamp(data.get("modified_at")),
            deleted_at=parse_timestamp(data.get("deleted_at")),
            raw=data,
            max_retries=_max_retries(definition),
        )

    @property
    def max_attempts(self) -> int | None:
        """Attempts Skyvern makes of a run of this version (the first and its
        own retries); None when the version has no retry policy."""
        return self.max_retries + 1 if self.max_retries is not None else None

    @property
    def parameter_keys(self) -> frozenset[str]:
        return frozenset(p.key for p in self.parameters)

    def missing_parameters(self, parameters: dict) -> tuple[str, ...]:
        """Inputs without a default that `parameters` lacks: a rerun on this
        version with them would be refused."""
        return tuple(
            p.key for p in self.parameters if not p.has_default and p.key not in parameters
        )


#: Statuses of a browser session that is still open (`BrowserSessionResponse.status`).
OPEN_BROWSER_SESSION_STATUSES = frozenset({"created", "running"})


@dataclass(frozen=True, slots=True)
class BrowserSession:
    """A persistent browser session (`BrowserSessionResponse`), as `GET
    /v1/browser_sessions/{id}` tells it: whether it is still open."""

    browser_session_id: str
    status: str | None
    runnable_id: str | None
    timeout_minutes: int | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime | None
    deleted_at: datetime | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> "BrowserSession":
        data = _object(data, "a browser session")
        return cls(
            browser_session_id=_required(data, "browser_session_id"),
            status=_str(data, "status"),
            runnable_id=_str(data, "runnable_id"),
            timeout_minutes=_int(data, "timeout"),
            started_at=parse_timestamp(data.get("started_at")),
            completed_at=parse_timestamp(data.get("completed_at")),
            created_at=parse_timestamp(data.get("created_at")),
            deleted_at=parse_timestamp(data.get("deleted_at")),
            raw=data,
        )

    @property
    def closed(self) -> bool:
        """Closed for good (completed, failed, timed out or deleted): a run
        can no longer re-use it. An unknown status with no end counts as open."""
        if self.completed_at is not None or self.deleted_at is not None:
            return True
        return self.status is not None and self.status not in OPEN_BROWSER_SESSION_STATUSES
