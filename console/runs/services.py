"""Business rules about runs that cross Skyvern and the database.

Views, tasks and management commands call these; none of them talks to
Skyvern about runs any other way.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from console.audit.models import Action, Outcome
from console.audit.services import audit_record
from console.skyvern import SkyvernError
from console.skyvern.errors import NotRetryable
from console.teams.access import require
from console.teams.clients import client_for
from console.teams.models import RETRY
from console.teams.secrets import ApiKeyUnreadable

from .models import COUNTED_RETRY_STATES, Retry, RetryKind, RetryState, Run, Status
from .store import retry_lineage_store, run_store_refresh

log = logging.getLogger(__name__)

# A retry still "sending" after this long was cut off (the process died
# mid-call): Skyvern may or may not have created the run.
SENDING_GIVES_UP_AFTER = timedelta(minutes=2)
# Don't ask Skyvern about the same run more often than this when cards poll.
REFRESH_AT_MOST_EVERY = timedelta(seconds=2)


class RetryRefused(Exception):
    """The console won't send this retry; the message says why, for the user."""


@dataclass
class RetryOutcome:
    """What came of one click on Retry.

    `retry` is the recorded intent (None when nothing was recorded);
    `sent` is False when another click already owned this retry, so this one
    made no Skyvern call; `error` is Skyvern's answer when it failed;
    `refresh_error` says why the run could not be refreshed after Skyvern
    refused it as not retryable (the cached copy is then unchanged).
    """

    run: Run
    retry: Retry | None
    sent: bool
    error: SkyvernError | None = None
    #: Why the run couldn't be refreshed after Skyvern refused it as unfinished.
    refresh_error: SkyvernError | None = None

    @property
    def new_run(self) -> Run | None:
        return self.retry.new_run if self.retry else None


def counted_retries(run: Run):
    return run.retry_attempts.filter(state__in=COUNTED_RETRY_STATES)


def give_up_stale_sends(run: Run) -> None:
    """Retries left 'sending' by a process that died become 'unknown'."""
    cutoff = timezone.now() - SENDING_GIVES_UP_AFTER
    run.retry_attempts.filter(state=RetryState.SENDING, requested_at__lt=cutoff).update(
        state=RetryState.UNKNOWN,
        finished_at=timezone.now(),
        error="The console stopped while sending this retry; Skyvern may or may not have it.",
    )


def run_retry(
    *,
    run: Run,
    user,
    seen_retries: int,
    confirm_again: bool = False,
    confirm_completed: bool = False,
    confirm_redo: bool = False,
    max_steps_override: int | None = None,
    request=None,
) -> RetryOutcome:
    """Retry a finished run at Skyvern at most once per intent.

    `seen_retries` is how many retries of the run the person saw when they
    clicked. The intent is recorded (as retry number seen_retries + 1) before
    Skyvern is called; a second click with the same view of the run — a
    double-click, a colleague at the same moment — finds that record and
    makes no call. A run already retried is only retried again with
    `confirm_again`, a run that succeeded only with `confirm_completed` (it
    runs again: the customer's form submitted twice, say), and a run Skyvern
    is about to retry itself (`retry_pending`, or a next attempt to come)
    never: that would make a second run beside Skyvern's own. A run whose
    webhook alone failed (its automation succeeded) is only retried with
    `confirm_redo`: the browser work is done again, and may submit a
    customer's form twice.

    On success the new run is stored with its lineage (retried_from,
    retried_by, retried_at). When Skyvern refuses the run as not retryable
    (it isn't finished there) the cached run is refreshed from Skyvern, so
    the card shows its real status. When Skyvern certainly created nothing the
    attempt is kept as 'failed' and the cache is otherwise unchanged; when it
    may have (timeout, dropped connection, 5xx) it is kept as 'unknown' and
    counts as a retry, so it is never re-sent without a person deciding to.
    Each retry sent is recorded once in the audit log (run_retry, or
    run_retry_failed with the outcome); a click that sent nothing is not.
    Needs the operator role.
    """
    require(user, RETRY, run)
    if not run.is_terminal:
        raise RetryRefused(
            f"This run {run.not_finished_because}; only finished runs can be retried."
        )
    if run.skyvern_retries:
        raise RetryRefused(
            f"Skyvern retries this run itself (attempt {run.attempt + 1}); a retry from here "
            "would make a second run beside it. Nothing was sent."
        )
    if run.status == Status.COMPLETED and not confirm_completed:
        raise RetryRefused(
            "This run succeeded; retrying runs it again. Confirm to retry it. Nothing was sent."
        )
    if run.webhook_only_failure and not confirm_redo:
        raise RetryRefused(
            "Only this run's webhook failed; its automation succeeded. Replay the webhook, "
            "or confirm that the browser work will be redone."
        )
    give_up_stale_sends(run)
    already = counted_retries(run).count()
    if seen_retries != already:
        # Someone retried (or is retrying) this run since the page was drawn.
        return RetryOutcome(run=run, retry=latest_retry(run), sent=False)
    if already and not confirm_again:
        raise RetryRefused("This run was already retried. Confirm to retry it again.")

    retry = retry_intent_record(run=run, number=already + 1, user=user)
    if retry is None:
        return RetryOutcome(run=run, retry=latest_retry(run), sent=False)
    error = retry_intent_send(retry=retry, user=user, max_steps_override=max_steps_override)
    audit_intent_outcome(
        run=run,
        intent=retry,
        error=error,
        done=Action.RUN_RETRY,
        failed=Action.RUN_RETRY_FAILED,
        done_details={"new_run": retry.new_run.run_id if retry.new_run else ""},
        user=user,
        request=request,
    )
    refresh_error = None
    if isinstance(error, NotRetryable):
        # Skyvern refuses a run it doesn't have as finished: the cache is
        # behind (Skyvern retrying the run itself, say). Show what Skyvern has.
        refresh_error = run_refresh(run=run, force=True)
    return RetryOutcome(run=run, retry=retry, sent=True, error=error, refresh_error=refresh_error)


def audit_intent_outcome(
    *,
    run: Run,
    intent,
    error: SkyvernError | None,
    done: Action,
    failed: Action,
    details: dict | None = None,
    done_details: dict | None = None,
    user,
    request=None,
) -> None:
    """The one audit row of a call sent for an intent (a Retry or a RunAction).

    Sent OK is `done` with `done_details`; a failed call is `failed`, with the
    intent's error and the outcome "unknown" when Skyvern may have acted all
    the same (its answer was lost), "failed" when it certainly did nothing.
    Every row names the intent's number and the run's connection, then
    `details`, which belong to the attempt whatever came of it.
    """
    kept = {"number": intent.number, "connection": run.connection.label, **(details or {})}
    if error is None:
        kept.update(done_details or {})
        action, outcome = done, Outcome.OK
    else:
        kept["error"] = intent.error
        action = failed
        outcome = Outcome.UNKNOWN if error.run_may_exist else Outcome.FAILED
    audit_record(
        action=action,
        request=request,
        user=user,
        team=run.team_id,
        outcome=outcome,
        target=run,
        details=kept,
    )


def retry_intent_record(
    *, run: Run, number: int, user, kind: str = RetryKind.RETRY, version: int | None = None
) -> Retry | None:
    """Record the intent to send retry number `number` of `run`, or None.

    None means an intent with that number already counts (sending, retried
    or unknown): someone else owns this retry and nothing must be sent. This
    is the one gate every retry passes, single or bulk, so that two of them
    racing for the same run make one Skyvern call. Safe inside a transaction
    (the insert runs in its own savepoint).
    """
    return intent_create(
        Retry, run=run, number=number, requested_by=user, kind=kind, version=version
    )


def intent_create(model, **fields):
    """Insert an intent row (a Retry or a RunAction), or None when one with
    the same run and number already exists: the unique constraint, checked in
    its own savepoint, is the gate that lets exactly one sender through."""
    try:
        with transaction.atomic():
            return model.objects.create(**fields)
    except IntegrityError:
        return None


def retry_intent_send(
    *, retry: Retry, user, max_steps_override: int | None = None
) -> SkyvernError | None:
    """Send a recorded intent to Skyvern once, and record what came of it.

    Returns None on success: the new run is stored with its lineage
    (retried_from, retried_by, retried_at) and the intent is 'retried'.
    Otherwise returns the error: the intent is 'failed' when Skyvern
    certainly created nothing, 'unknown' when it may have (and then it keeps
    counting as a retry, so it is never re-sent without a person deciding).
    `retry` is refreshed from the database either way. Never sends twice.
    """
    return intent_send(
        retry=retry,
        user=user,
        send=lambda client, run: client.retry_run(
            run.run_id, max_steps_override=max_steps_override
        ),
    )


def intent_send(
    *, retry: Retry, user, send, what: str = "retry", did: str = "retried"
) -> SkyvernError | None:
    """Make the one Skyvern call that creates the new run of a recorded
    intent (`send(client, run)`, a retry or a rerun) and record what came of
    it, as retry_intent_send says. `what` and `did` name it in the log."""
    run = retry.run
    try:
        detail = send(client_for(run.connection), run)
    except (SkyvernError, ApiKeyUnreadable) as error:
        if not isinstance(error, SkyvernError):
            error = SkyvernError(str(error))
        state = RetryState.UNKNOWN if error.run_may_exist else RetryState.FAILED
        message = str(error)
        if error.run_may_exist:
            message += " Skyvern may or may not have created the new run."
        Retry.objects.filter(pk=retry.pk).update(
            state=state, error=message[:500], finished_at=timezone.now()
        )
        retry.refresh_from_db()
        log.warning(
            "%s of run %s (team %s) %s: %s",
            what,
            run.run_id,
            run.team_id,
            state,
            type(error).__name__,
        )
        return error
    except BaseException:
        Retry.objects.filter(pk=retry.pk).update(
            state=RetryState.UNKNOWN,
            finished_at=timezone.now(),
            error=f"The console failed while sending this {what}; Skyvern may or may not have it.",
        )
        raise

    now = timezone.now()
    with transaction.atomic():
        new_run = retry_lineage_store(run=run, detail=detail, user=user, when=now)
        Retry.objects.filter(pk=retry.pk).update(
            state=RetryState.RETRIED, new_run=new_run, finished_at=now
        )
    retry.refresh_from_db()
    log.info("%s run %s as %s (team %s)", did, run.run_id, new_run.run_id, run.team_id)
    return None


def latest_retry(run: Run) -> Retry | None:
    return (
        counted_retries(run).select_related("requested_by", "new_run").order_by("-number").first()
    )


def run_refresh(
    *, run: Run, force: bool = False, read_timeout: float | None = None
) -> SkyvernError | None:
    """Bring a cached run up to date from Skyvern; returns the error, if any.

    On error the cached copy is left exactly as it was; otherwise `run` shows
    the newest view (see run_store_refresh). `read_timeout` shortens the wait
    for Skyvern's answer, for a person kept waiting on it.
    """
    if not force and run.synced_at and timezone.now() - run.synced_at < REFRESH_AT_MOST_EVERY:
        return None
    try:
        client = client_for(run.connection)
        if read_timeout is not None:
            connect, read = client.timeout
            client.timeout = (connect, min(read, read_timeout))
        detail = client.get_run(run.run_id)
    except SkyvernError as error:
        return error
    except ApiKeyUnreadable as error:
        return SkyvernError(str(error))
    # Stored only if no newer news came meanwhile (a webhook, a sync): then
    # the card shows that instead.
    run_store_refresh(run=run, detail=detail)
    return None
