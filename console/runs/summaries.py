"""Ticket-ready summaries: what a support person pastes into the customer's ticket.

A summary is a short paragraph in plain text, and the same in Markdown: what
failed and why, what was done by whom and when, the new run with its app link
and outcome, and what is still pending. Plain functions of what is recorded;
times in UTC, since the customer's zone is not known.
"""

from dataclasses import dataclass

from .models import ActionState, RetryKind, RetryState, Run, Status

FAILED_STATUSES = {Status.FAILED, Status.TERMINATED, Status.TIMED_OUT}
REASON_CHARS = 300


@dataclass(frozen=True)
class Summary:
    text: str
    markdown: str


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "an unknown time"


def _reason(reason: str) -> str:
    reason = " ".join((reason or "").split())
    if len(reason) > REASON_CHARS:
        reason = reason[: REASON_CHARS - 1] + "…"
    return reason


def _md(text: str) -> str:
    """Text safe inside Markdown: no link, emphasis or code from Skyvern's words."""
    for char in "\\`*_[]<>#|":
        text = text.replace(char, "\\" + char)
    return text


class _Both:
    """Builds the plain and the Markdown paragraph side by side."""

    def __init__(self):
        self.text: list[str] = []
        self.markdown: list[str] = []

    def add(self, text: str, markdown: str | None = None) -> None:
        self.text.append(text)
        self.markdown.append(_md(text) if markdown is None else markdown)

    def run(self, run: Run) -> None:
        """A run's id, with its Skyvern app link when known."""
        if run.app_url:
            self.add(f"{run.run_id} ({run.app_url})", f"[`{run.run_id}`]({run.app_url})")
        else:
            self.add(run.run_id, f"`{run.run_id}`")

    def done(self) -> Summary:
        return Summary(text="".join(self.text), markdown="".join(self.markdown))


def _what_failed(out: _Both, run: Run) -> None:
    out.add(f"The {run.workflow_title} run " if run.workflow_title else "Run ")
    out.run(run)
    out.add(f" {run.get_status_display().lower()}")
    reason = _reason(run.failure_reason)
    out.add(f": {reason}. " if reason else ". ")


def _outcome(out: _Both, new_run: Run) -> None:
    if new_run.status == Status.COMPLETED:
        out.add(" It completed")
        if new_run.finished_at:
            out.add(f" at {_when(new_run.finished_at)}")
        out.add(".")
    elif new_run.status in FAILED_STATUSES:
        reason = _reason(new_run.failure_reason)
        out.add(f" It {new_run.get_status_display().lower()} again")
        out.add(f": {reason}." if reason else ".")
    elif new_run.status == Status.CANCELED:
        out.add(" It was canceled at Skyvern.")
    else:
        out.add(f" It is {new_run.get_status_display().lower()}; its outcome is still pending.")


def retry_summary(retry) -> Summary:
    """The ticket paragraph for one retry or rerun of a run."""
    run = retry.run
    out = _Both()
    _what_failed(out, run)
    who = retry.requested_by.get_username() if retry.requested_by else "someone"
    if retry.kind == RetryKind.RERUN:
        did = (
            f"reran it on the workflow's latest version (version {retry.version}) "
            "with the same parameters"
        )
    else:
        did = "retried it"
    out.add(f"On {_when(retry.requested_at)}, {who} {did}")
    if retry.state == RetryState.RETRIED and retry.new_run is not None:
        out.add(" as run ")
        out.run(retry.new_run)
        out.add(".")
        _outcome(out, retry.new_run)
    elif retry.state == RetryState.RETRIED:
        out.add("; Skyvern accepted it.")
    elif retry.state == RetryState.SENDING:
        out.add("; it is being sent to Skyvern now.")
    elif retry.state == RetryState.UNKNOWN:
        out.add(
            "; Skyvern's answer was lost, so whether a new run was started is "
            "still being checked. It will not be sent again without checking."
        )
    else:
        error = _reason(retry.error)
        out.add(f"; Skyvern did not accept it{': ' + error if error else '.'}")
        if error and not error.endswith("."):
            out.add(".")
        out.add(" Nothing was started.")
    return out.done()


def _host(url: str) -> str:
    """Only the host a webhook goes to: its path and query may carry the
    customer's token, which a ticket must not."""
    from .card_html import webhook_host

    return webhook_host(url or "")


def replay_summary(action) -> Summary:
    """The ticket paragraph for one webhook replay of a run (a RunAction)."""
    run = action.run
    out = _Both()
    out.add(f"The {run.workflow_title} run " if run.workflow_title else "Run ")
    out.run(run)
    out.add(" failed only because its webhook could not be delivered")
    reason = _reason(run.webhook_failure_reason)
    out.add(f": {reason}" if reason else "")
    out.add(". The automation itself succeeded and its output is intact. ")
    who = action.requested_by.get_username() if action.requested_by else "someone"
    host = _host(action.target_url or action.webhook_url or run.webhook_url)
    where = f" to {host}" if host else ""
    if action.webhook_url:
        where = f" to another address, {host}" if host else " to another address"
    out.add(f"On {_when(action.requested_at)}, {who} replayed its webhook{where}")
    out.add(" (no browser work was redone).")
    if action.state == ActionState.DONE and action.status_code is not None:
        took = f" in {action.latency_ms} ms" if action.latency_ms is not None else ""
        if 200 <= action.status_code < 300:
            out.add(f" The receiver answered HTTP {action.status_code}{took}: delivered.")
        else:
            out.add(
                f" The receiver answered HTTP {action.status_code}{took}: "
                "the webhook is still not delivered."
            )
    elif action.state == ActionState.DONE:
        error = _reason(action.error)
        out.add(
            " The receiver could not be reached"
            f"{': ' + error.rstrip('.') if error else ''}; the webhook is still not delivered."
        )
    elif action.state == ActionState.SENDING:
        out.add(" It is being sent to Skyvern now.")
    elif action.state == ActionState.UNKNOWN:
        out.add(
            " Skyvern's answer was lost, so whether the webhook was sent again is "
            "unknown. It will not be sent again without checking."
        )
    else:
        error = _reason(action.error)
        out.add(f" Skyvern did not replay it{': ' + error.rstrip('.') if error else ''}.")
        out.add(" Nothing was sent.")
    return out.done()
