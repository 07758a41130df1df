"""Replaying a run's webhook and canceling a run: what support staff do
instead of a retry when a retry would be wrong.

A webhook-only failure (the automation succeeded, only the delivery to the
customer's receiver failed) is fixed by sending the webhook again, not by
redoing the browser work; a run still going that should not be is canceled.
Both follow the retry's rules (services.py): the intent is recorded before
Skyvern is called, one intent per click the person saw, so a double-click or
two people at once make one call; every call sent is audited once; an
answer that never came is kept as "outcome unknown", never re-sent by
itself. Views, bulk jobs and commands call these; nothing else replays or
cancels.
"""

import logging
from dataclasses import dataclass

from django.utils import timezone

from console.audit.models import Action
from console.skyvern import SkyvernError
from console.teams.access import require
from console.teams.clients import client_for
from console.teams.models import MANAGE, RETRY
from console.teams.secrets import ApiKeyUnreadable

from .models import COUNTED_ACTION_STATES, ActionKind, ActionState, RunAction
from .services import RetryRefused, audit_intent_outcome, intent_create, run_refresh

log = logging.getLogger(__name__)

#: Characters of the receiver's answer kept and shown.
EXCERPT_CHARS = 2048


@dataclass
class ActionOutcome:
    """What came of one click on Replay webhook or Cancel run.

    `action` is the recorded intent (None when nothing was recorded); `sent`
    is False when another click already owned it, so this one made no call;
    `error` is why Skyvern's call failed.
    """

    action: RunAction | None
    sent: bool
    error: SkyvernError | None = None


def counted_actions(run, kind: str):
    return run.actions.filter(kind=kind, state__in=COUNTED_ACTION_STATES)


def latest_action(run, kind: str) -> RunAction | None:
    return counted_actions(run, kind).select_related("requested_by").order_by("-number").first()


def action_intent_record(
    *, run, kind: str, number: int, user, webhook_url: str = ""
) -> RunAction | None:
    """Record the intent to do action `number` of `kind` on `run`, or None
    when one with that number already counts (someone else owns it: send
    nothing). The one gate of every replay and cancel, single or bulk."""
    return intent_create(
        RunAction, run=run, kind=kind, number=number, requested_by=user, webhook_url=webhook_url
    )


def _fail(action: RunAction, error: SkyvernError) -> None:
    state = ActionState.UNKNOWN if error.run_may_exist else ActionState.FAILED
    message = str(error)
    if error.detail and error.detail not in message:
        message = f"{message} Skyvern said: {error.detail}"
    if error.run_may_exist:
        message += " Skyvern may or may not have done it."
    RunAction.objects.filter(pk=action.pk).update(
        state=state, error=message[:500], finished_at=timezone.now()
    )
    action.refresh_from_db()


def webhook_replay_send(*, action: RunAction) -> SkyvernError | None:
    """Ask Skyvern once to send the run's webhook again and keep what the
    receiver answered (status, latency, the start of its answer). A receiver
    that refused or couldn't be reached is a done replay that says so; a
    Skyvern error is returned and kept on the intent."""
    run = action.run
    try:
        replay = client_for(run.connection).retry_webhook(
            run.run_id, webhook_url=action.webhook_url or None
        )
    except (SkyvernError, ApiKeyUnreadable) as error:
        if not isinstance(error, SkyvernError):
            error = SkyvernError(str(error))
        _fail(action, error)
        return error
    RunAction.objects.filter(pk=action.pk).update(
        state=ActionState.DONE,
        finished_at=timezone.now(),
        target_url=(replay.target_webhook_url or replay.default_webhook_url or "")[:2000],
        status_code=replay.status_code,
        latency_ms=replay.latency_ms,
        response_excerpt=(replay.response_body or "")[:EXCERPT_CHARS],
        error=(replay.error or "")[:500],
    )
    action.refresh_from_db()
    return None


def run_webhook_replay(
    *, run, user, seen_replays: int, webhook_url: str = "", request=None
) -> ActionOutcome:
    """Send a webhook-only failure's webhook again, once per intent.

    Only the webhook: no browser work is redone. `seen_replays` is how many
    replays the person saw when they clicked; a second click with the same
    view makes no call. Another URL than the run's own needs the admin role
    (it sends the customer's data elsewhere). Needs the operator role;
    audited once per call sent (run_webhook_replay, or _failed).
    """
    require(user, RETRY, run)
    webhook_url = (webhook_url or "").strip()
    if webhook_url:
        require(user, MANAGE, run)
    if not run.webhook_only_failure:
        raise RetryRefused("Only a run whose webhook alone failed can have its webhook replayed.")
    already = counted_actions(run, ActionKind.REPLAY_WEBHOOK).count()
    if seen_replays != already:
        return ActionOutcome(action=latest_action(run, ActionKind.REPLAY_WEBHOOK), sent=False)
    action = action_intent_record(
        run=run,
        kind=ActionKind.REPLAY_WEBHOOK,
        number=already + 1,
        user=user,
        webhook_url=webhook_url,
    )
    if action is None:
        return ActionOutcome(action=latest_action(run, ActionKind.REPLAY_WEBHOOK), sent=False)
    error = webhook_replay_send(action=action)
    receiver = {"status_code": action.status_code, "latency_ms": action.latency_ms}
    if error is None and action.error:
        receiver["receiver_error"] = action.error
    audit_intent_outcome(
        run=run,
        intent=action,
        error=error,
        done=Action.RUN_WEBHOOK_REPLAY,
        failed=Action.RUN_WEBHOOK_REPLAY_FAILED,
        details={"webhook_url": webhook_url} if webhook_url else None,
        done_details=receiver,
        user=user,
        request=request,
    )
    log.info("webhook of run %s replayed (team %s): %s", run.run_id, run.team_id, action.state)
    return ActionOutcome(action=action, sent=True, error=error)


def run_cancel_send(*, action: RunAction) -> SkyvernError | None:
    """Ask Skyvern once to cancel the run, then read the run again (a run
    that had finished answers the same as one canceled)."""
    run = action.run
    try:
        client_for(run.connection).cancel_run(run.run_id)
    except (SkyvernError, ApiKeyUnreadable) as error:
        if not isinstance(error, SkyvernError):
            error = SkyvernError(str(error))
        _fail(action, error)
        return error
    RunAction.objects.filter(pk=action.pk).update(
        state=ActionState.DONE, finished_at=timezone.now()
    )
    action.refresh_from_db()
    run_refresh(run=run, force=True)
    return None


def run_cancel(*, run, user, seen_cancels: int, request=None) -> ActionOutcome:
    """Cancel a run still going at Skyvern, once per intent.

    Only an unfinished run (as cached) can be canceled; canceling is
    cooperative at Skyvern, so the run is read again afterwards and its card
    shows what Skyvern says. Needs the operator role; audited once per call
    sent (run_cancel, or run_cancel_failed).
    """
    require(user, RETRY, run)
    if run.is_terminal:
        raise RetryRefused(
            f"This run is {run.get_status_display().lower()} already; there is nothing to cancel."
        )
    already = counted_actions(run, ActionKind.CANCEL).count()
    if seen_cancels != already:
        return ActionOutcome(action=latest_action(run, ActionKind.CANCEL), sent=False)
    action = action_intent_record(run=run, kind=ActionKind.CANCEL, number=already + 1, user=user)
    if action is None:
        return ActionOutcome(action=latest_action(run, ActionKind.CANCEL), sent=False)
    error = run_cancel_send(action=action)
    if error is None:
        run.refresh_from_db(fields=["status"])  # what Skyvern says now
    audit_intent_outcome(
        run=run,
        intent=action,
        error=error,
        done=Action.RUN_CANCEL,
        failed=Action.RUN_CANCEL_FAILED,
        done_details={"status_after": run.status},
        user=user,
        request=request,
    )
    log.info("run %s cancel (team %s): %s", run.run_id, run.team_id, action.state)
    return ActionOutcome(action=action, sent=True, error=error)
