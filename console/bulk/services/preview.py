"""Choosing runs for a bulk retry, and its preview: of the runs selected in a
team, which would be retried and which skipped, and why. A preview sends
nothing and records nothing."""

from collections import Counter
from dataclasses import dataclass, field, replace

from django.db.models import Count, Exists, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from console.runs.card_html import attempt_words, webhook_host
from console.runs.models import (
    COUNTED_RETRY_STATES,
    KnownWorkflow,
    Retry,
    Run,
    Status,
    skyvern_retries,
)
from console.runs.reruns import runs_behind
from console.runs.sessions import browser_sessions_counted
from console.skyvern import TERMINAL_STATUSES, KeyRejected
from console.sync.models import ConnectionSync
from console.teams.models import Connection, Team
from console.teams.secrets import ApiKeyUnreadable

from ..models import (
    ACTIVE_JOB_STATES,
    OPEN_ITEM_STATES,
    BulkRetryItem,
    ConnectionThrottle,
    JobKind,
    SkipReason,
)

#: How many workflows / failure reasons a preview names before "Other".
PREVIEW_TOP = 5
#: How many runs of each skip reason a preview lists by name.
PREVIEW_SAMPLE = 20


@dataclass(frozen=True)
class Breakdown:
    label: str
    count: int


@dataclass(frozen=True)
class SkipGroup:
    reason: SkipReason
    count: int
    runs: list  # up to PREVIEW_SAMPLE Run objects, oldest first
    # Run pk -> which of Skyvern's attempts the run is, in words, where known.
    attempts: dict[int, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.reason.label

    @property
    def listed(self) -> list[tuple[Run, str]]:
        """Each run named, with its attempt in words ("" where nothing is known)."""
        return [(run, self.attempts.get(run.pk, "")) for run in self.runs]


@dataclass(frozen=True)
class SideEffects:
    """What the runs to be sent do besides running again, counted."""

    webhook_calls: int = 0  # runs whose retry calls the customer's webhook again
    webhook_hosts: tuple[Breakdown, ...] = ()  # where those webhooks go (hosts only)
    browser_sessions: int = 0  # runs whose retry re-uses their browser session
    completed: int = 0  # runs that succeeded, ticked to run again
    beside_skyvern: int = 0  # runs Skyvern retries itself, ticked to retry now anyway
    credits: int = 0  # what the runs that report credits used, added up
    credits_runs: int = 0  # how many of the runs to send report credits
    # Of the runs re-using a browser session: whose session has closed (a
    # fresh browser will be used), and whose couldn't be checked.
    sessions_closed: int = 0
    sessions_unchecked: int = 0

    @property
    def any(self) -> bool:
        return bool(
            self.webhook_calls
            or self.browser_sessions
            or self.completed
            or self.beside_skyvern
            or self.credits_runs
        )


@dataclass
class BulkPreview:
    """What a bulk retry of a selection would do; nothing has been sent.

    `by_workflow` and `by_failure_reason` describe the runs that will be sent
    (top PREVIEW_TOP, then "Other"); `skipped` lists every skip reason that
    applies, with its count and the first runs.
    """

    total: int
    to_send: int
    by_workflow: list[Breakdown]
    by_failure_reason: list[Breakdown]
    skipped: list[SkipGroup]
    effects: SideEffects = SideEffects()
    kind: str = JobKind.RETRY
    #: Of the runs to send, how many are behind their workflow's latest version.
    behind: int = 0

    @property
    def will_be(self) -> str:
        """What happens to the runs sent, after "N of M selected runs …"."""
        return {
            JobKind.REPLAY_WEBHOOK: "will have their webhook replayed (no browser work is redone)",
            JobKind.CANCEL: "will be canceled at Skyvern",
        }.get(self.kind, "will be retried")

    @property
    def go(self) -> str:
        """The confirm button's verb, before "N runs"."""
        return {
            JobKind.REPLAY_WEBHOOK: "Replay the webhooks of",
            JobKind.CANCEL: "Cancel",
        }.get(self.kind, "Retry")

    @property
    def webhook_only(self) -> int:
        """Runs a retry skips because only their webhook failed: the preview
        offers to replay those webhooks instead."""
        return sum(g.count for g in self.skipped if g.reason == SkipReason.WEBHOOK_ONLY)

    @property
    def skipped_count(self) -> int:
        return sum(group.count for group in self.skipped)


def failing_connections(team: Team) -> dict[int, str]:
    """The team's connections whose API key is failing, with why.

    A key is failing when (1) it can't be decrypted with the configured
    encryption keys, (2) the connection's most recent sync failed because
    Skyvern rejected the key, or (3) a bulk retry got 403 for it after the
    last successful sync. Sending those runs could only fail.
    """
    failing: dict[int, str] = {}
    syncs = {s.connection_id: s for s in ConnectionSync.objects.filter(connection__team=team)}
    throttles = {
        t.connection_id: t for t in ConnectionThrottle.objects.filter(connection__team=team)
    }
    rejected_words = (KeyRejected.default_message, "This team's stored API key")
    for connection in Connection.objects.filter(team=team):
        sync = syncs.get(connection.pk)
        throttle = throttles.get(connection.pk)
        try:
            connection.api_key()
        except ApiKeyUnreadable as error:
            failing[connection.pk] = str(error)
            continue
        if sync is not None and sync.last_failed and sync.last_error.startswith(rejected_words):
            failing[connection.pk] = f"The last sync failed: {sync.last_error}"
            continue
        if throttle is not None and throttle.key_rejected_at is not None:
            last_ok = sync.last_success_at if sync is not None else None
            if last_ok is None or throttle.key_rejected_at > last_ok:
                failing[connection.pk] = KeyRejected.default_message
    return failing


@dataclass(frozen=True)
class _Row:
    pk: int
    status: str
    connection_id: int
    workflow_title: str
    failure_reason: str
    counted_retries: int
    skip: SkipReason | None
    skyvern_retries: bool = False
    webhook_url: str = ""
    browser_session_id: str = ""
    credits_used: int | None = None


def _skip_for_kind(kind: str, status: str, webhook_failure: str) -> SkipReason | None:
    """Why a job of `kind` can't act on a run with this status, if it can't."""
    webhook_only = status == Status.FAILED and bool(webhook_failure)
    if kind == JobKind.CANCEL:
        return SkipReason.FINISHED if status in TERMINAL_STATUSES else None
    if status not in TERMINAL_STATUSES:
        return SkipReason.NOT_TERMINAL
    if kind == JobKind.REPLAY_WEBHOOK and not webhook_only:
        return SkipReason.NOT_WEBHOOK_ONLY
    if kind == JobKind.RETRY and webhook_only:
        return SkipReason.WEBHOOK_ONLY
    return None


def _classified(
    *,
    team: Team,
    runs,
    include_already_retried: bool,
    include_skyvern_retrying: bool = False,
    include_completed: bool = False,
    kind: str = JobKind.RETRY,
) -> list[_Row]:
    """Every selected run of the team, oldest first, with why it is skipped (or None)."""
    counted = (
        Retry.objects.filter(run=OuterRef("pk"), state__in=COUNTED_RETRY_STATES)
        .order_by()
        .values("run")
        .annotate(n=Count("pk"))
        .values("n")
    )
    in_active_job = BulkRetryItem.objects.filter(
        run=OuterRef("pk"), state__in=OPEN_ITEM_STATES, job__state__in=ACTIVE_JOB_STATES
    )
    failing = failing_connections(team)
    rows = (
        runs.filter(team=team)
        .annotate(
            n_retries=Coalesce(Subquery(counted, output_field=IntegerField()), Value(0)),
            in_job=Exists(in_active_job),
        )
        .order_by("created_at", "id")
        .values_list(
            "pk",
            "status",
            "connection_id",
            "workflow_title",
            "failure_reason",
            "n_retries",
            "in_job",
            "retry_pending",
            "next_attempt_at",
            "webhook_url",
            "browser_session_id",
            "credits_used",
            "webhook_failure_reason",
        )
    )
    out = []
    now = timezone.now()
    for (
        pk,
        status,
        connection_id,
        title,
        reason,
        n_retries,
        in_job,
        retry_pending,
        next_attempt_at,
        webhook_url,
        browser_session_id,
        credits_used,
        hook,
    ) in rows.iterator(chunk_size=2000):
        itself = skyvern_retries(retry_pending, next_attempt_at, now)
        kind_skip = _skip_for_kind(kind, status, hook)
        if kind_skip is not None:
            skip = kind_skip
        elif in_job:
            skip = SkipReason.IN_ACTIVE_JOB
        elif connection_id in failing:
            skip = SkipReason.KEY_FAILING
        elif kind == JobKind.RETRY and itself and not include_skyvern_retrying:
            skip = SkipReason.SKYVERN_RETRIES
        elif kind == JobKind.RETRY and status == Status.COMPLETED and not include_completed:
            skip = SkipReason.COMPLETED
        elif kind == JobKind.RETRY and n_retries and not include_already_retried:
            skip = SkipReason.ALREADY_RETRIED
        else:
            skip = None
        out.append(
            _Row(
                pk,
                status,
                connection_id,
                title,
                reason,
                n_retries,
                skip,
                itself,
                webhook_url,
                browser_session_id,
                credits_used,
            )
        )
    return out


def side_effects(rows: list[_Row]) -> SideEffects:
    """What sending `rows` does besides running them again, counted."""
    hosts = Counter(webhook_host(row.webhook_url) or "(no host)" for row in rows if row.webhook_url)
    reporting = [row.credits_used for row in rows if row.credits_used is not None]
    return SideEffects(
        webhook_calls=sum(hosts.values()),
        webhook_hosts=tuple(_top(hosts)),
        browser_sessions=sum(1 for row in rows if row.browser_session_id),
        completed=sum(1 for row in rows if row.status == Status.COMPLETED),
        beside_skyvern=sum(1 for row in rows if row.skyvern_retries),
        credits=sum(reporting),
        credits_runs=len(reporting),
    )


def _with_sessions(effects: SideEffects, sending: list[_Row]) -> SideEffects:
    if not effects.browser_sessions:
        return effects
    counted = browser_sessions_counted(sending)
    return replace(effects, sessions_closed=counted.closed, sessions_unchecked=counted.unchecked)


def _reason_label(reason: str) -> str:
    first = (reason or "").strip().splitlines()[0].strip() if (reason or "").strip() else ""
    if not first:
        return "(no failure reason)"
    return first if len(first) <= 120 else first[:119] + "…"


def _top(counter: Counter) -> list[Breakdown]:
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    top = [Breakdown(label, count) for label, count in ranked[:PREVIEW_TOP]]
    rest = sum(count for _, count in ranked[PREVIEW_TOP:])
    if rest:
        top.append(Breakdown("Other", rest))
    return top


def attempts_said(runs: list[Run]) -> dict[int, str]:
    """Which of Skyvern's attempts each run is, said as its card says it
    ("attempt 2 of 3"; for a run Skyvern retries itself, the attempt it makes
    next), by run pk; runs of which nothing is known are left out. From what
    is stored only (the runs, and what Skyvern last said of their workflows,
    read in one query for all of them): nobody is asked."""
    known = KnownWorkflow.objects.of_workflows(
        (run.connection_id, run.workflow_permanent_id) for run in runs if run.workflow_permanent_id
    )
    said = {}
    for run in runs:
        workflow = known.get((run.connection_id, run.workflow_permanent_id))
        most = (
            workflow.max_attempts(run.workflow_version, run.workflow_version_id)
            if workflow is not None
            else None
        )
        if run.skyvern_retries:
            said[run.pk] = f"{attempt_words(run.attempt + 1, most)} comes next"
        elif most or run.attempt > 1:
            said[run.pk] = attempt_words(run.attempt, most)
    return said


def sending_behind(*, team: Team, runs, sending: list[_Row]) -> dict[int, int]:
    """Of the runs to send, those behind their workflow's latest version:
    run pk -> that version."""
    to_send = {row.pk for row in sending}
    if not to_send:
        return {}
    behind = runs_behind(runs.filter(team=team))
    return {pk: version for pk, version in behind.items() if pk in to_send}


def bulk_retry_preview(
    *,
    team: Team,
    runs,
    include_already_retried: bool,
    include_skyvern_retrying: bool = False,
    include_completed: bool = False,
    kind: str = JobKind.RETRY,
    check_sessions: bool = False,
) -> BulkPreview:
    """What a bulk job of `kind` over `runs` (a Run queryset already scoped to
    the team) would do: retry them, replay their webhooks, or cancel them.

    Sends nothing and records nothing. Each selected run is either to be sent
    or skipped for exactly one reason, checked in this order: what the kind
    needs (a retry: finished, and not a webhook-only failure, whose webhook
    is replayed instead; a replay: a webhook-only failure; a cancel: not
    finished); already in another active bulk job; its connection's key is
    failing (see `failing_connections`); for a retry: Skyvern retries it
    itself (unless include_skyvern_retrying), it succeeded (unless
    include_completed), already retried (unless include_already_retried).
    `effects` counts what the runs to be sent do besides running again
    (with check_sessions, a retry's preview asks Skyvern which browser
    sessions have closed, briefly: see console/runs/sessions.py).
    """
    rows = _classified(
        team=team,
        runs=runs,
        include_already_retried=include_already_retried,
        include_skyvern_retrying=include_skyvern_retrying,
        include_completed=include_completed,
        kind=kind,
    )
    sending = [row for row in rows if row.skip is None]
    skipped: dict[SkipReason, list[_Row]] = {}
    for row in rows:
        if row.skip is not None:
            skipped.setdefault(row.skip, []).append(row)
    # Asked first: it keeps what Skyvern says of the workflows for the runs named below.
    behind = (
        len(sending_behind(team=team, runs=runs, sending=sending)) if kind == JobKind.RETRY else 0
    )
    samples = []
    for reason in SkipReason:
        members = skipped.get(reason)
        if not members:
            continue
        sample_ids = [row.pk for row in members[:PREVIEW_SAMPLE]]
        sample = list(Run.objects.filter(pk__in=sample_ids).order_by("created_at", "id"))
        samples.append((reason, len(members), sample))
    attempts = attempts_said([run for _, _, sample in samples for run in sample])
    groups = [
        SkipGroup(
            reason=reason,
            count=count,
            runs=sample,
            attempts={run.pk: attempts[run.pk] for run in sample if run.pk in attempts},
        )
        for reason, count, sample in samples
    ]
    return BulkPreview(
        total=len(rows),
        to_send=len(sending),
        by_workflow=_top(Counter(row.workflow_title or "(untitled workflow)" for row in sending)),
        by_failure_reason=_top(Counter(_reason_label(row.failure_reason) for row in sending)),
        skipped=groups,
        effects=_with_sessions(side_effects(sending), sending)
        if check_sessions and kind == JobKind.RETRY
        else side_effects(sending),
        kind=kind,
        behind=behind,
    )
