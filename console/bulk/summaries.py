"""The ticket-ready summary of a bulk job (see console/runs/summaries.py for a
single retry's or replay's): what was selected and why, who did it and when,
what came of it (a retry job: the new runs with their app links; a webhook
replay job: how the receivers answered; a cancel job: what was canceled),
and what is pending."""

from django.db.models import Count

from console.runs.models import ActionState, Status
from console.runs.summaries import FAILED_STATUSES, Summary, _Both, _reason, _when

from .models import BulkRetryItem, ItemState, JobKind
from .services import item_counts, item_outcomes

#: New runs named one by one; the rest are counted.
RUNS_NAMED = 10


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def bulk_job_summary(job) -> Summary:
    """The ticket paragraph for one bulk job, as the database has it now."""
    if job.kind in (JobKind.REPLAY_WEBHOOK, JobKind.CANCEL):
        return _action_job_summary(job)
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
    _skipped(out, job, counts)
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


def _skipped(out: _Both, job, counts) -> None:
    if not counts[ItemState.SKIPPED]:
        return
    skipped = (
        BulkRetryItem.objects.filter(job_id=job.pk, state=ItemState.SKIPPED)
        .order_by("skip_reason")
        .values_list("skip_reason")
        .annotate(n=Count("pk"))
    )
    labels = dict(BulkRetryItem._meta.get_field("skip_reason").choices)
    why = "; ".join(f"{n} {labels.get(reason, reason).lower()}" for reason, n in skipped)
    out.add(f" Skipped {counts[ItemState.SKIPPED]} ({why}).")


def _action_job_summary(job) -> Summary:
    """A webhook replay job's or a cancel job's paragraph: no new runs, but
    what each receiver answered, or which runs were canceled."""
    counts = item_counts(job.pk)
    total = sum(counts.values())
    who = job.created_by.get_username() if job.created_by else "someone"
    replay = job.kind == JobKind.REPLAY_WEBHOOK
    out = _Both()
    if replay:
        out.add(
            f"On {_when(job.created_at)}, {who} started bulk webhook replay #{job.pk} of "
            f"{_plural(total, 'run')} whose automation succeeded but whose webhook failed "
            f"(reason: {_reason(job.reason)}); only the webhooks were sent again, no browser "
            "work was redone."
        )
    else:
        out.add(
            f"On {_when(job.created_at)}, {who} started bulk cancel #{job.pk} of "
            f"{_plural(total, 'run')} still going at Skyvern (reason: {_reason(job.reason)})."
        )
    items = BulkRetryItem.objects.filter(job_id=job.pk)
    if replay:
        # Replayed: Skyvern sent it, whatever the receiver answered (an item
        # whose receiver refused is not done, but its webhook was sent).
        done = items.filter(action__state=ActionState.DONE)
        sent = done.count()
        if sent:
            delivered = done.filter(
                action__status_code__gte=200, action__status_code__lt=300
            ).count()
            refused = done.filter(action__status_code__isnull=False).count() - delivered
            words = [f"{delivered} delivered"]
            if refused:
                words.append(f"{refused} refused by the receiver")
            if sent - delivered - refused:
                words.append(f"{sent - delivered - refused} could not reach the receiver")
            out.add(f" Webhooks replayed: {', '.join(words)} ({sent} sent).")
        not_done = counts[ItemState.FAILED] - done.filter(state=ItemState.FAILED).count()
    else:
        done = items.filter(state=ItemState.DONE)
        sent = counts[ItemState.DONE]
        if sent:
            out.add(f" Runs cancelled: {sent}.")
        not_done = counts[ItemState.FAILED]
    _skipped(out, job, counts)
    if not_done:
        out.add(
            f" Skyvern did not {'replay' if replay else 'cancel'} {not_done}; "
            "nothing was sent for them."
        )
    named = list(done.select_related("run", "action").order_by("pk")[:RUNS_NAMED])
    if named:
        out.add(" Runs: " if replay else " Cancelled: ")
        for index, item in enumerate(named):
            if index:
                out.add("; ")
            out.run(item.run)
            if replay:
                out.add(f" {_receiver_words(item.action)}")
        more = sent - len(named)
        out.add(f"; and {more} more." if more > 0 else ".")
    waiting = counts[ItemState.PENDING] + counts[ItemState.SENDING]
    pending = []
    if waiting:
        pending.append(f"{waiting} still to be sent")
    if counts[ItemState.UNKNOWN]:
        pending.append(f"{counts[ItemState.UNKNOWN]} with an outcome still being checked")
    if pending:
        out.add(f" Still pending: {', '.join(pending)}.")
    else:
        out.add(" Nothing is pending.")
    return out.done()


def _receiver_words(action) -> str:
    if action is None:
        return "replayed"
    took = f" in {action.latency_ms} ms" if action.latency_ms is not None else ""
    if action.status_code is not None and 200 <= action.status_code < 300:
        return f"delivered (HTTP {action.status_code}{took})"
    if action.status_code is not None:
        return f"refused by the receiver (HTTP {action.status_code}{took})"
    error = _reason(action.error).rstrip(".")
    return f"could not reach the receiver ({error})" if error else "could not reach the receiver"


def _status_words(run) -> str:
    if run.status == Status.COMPLETED:
        return "completed"
    if run.status in FAILED_STATUSES:
        reason = _reason(run.failure_reason)
        return f"{run.get_status_display().lower()} again" + (f" ({reason})" if reason else "")
    if run.status == Status.CANCELED:
        return "canceled at Skyvern"
    return f"{run.get_status_display().lower()}, outcome pending"
