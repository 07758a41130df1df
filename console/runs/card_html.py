"""A run card's markup, drawn in Python from its RunCard.

The card is the one piece of HTML the console draws by the fifty: a page whose
cards all changed draws every one of them before anyone sees it, and Django's
template engine drawing them was most of that page's time (docs/performance.md,
change 22), so these functions draw the same markup with f-strings.
Everything from Skyvern or from people goes through `_e()` (escaped as
Django's autoescape would); the per-request fields (CSRF token, page to come
back to) are given ready-drawn.

The runs of an unknown retry's check are drawn by their shared template
(runs/includes/retry_candidates.html, also on a bulk retry's page): few cards
show them.
"""

import hashlib
import inspect
import sys
from html import escape
from urllib.parse import urlsplit

from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from console import timefmt
from console.skyvern.types import http_url

from .card_pick import card_pick
from .models import ActionKind, ActionState, RetryKind, RetryState, Status
from .sessions import session_sentence
from .templatetags.run_links import run_url

COMPLETED = Status.COMPLETED
_STATUS_LABELS = dict(Status.choices)

CANDIDATES_TEMPLATE = "runs/includes/retry_candidates.html"
# A card showing the answer to the person's own action says so in the page's
# form of answers (the run detail page's: its refreshes keep that card).
ANSWERED_FIELD = "answered"
ANSWERS_FORM = "card-answers"
FAILURE_SHOWN = 160  # characters of a failure reason before it folds


def _e(value) -> str:
    """As Django's autoescape: None is "None", like any other value."""
    return escape(str(value), quote=True)


def draw_card(
    card,
    *,
    team_slug,
    can_retry,
    form_fields="",
    card_error=None,
    refresh_error=None,
    confirming=False,
    confirm_cancel=False,
    in_row=False,
):
    """One card (templates/runs/run_list.html#run-card shows it): `form_fields`
    go into each of its forms, already drawn. `confirming`: the card asks
    the person to confirm the retry of a run that succeeded; `confirm_cancel`:
    to confirm canceling the run (and it stops refreshing itself meanwhile).
    `in_row`: the card unfolded in its compact row (row_html.py), which stands
    for the run (its id, its checkbox, its refreshes): the card has none."""
    pk, status, run_id = card.pk, _e(card.status), _e(card.run_id)
    zone = timezone.get_current_timezone()
    latest = card.latest_retry
    polls = ""
    if not card.is_terminal and not confirm_cancel and not in_row:
        polls = (
            f' hx-get="{_e(run_url("runs:run_card", team_slug, card.run_id))}?shown={status}"'
            ' hx-trigger="every 3s" hx-swap="outerHTML"'
        )
    pick = ""
    if can_retry and not in_row:
        pick = card_pick(pk, card.run_id)
    stands_for = "" if in_row else f'id="run-{pk}" '
    run_attr = "" if in_row else f' data-run-id="{run_id}" tabindex="-1"'
    title = card.workflow_title or card.workflow_permanent_id or "(untitled workflow)"
    return "".join(
        (
            # tabindex: j/k and the answer to an action focus the card itself (console.js).
            f'<article {stands_for}class="run-card status-{status}"{run_attr}\n'
            f"  {polls}>\n"
            '  <header class="run-head">\n'
            f"    {pick}\n"
            f'    <span class="badge status-{status}"><span aria-hidden="true" class="dot"></span>'
            f"{_e(card.get_status_display())}</span>\n"
            f'    <a class="run-id" href="{_detail(team_slug, card.run_id)}">{run_id}</a>\n'
            f'    <span class="workflow" title="{_e(card.workflow_permanent_id)}">'
            f"{_e(title)}</span>\n"
            "  </header>\n",
            _failure(card.failure_reason) if not card.webhook_only_failure else "",
            _webhook_only(card, zone) if card.webhook_only_failure else "",
            f'  <p class="times">\n    Created {_time(card.created_at, zone)}\n',
            f"    · finished {_time(card.finished_at, zone)}\n" if card.finished_at else "",
            "  </p>\n",
            _links(card),
            _lineage(card, team_slug, zone),
            _latest(card, latest, team_slug, zone) if latest else "",
            _check(card, latest, team_slug, can_retry, form_fields, zone)
            if latest and latest.state == RetryState.UNKNOWN and latest.checked_at
            else "",
            _skyvern_retries(card, zone) if card.is_terminal and card.skyvern_retries else "",
            (
                f'  <p class="card-error" role="alert">{_e(card_error)}'
                f'<input type="hidden" name="{ANSWERED_FIELD}" value="{run_id}" '
                f'form="{ANSWERS_FORM}"></p>\n'
            )
            if card_error
            else "",
            # The detail page's refreshes keep a card that is asking (ANSWERED_FIELD).
            f'  <input type="hidden" name="{ANSWERED_FIELD}" value="{run_id}" '
            f'form="{ANSWERS_FORM}">\n'
            if confirm_cancel and not card_error
            else "",
            (
                f'  <p class="card-warning">Couldn\'t refresh from Skyvern: {_e(refresh_error)} '
                "Showing the cached copy.</p>\n"
            )
            if refresh_error
            else "",
            '  <footer class="run-actions">\n',
            _actions(card, latest, team_slug, form_fields, confirming, confirm_cancel)
            if can_retry
            else "",
            "  </footer>\n</article>\n",
        )
    )


def _detail(team_slug, run_id) -> str:
    return _e(run_url("runs:run_detail", team_slug, run_id))


def _time(moment, zone) -> str:
    # Cached markup: console.js adds "12 min ago" and keeps it current.
    return timefmt.time_html(moment, zone=zone, live=True)


def _bare_time(moment, zone, seconds=False) -> str:
    return timefmt.time_html(moment, "seconds" if seconds else "short", zone=zone)


def _failure(reason: str) -> str:
    if not reason:
        return ""
    if len(reason) > FAILURE_SHOWN:
        return (
            '  <details class="failure">\n'
            f"    <summary>{_e(Truncator(reason).chars(FAILURE_SHOWN))}</summary>\n"
            f'    <p class="failure-full">{_e(reason)}</p>\n'
            "  </details>\n"
        )
    return f'  <p class="failure">{_e(reason)}</p>\n'


def _links(card) -> str:
    # Links from Skyvern: only a plain http(s) URL may become a link.
    app_url, recording_url = http_url(card.app_url), http_url(card.recording_url)
    links = []
    if app_url:
        links.append(
            f'<a href="{_e(app_url)}" target="_blank" rel="noopener noreferrer" '
            'class="app-link">Open in Skyvern</a>'
        )
    if recording_url:
        links.append(
            f'<a href="{_e(recording_url)}" target="_blank" rel="noopener noreferrer" '
            'class="recording-link">Recording</a>'
        )
    elif app_url and not card.is_terminal:
        links.append('<span class="muted">Recording appears once the run starts</span>')
    return '  <p class="links">\n    ' + "\n    ".join(links) + "\n  </p>\n"


def _lineage(card, team_slug, zone) -> str:
    if not card.retried_from:
        return ""
    when = _bare_time(card.retried_at, zone) if card.retried_at else '<time datetime=""></time>'
    return (
        f'  <p class="lineage">Retry of <a href="{_detail(team_slug, card.retried_from)}">'
        f"{_e(card.retried_from)}</a>\n"
        f"    by {_e(card.retried_by or 'someone')}, {when}</p>\n"
    )


def _latest(card, latest, team_slug, zone) -> str:
    if latest.kind == RetryKind.RERUN and latest.state == RetryState.RETRIED:
        target = f"Rerun on v{_e(latest.version)}"
        what = (
            f'{target} → <a href="{_detail(team_slug, latest.new_run_id)}">'
            f"{_e(latest.new_run_id)}</a>{_retry_outcome(latest)}"
            if latest.new_run_id
            else target
        )
    elif latest.state == RetryState.RETRIED and latest.new_run_id:
        what = (
            f'Retried → <a href="{_detail(team_slug, latest.new_run_id)}">'
            f"{_e(latest.new_run_id)}</a>{_retry_outcome(latest)}"
        )
    elif latest.state == RetryState.RETRIED:
        what = "Retried"  # its new run is no longer cached
    elif latest.state == RetryState.SENDING:
        what = "Retry being sent"
    elif latest.proposed_runs:
        proposed = latest.proposed_runs.split()
        some = "a run" if len(proposed) == 1 else "runs"
        what = (
            f"Retry outcome unknown — Skyvern has {some} that may be this retry: "
            f'<span class="proposed-runs">{", ".join(_e(run) for run in proposed)}</span>'
            " — check before retrying again."
        )
    else:
        what = (
            "Retry outcome unknown — Skyvern didn't confirm; check Skyvern before retrying again."
        )
    count = f"\n    ({len(card.retries)} retries)" if len(card.retries) > 1 else ""
    return (
        f'  <p class="retried retry-state-{_e(latest.state)}">\n'
        f"    {what}\n"
        f"    by {_e(latest.requested_by or 'someone')}, "
        f"{_bare_time(latest.requested_at, zone)}"
        f"{count}\n"
        "  </p>\n"
    )


def _retry_outcome(latest) -> str:
    """How the retry's new run ended, or that it is still going."""
    status = latest.new_run_status
    if not status:
        return ""
    label = _STATUS_LABELS.get(status, status)
    return f' (now <span class="retry-outcome status-{_e(status)}">{_e(label.lower())}</span>)'


def _check(card, latest, team_slug, can_retry, form_fields, zone) -> str:
    link_url = ""
    if can_retry:
        link_url = reverse("runs:retry_link", args=[team_slug, card.run_id, latest.number])
    candidates = get_template(CANDIDATES_TEMPLATE).render(
        {
            "candidates": latest.check_evidence,
            "link_url": link_url,
            "card_pk": card.pk,
            "can_link": can_retry,
            "form_fields": mark_safe(form_fields),  # noqa: S308 (drawn already)
        }
    )
    return (
        '  <section class="retry-check" aria-label="Check of the retry">\n'
        f'    <p class="check-note">Checked {_bare_time(latest.checked_at, zone, seconds=True)}: '
        f"{_e(latest.check_note)}</p>\n"
        f"{candidates}\n"
        "  </section>\n"
    )


def _skyvern_retries(card, zone) -> str:
    """Skyvern's own retry policy will run it again: when, and which attempt."""
    when = "soon"
    if card.next_attempt_at:
        when = f"at {timefmt.time_html(card.next_attempt_at, zone=zone)}"
    return (
        f'  <p class="skyvern-retries">Skyvern retries this {when} '
        f"({_e(attempt_words(card.attempt + 1, card.max_attempts))}). "
        "A retry from here would make a second run beside Skyvern's own.</p>\n"
    )


def attempt_words(number, max_attempts) -> str:
    """Which of Skyvern's attempts of a run `number` is, as cards and a bulk
    preview say it: "attempt 2 of 3", or "attempt 2" while how many attempts
    the run's workflow version allows isn't known (plain text)."""
    of = f" of {max_attempts}" if max_attempts else ""
    return f"attempt {number}{of}"


def _drift(card, team_slug) -> str:
    """The workflow moved on since the run: a retry runs the run's own
    version; the choice to rerun on the latest is on the run's page."""
    choice = f"{_detail(team_slug, card.run_id)}#h-version"
    return (
        f'<p class="card-drift">Retries version {_e(card.ran_version)} (this run\'s); '
        f"the workflow is now at version {_e(card.latest_version)}. "
        f'<a href="{choice}">Retry as is or rerun on the latest version</a></p>'
    )


def webhook_host(url: str) -> str:
    """The host a webhook URL goes to (never its path or query: they may
    carry the customer's token), or "" when there is none to name."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def retry_effects(card) -> list[str]:
    """What a retry of the run does besides running it again, in a support
    person's words (plain text; escaped where drawn)."""
    effects = []
    if card.webhook_url:
        host = webhook_host(card.webhook_url)
        where = f" at {host}" if host else ""
        effects.append(f"This retry will call the customer's webhook{where} again.")
    if card.browser_session_id:
        effects.append(session_sentence(card.browser_session_id, card.browser_session_state))
    return effects


def _effects(card) -> str:
    effects = retry_effects(card)
    if not effects:
        return ""
    return f'<p class="retry-effects">{" ".join(_e(effect) for effect in effects)}</p>'


def _webhook_only(card, zone) -> str:
    """A webhook-only failure: what failed, and what its replays got back."""
    lines = [
        '  <p class="webhook-only" role="note"><strong>Only the webhook failed</strong>: '
        "the automation succeeded and its output is intact. "
        f'<span class="webhook-failure">{_e(card.webhook_failure_reason)}</span></p>\n'
    ]
    replays = card.actions_of(ActionKind.REPLAY_WEBHOOK)
    if replays:
        lines.append(_replay_result(replays[0], zone, len(replays)))
    return "".join(lines)


def _replay_result(replay, zone, count) -> str:
    who = f"by {_e(replay.requested_by or 'someone')}, {_bare_time(replay.requested_at, zone)}"
    to = (
        f" to {_e(replay.target_url or replay.webhook_url)}"
        if (replay.target_url or replay.webhook_url)
        else ""
    )
    if replay.state == ActionState.SENDING:
        what = "Webhook replay being sent"
    elif replay.state == ActionState.UNKNOWN:
        what = f"Webhook replay outcome unknown: {_e(replay.error)}"
    elif replay.status_code is not None:
        ok = "delivered" if 200 <= replay.status_code < 300 else "refused by the receiver"
        latency = f" in {replay.latency_ms} ms" if replay.latency_ms is not None else ""
        what = f"Webhook replayed{to}: {ok}, HTTP {replay.status_code}{latency}"
    else:
        why = _e(replay.error or "no answer")
        what = f"Webhook replayed{to}: the receiver didn't answer ({why})"
    again = f" ({count} replays)" if count > 1 else ""
    excerpt = ""
    if replay.response_excerpt:
        excerpt = (
            '\n    <details class="replay-response"><summary>Receiver\'s answer</summary>'
            f"<pre>{_e(replay.response_excerpt)}</pre></details>"
        )
    return (
        f'  <p class="webhook-replay replay-state-{_e(replay.state)}" role="status">\n'
        f"    {what} {who}{again}{excerpt}\n  </p>\n"
    )


def _cancel_note(card, zone) -> str:
    cancels = card.actions_of(ActionKind.CANCEL)
    if not cancels:
        return ""
    latest = cancels[0]
    who = f"by {_e(latest.requested_by or 'someone')}, {_bare_time(latest.requested_at, zone)}"
    if latest.state == ActionState.UNKNOWN:
        what = f"Cancel outcome unknown: {_e(latest.error)}"
    elif latest.state == ActionState.SENDING:
        what = "Cancel being sent"
    else:
        what = "Cancel sent; Skyvern stops the run after its current action"
    return f'<p class="cancel-note">{what} {who}.</p>'


def _cancel(card, team_slug, form_fields, confirm_cancel) -> str:
    url = _e(run_url("runs:run_cancel", team_slug, card.run_id))
    if not confirm_cancel:
        return (
            f'<a href="{url}" hx-get="{url}" hx-target="#run-{card.pk}" hx-swap="outerHTML" '
            'role="button" class="secondary outline cancel-run">Cancel run…</a>'
        )
    fields = (
        f'{form_fields}\n          <input type="hidden" name="seen_cancels" '
        f'value="{len(card.actions_of(ActionKind.CANCEL))}">'
        '<input type="hidden" name="confirm" value="yes">'
    )
    card_url = _e(run_url("runs:run_card", team_slug, card.run_id))
    button = (
        '<p class="confirm-cancel">Cancel this run at Skyvern? It stops after its current '
        "action; what it already did stays done.</p>\n"
        '          <button type="submit" class="danger">Yes, cancel this run</button>'
    )
    # Outside the form: nothing of the form's (its hx-disabled-elt) applies to it.
    keep = (
        f'<a href="{_detail(team_slug, card.run_id)}" hx-get="{card_url}" '
        f'hx-target="#run-{card.pk}" hx-swap="outerHTML" role="button" '
        'class="secondary outline keep-running">Keep it running</a>'
    )
    return _form(card, url, "cancel-form", fields, button) + "\n    " + keep


def _actions(card, latest, team_slug, form_fields, confirming=False, confirm_cancel=False) -> str:
    actions = []
    if latest and latest.state == RetryState.UNKNOWN:
        actions.append(_check_form(card, latest, team_slug, form_fields))
    if card.webhook_only_failure:
        actions.append(_replay_form(card, team_slug, form_fields))
    if card.is_terminal and card.skyvern_retries:
        pass  # said above the actions: Skyvern runs it again by itself
    elif card.is_terminal and card.status == COMPLETED and not confirming:
        # A run that succeeded is run again only after a confirmation step.
        actions.append(_confirm_step(card, team_slug))
    elif card.is_terminal and confirming:
        actions.append(_confirm(card, latest, team_slug, form_fields))
    elif card.is_terminal:
        if card.behind:
            actions.append(_drift(card, team_slug))
        actions.append(_effects(card))
        actions.append(_retry_form(card, latest, team_slug, form_fields))
    else:
        actions.append(
            f'<p class="muted cant-retry">Can\'t retry yet: this run '
            f"{_e(card.not_finished_because)}. Only finished runs can be retried.</p>"
        )
        actions.append(_cancel_note(card, timezone.get_current_timezone()))
        actions.append(_cancel(card, team_slug, form_fields, confirm_cancel))
    return "".join(f"    {action}\n" for action in actions)


def row_action(card, team_slug, form_fields) -> str:
    """The one action a compact row offers (row_html.py), chosen by the card's
    rules and drawn by the card's own forms, so both ask the same confirmations.
    A run retried already offers none: retrying it again is asked on its card."""
    latest = card.latest_retry
    if latest and latest.state == RetryState.UNKNOWN:
        return _check_form(card, latest, team_slug, form_fields)
    if card.webhook_only_failure:
        return _replay_form(card, team_slug, form_fields)
    if card.is_terminal and (card.skyvern_retries or card.retries):
        return ""
    if card.is_terminal and card.status == COMPLETED:
        return _confirm_step(card, team_slug)
    if card.is_terminal:
        return _effects(card) + _retry_form(card, latest, team_slug, form_fields)
    return _cancel(card, team_slug, form_fields, False)


def _check_form(card, latest, team_slug, form_fields) -> str:
    check_url = _e(reverse("runs:retry_check", args=[team_slug, card.run_id, latest.number]))
    return _form(card, check_url, "check-form", form_fields, _CHECK_BUTTON)


def _replay_form(card, team_slug, form_fields) -> str:
    replay_url = _e(run_url("runs:run_webhook_replay", team_slug, card.run_id))
    fields = (
        f'{form_fields}\n          <input type="hidden" name="seen_replays" '
        f'value="{len(card.actions_of(ActionKind.REPLAY_WEBHOOK))}">'
    )
    return _form(
        card,
        replay_url,
        "replay-form",
        fields,
        '<button type="submit">Replay webhook</button>',
    )


def _confirm_step(card, team_slug) -> str:
    """Retry of a run that succeeded: a GET of its confirmation step."""
    confirm_url = _e(run_url("runs:run_retry_confirm", team_slug, card.run_id))
    return (
        f'<form method="get" action="{confirm_url}"\n'
        f'          hx-get="{confirm_url}" hx-target="#run-{card.pk}" hx-swap="outerHTML"\n'
        '          hx-disabled-elt="find button" class="retry-form">\n'
        '          <button type="submit" class="secondary">Retry</button>\n'
        "        </form>"
    )


def _retry_form(card, latest, team_slug, form_fields) -> str:
    retry_url = _e(run_url("runs:run_retry", team_slug, card.run_id))
    if card.webhook_only_failure:
        again = ""
        if card.retries:
            again = '<input type="hidden" name="confirm_again" value="yes">'
        button = (
            f'{again}<label class="confirm-redo"><input type="checkbox" name="confirm_redo" '
            'value="yes" required> Redo the browser work: the automation already '
            "succeeded, and retrying runs it again (it may submit the customer's form "
            "twice)</label>\n"
            '          <button type="submit" class="secondary">Retry anyway</button>'
        )
    elif not card.retries:
        button = '<button type="submit">Retry</button>'
    else:
        again = (
            "No retry was created — retry anyway"
            if latest.state == RetryState.UNKNOWN
            else "Yes, retry it again"
        )
        button = (
            '<label class="confirm-again"><input type="checkbox" name="confirm_again" '
            f'value="yes" required> {again}</label>\n'
            '          <button type="submit" class="secondary">Retry again</button>'
        )
    fields = (
        f'{form_fields}\n          <input type="hidden" name="seen_retries" '
        f'value="{len(card.retries)}">'
    )
    return _form(card, retry_url, "retry-form", fields, button)


def _confirm(card, latest, team_slug, form_fields) -> str:
    """The confirmation step of a retry of a run that succeeded."""
    retry_url = _e(run_url("runs:run_retry", team_slug, card.run_id))
    card_url = _e(run_url("runs:run_card", team_slug, card.run_id))
    detail_url = _detail(team_slug, card.run_id)
    again = ""
    if card.retries:
        again = (
            '\n          <label class="confirm-again"><input type="checkbox" '
            'name="confirm_again" value="yes" required> It was retried before: '
            "retry it again</label>"
        )
    fields = (
        f'{form_fields}\n          <input type="hidden" name="seen_retries" '
        f'value="{len(card.retries)}">\n'
        '          <input type="hidden" name="confirm_completed" value="yes">'
        f"{again}"
    )
    button = '<button type="submit">Yes, run it again</button>'
    # Outside the form: it would inherit the form's hx-disabled-elt.
    back = (
        f'<a href="{detail_url}" hx-get="{card_url}" hx-target="#run-{card.pk}" '
        'hx-swap="outerHTML" role="button" class="secondary outline">Don\'t retry</a>'
    )
    return (
        '<section class="retry-confirm" aria-label="Confirm the retry">\n'
        '      <p class="retry-warning"><strong>This run succeeded; retrying runs it again.'
        "</strong></p>\n"
        f"      {_drift(card, team_slug) if card.behind else ''}{_effects(card)}\n"
        f"      {_form(card, retry_url, 'retry-form', fields, button)}\n"
        f"      {back}\n"
        "    </section>"
    )


_CHECK_BUTTON = '<button type="submit" class="secondary">Check</button>'


def _form(card, url, name, fields, button) -> str:
    return (
        f'<form method="post" action="{url}"\n'
        f'          hx-post="{url}" hx-target="#run-{card.pk}" hx-swap="outerHTML"\n'
        f'          hx-disabled-elt="find button" class="{name}">\n'
        f"          {fields}\n"
        f"          {button}\n"
        "        </form>"
    )


def version() -> str:
    """A digest of what draws a card (this module, the candidates' template
    and the bulk app's checkbox): part of every card's cache key, so that a
    card drawn by older code or an older template is never served (a deploy,
    the autoreloader)."""
    template = get_template(CANDIDATES_TEMPLATE).template
    cached = getattr(template, "_card_version", None)
    if cached is None:
        digest = hashlib.blake2b(_SOURCE.encode(), digest_size=6)
        digest.update(template.source.encode())
        digest.update(card_pick(0, "wr_0").encode())
        cached = template._card_version = digest.hexdigest()
    return cached


_SOURCE = inspect.getsource(sys.modules[__name__])
