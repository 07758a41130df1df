"""Everything the simulator knows: organisations, runs, retry counts, fault knobs.

Guarantees:
- All access goes through `SimulatorState`, whose methods are thread-safe
  (one re-entrant lock); a sleeping request (latency, hang) never holds it.
- Each API key is its own organisation. A run belongs to exactly one
  organisation; run ids are unique across the whole simulator.
- A run created by a retry follows a lifecycle created -> queued -> running ->
  completed|failed, derived lazily from the time since its creation, using
  the timings and failure rate in force when it was created. Its outcome is a
  deterministic function of its run id and that failure rate.
- A run waiting for Skyvern's own retry (`retry_pending`) stays as it is
  until `next_attempt_at`; from then on the same run id is attempt + 1,
  queued, running, then completed or failed (deterministic from its id),
  derived lazily like a retry's lifecycle.
- `reset()` empties everything (orgs, runs, counts) and turns every knob off
  (timings back to their defaults); it also wakes requests that are sleeping
  in latency/hang so they finish (by dropping their connection) instead of
  acting on the new, emptied state.
- With a state file, every change of orgs/runs/retry counts is written
  atomically (temp file + rename, mode 0600) and loaded again at start.
  Knobs are deliberately not persisted: a restart clears all faults.
- Timestamps are naive datetimes meaning UTC, as Skyvern sends them.
- Webhooks: a run that reaches a terminal status inside the simulator (a
  retry's lifecycle ending, `set_status` or `cancel` from a non-terminal
  status, Skyvern's own next attempt of a `retry_pending` run ending) is
  "due" once; `due_webhooks()` hands each due run out exactly
  once, with its URL (the run's own `webhook_url`, else the organisation's).
  Runs added or seeded already finished are history: never delivered. The
  sending itself and its re-deliveries (server.py / webhooks.py) happen off
  the lock; `deliveries()` lists every attempt and the receiver's answer.
"""

import contextlib
import hashlib
import json
import os
import random
import tempfile
import threading
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import seed as seedmod
from .seed import ALL_STATUSES, NON_TERMINAL, TERMINAL

FAILURE_STATUSES = ("failed", "terminated", "timed_out")
#: Endpoint groups that fault knobs can be limited to (`fault_endpoints`).
ENDPOINTS = frozenset(
    {
        "list",
        "get_run",
        "retry",
        "cancel",
        "retry_webhook",
        "workflows",
        "run_workflow",
        "browser_sessions",
    }
)
#: The retry policy of seeded workflows (`WorkflowRetryPolicy`): Skyvern runs
#: a failed run up to twice more by itself, five minutes apart.
SEEDED_RETRY_POLICY = {
    "max_retries": 2,
    "delay_seconds": 300,
    "webhook_on_retry": "final_only",
    "retry_on": [{"status": "failed", "error_codes": None}],
}
#: A browser session closes this long after it started unless closed before
#: (`BrowserSessionResponse.timeout`, minutes; Skyvern's default).
BROWSER_SESSION_TIMEOUT_MINUTES = 60
#: Endpoint groups that submit a run: the `busy` knob answers them 503.
RUN_SUBMISSIONS = frozenset({"retry", "run_workflow"})
#: `POST /v1/runs/cancel` takes at most this many ids (openapi.json, maxItems).
BULK_CANCEL_LIMIT = 100


class ApiError(Exception):
    """An HTTP error answer: `detail` becomes the JSON body's "detail"."""

    def __init__(self, status: int, detail: Any, headers: dict | None = None):
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def utcnow() -> datetime:
    """Now, as a naive datetime in UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_naive_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:13], 16) / 16**13


# --- knobs ---------------------------------------------------------------------


def _probability(name, value):
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and 0 <= value <= 1:
        return float(value)
    raise ValueError(f"{name} must be a boolean or a probability between 0 and 1")


def _non_negative(name, value):
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number >= 0")
    return value


def _optional_positive(name, value):
    if value in (None, 0):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number > 0, or null/0 for off")
    return value


def _whole_seconds(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number of seconds >= 0")
    return value


def _error_rates(name, value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a mapping of HTTP status code to probability")
    rates = {}
    for code, probability in value.items():
        try:
            status = int(code)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: {code!r} is not an HTTP status code") from None
        if not 400 <= status <= 599:
            raise ValueError(f"{name}: {status} is not a 4xx/5xx status code")
        rates[status] = _probability(f"{name}[{status}]", probability)
    if sum(rates.values()) > 1.0 + 1e-9:
        raise ValueError(f"{name}: the probabilities add up to more than 1")
    return rates


def _endpoints(name, value):
    if value is None or value == "all":
        return None
    if isinstance(value, str):
        value = [value]
    names = frozenset(value)
    unknown = names - ENDPOINTS
    if unknown:
        raise ValueError(f"{name}: unknown endpoint(s) {sorted(unknown)}; use {sorted(ENDPOINTS)}")
    return names


def _url(name, value):
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"{name} must be an http(s) URL or null")
    return value.rstrip("/")


def _webhook_url(name, value):
    """An http(s) URL kept exactly as given (a trailing slash matters), or None."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"{name} must be an http(s) URL or null")
    if len(value) > 2048 or any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError(f"{name} must be a URL without spaces, at most 2048 characters")
    return value


def _failure_category(name, value):
    """None (derive it), or a list of {category, confidence_float, reasoning},
    returned most confident first, as Skyvern orders it."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of objects or null")
    for item in value:
        if not isinstance(item, dict) or item.get("category") not in seedmod.CATEGORIES:
            raise ValueError(f"{name}: each item needs a category, one of {seedmod.CATEGORIES}")
        confidence = item.get("confidence_float")
        if isinstance(confidence, bool) or not isinstance(confidence, int | float):
            raise ValueError(f"{name}: confidence_float must be a number between 0 and 1")
        if not 0 <= confidence <= 1:
            raise ValueError(f"{name}: confidence_float must be a number between 0 and 1")
    items = [{"reasoning": None, **item} for item in value]
    return sorted(items, key=lambda item: item["confidence_float"], reverse=True)


def _whole_number(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number")
    return value


def _bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _seed(name, value):
    if value is not None and not isinstance(value, int | str):
        raise ValueError(f"{name} must be an integer, a string or null")
    return value


#: name -> (default, validator). Every knob is documented in README-like form
#: in the package docstring (`console/simulator/__init__.py`).
KNOBS: dict[str, tuple[Any, Any]] = {
    "latency_ms": (0, _non_negative),
    "error_rates": ({}, _error_rates),
    "rate_limit_per_second": (None, _optional_positive),
    "rate_limit_retry_after": (1, _whole_seconds),
    "busy": (0.0, _probability),
    "busy_retry_after": (2, _whole_seconds),
    "hang_seconds": (0, _non_negative),
    "malformed_json": (0.0, _probability),
    "drop_connection": (0.0, _probability),
    "truncate_body": (0.0, _probability),
    "redirect_to": (None, _url),
    "fault_endpoints": (None, _endpoints),
    "apply_then_fail": (True, _bool),
    "fault_seed": (None, _seed),
    "queued_after": (2.0, _non_negative),
    "running_after": (5.0, _non_negative),
    "finished_after": (25.0, _non_negative),
    "failure_rate": (0.3, _probability),
    "recording_url_ttl": (3600, _whole_seconds),
    "link_retries": (False, _bool),
    # Webhook delivery (see webhooks.py). Skyvern's timestamp is off by its
    # host's UTC offset: the default is the observed America/New_York host;
    # 0 (a UTC host, a true clock) is the kinder, explicit option.
    "webhook_timestamp_skew_seconds": (18000, _whole_number),
    # Multiplies the waits between re-deliveries (1 s·2ⁿ, Retry-After); only
    # tests shorten it.
    "webhook_backoff_scale": (1.0, _non_negative),
}


def default_knobs() -> dict:
    return {name: (dict(d) if isinstance(d, dict) else d) for name, (d, _) in KNOBS.items()}


def knobs_as_json(knobs: dict) -> dict:
    out = dict(knobs)
    out["error_rates"] = {str(k): v for k, v in knobs["error_rates"].items()}
    endpoints = knobs["fault_endpoints"]
    out["fault_endpoints"] = sorted(endpoints) if endpoints is not None else None
    return out


@dataclass(frozen=True)
class FaultRoll:
    """What the dice said for one request (see server.py for the order)."""

    error_status: int | None = None
    busy: bool = False
    drop: bool = False
    malformed: bool = False
    truncate: bool = False


# --- data ----------------------------------------------------------------------


@dataclass
class Org:
    api_key: str
    name: str
    organization_id: str
    created_at: datetime
    # Where Skyvern posts run-finished webhooks of runs without their own URL.
    webhook_url: str | None = None


@dataclass(frozen=True)
class Delivery:
    """One attempt at sending a webhook, and what came of it."""

    run_id: str
    url: str
    status_code: int | None  # None: no HTTP answer (see error)
    attempt: int = 1  # 1 the first try, 2.. Skyvern's re-deliveries
    timestamp: str = ""  # the x-skyvern-timestamp sent
    error: str | None = None


@dataclass(frozen=True)
class DueWebhook:
    """One webhook to send: the run as it is now, whose key signs it, where."""

    run: "Run"
    api_key: str
    url: str
    generation: int


@dataclass
class WorkflowVersion:
    """One version of a workflow: its own id (what a run's `workflow_id`
    names), its number, and the inputs it takes (`parameters`: key -> default,
    None for a required one)."""

    workflow_id: str
    version: int
    title: str
    parameters: dict
    created_at: datetime
    webhook_callback_url: str | None = None
    # `workflow_definition.retry_policy` (WorkflowRetryPolicy), None: no policy.
    retry_policy: dict | None = None


@dataclass(frozen=True)
class BrowserSession:
    """A persistent browser session as `GET /v1/browser_sessions/{id}` tells
    it: the runs that used it made it known; it is open from the first one's
    start until it is closed or its timeout has passed."""

    browser_session_id: str
    org_key: str
    created_at: datetime
    runnable_id: str
    status: str
    completed_at: datetime | None
    timeout_minutes: int = BROWSER_SESSION_TIMEOUT_MINUTES


def _version_to_json(version: WorkflowVersion) -> dict:
    return {**asdict(version), "created_at": version.created_at.isoformat()}


def _version_from_json(data: dict) -> WorkflowVersion:
    return WorkflowVersion(**{**data, "created_at": datetime.fromisoformat(data["created_at"])})


@dataclass
class Run:
    """One workflow run. With `lifecycle` set, the status fields are derived
    from the time (see `view`); otherwise they are what is stored."""

    run_id: str
    org_key: str
    workflow_title: str
    workflow_permanent_id: str
    workflow_id: str
    parameters: dict
    status: str
    created_at: datetime
    modified_at: datetime
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    failure_reason: str | None = None
    errors: list = field(default_factory=list)
    output: Any = None
    files: list = field(default_factory=list)
    step_count: int | None = None
    webhook_url: str | None = None
    retried_from: str | None = None
    max_steps_override: int | None = None
    recording_archived: bool = False
    trigger_type: str = "api"
    seq: int = 0
    lifecycle: dict | None = None
    # Skyvern's own retries (a workflow retry policy), all under this run id:
    # `attempt` is the current one, `attempts` holds the EARLIER ones only
    # (WorkflowRunAttempt dicts); while `retry_pending`, Skyvern starts
    # attempt + 1 by itself at `next_attempt_at` (see `view`).
    attempt: int = 1
    attempts: list = field(default_factory=list)
    retry_pending: bool = False
    next_attempt_at: datetime | None = None
    failure_category: list | None = None
    # Set on runs that are `failed` only because their webhook failed.
    webhook_failure_reason: str | None = None
    # The persistent browser session the run used (pbs_...); a retry copies it.
    browser_session_id: str | None = None

    def view(self, now: datetime) -> "Run":
        """This run as it is at `now` (a copy; lifecycle resolved)."""
        life = self.lifecycle
        if not life:
            if self.retry_pending and self.next_attempt_at and now >= self.next_attempt_at:
                return self._next_attempt(now)
            return replace(self)
        created = self.created_at
        queued_at = created + timedelta(seconds=life["queued_after"])
        started_at = created + timedelta(seconds=life["running_after"])
        finished_at = created + timedelta(seconds=life["finished_after"])
        view = replace(self, lifecycle=None)
        if now < queued_at:
            view.status, view.modified_at = "created", created
        elif now < started_at:
            view.status, view.queued_at, view.modified_at = "queued", queued_at, queued_at
        elif now < finished_at:
            view.status = "running"
            view.queued_at, view.started_at = queued_at, started_at
            view.step_count = 1 + int((now - started_at).total_seconds() // 2)
            view.modified_at = started_at + timedelta(seconds=2 * (view.step_count - 1))
        else:
            view.status = life["outcome"]
            view.queued_at, view.started_at, view.finished_at = queued_at, started_at, finished_at
            view.modified_at = finished_at
            view.failure_reason = life["failure_reason"]
            view.errors = list(life["errors"])
            view.failure_category = life.get("failure_category")
            view.output = life["output"]
            view.files = list(life["files"])
            view.step_count = life["step_count"]
        return view

    def _next_attempt(self, now: datetime) -> "Run":
        """The run once Skyvern has started its own next attempt (same run id):
        queued at `next_attempt_at`, running 5 s later, finished 3 minutes
        after that, completed or failed (deterministic from the run id)."""
        start = self.next_attempt_at
        number = self.attempt + 1
        earlier = {
            "attempt_number": self.attempt,
            "status": self.status,
            "failure_reason": self.failure_reason,
            "error_codes": [e["error_code"] for e in self.errors if e.get("error_code")],
            "started_at": seedmod.ts(self.started_at),
            "finished_at": seedmod.ts(self.finished_at),
            "retry_decision": "retry",
            "decision_reason": retry_reason(self),
            "next_attempt_at": seedmod.ts(start),
            "webhook_sent_at": None,
        }
        view = replace(
            self,
            attempt=number,
            attempts=[*self.attempts, earlier],
            retry_pending=False,
            next_attempt_at=None,
            queued_at=start,
            started_at=None,
            finished_at=None,
            failure_reason=None,
            errors=[],
            failure_category=None,
            output=None,
            files=[],
            step_count=None,
            modified_at=start,
        )
        started = start + timedelta(seconds=5)
        finished = started + timedelta(minutes=3)
        if now < started:
            view.status = "queued"
            return view
        view.started_at = started
        if now < finished:
            view.status = "running"
            view.step_count = 1 + int((now - started).total_seconds() // 10)
            view.modified_at = started + timedelta(seconds=10 * (view.step_count - 1))
            return view
        rng = random.Random(f"{self.run_id}|attempt|{number}")
        view.finished_at = view.modified_at = finished
        view.step_count = rng.randint(4, 24)
        if _unit(self.run_id, "attempt", number) < 0.3:
            view.status = "failed"
            view.failure_reason, view.errors = seedmod.make_failure(rng, "failed", self.parameters)
            view.failure_category = seedmod.failure_category(view.errors, self.run_id)
        else:
            view.status = "completed"
            kind = seedmod.workflow_kind(self.workflow_title)
            view.output, view.files = seedmod.make_success(rng, kind, self.parameters)
        return view

    @property
    def recording_available(self) -> bool:
        return self.started_at is not None and not self.recording_archived


def _dt_to_json(value):
    return value.isoformat() if isinstance(value, datetime) else value


_DT_FIELDS = (
    "created_at",
    "modified_at",
    "queued_at",
    "started_at",
    "finished_at",
    "next_attempt_at",
)


def retry_reason(run: "Run") -> str:
    """Why Skyvern's retry policy decided to try a failed attempt again."""
    codes = [e["error_code"] for e in run.errors if e.get("error_code")]
    what = codes[0] if codes else "the failure"
    return f"Retry policy: {what} is retryable; attempt {run.attempt + 1} scheduled."


def run_to_json(run: Run) -> dict:
    data = asdict(run)
    for name in _DT_FIELDS:
        data[name] = _dt_to_json(data[name])
    return data


def run_from_json(data: dict) -> Run:
    known = {f.name for f in fields(Run)}
    data = {k: v for k, v in data.items() if k in known}
    for name in _DT_FIELDS:
        if data.get(name):
            data[name] = datetime.fromisoformat(data[name])
    return Run(**data)


# --- the state -----------------------------------------------------------------


class SimulatorState:
    """Organisations, runs, retry counts and knobs, behind one lock."""

    def __init__(self, state_file: str | os.PathLike | None = None):
        self._lock = threading.RLock()
        self.state_file = Path(state_file) if state_file else None
        self._orgs: dict[str, Org] = {}
        # Further keys of an organisation (a rotated key): key -> its first key.
        self._other_keys: dict[str, str] = {}
        self._runs: dict[str, Run] = {}
        self._retry_counts: dict[str, int] = defaultdict(int)
        self._seq = 0
        self._id_seq = 0
        self._knobs = default_knobs()
        self._rng = random.Random()
        self._requests: dict[str, deque] = defaultdict(deque)
        self._generation = 0
        # Each organisation's run ids, newest first, with the state they were
        # built for: a run's (created_at, seq) never changes once it exists,
        # so the order is only rebuilt when runs are added (or on reset).
        self._newest_first: dict[str, tuple[tuple, list[str]]] = {}
        self._wake = threading.Event()
        # Runs whose arrival at a terminal status is still to be announced.
        self._webhook_watch: set[str] = set()
        self._deliveries: list[Delivery] = []
        # Each organisation's workflows: "api_key|wpid" -> versions, oldest first.
        self._workflows: dict[str, list[WorkflowVersion]] = {}
        # Browser sessions closed before their timeout: id -> when.
        self._closed_sessions: dict[str, datetime] = {}
        self.secret = os.urandom(16).hex()
        if self.state_file and self.state_file.exists():
            self._load()

    # --- knobs ---------------------------------------------------------------

    def configure(self, **knobs) -> dict:
        """Set knobs (validated; unknown name -> ValueError). Returns all knobs."""
        unknown = set(knobs) - set(KNOBS)
        if unknown:
            raise ValueError(f"unknown knob(s) {sorted(unknown)}; known: {sorted(KNOBS)}")
        clean = {name: KNOBS[name][1](name, value) for name, value in knobs.items()}
        with self._lock:
            self._knobs.update(clean)
            if "fault_seed" in clean:
                self._rng = random.Random(clean["fault_seed"])
            if "rate_limit_per_second" in clean:
                self._requests.clear()
            return self.config()

    def config(self) -> dict:
        """All knobs, JSON-ready."""
        with self._lock:
            return knobs_as_json(self._knobs)

    def knobs(self) -> dict:
        """A private copy of the knobs (for the server)."""
        with self._lock:
            return dict(self._knobs)

    # --- lifecycle of the whole state ------------------------------------------

    def reset(self) -> None:
        """Empty everything, all knobs off; wake sleeping requests."""
        with self._lock:
            self._orgs.clear()
            self._other_keys.clear()
            self._runs.clear()
            self._retry_counts.clear()
            self._requests.clear()
            self._webhook_watch.clear()
            self._deliveries.clear()
            self._workflows.clear()
            self._closed_sessions.clear()
            self._knobs = default_knobs()
            self._rng = random.Random()
            self._generation += 1
            self._wake.set()
            self._wake = threading.Event()
            self._save()

    def interrupt(self) -> None:
        """Wake every sleeping request (used when the server stops)."""
        with self._lock:
            self._generation += 1
            self._wake.set()
            self._wake = threading.Event()

    @property
    def generation(self) -> int:
        return self._generation

    def sleep(self, seconds: float) -> bool:
        """Sleep without holding the lock; False if a reset/stop interrupted it."""
        with self._lock:
            event, generation = self._wake, self._generation
        if seconds > 0:
            event.wait(seconds)
        return generation == self._generation

    # --- organisations and runs ---------------------------------------------

    def add_org(
        self,
        api_key: str,
        *,
        name: str = "",
        seed: str | None = None,
        seed_runs: int = 0,
        webhook_url: str | None = None,
    ) -> list[str]:
        """Create the organisation of `api_key` (idempotent) and seed its runs.

        Seeded runs are deterministic from `seed` (default: the api key) and
        spread over the 30 days before the current hour. Runs already there
        are kept as they are, so calling this again is harmless. Returns the
        seeded run ids, newest first. `webhook_url` (an http(s) URL) sets the
        organisation's webhook URL, also on an existing organisation; ""
        removes it; None leaves it as it is.
        """
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        if not isinstance(seed_runs, int) or isinstance(seed_runs, bool) or seed_runs < 0:
            raise ValueError("seed_runs must be a whole number >= 0")
        if webhook_url is not None:
            webhook_url = _webhook_url("webhook_url", webhook_url) or ""
        seed = api_key if seed is None else str(seed)
        now = utcnow()
        anchor = now.replace(minute=0, second=0, microsecond=0)
        generated = seedmod.generate_runs(seed, seed_runs, anchor) if seed_runs else []
        with self._lock:
            org = self._orgs.get(api_key)
            if org is None:
                digest = hashlib.sha256(f"org|{api_key}".encode()).hexdigest()
                org = Org(api_key, name or "", f"o_{int(digest[:15], 16)}", now)
                self._orgs[api_key] = org
            elif name:
                org.name = name
            if webhook_url is not None:
                org.webhook_url = webhook_url or None
            for item in generated:
                existing = self._runs.get(item.run_id)
                if existing is not None and existing.org_key != api_key:
                    raise ValueError(
                        f"seed {seed!r} was already used for another organisation; "
                        "use a different seed for each organisation"
                    )
            for item in reversed(generated):  # oldest first, so seq follows time
                if item.run_id in self._runs:
                    continue
                self._seq += 1
                archived = (anchor - item.created_at).days >= 21
                self._runs[item.run_id] = Run(
                    run_id=item.run_id,
                    org_key=api_key,
                    workflow_title=item.workflow_title,
                    workflow_permanent_id=item.workflow_permanent_id,
                    workflow_id=item.workflow_id,
                    parameters=item.parameters,
                    status=item.status,
                    created_at=item.created_at,
                    modified_at=item.finished_at
                    or item.started_at
                    or item.queued_at
                    or item.created_at,
                    queued_at=item.queued_at,
                    started_at=item.started_at,
                    finished_at=item.finished_at,
                    failure_reason=item.failure_reason,
                    errors=item.errors,
                    output=item.output,
                    files=item.files,
                    step_count=item.step_count,
                    webhook_url=item.webhook_url,
                    recording_archived=archived and item.started_at is not None,
                    trigger_type=("scheduled", "manual", "api")[int(_unit(item.run_id) * 3)],
                    seq=self._seq,
                    attempt=item.attempt,
                    attempts=item.attempts,
                    retry_pending=item.retry_pending,
                    next_attempt_at=item.next_attempt_at,
                    failure_category=item.failure_category,
                    webhook_failure_reason=item.webhook_failure_reason,
                )
                self._register_workflow(self._runs[item.run_id], SEEDED_RETRY_POLICY)
                if item.retry_pending:
                    self._webhook_watch.add(item.run_id)
            self._seed_drift(api_key, generated)
            self._save()
        return [item.run_id for item in generated]

    def add_key(self, api_key: str, new_key: str) -> None:
        """Give the organisation of `api_key` another key (as rotating a key in
        Skyvern does): requests with `new_key` see the same organisation and runs."""
        if not isinstance(new_key, str) or not new_key:
            raise ValueError("new_key must be a non-empty string")
        with self._lock:
            if api_key not in self._orgs:
                raise ValueError("unknown organisation: call add_org(api_key) first")
            if new_key in self._orgs:
                raise ValueError("new_key is already the key of an organisation")
            self._other_keys[new_key] = api_key
            self._save()

    def add_run(
        self,
        api_key: str,
        *,
        status: str = "failed",
        workflow_title: str = "Download carrier invoices",
        workflow_permanent_id: str | None = None,
        failure_reason: str | None = None,
        created_at: datetime | str | None = None,
        run_id: str | None = None,
        errors: list | None = None,
        parameters: dict | None = None,
        webhook_url: str | None = None,
        attempt: int = 1,
        attempts: list | None = None,
        retry_pending: bool = False,
        next_attempt_at: datetime | str | None = None,
        failure_category: list | None = None,
        webhook_failure_reason: str | None = None,
        workflow_version: int | None = None,
        browser_session_id: str | None = None,
    ) -> str:
        """Add one run with exactly these facts (for precise tests); returns its id.

        The run ran its workflow's current version, or `workflow_version`
        (versions up to it are made as needed; `publish_workflow_version`
        makes later ones).

        Defaults: created ten minutes ago; a failed run without a reason gets a
        realistic one (with an `errors` entry); a reason without `errors`
        gets one error with error_code "UNEXPECTED_ERROR". A failed,
        terminated or timed-out run gets a `failure_category` fitting its
        first error code unless one is given (`[]`: none).

        Skyvern's own retries: `attempt` > 1 makes the run's current attempt
        that one, after `attempt - 1` failed earlier attempts (generated
        unless `attempts` gives them, as WorkflowRunAttempt dicts).
        `retry_pending=True` (a failed, terminated or timed-out run only)
        says Skyvern will start the next attempt itself at
        `next_attempt_at` (default: in 30 minutes); once that time has
        come, the same run id shows attempt + 1, queued, then running, then
        finished.

        `webhook_failure_reason` makes a run that failed only because its
        webhook could not be delivered: status failed, the output and files
        of a completed run, no errors, no category; its failure reason says
        so unless `failure_reason` is given.
        """
        if status not in ALL_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        webhook_url = _webhook_url("webhook_url", webhook_url)
        if workflow_version is not None and (
            isinstance(workflow_version, bool)
            or not isinstance(workflow_version, int)
            or not 1 <= workflow_version <= 1000
        ):
            raise ValueError("workflow_version must be a whole number from 1 to 1000")
        if browser_session_id is not None and not isinstance(browser_session_id, str):
            raise ValueError("browser_session_id must be a string or null")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError("attempt must be a whole number >= 1")
        if attempts is not None and (
            not isinstance(attempts, list)
            or len(attempts) != attempt - 1
            or not all(isinstance(a, dict) for a in attempts)
        ):
            raise ValueError("attempts must be a list of attempt - 1 objects (the earlier ones)")
        if not isinstance(retry_pending, bool):
            raise ValueError("retry_pending must be true or false")
        if retry_pending and status not in FAILURE_STATUSES:
            raise ValueError("only a failed, terminated or timed_out run can have retry_pending")
        if next_attempt_at is not None and not retry_pending:
            raise ValueError("next_attempt_at needs retry_pending")
        failure_category = _failure_category("failure_category", failure_category)
        if webhook_failure_reason is not None:
            if not isinstance(webhook_failure_reason, str) or not webhook_failure_reason:
                raise ValueError("webhook_failure_reason must be a non-empty string")
            if status != "failed":
                raise ValueError("only a failed run can have a webhook_failure_reason")
        now = utcnow()
        created = (
            to_naive_utc(created_at) if created_at is not None else now - timedelta(minutes=10)
        )
        with self._lock:
            if api_key not in self._orgs:
                raise ValueError("unknown organisation: call add_org(api_key) first")
            if run_id is None:
                run_id = self._new_run_id(now)
            elif not isinstance(run_id, str) or not run_id or run_id in self._runs:
                raise ValueError(f"run id {run_id!r} is empty or already used")
            kind = seedmod.workflow_kind(workflow_title)
            rng = random.Random(run_id)
            if workflow_permanent_id is None:
                workflow_permanent_id, workflow_id = seedmod.workflow_ids("", workflow_title)
            else:
                workflow_id = seedmod.workflow_ids(workflow_permanent_id, "version")[1]
            params = parameters if parameters is not None else seedmod.make_parameters(rng, kind)
            workflow_id = self._workflow_id_for(
                api_key,
                workflow_permanent_id,
                workflow_id,
                workflow_title,
                params,
                created,
                workflow_version,
            )
            run = Run(
                run_id=run_id,
                org_key=api_key,
                workflow_title=workflow_title,
                workflow_permanent_id=workflow_permanent_id,
                workflow_id=workflow_id,
                parameters=params,
                status=status,
                created_at=created,
                modified_at=created,
                webhook_url=webhook_url,
                browser_session_id=browser_session_id,
            )
            if status != "created":
                run.queued_at = created + timedelta(seconds=1)
            if status not in ("created", "queued"):
                run.started_at = created + timedelta(seconds=5)
                run.step_count = 2
            if status in TERMINAL:
                run.finished_at = max(run.started_at, min(created + timedelta(minutes=3), now))
                run.step_count = 9
            if webhook_failure_reason is not None:
                # The automation itself succeeded; only the webhook failed.
                if failure_reason is None:
                    failure_reason = seedmod.webhook_failed(webhook_failure_reason)
                run.errors = errors or []
                run.output, run.files = seedmod.make_success(rng, kind, params)
                run.webhook_failure_reason = webhook_failure_reason
            elif status in FAILURE_STATUSES or (status == "canceled" and failure_reason):
                if failure_reason is None:
                    failure_reason, default_errors = seedmod.make_failure(rng, status, params)
                else:
                    default_errors = [
                        {"error_code": "UNEXPECTED_ERROR", "reasoning": failure_reason}
                    ]
                run.errors = errors if errors is not None else default_errors
            else:
                run.errors = errors or []
            run.failure_reason = failure_reason
            if status == "completed":
                run.output, run.files = seedmod.make_success(rng, kind, params)
            if failure_category is not None:
                run.failure_category = failure_category or None
            elif status in FAILURE_STATUSES and webhook_failure_reason is None:
                run.failure_category = seedmod.failure_category(run.errors, run_id)
            if attempt > 1:
                first = run.queued_at or created
                generated, start = seedmod.earlier_attempts(
                    rng, attempt - 1, first, params, gap=timedelta(minutes=1)
                )
                run.attempts = json.loads(json.dumps(attempts)) if attempts else generated
                run.attempt = attempt
                if run.started_at is not None:
                    shift = max(timedelta(0), start - run.started_at)
                    run.started_at += shift
                    if run.finished_at is not None:
                        run.finished_at += shift
            if retry_pending:
                # Skyvern's next attempt is still to come: its end is news.
                self._webhook_watch.add(run_id)
                run.retry_pending = True
                run.next_attempt_at = (
                    to_naive_utc(next_attempt_at)
                    if next_attempt_at is not None
                    else now + timedelta(minutes=30)
                )
            run.modified_at = run.finished_at or run.started_at or run.queued_at or created
            self._seq += 1
            run.seq = self._seq
            self._runs[run_id] = run
            self._register_workflow(run)
            self._save()
            return run_id

    def set_status(self, run_id: str, status: str, failure_reason: str | None = None) -> None:
        """Force a run into `status` now (ends its lifecycle); KeyError if unknown."""
        if status not in ALL_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        now = utcnow()
        with self._lock:
            if run_id not in self._runs:
                raise KeyError(f"unknown run {run_id}")
            run = self._runs[run_id].view(now)
            if status in TERMINAL and run.status not in TERMINAL:
                self._webhook_watch.add(run_id)
            run.status = status
            run.retry_pending, run.next_attempt_at = False, None
            run.webhook_failure_reason = None
            if status == "created":
                run.queued_at = run.started_at = run.finished_at = None
            elif status == "queued":
                run.queued_at = run.queued_at or now
                run.started_at = run.finished_at = None
            else:
                run.queued_at = run.queued_at or now
                if status != "canceled" or run.started_at:
                    run.started_at = run.started_at or now
                run.finished_at = now if status in TERMINAL else None
            rng = random.Random(f"{run_id}|{status}")
            if status in FAILURE_STATUSES:
                if failure_reason is None:
                    if not run.failure_reason:
                        run.failure_reason, run.errors = seedmod.make_failure(
                            rng, status, run.parameters
                        )
                else:
                    run.failure_reason = failure_reason
                    run.errors = [{"error_code": "UNEXPECTED_ERROR", "reasoning": failure_reason}]
            else:
                run.failure_reason = failure_reason
                run.errors = []
            if status == "completed" and run.output is None:
                kind = seedmod.workflow_kind(run.workflow_title)
                run.output, run.files = seedmod.make_success(rng, kind, run.parameters)
            elif status != "completed":
                run.output, run.files = None, []
            run.failure_category = (
                seedmod.failure_category(run.errors, run_id) if status in FAILURE_STATUSES else None
            )
            run.modified_at = now
            self._runs[run_id] = run
            self._save()

    def retry_count(self, run_id: str) -> int:
        with self._lock:
            return self._retry_counts.get(run_id, 0)

    def retry_counts(self) -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in self._retry_counts.items() if v}

    def org(self, api_key: str | None) -> Org | None:
        if not api_key:
            return None
        with self._lock:
            return self._orgs.get(self._other_keys.get(api_key, api_key))

    def find_run(self, run_id: str, now: datetime | None = None) -> Run | None:
        """A run of any organisation, as it is now (for the app page, media)."""
        with self._lock:
            run = self._runs.get(run_id)
            return run.view(now or utcnow()) if run else None

    # --- the API operations ----------------------------------------------------

    def list_runs(
        self,
        api_key: str,
        *,
        page: int = 1,
        page_size: int = 10,
        statuses: list[str] | None = None,
        search_key: str | None = None,
        error_code: str | None = None,
        workflow_permanent_id: str | None = None,
        created_at_start: datetime | None = None,
        created_at_end: datetime | None = None,
    ) -> list[Run]:
        """One page of the organisation's runs, newest first, filtered."""
        now = utcnow()
        filtered = any(
            value
            for value in (
                workflow_permanent_id,
                statuses,
                search_key,
                error_code,
                created_at_start,
                created_at_end,
            )
        )
        start = (page - 1) * page_size
        with self._lock:
            ordered = self._newest_first_ids(api_key)
            if not filtered:
                # The common case (a sync paging through everything) views one page only.
                return [self._runs[i].view(now) for i in ordered[start : start + page_size]]
            runs = [self._runs[i].view(now) for i in ordered]
        if workflow_permanent_id is not None:
            runs = [r for r in runs if r.workflow_permanent_id == workflow_permanent_id]
        if statuses:
            wanted = set(statuses)
            runs = [r for r in runs if r.status in wanted]
        if search_key:
            needle = search_key.lower()
            runs = [
                r
                for r in runs
                if needle in r.run_id.lower()
                or needle in r.workflow_permanent_id.lower()
                or needle in (r.workflow_title or "").lower()
            ]
        if error_code:
            runs = [r for r in runs if any(e.get("error_code") == error_code for e in r.errors)]
        if created_at_start is not None:
            runs = [r for r in runs if r.created_at >= created_at_start]
        if created_at_end is not None:
            runs = [r for r in runs if r.created_at < created_at_end]
        return runs[start : start + page_size]

    def list_task_runs(
        self,
        api_key: str,
        *,
        page: int = 1,
        page_size: int = 10,
        statuses: list[str] | None = None,
        search_key: str | None = None,
        run_types: list[str] | None = None,
        workflow_permanent_ids: list[str] | None = None,
        tags: list[str] | None = None,
        failure_category: str | None = None,
    ) -> list[Run]:
        """One page of `GET /v1/runs`: all the organisation's runs (here: all
        workflow runs), newest first, filtered. The caller enforces Skyvern's
        cap (page <= 100, page_size <= 100)."""
        now = utcnow()
        start = (page - 1) * page_size
        with self._lock:
            runs = [self._runs[i].view(now) for i in self._newest_first_ids(api_key)]
        if run_types and "workflow_run" not in run_types:
            return []
        if tags:
            return []  # the simulator's runs carry no tags
        if statuses:
            wanted = set(statuses)
            runs = [r for r in runs if r.status in wanted]
        if workflow_permanent_ids:
            wanted = set(workflow_permanent_ids)
            runs = [r for r in runs if r.workflow_permanent_id in wanted]
        if failure_category:
            runs = [
                r
                for r in runs
                if r.status in FAILURE_STATUSES
                and r.failure_category
                and r.failure_category[0]["category"] == failure_category
            ]
        if search_key:
            needle = search_key.lower()
            runs = [
                r
                for r in runs
                if any(
                    needle in (text or "").lower()
                    for text in (
                        r.run_id,
                        r.workflow_permanent_id,
                        r.workflow_title,
                        r.webhook_url,
                        json.dumps(r.parameters, ensure_ascii=False),
                    )
                )
            ]
        return runs[start : start + page_size]

    def _newest_first_ids(self, api_key: str) -> list[str]:
        """The organisation's run ids, newest first (call with the lock held)."""
        version = (len(self._runs), self._seq, self._generation)
        cached = self._newest_first.get(api_key)
        if cached is None or cached[0] != version:
            runs = [r for r in self._runs.values() if r.org_key == api_key]
            runs.sort(key=lambda r: (r.created_at, r.seq), reverse=True)
            cached = (version, [r.run_id for r in runs])
            self._newest_first[api_key] = cached
        return cached[1]

    def get_run(self, api_key: str, run_id: str) -> Run:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.org_key != api_key:
                raise ApiError(404, "Task run not found")
            return run.view(utcnow())

    def _owned(self, api_key: str, run_id: str) -> Run:
        run = self._runs.get(run_id)
        if run is None or run.org_key != api_key:
            raise ApiError(404, f"Workflow run not found {run_id}")
        return run

    def retry(self, api_key: str, run_id: str, max_steps_override: int | None = None) -> Run:
        """Create a new run from a terminal one; 404 / 400 as Skyvern answers.

        Like Skyvern, the new run is of the original's workflow VERSION, with
        its parameters, webhook URL and browser session."""
        now = utcnow()
        with self._lock:
            original = self._owned(api_key, run_id).view(now)
            if original.status not in TERMINAL:
                raise ApiError(400, "Only terminal workflow runs can be retried")
            run = self._start_run(
                api_key,
                now,
                workflow_title=original.workflow_title,
                workflow_permanent_id=original.workflow_permanent_id,
                workflow_id=original.workflow_id,
                parameters=json.loads(json.dumps(original.parameters)),
                webhook_url=original.webhook_url,
                browser_session_id=original.browser_session_id,
                max_steps_override=max_steps_override,
                retried_from=run_id if self._knobs["link_retries"] else None,
            )
            self._retry_counts[run_id] += 1
            self._save()
            return run.view(now)

    def _start_run(
        self,
        api_key: str,
        now: datetime,
        *,
        workflow_title: str,
        workflow_permanent_id: str,
        workflow_id: str,
        parameters: dict,
        webhook_url: str | None,
        browser_session_id: str | None = None,
        max_steps_override: int | None = None,
        retried_from: str | None = None,
    ) -> Run:
        """A new run (created now, lifecycle from the knobs); call with the lock held."""
        knobs = self._knobs
        new_id = self._new_run_id(now)
        queued = knobs["queued_after"]
        running = max(queued, knobs["running_after"])
        finished = max(running, knobs["finished_after"])
        failed = _unit(new_id, "outcome") < knobs["failure_rate"]
        rng = random.Random(new_id)
        kind = seedmod.workflow_kind(workflow_title)
        lifecycle = {
            "queued_after": queued,
            "running_after": running,
            "finished_after": finished,
            "outcome": "failed" if failed else "completed",
            "failure_reason": None,
            "errors": [],
            "output": None,
            "files": [],
            "step_count": rng.randint(4, 24),
        }
        if failed:
            reason, errors = seedmod.make_failure(rng, "failed", parameters)
            category = seedmod.failure_category(errors, new_id)
            lifecycle.update(failure_reason=reason, errors=errors, failure_category=category)
        else:
            output, files = seedmod.make_success(rng, kind, parameters)
            lifecycle.update(output=output, files=files)
        self._seq += 1
        run = Run(
            run_id=new_id,
            org_key=api_key,
            workflow_title=workflow_title,
            workflow_permanent_id=workflow_permanent_id,
            workflow_id=workflow_id,
            parameters=parameters,
            status="created",
            created_at=now,
            modified_at=now,
            webhook_url=webhook_url,
            retried_from=retried_from,
            max_steps_override=max_steps_override,
            trigger_type="api",
            seq=self._seq,
            lifecycle=lifecycle,
            browser_session_id=browser_session_id,
        )
        self._runs[new_id] = run
        self._webhook_watch.add(new_id)
        return run

    def cancel(self, api_key: str, run_id: str) -> None:
        """Cancel a non-terminal run; a finished run is left exactly as it is."""
        now = utcnow()
        with self._lock:
            run = self._owned(api_key, run_id).view(now)
            if run.status in TERMINAL:
                return
            run.status = "canceled"
            run.finished_at = now
            run.modified_at = now
            run.step_count = run.step_count if run.started_at else None
            self._runs[run_id] = run
            self._webhook_watch.add(run_id)
            self._save()

    def webhook_run(self, api_key: str, run_id: str) -> Run:
        with self._lock:
            return self._owned(api_key, run_id).view(utcnow())

    def cancel_many(self, api_key: str, run_ids: list[str]) -> tuple[list[str], list[str]]:
        """`POST /v1/runs/cancel`: (cancelled, failed). A run still going is
        cancelled; a finished, unknown or another organisation's run fails."""
        cancelled, failed = [], []
        with self._lock:
            for run_id in run_ids:
                run = self._runs.get(run_id)
                if run is None or run.org_key != api_key or run.view(utcnow()).status in TERMINAL:
                    failed.append(run_id)
                    continue
                self.cancel(api_key, run_id)
                cancelled.append(run_id)
        return cancelled, failed

    # --- workflows and their versions ----------------------------------------

    def _register_workflow(self, run: Run, retry_policy: dict | None = None) -> None:
        """Know the workflow (and version) a stored run ran; call with the lock held."""
        key = f"{run.org_key}|{run.workflow_permanent_id}"
        versions = self._workflows.setdefault(key, [])
        if any(v.workflow_id == run.workflow_id for v in versions):
            return
        versions.append(
            WorkflowVersion(
                workflow_id=run.workflow_id,
                version=len(versions) + 1,
                title=run.workflow_title,
                parameters=dict.fromkeys(sorted(run.parameters or {})),
                created_at=run.created_at - timedelta(hours=1),
                retry_policy=retry_policy,
            )
        )

    def _seed_drift(self, api_key: str, generated: list) -> None:
        """Seeded history has one edited workflow (the one with the most runs):
        version 2 was published halfway through its runs, so the older ones
        ran version 1 and are behind. Call with the lock held; a workflow
        that already has later versions is left as it is."""
        counts: dict[str, int] = defaultdict(int)
        for item in generated:
            counts[item.workflow_permanent_id] += 1
        if not counts:
            return
        wpid = max(sorted(counts), key=lambda w: counts[w])
        versions = self._workflows.get(f"{api_key}|{wpid}", [])
        runs = sorted(
            (
                r
                for r in self._runs.values()
                if r.org_key == api_key and r.workflow_permanent_id == wpid
            ),
            key=lambda r: (r.created_at, r.seq),
        )
        if len(versions) != 1 or len(runs) < 2:
            return
        published = runs[len(runs) // 2].created_at - timedelta(seconds=1)
        second = replace(
            versions[0],
            workflow_id=seedmod.workflow_ids(wpid, "version 2")[1],
            version=2,
            created_at=published,
        )
        versions.append(second)
        for run in runs:
            if run.created_at > published:
                run.workflow_id = second.workflow_id

    def _workflow_id_for(
        self,
        api_key: str,
        wpid: str,
        first_id: str,
        title: str,
        parameters: dict,
        created: datetime,
        version: int | None,
    ) -> str:
        """The version id a new run of `wpid` ran: `version`, else the current
        one (made, with `first_id` as version 1, if the workflow is new)."""
        versions = self._workflows.setdefault(f"{api_key}|{wpid}", [])
        target = version or 1
        while len(versions) < target:
            number = len(versions) + 1
            versions.append(
                WorkflowVersion(
                    workflow_id=first_id
                    if number == 1
                    else seedmod.workflow_ids(wpid, f"version {number}")[1],
                    version=number,
                    title=title,
                    parameters=dict.fromkeys(sorted(parameters or {})),
                    created_at=min(created, utcnow()) - timedelta(days=target - number + 1),
                )
            )
        return versions[(version or len(versions)) - 1].workflow_id

    def publish_workflow_version(
        self,
        api_key: str,
        workflow_permanent_id: str,
        *,
        title: str | None = None,
        add_parameters: dict | None = None,
        remove_parameters: list | None = None,
    ) -> int:
        """Edit the workflow as a person in Skyvern's editor would: a new
        version becomes current (returned). Runs keep the version they ran;
        a retry re-runs that one, `POST /v1/run/agents` runs the new one.
        `add_parameters` maps new input keys to their default (None: required)."""
        if add_parameters is not None and not isinstance(add_parameters, dict):
            raise ValueError("add_parameters must map parameter keys to defaults")
        if remove_parameters is not None and not isinstance(remove_parameters, list):
            raise ValueError("remove_parameters must be a list of parameter keys")
        now = utcnow()
        with self._lock:
            if api_key not in self._orgs:
                raise ValueError("unknown organisation: call add_org(api_key) first")
            versions = self._workflows.get(f"{api_key}|{workflow_permanent_id}")
            if not versions:
                raise KeyError(f"unknown workflow {workflow_permanent_id}")
            current = versions[-1]
            number = current.version + 1
            parameters = {
                k: v for k, v in current.parameters.items() if k not in (remove_parameters or ())
            }
            parameters.update(add_parameters or {})
            versions.append(
                replace(
                    current,
                    workflow_id=seedmod.workflow_ids(workflow_permanent_id, f"version {number}")[1],
                    version=number,
                    title=title or current.title,
                    parameters=parameters,
                    created_at=max(now, current.created_at + timedelta(microseconds=1)),
                )
            )
            self._save()
            return number

    def workflow_versions(self, api_key: str, workflow_permanent_id: str) -> list[WorkflowVersion]:
        """Every version, oldest first; 404 for another organisation's or none."""
        with self._lock:
            versions = self._workflows.get(f"{api_key}|{workflow_permanent_id}")
            if not versions:
                raise ApiError(
                    404, f"Workflow not found. workflow_permanent_id={workflow_permanent_id}"
                )
            return list(versions)

    def set_retry_policy(
        self, api_key: str, workflow_permanent_id: str, policy: dict | None, version=None
    ) -> None:
        """Give the workflow's current version (or `version`) a retry policy
        (a WorkflowRetryPolicy dict; None: none), as an edit in Skyvern would."""
        if policy is not None:
            retries = policy.get("max_retries", 1) if isinstance(policy, dict) else None
            if not isinstance(retries, int) or not 1 <= retries <= 5:
                raise ValueError("a retry policy's max_retries is a whole number from 1 to 5")
            policy = {
                "max_retries": retries,
                "delay_seconds": 0,
                "webhook_on_retry": "final_only",
                "retry_on": [{"status": "failed", "error_codes": None}],
                **policy,
            }
        with self._lock:
            target = self.workflow(api_key, workflow_permanent_id, version)
            target.retry_policy = policy
            self._save()

    # --- browser sessions ------------------------------------------------------

    def browser_session(self, api_key: str, browser_session_id: str) -> BrowserSession:
        """The session as Skyvern tells it; 404 for another organisation's or none."""
        now = utcnow()
        with self._lock:
            used = sorted(
                (
                    r
                    for r in self._runs.values()
                    if r.browser_session_id == browser_session_id and r.org_key == api_key
                ),
                key=lambda r: (r.created_at, r.seq),
            )
            if not used:
                raise ApiError(404, "Browser session not found")
            created = used[0].created_at
            timed_out = created + timedelta(minutes=BROWSER_SESSION_TIMEOUT_MINUTES)
            closed = self._closed_sessions.get(browser_session_id)
            if closed is not None and closed <= now and closed < timed_out:
                status, completed = "completed", closed
            elif now >= timed_out:
                status, completed = "timeout", timed_out
            else:
                status, completed = "running", None
            return BrowserSession(
                browser_session_id=browser_session_id,
                org_key=api_key,
                created_at=created,
                runnable_id=used[-1].run_id,
                status=status,
                completed_at=completed,
            )

    def close_browser_session(self, browser_session_id: str) -> None:
        """Close a session now (as its owner closing it in Skyvern would)."""
        with self._lock:
            if not any(r.browser_session_id == browser_session_id for r in self._runs.values()):
                raise KeyError(f"unknown browser session {browser_session_id}")
            self._closed_sessions.setdefault(browser_session_id, utcnow())
            self._save()

    def workflow(
        self, api_key: str, workflow_permanent_id: str, version: int | None = None
    ) -> WorkflowVersion:
        """The current version, or `version`; 404 as Skyvern answers."""
        versions = self.workflow_versions(api_key, workflow_permanent_id)
        if version is None:
            return versions[-1]
        for item in versions:
            if item.version == version:
                return item
        raise ApiError(
            404,
            f"Workflow not found. workflow_permanent_id={workflow_permanent_id}, version={version}",
        )

    def workflow_version_numbers(self, api_key: str) -> dict[str, int]:
        """The organisation's version ids -> version numbers."""
        prefix = f"{api_key}|"
        with self._lock:
            return {
                v.workflow_id: v.version
                for key, versions in self._workflows.items()
                if key.startswith(prefix)
                for v in versions
            }

    def run_workflow(
        self,
        api_key: str,
        workflow_permanent_id: str,
        *,
        parameters: dict | None = None,
        title: str | None = None,
        webhook_url: str | None = None,
        browser_session_id: str | None = None,
        max_steps_override: int | None = None,
    ) -> Run:
        """`POST /v1/run/agents`: a new run of the workflow's CURRENT version.

        404 for an unknown workflow; 400 (and no run) when an input without
        a default has no value."""
        now = utcnow()
        with self._lock:
            current = self.workflow(api_key, workflow_permanent_id)
            given = dict(parameters or {})
            for key, default in current.parameters.items():
                if key in given:
                    continue
                if default is None:
                    raise ApiError(
                        400,
                        f"Missing value for parameter {key} in workflow run "
                        f"{self._new_run_id(now)} of workflow {current.workflow_id}",
                    )
                given[key] = default
            run = self._start_run(
                api_key,
                now,
                workflow_title=title or current.title,
                workflow_permanent_id=workflow_permanent_id,
                workflow_id=current.workflow_id,
                parameters=json.loads(json.dumps(given)),
                webhook_url=webhook_url or current.webhook_callback_url,
                browser_session_id=browser_session_id,
                max_steps_override=max_steps_override,
            )
            self._save()
            return run.view(now)

    # --- webhooks ----------------------------------------------------------------

    def webhook_url_for(self, run: Run) -> str | None:
        """Where the run's webhook goes: its own URL, else its organisation's."""
        with self._lock:
            org = self._orgs.get(run.org_key)
            return run.webhook_url or (org.webhook_url if org else None)

    def due_webhooks(self, now: datetime | None = None) -> list[DueWebhook]:
        """Runs that reached a terminal status since last asked, each handed out once.

        A due run without any webhook URL is dropped (nothing to send).
        """
        now = now or utcnow()
        due, changed = [], False
        with self._lock:
            if not self._webhook_watch:
                return []
            for run_id in sorted(self._webhook_watch):
                stored = self._runs.get(run_id)
                view = stored.view(now) if stored else None
                if view is not None and (view.status not in TERMINAL or view.retry_pending):
                    continue  # still going, or Skyvern will try it again
                self._webhook_watch.discard(run_id)
                changed = True
                url = self.webhook_url_for(view) if view is not None else None
                if url:
                    due.append(DueWebhook(view, view.org_key, url, self._generation))
            if changed:
                self._save()
        return due

    def record_delivery(self, delivery: Delivery, generation: int | None = None) -> None:
        """Note one attempt at sending a webhook. One that started before a
        reset is not recorded in the new state."""
        with self._lock:
            if generation is None or generation == self._generation:
                self._deliveries.append(delivery)

    def deliveries(self) -> list[Delivery]:
        """Every attempt at sending a webhook since the last reset, in order."""
        with self._lock:
            return list(self._deliveries)

    # --- faults --------------------------------------------------------------

    def rate_limited(self, api_key: str, per_second: float | None) -> bool:
        """Count this request for its organisation; True if over the limit."""
        if not per_second:
            return False
        now = time.monotonic()
        with self._lock:
            window = self._requests[api_key]
            while window and now - window[0] >= 1.0:
                window.popleft()
            if len(window) >= per_second:
                return True
            window.append(now)
            return False

    def roll_faults(self, endpoint: str, knobs: dict) -> FaultRoll:
        """Throw the dice for one faulted request."""
        with self._lock:
            rng = self._rng
            error_status = None
            draw = rng.random()
            for status, probability in sorted(knobs["error_rates"].items()):
                if draw < probability:
                    error_status = status
                    break
                draw -= probability

            def hit(probability: float) -> bool:
                return probability >= 1.0 or (probability > 0 and rng.random() < probability)

            return FaultRoll(
                error_status=error_status,
                busy=endpoint in RUN_SUBMISSIONS and hit(knobs["busy"]),
                drop=hit(knobs["drop_connection"]),
                malformed=hit(knobs["malformed_json"]),
                truncate=hit(knobs["truncate_body"]),
            )

    # --- internals -------------------------------------------------------------

    def _new_run_id(self, now: datetime) -> str:
        """wr_<18-19 digits>, time-ordered like Skyvern's, unique."""
        epoch = datetime(2020, 1, 1)
        millis = int((now - epoch).total_seconds() * 1000)
        while True:
            self._id_seq = (self._id_seq + 1) % (1 << 20)
            run_id = f"wr_{(millis << 20) | self._id_seq}"
            if run_id not in self._runs:
                return run_id

    def _save(self) -> None:
        if not self.state_file:
            return
        data = {
            "version": 1,
            "secret": self.secret,
            "seq": self._seq,
            "orgs": [
                {**asdict(org), "created_at": org.created_at.isoformat()}
                for org in self._orgs.values()
            ],
            "other_keys": self._other_keys,
            "runs": [run_to_json(run) for run in self._runs.values()],
            "retry_counts": self.retry_counts(),
            "webhook_watch": sorted(self._webhook_watch),
            "workflows": {
                key: [_version_to_json(v) for v in versions]
                for key, versions in self._workflows.items()
            },
            "closed_sessions": {k: v.isoformat() for k, v in self._closed_sessions.items()},
        }
        path = self.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, ensure_ascii=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _load(self) -> None:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RuntimeError(
                f"cannot read simulator state file {self.state_file}: {exc}"
            ) from exc
        self.secret = data.get("secret") or self.secret
        self._seq = int(data.get("seq", 0))
        for org in data.get("orgs", []):
            self._orgs[org["api_key"]] = Org(
                api_key=org["api_key"],
                name=org.get("name", ""),
                organization_id=org["organization_id"],
                created_at=datetime.fromisoformat(org["created_at"]),
                webhook_url=org.get("webhook_url"),
            )
        self._other_keys = {
            key: first for key, first in data.get("other_keys", {}).items() if first in self._orgs
        }
        for item in data.get("runs", []):
            run = run_from_json(item)
            self._runs[run.run_id] = run
        for run_id, count in data.get("retry_counts", {}).items():
            self._retry_counts[run_id] = int(count)
        self._webhook_watch = {r for r in data.get("webhook_watch", []) if r in self._runs}
        for key, versions in data.get("workflows", {}).items():
            self._workflows[key] = [_version_from_json(v) for v in versions]
        for key, when in data.get("closed_sessions", {}).items():
            self._closed_sessions[key] = datetime.fromisoformat(when)
        for run in sorted(self._runs.values(), key=lambda r: r.seq):
            self._register_workflow(run)  # a state file from before workflows were kept


__all__ = [
    "ALL_STATUSES",
    "ENDPOINTS",
    "KNOBS",
    "NON_TERMINAL",
    "TERMINAL",
    "ApiError",
    "BULK_CANCEL_LIMIT",
    "BrowserSession",
    "RUN_SUBMISSIONS",
    "Delivery",
    "DueWebhook",
    "SimulatorState",
    "WorkflowVersion",
]
