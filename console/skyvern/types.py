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

from .errors import BadResponse

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
    raw: dict = field(repr=False, compare=False)

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
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> "RunDetail":
        data = _object(data, "a run")
        run_request = data.get("run_request") if isinstance(data.get("run_request"), dict) else {}
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
            raw=data,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES
