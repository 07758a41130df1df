"""Demo data: realistic logistics workflows, parameters, failures and outputs.

Guarantees:
- `generate_runs(seed, count, anchor)` is a pure function: the same seed,
  count and anchor give exactly the same runs (ids, workflows, statuses,
  parameters, failure reasons, timestamps). Run ids depend on the seed only
  (not on the anchor), so they are also stable across days.
- With `count >= 9` every WorkflowRunStatus appears at least once; most runs
  are completed or failed, a few are terminated / canceled / timed_out, and a
  handful are still created / queued / running / paused (those are recent).
- Terminal runs are spread over the 30 days before the anchor.
- With at least one failed run, the first failed run's failure reason contains
  literal HTML (`<script>alert(1)</script>`) so escaping can be tested.
- Every failed / terminated / timed_out run has an `errors` list whose items
  carry an `error_code` (LOGIN_FAILED, CAPTCHA_DETECTED, ...) and a
  `failure_category` (Skyvern's classifier: one to three of CATEGORIES,
  most confident first) that fits that error - except the runs that failed
  only because their webhook could not be delivered: those keep the output
  and files of a completed run, have no errors and no category, and say why
  in `webhook_failure_reason`.
- Some runs went through Skyvern's own automatic retries (a workflow retry
  policy): `attempt` > 1 with the earlier, failed attempts in `attempts`;
  a few recent failed runs are still waiting for it (`retry_pending`, with
  `next_attempt_at` in the future of the anchor). With `count >= 30` there is
  at least one of each of these three kinds.

The helpers `make_parameters`, `make_failure` and `make_success` are also used
for runs created later by a retry, so those look just as real.
"""

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

TERMINAL = ("completed", "failed", "terminated", "canceled", "timed_out")
# Skyvern's default limit: a timed-out run ran this long (its failure reason says 240 minutes).
TIMED_OUT_AFTER = timedelta(minutes=240)
NON_TERMINAL = ("created", "queued", "running", "paused")
ALL_STATUSES = (
    "created",
    "queued",
    "running",
    "failed",
    "terminated",
    "canceled",
    "timed_out",
    "completed",
    "paused",
)

CARRIERS = ["Maersk", "Hapag-Lloyd", "MSC", "CMA CGM", "DHL Freight", "Old Dominion", "XPO"]
VENDORS = ["Acme Pallets", "Northwind Fuel", "Contoso Warehousing", "Globex Packaging"]
COUNTRIES = ["DE", "NL", "GB", "FR", "PL", "MX", "CA"]
STATES = ["TX", "CA", "OH", "GA", "IL", "PA"]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _month(rng: random.Random) -> str:
    return f"2026-{rng.randint(1, 11):02d}"


@dataclass(frozen=True)
class Workflow:
    title: str
    kind: str  # what the workflow does, picks parameters / outputs / failures


WORKFLOWS = (
    Workflow("Download carrier invoices", "invoices"),
    Workflow("Submit customs declaration", "customs"),
    Workflow("Update shipment status in TMS", "tms"),
    Workflow("Reconcile vendor statements", "reconcile"),
    Workflow("Book freight pickup", "pickup"),
    Workflow("Fetch proof of delivery (POD) & BOL", "pod"),
    Workflow("Renew hazmat permits", "permits"),
    Workflow("Pull LTL rate quotes", "quotes"),
)
_BY_TITLE = {w.title: w for w in WORKFLOWS}


def workflow_kind(title: str) -> str:
    workflow = _BY_TITLE.get(title)
    return workflow.kind if workflow else "generic"


def make_parameters(rng: random.Random, kind: str) -> dict:
    carrier = rng.choice(CARRIERS)
    if kind == "invoices":
        return {
            "carrier": carrier,
            "portal_url": f"https://portal.{_slug(carrier)}.example/billing",
            "billing_month": _month(rng),
        }
    if kind == "customs":
        return {
            "shipment_ref": f"SHP-{rng.randint(100000, 999999)}",
            "hs_code": f"{rng.randint(1000, 9999)}.{rng.randint(10, 99)}",
            "destination_country": rng.choice(COUNTRIES),
        }
    if kind == "tms":
        return {
            "shipment_id": f"TMS{rng.randint(1000000, 9999999)}",
            "new_status": rng.choice(["Picked up", "In transit", "Delivered", "Exception"]),
        }
    if kind == "reconcile":
        return {"vendor": rng.choice(VENDORS), "period": _month(rng)}
    if kind == "pickup":
        return {
            "carrier": carrier,
            "pickup_date": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "origin_zip": f"{rng.randint(10000, 99999)}",
            "pallets": rng.randint(1, 26),
        }
    if kind == "pod":
        return {"carrier": carrier, "tracking_number": f"1Z{rng.randint(10**9, 10**10 - 1)}"}
    if kind == "permits":
        return {"permit_number": f"HM-{rng.randint(10000, 99999)}", "state": rng.choice(STATES)}
    if kind == "quotes":
        return {
            "origin_zip": f"{rng.randint(10000, 99999)}",
            "destination_zip": f"{rng.randint(10000, 99999)}",
            "weight_lb": rng.randint(150, 19000),
        }
    return {"note": "created by the simulator"}


# (error_code, failure reason template). {host} and {carrier} are filled in.
FAILURES = (
    ("LOGIN_FAILED", "Login failed: {host} rejected the username or password."),
    ("CAPTCHA_DETECTED", "Blocked by a CAPTCHA on the {host} sign-in page; could not continue."),
    ("PORTAL_UNAVAILABLE", "The portal answered HTTP 502 Bad Gateway (https://{host}/billing)."),
    (
        "ELEMENT_NOT_FOUND",
        "Could not find the element to click: 'Download invoice' button "
        '(selector "#btn-download" matched nothing).',
    ),
    (
        "PAGE_LOAD_TIMEOUT",
        "Timed out after 60 s waiting for https://{host}/shipments to finish loading.",
    ),
    ("MFA_CODE_EXPIRED", "The MFA code expired before it could be entered (code sent by SMS)."),
    ("FILE_DOWNLOAD_FAILED", "The download started but no file arrived within 120 s."),
    ("SESSION_EXPIRED", "The {carrier} session expired mid-run & the portal logged us out."),
)
XSS_FAILURE = (
    "INVALID_INPUT",
    'Form validation failed: "<script>alert(1)</script>" is not a valid HS code '
    "(field <b>hs_code</b>).",
)
TERMINATIONS = (
    ("NO_DATA_AVAILABLE", "Terminated: the portal shows 'No invoices for this period'."),
    ("ACCESS_DENIED", "Terminated: this account has no access to the requested shipment."),
    ("GOAL_UNACHIEVABLE", "Terminated: the shipment is already marked Delivered in the TMS."),
)
TIMEOUT = (
    "MAX_ELAPSED_TIME_EXCEEDED",
    "The workflow run exceeded its maximum elapsed time of 240 minutes and was timed out.",
)


def _host(params: dict) -> str:
    carrier = params.get("carrier") or "carrier"
    return f"portal.{_slug(str(carrier))}.example"


def make_failure(rng: random.Random, status: str, params: dict, *, xss: bool = False):
    """(failure_reason, errors) for a run ending in `status`."""
    if status == "canceled":
        return None, []
    if status == "terminated":
        code, template = rng.choice(TERMINATIONS)
    elif status == "timed_out":
        code, template = TIMEOUT
    elif xss:
        code, template = XSS_FAILURE
    else:
        code, template = rng.choice(FAILURES)
    reason = template.format(host=_host(params), carrier=params.get("carrier", "portal"))
    errors = [
        {
            "error_code": code,
            "reasoning": reason,
            "confidence_float": round(rng.uniform(0.7, 0.99), 2),
        }
    ]
    return reason, errors


#: Skyvern 1.0.56's failure classifier categories (`failure_category[].category`).
CATEGORIES = (
    "ANTI_BOT_DETECTION",
    "PROXY_ERROR",
    "BROWSER_ERROR",
    "NAVIGATION_FAILURE",
    "PAGE_LOAD_TIMEOUT",
    "ELEMENT_STATE_TIMEOUT",
    "AUTH_FAILURE",
    "LLM_ERROR",
    "CREDENTIAL_ERROR",
    "DATA_EXTRACTION_FAILURE",
    "ELEMENT_NOT_FOUND",
    "WRONG_PAGE_STATE",
    "MAX_STEPS_EXCEEDED",
    "LLM_REASONING_ERROR",
    "INFRASTRUCTURE_ERROR",
    "PARAMETER_BINDING_ERROR",
    "UNKNOWN",
)

# error_code -> the categories a classifier would plausibly give, likeliest first.
_CATEGORIES_BY_CODE = {
    "LOGIN_FAILED": ("AUTH_FAILURE", "CREDENTIAL_ERROR"),
    "CAPTCHA_DETECTED": ("ANTI_BOT_DETECTION", "WRONG_PAGE_STATE"),
    "PORTAL_UNAVAILABLE": ("NAVIGATION_FAILURE", "INFRASTRUCTURE_ERROR"),
    "ELEMENT_NOT_FOUND": ("ELEMENT_NOT_FOUND", "WRONG_PAGE_STATE"),
    "PAGE_LOAD_TIMEOUT": ("PAGE_LOAD_TIMEOUT", "NAVIGATION_FAILURE", "PROXY_ERROR"),
    "MFA_CODE_EXPIRED": ("CREDENTIAL_ERROR", "AUTH_FAILURE"),
    "FILE_DOWNLOAD_FAILED": ("DATA_EXTRACTION_FAILURE", "ELEMENT_STATE_TIMEOUT"),
    "SESSION_EXPIRED": ("AUTH_FAILURE", "WRONG_PAGE_STATE"),
    "INVALID_INPUT": ("PARAMETER_BINDING_ERROR", "LLM_REASONING_ERROR"),
    "NO_DATA_AVAILABLE": ("DATA_EXTRACTION_FAILURE", "WRONG_PAGE_STATE"),
    "ACCESS_DENIED": ("AUTH_FAILURE", "CREDENTIAL_ERROR"),
    "GOAL_UNACHIEVABLE": ("WRONG_PAGE_STATE", "LLM_REASONING_ERROR"),
    "MAX_ELAPSED_TIME_EXCEEDED": ("MAX_STEPS_EXCEEDED", "PAGE_LOAD_TIMEOUT"),
}
_REASONING = {
    "ANTI_BOT_DETECTION": "The site showed a CAPTCHA / bot check the agent could not pass.",
    "PROXY_ERROR": "The proxy may have been slow or blocked by the site.",
    "BROWSER_ERROR": "The browser crashed or lost its page.",
    "NAVIGATION_FAILURE": "The target page could not be reached.",
    "PAGE_LOAD_TIMEOUT": "The page did not finish loading in time.",
    "ELEMENT_STATE_TIMEOUT": "An element never reached the expected state in time.",
    "AUTH_FAILURE": "The site refused the sign-in or ended the session.",
    "LLM_ERROR": "The language model call failed.",
    "CREDENTIAL_ERROR": "The stored credentials or one-time code were wrong or stale.",
    "DATA_EXTRACTION_FAILURE": "The expected data or file was not there to extract.",
    "ELEMENT_NOT_FOUND": "The element the step needed was not on the page.",
    "WRONG_PAGE_STATE": "The page was not in the state the workflow expected.",
    "MAX_STEPS_EXCEEDED": "The run used up its step or time budget before finishing.",
    "LLM_REASONING_ERROR": "The agent misread the page or the goal.",
    "INFRASTRUCTURE_ERROR": "A Skyvern-side service failed.",
    "PARAMETER_BINDING_ERROR": "A workflow parameter had a value the site rejected.",
    "UNKNOWN": "The failure did not match a known pattern.",
}


def failure_category(errors: list, key: str) -> list[dict] | None:
    """Skyvern's classification of a failure with these `errors`: a list of
    {category, confidence_float, reasoning}, most confident first; None when
    there is nothing to classify. Deterministic from `key` (the run id)."""
    codes = [e.get("error_code") for e in errors if isinstance(e, dict) and e.get("error_code")]
    if not codes:
        return None
    rng = random.Random(f"category|{key}|{codes[0]}")
    names = _CATEGORIES_BY_CODE.get(codes[0], ("UNKNOWN",))
    names = names[: rng.randint(1, len(names))]
    confidence = round(rng.uniform(0.62, 0.97), 2)
    result = []
    for name in names:
        result.append(
            {"category": name, "confidence_float": confidence, "reasoning": _REASONING[name]}
        )
        confidence = round(confidence * rng.uniform(0.25, 0.6), 2)
    return result


WEBHOOK_FAILURES = (
    "Webhook {url} answered HTTP 500 Internal Server Error after 3 attempts.",
    "Webhook {url} timed out after 10 seconds (3 attempts).",
    "Webhook {url} answered HTTP 404 Not Found.",
    "Could not connect to webhook {url}: connection refused (3 attempts).",
)


def make_webhook_failure(rng: random.Random, url: str | None) -> tuple[str, str]:
    """(failure_reason, webhook_failure_reason) of a run whose automation
    succeeded but whose webhook could not be delivered."""
    why = rng.choice(WEBHOOK_FAILURES).format(url=url or "(no URL)")
    return webhook_failed(why), why


def webhook_failed(why: str) -> str:
    """The failure reason of a run failed only by its webhook."""
    return f"Failed to send the run's webhook: {why}"


def ts(value: datetime | None) -> str | None:
    """Skyvern's timestamp format: naive UTC with microseconds."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value is not None else None


def earlier_attempts(
    rng: random.Random, count: int, first_start: datetime, params: dict, *, gap: timedelta
) -> tuple[list[dict], datetime]:
    """`count` failed attempts, Skyvern retrying after each, from `first_start`.

    Returns the attempts (WorkflowRunAttempt dicts) and when the next
    attempt starts.
    """
    attempts = []
    start = first_start
    for number in range(1, count + 1):
        finished = start + timedelta(seconds=rng.uniform(40, 300))
        next_at = finished + gap
        reason, errors = make_failure(rng, "failed", params)
        codes = [e["error_code"] for e in errors]
        attempts.append(
            {
                "attempt_number": number,
                "status": "failed",
                "failure_reason": reason,
                "error_codes": codes,
                "started_at": ts(start),
                "finished_at": ts(finished),
                "retry_decision": "retry",
                "decision_reason": f"Retry policy: {codes[0]} is retryable; "
                f"attempt {number + 1} scheduled.",
                "next_attempt_at": ts(next_at),
                "webhook_sent_at": None,
            }
        )
        start = next_at
    return attempts, start


def make_success(rng: random.Random, kind: str, params: dict):
    """(output, downloaded file names) for a completed run."""
    if kind == "invoices":
        count = rng.randint(1, 4)
        month = params.get("billing_month", "2026-01")
        slug = _slug(str(params.get("carrier", "carrier")))
        files = [f"{slug}_invoice_{month}_{i + 1:03d}.pdf" for i in range(count)]
        total = round(rng.uniform(800, 48000), 2)
        return {"invoices_downloaded": count, "total_amount": f"{total:,.2f} USD"}, files
    if kind == "customs":
        return {"declaration_number": f"MRN26DE{rng.randint(10**11, 10**12 - 1)}"}, []
    if kind == "tms":
        return {"updated": True, "previous_status": "In transit"}, []
    if kind == "reconcile":
        diffs = rng.randint(0, 3)
        return {"lines_matched": rng.randint(20, 300), "discrepancies": diffs}, [
            f"{_slug(str(params.get('vendor', 'vendor')))}_reconciliation.csv"
        ]
    if kind == "pickup":
        return {"confirmation_number": f"PU{rng.randint(100000, 999999)}"}, []
    if kind == "pod":
        return {"delivered_at": "2026-11-02T14:12:00", "signed_by": "J. MILLER"}, ["pod.pdf"]
    if kind == "permits":
        return {"permit_valid_until": "2027-12-31"}, ["permit_renewal.pdf"]
    if kind == "quotes":
        quotes = sorted(round(rng.uniform(180, 2400), 2) for _ in range(3))
        return {"quotes_usd": quotes, "cheapest_carrier": rng.choice(CARRIERS)}, []
    return {"ok": True}, []


def workflow_ids(seed: str, title: str) -> tuple[str, str]:
    """(workflow_permanent_id, workflow_id) for a workflow title, stable per seed."""
    digest = hashlib.sha256(f"{seed}|{title}".encode()).hexdigest()
    return f"wpid_{int(digest[:15], 16)}", f"w_{int(digest[15:30], 16)}"


@dataclass
class SeedRun:
    """Everything about a seeded run; the state turns it into its own Run."""

    run_id: str
    workflow_title: str
    workflow_permanent_id: str
    workflow_id: str
    parameters: dict
    status: str
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    failure_reason: str | None
    errors: list
    output: object
    files: list
    step_count: int | None
    webhook_url: str | None
    attempt: int = 1
    attempts: list = field(default_factory=list)  # the earlier attempts only
    retry_pending: bool = False
    next_attempt_at: datetime | None = None
    failure_category: list | None = None
    webhook_failure_reason: str | None = None


_TERMINAL_WEIGHTS = {"completed": 58, "failed": 30, "terminated": 5, "canceled": 4, "timed_out": 3}


def _statuses(rng: random.Random, count: int) -> list[str]:
    """About 5% still in progress (created/queued/running/paused), the rest
    finished, mostly completed or failed; every status once if count >= 9."""
    every = count >= len(ALL_STATUSES)
    in_progress = min(count, max(len(NON_TERMINAL) if every else 0, round(count * 0.05)))
    result = list(NON_TERMINAL) if every else []
    result += rng.choices(NON_TERMINAL, [2, 2, 3, 1], k=in_progress - len(result))
    finished = count - in_progress
    terminal = list(TERMINAL) if every else []
    names, weights = list(_TERMINAL_WEIGHTS), list(_TERMINAL_WEIGHTS.values())
    terminal += rng.choices(names, weights, k=finished - len(terminal))
    result += terminal
    rng.shuffle(result)
    return result


def generate_runs(seed: str, count: int, anchor: datetime) -> list[SeedRun]:
    """`count` runs, newest first, for the organisation seeded with `seed`.

    `anchor` is a naive UTC datetime: "now" for the generated history.
    """
    rng = random.Random(f"skyvern-sim|{seed}")
    id_rng = random.Random(f"skyvern-sim-ids|{seed}")
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        run_id = f"wr_{id_rng.randrange(10**17, 10**18)}"
        if run_id not in seen:
            seen.add(run_id)
            ids.append(run_id)

    statuses = _statuses(rng, count)
    runs = []
    xss_done = False
    for run_id, status in zip(ids, statuses, strict=True):
        workflow = WORKFLOWS[rng.randrange(len(WORKFLOWS))]
        wpid, wid = workflow_ids(seed, workflow.title)
        params = make_parameters(rng, workflow.kind)
        if status in ("created", "queued"):
            age = timedelta(minutes=rng.uniform(1, 20))
        elif status == "running":
            age = timedelta(minutes=rng.uniform(3, 40))
        elif status == "paused":
            age = timedelta(hours=rng.uniform(1, 72))
        else:
            age = timedelta(seconds=rng.uniform(2 * 3600, 30 * 86400))
            if status == "timed_out":
                # It ran for four hours before timing out: it started earlier
                # than that, so that it has finished by now.
                age += TIMED_OUT_AFTER + timedelta(minutes=5)
        created = anchor - age
        created = created.replace(microsecond=rng.randrange(1_000_000))
        queued = started = finished = None
        reason, errors, output, files, steps = None, [], None, [], None
        if status != "created":
            queued = created + timedelta(seconds=rng.uniform(0.2, 3))
        if status in ("running", "paused") or status in TERMINAL:
            started = queued + timedelta(seconds=rng.uniform(1, 25))
            steps = rng.randint(1, 6)
        if status == "canceled" and rng.random() < 0.3:
            started = None  # canceled while still queued
            steps = None
        if status in TERMINAL:
            duration = timedelta(seconds=rng.uniform(40, 900))
            if status == "timed_out":
                duration = TIMED_OUT_AFTER + timedelta(seconds=rng.uniform(0, 30))
            finished = (started or queued) + duration
            steps = rng.randint(3, 28) if started else None
        if status == "completed":
            output, files = make_success(rng, workflow.kind, params)
        elif status in ("failed", "terminated", "timed_out", "canceled"):
            xss = status == "failed" and not xss_done
            xss_done = xss_done or xss
            reason, errors = make_failure(rng, status, params, xss=xss)
        webhook = (
            f"https://hooks.example.com/skyvern/{_slug(workflow.title)}"
            if rng.random() < 0.5
            else None
        )
        runs.append(
            SeedRun(
                run_id=run_id,
                workflow_title=workflow.title,
                workflow_permanent_id=wpid,
                workflow_id=wid,
                parameters=params,
                status=status,
                created_at=created,
                queued_at=queued,
                started_at=started,
                finished_at=finished,
                failure_reason=reason,
                errors=errors,
                output=output,
                files=files,
                step_count=steps,
                webhook_url=webhook,
            )
        )
    _skyvern_retries_and_webhook_failures(seed, runs, anchor)
    for run in runs:
        if run.status in ("failed", "terminated", "timed_out"):
            run.failure_category = failure_category(run.errors, run.run_id)
    runs.sort(key=lambda r: r.created_at, reverse=True)
    return runs


def _skyvern_retries_and_webhook_failures(seed: str, runs: list[SeedRun], anchor: datetime):
    """Give some runs Skyvern's own retries and some a webhook-only failure.

    Uses its own random stream, so everything else about the runs stays what
    it was before these features existed.
    """
    rng = random.Random(f"skyvern-sim-attempts|{seed}")
    failed = [
        r for r in runs if r.status == "failed" and r.errors[0]["error_code"] != "INVALID_INPUT"
    ]
    failed.sort(key=lambda r: r.run_id)
    rng.shuffle(failed)
    enough = len(runs) >= 30
    # Skyvern is still waiting to retry these itself: recent failures.
    pending = failed[: max(1 if enough else 0, len(runs) // 150)]
    # These failed only because their webhook could not be delivered.
    webhook_only = failed[len(pending) : len(pending) + max(1 if enough else 0, len(runs) // 60)]
    used = {r.run_id for r in pending + webhook_only}
    for run in pending:
        finished = anchor - timedelta(minutes=rng.uniform(5, 40))
        started = finished - timedelta(seconds=rng.uniform(40, 300))
        run.queued_at = started - timedelta(seconds=rng.uniform(1, 25))
        run.created_at = (run.queued_at - timedelta(seconds=rng.uniform(0.2, 3))).replace(
            microsecond=rng.randrange(1_000_000)
        )
        run.started_at, run.finished_at = started, finished
        run.retry_pending = True
        # Always ahead of any "now" within the anchor's hour.
        run.next_attempt_at = anchor + timedelta(minutes=rng.uniform(65, 180))
    for run in webhook_only:
        run.output, run.files = make_success(rng, workflow_kind(run.workflow_title), run.parameters)
        run.webhook_url = run.webhook_url or (
            f"https://hooks.example.com/skyvern/{_slug(run.workflow_title)}"
        )
        run.failure_reason, run.webhook_failure_reason = make_webhook_failure(rng, run.webhook_url)
        run.errors = []
    # Earlier attempts before the current one (completed on a later attempt,
    # or failed for good once the policy gave up).
    retried = [
        r
        for r in runs
        if r.status in ("completed", "failed") and r.started_at and r.run_id not in used
    ]
    retried.sort(key=lambda r: r.run_id)
    rng.shuffle(retried)
    for run in retried[: max(1 if enough else 0, len(runs) // 12)]:
        count = rng.choice((1, 1, 2))
        gap = timedelta(minutes=rng.choice((1, 5, 15)))
        first = run.queued_at + timedelta(seconds=rng.uniform(1, 10))
        run.attempts, start = earlier_attempts(rng, count, first, run.parameters, gap=gap)
        run.attempt = count + 1
        duration = run.finished_at - run.started_at
        run.started_at, run.finished_at = start, start + duration
