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
  carry an `error_code` (LOGIN_FAILED, CAPTCHA_DETECTED, ...).

The helpers `make_parameters`, `make_failure` and `make_success` are also used
for runs created later by a retry, so those look just as real.
"""

import hashlib
import random
from dataclasses import dataclass
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
    runs.sort(key=lambda r: r.created_at, reverse=True)
    return runs
