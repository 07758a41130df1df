"""A run's compact row: the runs page's dense list (issue 15), one line a run.

A row says what the card says in brief (status, run, workflow, failure cut to
fit, times, what became of retrying it) and offers the card's main action
(card_html.row_action: the same forms, so the same confirmations); its card
unfolds under it (a <details>, so without JavaScript too). The row is a
<tbody> of two rows: the line, and the card's own row, spanning the table.

The row stands for the run as the card does elsewhere: it has the card's id
(`run-<pk>`, what every action of the card targets), so an answer replaces the
whole row; `hx-vals` tells each request from inside it that the answer is to be
a row (views: `layout=rows`). Drawn by the fifty like cards, cached like them
(cards.render_cards).
"""

import hashlib
import inspect
import sys

from django.utils import timezone

from . import card_html
from .card_html import _bare_time, _detail, _e, _time, draw_card, row_action
from .card_pick import card_pick
from .models import ActionKind, ActionState, RetryKind, RetryState, Status
from .templatetags.run_links import run_url

# The table's columns, after the checkbox's (only for those who may retry).
COLUMNS = ("Status", "Run", "Workflow", "Failure", "Created", "Finished", "Retry", "Action")
# What every request from inside a row sends (hx-vals): answer with a row.
ROWS_VALS = '{"layout": "rows"}'
REASON_SHOWN = 90  # characters of a failure reason on the line itself
_STATUS_LABELS = dict(Status.choices)


def columns(can_retry: bool) -> int:
    return len(COLUMNS) + (1 if can_retry else 0) + 1  # and the card's toggle


def draw_row(
    card,
    *,
    team_slug,
    can_retry,
    form_fields="",
    card_error=None,
    refresh_error=None,
    confirming=False,
    confirm_cancel=False,
    open_card=False,
):
    """One run's row; its card unfolded when it asks or answers something, or
    when the person had it open (`open_card`)."""
    pk, status, run_id = card.pk, _e(card.status), _e(card.run_id)
    zone = timezone.get_current_timezone()
    asking = bool(card_error or refresh_error or confirming or confirm_cancel)
    polls = ""
    if not card.is_terminal and not confirm_cancel and not confirming:
        polls = (
            f' hx-get="{_e(run_url("runs:run_card", team_slug, card.run_id))}?shown={status}"'
            ' hx-trigger="every 3s" hx-swap="outerHTML"'
        )
    inner = draw_card(
        card,
        team_slug=team_slug,
        can_retry=can_retry,
        form_fields=form_fields,
        card_error=card_error,
        refresh_error=refresh_error,
        confirming=confirming,
        confirm_cancel=confirm_cancel,
        in_row=True,
    )
    title = card.workflow_title or card.workflow_permanent_id or "(untitled workflow)"
    pick = f'<td class="row-pick">{card_pick(pk, card.run_id)}</td>' if can_retry else ""
    action = row_action(card, team_slug, form_fields) if can_retry else ""
    finished = _time(card.finished_at, zone) if card.finished_at else ""
    opened = " open" if asking or open_card else ""
    return "".join(
        (
            f'<tbody id="run-{pk}" class="run-row status-{status}" '
            f"hx-vals='{ROWS_VALS}'{polls}>\n",
            f'<tr class="row-line" data-run-id="{run_id}" tabindex="-1">',
            pick,
            f'<td class="row-status"><span class="badge status-{status}">'
            '<span aria-hidden="true" class="dot"></span>'
            f"{_e(card.get_status_display())}</span></td>",
            f'<td class="row-id"><a class="run-id" href="{_detail(team_slug, card.run_id)}">'
            f"{run_id}</a></td>",
            f'<td class="row-workflow"><span title="{_e(card.workflow_permanent_id)}">'
            f"{_e(title)}</span></td>",
            f'<td class="row-failure">{_reason(card)}</td>',
            f'<td class="row-created" data-label="Created">{_time(card.created_at, zone)}</td>',
            f'<td class="row-finished" data-label="Finished">{finished}</td>',
            f'<td class="row-retry" data-label="Retry">{_retry_state(card, team_slug, zone)}</td>',
            f'<td class="row-action">{action}</td>',
            # Room for the card's toggle, drawn over it (it is in the card's row).
            '<td class="row-toggle"><span class="toggle-room"></span></td></tr>\n',
            f'<tr class="row-card"><td colspan="{columns(can_retry)}">'
            f'<details class="row-expand"{opened}><summary>Card'
            f'<span class="visually-hidden"> of {run_id}</span></summary>\n',
            inner,
            "</details></td></tr>\n</tbody>\n",
        )
    )


def _reason(card) -> str:
    """The failure reason cut to fit (all of it on hover, and unfolded)."""
    if card.webhook_only_failure:
        reason = f"Webhook: {card.webhook_failure_reason}"
    else:
        reason = card.failure_reason
    if not reason:
        return ""
    if len(reason) <= REASON_SHOWN:
        return f'<span class="row-reason" title="{_e(reason)}">{_e(reason)}</span>'
    return (
        f'<details class="row-reason"><summary title="{_e(reason)}">'
        # Cut by slicing (Truncator costs a page of rows a few ms); CSS cuts to fit.
        f"{_e(reason[: REASON_SHOWN - 1])}…</summary>"
        f'<p class="failure-full">{_e(reason)}</p></details>'
    )


def _retry_state(card, team_slug, zone) -> str:
    """What became of retrying the run, in a few words (the card says the rest)."""
    latest = card.latest_retry
    if latest is not None:
        if latest.state == RetryState.RETRIED and latest.new_run_id:
            verb = "Retried"
            if latest.kind == RetryKind.RERUN:
                verb = f"Rerun on v{_e(latest.version)}"
            now = _STATUS_LABELS.get(latest.new_run_status, latest.new_run_status or "")
            said = (
                f'{verb} → <a href="{_detail(team_slug, latest.new_run_id)}">'
                f"{_e(latest.new_run_id)}</a>"
                f' <span class="new-run-status">{_e(now.lower())}</span>'
            )
        elif latest.state == RetryState.RETRIED:
            said = "Retried"
        elif latest.state == RetryState.SENDING:
            said = "Retry being sent"
        else:
            said = "Retry outcome unknown: check before retrying again"
        count = f" ({len(card.retries)} retries)" if len(card.retries) > 1 else ""
        return f'<span class="retry-state-{_e(latest.state)}">{said}{count}</span>'
    if card.is_terminal and card.skyvern_retries:
        when = "soon"
        if card.next_attempt_at:
            when = f"at {_bare_time(card.next_attempt_at, zone)}"
        return f'<span class="skyvern-retries">Skyvern retries this {when}</span>'
    if card.webhook_only_failure:
        replays = card.actions_of(ActionKind.REPLAY_WEBHOOK)
        if not replays:
            return "Webhook only"
        # Every replay says how it went on the line too: with the card folded,
        # this is the only answer the person sees to their click.
        latest = replays[0]
        if latest.state == ActionState.SENDING:
            said = "replay being sent"
        elif latest.state == ActionState.UNKNOWN:
            said = "replay outcome unknown"
        elif latest.status_code is not None:
            said = f"replayed: HTTP {_e(latest.status_code)}"
        else:
            said = "replayed: the receiver didn't answer"
        count = f" ({len(replays)} replays)" if len(replays) > 1 else ""
        return f"Webhook only; {said}{count}"
    if card.retried_from:
        return (
            f'Retry of <a href="{_detail(team_slug, card.retried_from)}">'
            f"{_e(card.retried_from)}</a>"
        )
    return ""


def version() -> str:
    """What draws a row: this module and the card's (cards._viewing)."""
    return _VERSION + card_html.version()


_VERSION = hashlib.blake2b(
    inspect.getsource(sys.modules[__name__]).encode(), digest_size=6
).hexdigest()
