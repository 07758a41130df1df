"""Retries whose outcome is unknown: what Skyvern has that may be the retry's
new run, and linking one on a person's word.

Skyvern keeps no lineage for retries made through its API: every run it lists
carries `retried_from_workflow_run_id`, but it is null for those. So a null
says nothing, and a run of the same workflow created after the retry was sent
is only a *candidate*. The console links a candidate by itself only when
Skyvern does name this retry's run as its origin; otherwise a person looks at
the evidence (when it was made, whether its parameters are the original's)
and says "this is the retry". Single retries and bulk retry items use these
same functions.
"""

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from console import timefmt
from console.audit.models import Action, Outcome
from console.audit.services import audit_record
from console.skyvern import InvalidRunId, RunDetail, SkyvernError, validate_run_id
from console.teams.access import require
from console.teams.clients import client_for
from console.teams.models import RETRY
from console.teams.secrets import ApiKeyUnreadable

from .models import Retry, RetryState, Run
from .services import RetryRefused
from .signals import retry_linked
from .store import LineageRefused, retry_lineage_link

log = logging.getLogger(__name__)

#: A candidate may have been created this long before the retry was sent
#: (the console's and Skyvern's clocks differ a little).
CLOCK_MARGIN = timedelta(seconds=5)
#: A check reads at most this many pages of the workflow's runs, newest first.
MAX_PAGES = 10
PAGE_SIZE = 100
#: Of the candidates, at most this many are read in full (to compare parameters).
MAX_DETAILED = 10
#: At most this many candidates are proposed on a card by the sync.
MAX_PROPOSED = 3

LINEAGE_KEY = "retried_from_workflow_run_id"


@dataclass(frozen=True)
class Candidate:
    """A run at Skyvern that may be an unknown retry's new run.

    `same_parameters` is None when they couldn't be compared; `certain` when
    Skyvern itself names the retried run as this one's origin.
    """

    run_id: str
    status: str
    created_at: str  # ISO 8601, UTC; "" when Skyvern didn't say
    after_text: str  # "+3 s after the retry was sent"
    app_url: str = ""
    same_parameters: bool | None = None
    certain: bool = False

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class RetryCheck:
    """What a check of an unknown retry found.

    `linked` is the run linked as the retry's new run (only when Skyvern
    named it); `failed` when Skyvern couldn't be asked (nothing changed).
    """

    retry: Retry
    message: str
    candidates: list[Candidate] = field(default_factory=list)
    linked: Run | None = None
    failed: bool = False


def after_text(created_at: datetime | None, attempted: datetime) -> str:
    """When a run was created, relative to when the retry was sent."""
    if created_at is None:
        return "created at a time Skyvern didn't give"
    seconds = round((created_at - attempted).total_seconds())
    if seconds >= 0:
        return f"+{_duration(seconds)} after the retry was sent"
    return f"{_duration(-seconds)} before the retry was sent (clocks differ a little)"


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _parameters(raw: dict):
    request = raw.get("run_request")
    if isinstance(request, dict) and "parameters" in request:
        return request["parameters"]
    return None


def _taken_run_ids(connection, run_ids) -> set[str]:
    """Of `run_ids`, those the console already knows to be some retry's new run."""
    linked = set(
        Retry.objects.filter(
            new_run__connection=connection, new_run__run_id__in=run_ids
        ).values_list("new_run__run_id", flat=True)
    )
    lineage = set(
        Run.objects.filter(
            connection=connection, run_id__in=run_ids, retried_from__isnull=False
        ).values_list("run_id", flat=True)
    )
    return linked | lineage


def retry_check(
    *,
    retry: Retry,
    user,
    request=None,
    attempted: datetime | None = None,
    audit_as: tuple[str, dict] | None = None,
) -> RetryCheck:
    """Look at Skyvern for the run an `unknown` retry may have made.

    Candidates are the runs of the same workflow created since the retry was
    sent (`attempted`, by default when it was asked for, less CLOCK_MARGIN),
    other than the retried run and runs already some retry's result; each is
    read in full to compare its parameters with the original's. When Skyvern
    names the retried run as one candidate's origin, that one is linked
    (as retry_link would). Otherwise nothing is linked, whatever the
    evidence: a person decides. The retry keeps what was found (note,
    evidence, proposed runs); a Skyvern error changes nothing else. Needs
    the operator role; each check is one audit row (run_retry_check, or
    `audit_as`'s action with its details added: a bulk item's check).
    """
    run = Run.objects.select_related("connection", "team").get(pk=retry.run_id)
    require(user, RETRY, run.team)
    retry.refresh_from_db()
    if retry.state != RetryState.UNKNOWN:
        raise RetryRefused(
            f"Only a retry whose outcome is unknown can be checked; this one is "
            f"{retry.get_state_display().lower()}."
        )
    attempted = attempted or retry.requested_at
    since = attempted - CLOCK_MARGIN
    when = timefmt.shown(attempted, "full")

    try:
        client = client_for(run.connection)
        recent = _recent_runs(client, run, since)
    except (SkyvernError, ApiKeyUnreadable) as error:
        message = (
            f"Couldn't check with Skyvern: {error} Nothing was changed; the retry's "
            "outcome is still unknown."
        )
        return _record(retry, run, user, request, audit_as, RetryCheck(retry, message, failed=True))

    certain = [s for s in recent if s.raw.get(LINEAGE_KEY) == run.run_id]
    if len(certain) == 1:
        try:
            detail = client.get_run(certain[0].run_id)
        except SkyvernError as error:
            message = (
                f"Skyvern names {certain[0].run_id} as a retry of {run.run_id}, but couldn't "
                f"read it: {error} Nothing was linked; check again."
            )
            return _record(
                retry, run, user, request, audit_as, RetryCheck(retry, message, failed=True)
            )
        candidate = _candidate(
            certain[0], detail, attempted, _original_parameters(client, run), of=run
        )
        new_run = _link(retry=retry, run=run, detail=detail)
        message = (
            f"Skyvern names {run.run_id} as the origin of {new_run.run_id} "
            f"({candidate.after_text}); linked as this retry's new run."
        )
        log.info("check linked retry %s of %s to %s", retry.number, run.run_id, new_run.run_id)
        check = RetryCheck(retry, message, [candidate], linked=new_run)
        return _record(retry, run, user, request, audit_as, check)

    # Runs Skyvern says came from another run are not this retry's.
    recent = [s for s in recent if s.raw.get(LINEAGE_KEY) in (None, "", run.run_id)]
    original = _original_parameters(client, run) if recent else None
    candidates = []
    for position, summary in enumerate(recent):
        detail = None
        if position < MAX_DETAILED:
            try:
                detail = client.get_run(summary.run_id)
            except SkyvernError:
                detail = None  # shown as "couldn't compare"
        candidates.append(_candidate(summary, detail, attempted, original, of=run))

    if not candidates:
        message = (
            f"No new run of this workflow was created at Skyvern since the retry was sent "
            f"({when}). The retry was probably not created: retrying again should not make "
            "a second run."
        )
    else:
        listed = ", ".join(f"{c.run_id} ({c.after_text})" for c in candidates[:5])
        more = f" and {len(candidates) - 5} more" if len(candidates) > 5 else ""
        message = (
            f"Skyvern has {_runs(len(candidates))} of this workflow created since the retry "
            f"was sent: {listed}{more}. Skyvern doesn't say which run a retry made, so none "
            "was linked: if one of them is this retry, choose “This is the retry”. Retrying "
            "again would make another run."
        )
    return _record(retry, run, user, request, audit_as, RetryCheck(retry, message, candidates))


def _runs(count: int) -> str:
    return "a run" if count == 1 else f"{count} runs"


def _recent_runs(client, run: Run, since: datetime) -> list:
    """The workflow's runs at Skyvern created since `since`, oldest first,
    that may be a retry of `run` (not `run`, not already some retry's result)."""
    seen = []
    for page in range(1, MAX_PAGES + 1):
        summaries = client.list_runs(
            page=page, page_size=PAGE_SIZE, search_key=run.workflow_permanent_id or None
        )
        seen += summaries
        oldest = summaries[-1].created_at if summaries else None
        if len(summaries) < PAGE_SIZE or (oldest is not None and oldest < since):
            break
    recent = [
        s
        for s in seen
        if s.run_id != run.run_id
        and (s.created_at is None or s.created_at >= since)
        and (not run.workflow_permanent_id or s.workflow_permanent_id == run.workflow_permanent_id)
    ]
    taken = _taken_run_ids(run.connection, [s.run_id for s in recent])
    recent = [s for s in recent if s.run_id not in taken]
    return sorted(recent, key=lambda s: (s.created_at is None, s.created_at or since, s.run_id))


def _original_parameters(client, run: Run):
    """The retried run's parameters: from the cache when it has them, else Skyvern."""
    cached = Run.objects.filter(pk=run.pk).values_list("raw", flat=True).first() or {}
    parameters = _parameters(cached)
    if parameters is not None:
        return parameters
    try:
        return _parameters(client.get_run(run.run_id).raw)
    except SkyvernError:
        return None


def _candidate(summary, detail: RunDetail | None, attempted, original, *, of: Run) -> Candidate:
    theirs = _parameters(detail.raw) if detail is not None else None
    same = None if theirs is None or original is None else theirs == original
    created = (detail.created_at if detail is not None else None) or summary.created_at
    return Candidate(
        run_id=summary.run_id,
        status=(detail.status if detail is not None else summary.status) or "",
        created_at=created.isoformat() if created else "",
        after_text=after_text(created, attempted),
        app_url=(detail.app_url or "") if detail is not None else "",
        same_parameters=same,
        certain=summary.raw.get(LINEAGE_KEY) == of.run_id,
    )


def _record(retry: Retry, run: Run, user, request, audit_as, check: RetryCheck) -> RetryCheck:
    """Keep what the check found on the retry, and audit it once."""
    if not check.failed:  # a failed check leaves the last one's findings
        Retry.objects.filter(pk=retry.pk).update(
            checked_at=timezone.now(),
            check_note=check.message[:500],
            check_evidence=[c.as_json() for c in check.candidates],
            proposed_runs="" if check.linked else _proposal(c.run_id for c in check.candidates),
        )
        retry.refresh_from_db()
    action, extra = audit_as or (Action.RUN_RETRY_CHECK, {})
    audit_record(
        action=action,
        request=request,
        user=user,
        team=run.team_id,
        outcome=Outcome.FAILED if check.failed else Outcome.OK if check.linked else Outcome.UNKNOWN,
        target=run,
        details={
            **extra,
            "number": retry.number,
            "candidates": [c.run_id for c in check.candidates],
            "linked": check.linked.run_id if check.linked else "",
            "message": check.message,
        },
    )
    return check


def _proposal(run_ids) -> str:
    return " ".join(list(run_ids)[:MAX_PROPOSED])


def retry_link(*, retry: Retry, run_id: str, user, request=None) -> Run:
    """Record, on a person's word, that Skyvern's run `run_id` is the new run
    of the `unknown` retry.

    The run is read from Skyvern first (it must exist and be of the same
    workflow). Then the lineage is recorded (console/runs/store.py, under
    the connection's runs lock) exactly as a successful retry records it
    (the new run cached with retried_from/by/at, the retry 'retried'; a bulk
    retry item of it 'retried' too, through the retry_linked signal). A run
    already some retry's result is refused, as is a retry that isn't unknown
    any more; linking the same run twice is harmless. Needs the operator
    role; one audit row.
    """
    run = Run.objects.select_related("connection", "team").get(pk=retry.run_id)
    require(user, RETRY, run.team)
    try:
        run_id = validate_run_id(run_id)
    except InvalidRunId:
        raise RetryRefused("That is not a Skyvern run id.") from None
    if run_id == run.run_id:
        raise RetryRefused("A run can't be its own retry.")
    retry.refresh_from_db()
    if retry.state == RetryState.RETRIED and retry.new_run and retry.new_run.run_id == run_id:
        return retry.new_run
    if retry.state != RetryState.UNKNOWN:
        raise RetryRefused(
            f"This retry is {retry.get_state_display().lower()}, not of unknown outcome: "
            "there is nothing to link."
        )
    try:
        detail = client_for(run.connection).get_run(run_id)
    except (SkyvernError, ApiKeyUnreadable) as error:
        message = f"Couldn't read {run_id} from Skyvern: {error} Nothing was linked."
        raise RetryRefused(message) from error
    if (
        run.workflow_permanent_id
        and detail.workflow_permanent_id
        and detail.workflow_permanent_id != run.workflow_permanent_id
    ):
        raise RetryRefused(
            f"{run_id} is a run of another workflow ({detail.workflow_permanent_id}); "
            "it can't be this retry."
        )
    new_run = _link(retry=retry, run=run, detail=detail)
    audit_record(
        action=Action.RUN_RETRY_LINK,
        request=request,
        user=user,
        team=run.team_id,
        target=run,
        details={"number": retry.number, "new_run": new_run.run_id},
    )
    log.info("retry %s of %s linked to %s by a person", retry.number, run.run_id, new_run.run_id)
    return new_run


def _link(*, retry: Retry, run: Run, detail: RunDetail) -> Run:
    """The lineage of a retry whose new run is now known, as a successful
    send records it; refused when the run already is another retry's."""
    now = timezone.now()
    with transaction.atomic():
        try:
            new_run = retry_lineage_link(retry=retry, run=run, detail=detail)
        except LineageRefused as refused:
            raise RetryRefused(str(refused)) from None
        note = f"{new_run.run_id} linked as this retry's new run."
        Retry.objects.filter(pk=retry.pk).update(
            state=RetryState.RETRIED,
            new_run=new_run,
            error="",
            finished_at=now,
            proposed_runs="",
            check_note=note,
        )
        # What else follows the retry (a bulk retry item of it), in this transaction.
        retry_linked.send(sender=Retry, retry=retry, new_run=new_run, note=note, when=now)
    retry.refresh_from_db()
    return new_run


def retry_proposals_update(*, connection) -> int:
    """Propose, on each unknown retry of `connection`, the cached runs that
    may be its new run (as retry_check would find them, from the cache);
    how many retries' proposals changed. Never links anything: the sync
    calls it after storing runs, and a person checks."""
    changed = 0
    unknown = (
        Retry.objects.filter(state=RetryState.UNKNOWN, run__connection=connection)
        .only("requested_at", "proposed_runs", "run__workflow_permanent_id")
        .select_related("run")
    )
    for retry in unknown:
        workflow = retry.run.workflow_permanent_id
        if not workflow:
            continue  # nothing to match on
        run_ids = list(
            Run.objects.filter(
                connection=connection,
                workflow_permanent_id=workflow,
                created_at__gte=retry.requested_at - CLOCK_MARGIN,
                retried_from__isnull=True,
                created_by_retry__isnull=True,
            )
            .exclude(pk=retry.run.pk)
            .order_by("created_at", "id")
            .values_list("run_id", flat=True)[:MAX_PROPOSED]
        )
        proposal = _proposal(run_ids)
        if proposal != retry.proposed_runs:
            Retry.objects.filter(pk=retry.pk, state=RetryState.UNKNOWN).update(
                proposed_runs=proposal
            )
            changed += 1
    return changed
