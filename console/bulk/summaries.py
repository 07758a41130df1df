"""The ticket-ready summary of a bulk retry job (see console/runs/summaries.py
for a single retry's): what was selected and why, who did it and when, what
came of the sent retries with the new runs' app links, and what is pending."""

from django.db.models import Count

from console.runs.models import Status
from console.runs.summaries import FAILED_STATUSES, Summary, _Both, _reason, _when

from .models import BulkRetryItem, ItemState
from .services import item_counts, item_outcomes

#: New runs named one by one; the rest are counted.
RUNS_NAMED = 10


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def bulk_job_summary(job) -> Summary:
    """The ticket paragraph for one bulk retry job, as the database has it now."""
    counts = item_counts(job.pk)
    follow = item_outcomes(job.pk)
    total = sum(counts.values())
    who = job.created_by.get_username() if job.created_by else "someone"
    out = _Both()
    out.add(
        f"On {_when(job.created_at)}, {who} started bulk retry #{job.pk} of "
        f"{_plural(total, 'failed run')} (reason: {_reason(job.reason)})."
    )
    if follow.sent:
        out.add(f" Sent: {follow.in_words()}.")
    skipped = (
        BulkRetryItem.objects.filter(job_id=job.pk, state=ItemState.SKIPPED)
        .order_by("skip_reason")
        .values_list("skip_reason")
        .annotate(n=Count("pk"))
    )
    if counts[ItemState.SKIPPED]:
        labels = dict(BulkRetryItem._meta.get_field("skip_reason").choices)
        why = "; ".join(f"{n} {labels.get(reason, reason).lower()}" for reason, n in skipped)
        out.add(f" Skipped {counts[ItemState.SKIPPED]} ({why}).")
    if counts[ItemState.FAILED]:
        out.add(
            f" Skyvern did not accept {counts[ItemState.FAILED]}; nothing was started for them."
        )
    new_items = (
        BulkRetryItem.objects.filter(job_id=job.pk, new_run__isnull=False)
        .select_related("new_run", "run")
        .order_by("pk")
    )
    named = list(new_items[:RUNS_NAMED])
    if named:
        out.add(" New runs: ")
        for index, item in enumerate(named):
            if index:
                out.add("; ")
            out.add(f"{item.run.run_id} → ")
            out.run(item.new_run)
            out.add(f" {_status_words(item.new_run)}")
        more = new_items.count() - len(named)
        out.add(f"; and {more} more." if more > 0 else ".")
    waiting = counts[ItemState.PENDING] + counts[ItemState.SENDING]
    pending = []
    if waiting:
        pending.append(f"{waiting} still to be sent")
    if follow.still_running:
        pending.append(f"{follow.still_running} still running at Skyvern")
    if follow.unknown:
        pending.append(f"{follow.unknown} with an outcome still being checked")
    if pending:
        out.add(f" Still pending: {', '.join(pending)}.")
    else:
        out.add(" Nothing is pending.")
    return out.done()


def _status_words(run) -> str:
    if run.status == Status.COMPLETED:
        return "completed"
    if run.status in FAILED_STATUSES:
        reason = _reason(run.failure_reason)
        return f"{run.get_status_display().lower()} again" + (f" ({reason})" if reason else "")
    if run.status == Status.CANCELED:
        return "canceled at Skyvern"
    return f"{run.get_status_display().lower()}, outcome pending"
