"""The canary: a big bulk retry tries a few runs first, and halts itself
when its retries fail again, instead of burning the customer's credits.

A job sending more runs than its `canary_over` marks its first
`canary_size` items as the canary (5 runs or 5 %, whichever is larger, at
most CANARY_MAX). Until the canary is judged, only those are sent. Then
the worker waits for their new runs' outcomes (they arrive as every
outcome does: webhook, sync, the follow pass) and goes on only if at least
`min_success_percent` of the judged retries completed. After that, and for
the whole job, the share of its last BULK_RETRY_WATCH_WINDOW finished
retries is watched the same way.

Guarantees:
- a job halts by pausing itself (one conditional UPDATE: audited once, with
  its reason in words); a paused job sends nothing, as if a person paused it;
- outcomes that don't arrive within BULK_RETRY_CANARY_WAIT_SECONDS, or sends
  whose outcome is unknown, are not guessed: the job pauses and asks;
- waiting holds no worker: the worker's pass ends and is booked again for
  the next look (`wait_until`), like any other wait of the job.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from math import ceil

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from console.runs.models import Status

from ..models import (
    FAILED_AGAIN_STATUSES,
    OPEN_ITEM_STATES,
    BulkRetryItem,
    BulkRetryJob,
    ItemState,
    JobState,
    Outcome,
)
from .common import _audit, log

#: The canary: at least this many runs, or this share of the job, at most CANARY_MAX.
CANARY_MIN = 5
CANARY_SHARE = 0.05
CANARY_MAX = 50
#: While canary outcomes are awaited, the worker looks again this often.
CHECK_EVERY = timedelta(seconds=10)
#: A failure reason quoted in a halt reason is cut to this many characters.
QUOTE_MAX = 160


def canary_size(*, to_send: int, canary_over: int | None) -> int:
    """How many runs a job sending `to_send` sends first (0: no canary)."""
    if canary_over is None or to_send <= canary_over:
        return 0
    return min(to_send, CANARY_MAX, max(CANARY_MIN, ceil(to_send * CANARY_SHARE)))


def canary_wait() -> timedelta:
    return timedelta(seconds=settings.BULK_RETRY_CANARY_WAIT_SECONDS)


@dataclass(frozen=True)
class Guard:
    """What the canary lets the worker do now: send only canary items, wait
    until `wait_until` and look again, or `stop` (the job is not sending)."""

    canary_only: bool = False
    wait_until: datetime | None = None
    stop: bool = False


GO = Guard()


def bulk_job_guard(*, job_id: int) -> Guard:
    """Judge the canary or the rolling window of a job before its next send;
    halts the job (pauses it, with the reason) when its retries fail again.
    Jobs without a canary are never held back."""
    job = (
        BulkRetryJob.objects.filter(pk=job_id)
        .only(
            "pk",
            "team_id",
            "state",
            "canary_size",
            "canary_passed_at",
            "min_success_percent",
            "watch_since",
        )
        .first()
    )
    if job is None or job.state not in (JobState.QUEUED, JobState.RUNNING):
        return Guard(stop=True)
    if not job.is_guarded:
        return GO
    if not BulkRetryItem.objects.filter(
        job_id=job_id, state=ItemState.PENDING, canary=False
    ).exists():
        return GO  # nothing left that a halt would keep from being sent
    if job.canary_passed_at is None:
        return _judge_canary(job)
    return _watch(job)


def _top_cause(rows) -> str:
    """The most common Skyvern category among failed new runs, with the most
    common reason within it: `AUTH_FAILURE 'Login failed: portal rejected
    the password'`."""
    causes = [(_category(raw), (reason or "").strip()) for reason, raw in rows]
    if not causes:
        return ""
    category = Counter(category for category, _ in causes).most_common(1)[0][0]
    reason = Counter(reason for c, reason in causes if c == category).most_common(1)[0][0]
    if len(reason) > QUOTE_MAX:
        reason = reason[: QUOTE_MAX - 1] + "…"
    quoted = f"'{reason}'" if reason else ""
    return " ".join(part for part in (category, quoted) if part)


def _category(raw) -> str:
    """Skyvern's most confident failure category of a run (only its runs
    list carries one), else the code of the run's first error."""
    if not isinstance(raw, dict):
        return ""
    rows = raw.get("failure_category")
    rows = (
        [row for row in rows if isinstance(row, dict) and row.get("category")]
        if isinstance(rows, list)
        else []
    )
    if rows:
        best = max(rows, key=lambda row: row.get("confidence_float") or 0)
        return str(best["category"])[:60]
    errors = raw.get("errors")
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, dict) and error.get("error_code"):
                return str(error["error_code"])[:60]
    return ""


def _failed_again_text(failed: int, of_what: str, failures) -> str:
    cause = _top_cause(failures)
    text = f"{failed} of {of_what} failed again"
    return f"{text}: {cause}" if cause else text


def _judge_canary(job: BulkRetryJob) -> Guard:
    items = BulkRetryItem.objects.filter(job_id=job.pk, canary=True)
    if items.filter(state__in=OPEN_ITEM_STATES).exists():
        return Guard(canary_only=True)
    rows = list(items.with_outcome().values_list("outcome", "finished_at"))
    outcomes = Counter(outcome for outcome, _ in rows)
    now = timezone.now()
    running = outcomes[Outcome.STILL_RUNNING]
    if running:
        sent_by = max((at for _, at in rows if at), default=now)
        if now < sent_by + canary_wait():
            return Guard(
                canary_only=True, wait_until=min(sent_by + canary_wait(), now + CHECK_EVERY)
            )
    completed = outcomes[Outcome.COMPLETED]
    failed = outcomes[Outcome.FAILED_AGAIN]
    judged = completed + failed + outcomes[Outcome.CANCELED]
    sent = judged + running + outcomes[Outcome.UNKNOWN]
    if running or outcomes[Outcome.UNKNOWN]:
        parts = []
        if running:
            parts.append(f"{running} still running after {_minutes(canary_wait())}")
        if outcomes[Outcome.UNKNOWN]:
            parts.append(f"{outcomes[Outcome.UNKNOWN]} sent without an answer")
        _halt(
            job,
            f"{sent - judged} of {sent} canary retries have no outcome "
            f"({', '.join(parts)}); {completed} succeeded, {failed} failed again. "
            "Resume to send the rest, or cancel.",
            check="canary",
            completed=completed,
            failed_again=failed,
            no_outcome=sent - judged,
        )
        return Guard(stop=True)
    if not judged:
        _halt(
            job,
            f"None of the {len(rows)} canary runs was retried (see why on their rows). "
            "Resume to send the rest, or cancel.",
            check="canary",
        )
        return Guard(stop=True)
    if completed * 100 >= job.min_success_percent * judged:
        with transaction.atomic():
            passed = BulkRetryJob.objects.filter(pk=job.pk, canary_passed_at__isnull=True).update(
                canary_passed_at=now
            )
            if passed:
                _audit(
                    "bulk_job_canary_pass",
                    job=job,
                    completed=completed,
                    judged=judged,
                    min_success_percent=job.min_success_percent,
                )
        if passed:
            log.info("bulk retry #%s: canary passed, %s of %s succeeded", job.pk, completed, judged)
        return GO
    failures = items.outcome(Outcome.FAILED_AGAIN).values_list(
        "new_run__failure_reason", "new_run__raw"
    )
    _halt(
        job,
        _failed_again_text(judged - completed, f"{judged} canary retries", failures),
        check="canary",
        completed=completed,
        failed_again=judged - completed,
    )
    return Guard(stop=True)


def _watch(job: BulkRetryJob) -> Guard:
    """The rolling window: the job's last finished retries (since a person
    last resumed it), newest first by when their new run ended."""
    window = settings.BULK_RETRY_WATCH_WINDOW
    if window < 1:
        return GO
    finished = BulkRetryItem.objects.filter(
        job_id=job.pk,
        state=ItemState.RETRIED,
        new_run__status__in=[Status.COMPLETED, Status.CANCELED, *FAILED_AGAIN_STATUSES],
    )
    if job.watch_since is not None:
        finished = finished.filter(sent_at__gte=job.watch_since)
    rows = list(
        finished.order_by(F("new_run__finished_at").desc(nulls_last=True), "-pk").values_list(
            "new_run__status", "new_run__failure_reason", "new_run__raw"
        )[:window]
    )
    if len(rows) < window:
        return GO
    completed = sum(1 for status, _, _ in rows if status == Status.COMPLETED)
    if completed * 100 >= job.min_success_percent * len(rows):
        return GO
    failures = [(reason, raw) for status, reason, raw in rows if status in FAILED_AGAIN_STATUSES]
    _halt(
        job,
        _failed_again_text(len(rows) - completed, f"the last {len(rows)} retries", failures),
        check="window",
        completed=completed,
        failed_again=len(rows) - completed,
    )
    return Guard(stop=True)


def _minutes(value: timedelta) -> str:
    minutes = round(value.total_seconds() / 60)
    if minutes < 1:
        return f"{int(value.total_seconds())} seconds"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _halt(job: BulkRetryJob, reason: str, *, check: str, **counts) -> bool:
    """Pause the job by itself with `reason`, once (audited by the one that did)."""
    reason = reason[:500]
    with transaction.atomic():
        halted = BulkRetryJob.objects.filter(
            pk=job.pk, state__in=[JobState.QUEUED, JobState.RUNNING]
        ).update(
            state=JobState.PAUSED,
            halt_reason=reason,
            state_changed_by=None,
            state_changed_at=timezone.now(),
        )
        if halted:
            _audit("bulk_job_halt", job=job, reason=reason, check=check, **counts)
    if halted:
        log.warning("bulk retry #%s halted itself: %s", job.pk, reason)
    return bool(halted)
