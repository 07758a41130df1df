"""Run cards: what a card shows is one value, read in one place, drawn once.

A card shows a RunCard and nothing else: a frozen value holding the run's
fields the card shows, the run it retried and who asked, and its counted
retries (RetryCard). read_cards() builds them, for a page of runs or for one
run, with the columns the two dataclasses name (`column(...)`): adding what
a card shows means adding a field there, and the card can't show anything
else, since it is drawn from the value (card_html.py), not from the run.

Drawing 50 cards was most of a runs page's time, so a drawn card is cached
under a digest of its RunCard, the team, whether the viewer may retry, and
the version of what draws it (card_html.version()): a run that changes is a
new value and so a new key, and nothing ever has to be invalidated. What
differs per request is not in the cached card: the card marks where each
form's per-request fields go (the CSRF token, the page to come back to after
a retry without JavaScript), the cache holds the card cut at those marks,
and the fields are drawn once per request and put between the pieces.
"""

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime

from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.utils import timezone, translation
from django.utils.safestring import SafeString, mark_safe

from console.compiled import CompiledQuery, prepared_cursor
from console.skyvern import TERMINAL_STATUSES

from . import card_html, row_html
from .card_html import draw_card
from .models import (
    COUNTED_ACTION_STATES,
    COUNTED_RETRY_STATES,
    NOT_FINISHED_BECAUSE,
    KnownWorkflow,
    Retry,
    RunAction,
    Status,
    skyvern_retries,
)

# Drawn once per request into every form of every card.
FORM_FIELDS_TEMPLATE = "runs/run_list.html#card-form-fields"
CACHE = "run_cards"

# Where a card's forms take their per-request fields. Unguessable and the
# same in every process (a shared cache holds one copy): a Skyvern payload
# can't contain it by accident or on purpose.
FORM_FIELDS_MARK = mark_safe(  # noqa: S308 (hex digits)
    "fields-" + hashlib.blake2b(settings.SECRET_KEY.encode(), digest_size=12).hexdigest()
)

_STATUS_LABELS = dict(Status.choices)


def column(path: str):
    """A field read from this column (an ORM path, as for values_list())."""
    return field(metadata={"column": path})


@dataclass(frozen=True, slots=True)
class RetryCard:
    """A counted retry of a run, as its card shows it."""

    pk: int = column("id")
    number: int = column("number")
    state: str = column("state")
    requested_at: datetime = column("requested_at")
    requested_by: str | None = column("requested_by__username")
    new_run_id: str | None = column("new_run__run_id")
    # How the retry ended: its new run's status (part of the card's value, so
    # the original's card is drawn again once the new run ends).
    new_run_status: str | None = column("new_run__status")
    # An unknown retry: the runs that may be it, and what the last check found.
    proposed_runs: str = column("proposed_runs")
    checked_at: datetime | None = column("checked_at")
    check_note: str = column("check_note")
    check_evidence: list = column("check_evidence")
    # "retry", or "rerun" on the workflow's latest version (`version`).
    kind: str = column("kind")
    version: int | None = column("version")
    # Where the retry's new run is now (a compact row says so beside its id).
    new_run_status: str | None = column("new_run__status")


@dataclass(frozen=True, slots=True)
class ActionCard:
    """A counted webhook replay or cancel of a run, as its card shows it."""

    pk: int = column("id")
    kind: str = column("kind")
    number: int = column("number")
    state: str = column("state")
    requested_at: datetime = column("requested_at")
    requested_by: str | None = column("requested_by__username")
    webhook_url: str = column("webhook_url")
    target_url: str = column("target_url")
    status_code: int | None = column("status_code")
    latency_ms: int | None = column("latency_ms")
    response_excerpt: str = column("response_excerpt")
    error: str = column("error")


@dataclass(frozen=True, slots=True)
class RunCard:
    """Everything a run's card shows (see the module docstring)."""

    pk: int = column("id")
    run_id: str = column("run_id")
    status: str = column("status")
    workflow_permanent_id: str = column("workflow_permanent_id")
    workflow_title: str = column("workflow_title")
    failure_reason: str = column("failure_reason")
    webhook_failure_reason: str = column("webhook_failure_reason")
    created_at: datetime = column("created_at")
    finished_at: datetime | None = column("finished_at")
    # Links from Skyvern, as cached (only an http(s) URL is drawn as a link).
    app_url: str = column("app_url")
    recording_url: str = column("recording_url")
    retried_from: str | None = column("retried_from__run_id")  # that run's id
    retried_by: str | None = column("retried_by__username")
    retried_at: datetime | None = column("retried_at")
    # What a retry would do (see Run): Skyvern's own retry of the run, and
    # what a retry copies from it.
    attempt: int = column("attempt")
    retry_pending: bool = column("retry_pending")
    next_attempt_at: datetime | None = column("next_attempt_at")
    webhook_url: str = column("webhook_url")
    browser_session_id: str = column("browser_session_id")
    connection_id: int = column("connection_id")
    workflow_version: int | None = column("workflow_version")
    workflow_version_id: str = column("workflow_version_id")
    retries: tuple[RetryCard, ...] = ()  # newest first
    # Webhook replays and cancels, newest first: read only for the cards that
    # offer them (a webhook-only failure, a run still going).
    actions: tuple[ActionCard, ...] = ()
    # From what Skyvern last said of the workflow (KnownWorkflow), None when
    # unknown: the version the run ran, the current one, and how many
    # attempts Skyvern makes of a run of the run's version.
    ran_version: int | None = None
    latest_version: int | None = None
    max_attempts: int | None = None
    # Whether the run's browser session is still open, asked of Skyvern only
    # on a retry's confirmation step and the run page's refresh
    # (console/runs/sessions.py); "" unasked.
    browser_session_state: str = ""

    @property
    def behind(self) -> bool:
        """The workflow has a newer version than the one a retry would run."""
        return (
            self.ran_version is not None
            and self.latest_version is not None
            and self.ran_version < self.latest_version
        )

    @property
    def webhook_only_failure(self) -> bool:
        return self.status == Status.FAILED and bool(self.webhook_failure_reason)

    @property
    def retry_offered(self) -> bool:
        """The card offers Retry at once, with what the retry also does beside
        it: a finished run that didn't succeed (one that did asks first) and
        that Skyvern won't retry itself. For people who may retry."""
        return self.is_terminal and self.status != Status.COMPLETED and not self.skyvern_retries

    @property
    def replay_count(self) -> int:
        return len(self.actions_of("replay_webhook"))

    def actions_of(self, kind: str) -> tuple[ActionCard, ...]:
        return tuple(action for action in self.actions if action.kind == kind)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def get_status_display(self) -> str:
        return _STATUS_LABELS.get(self.status, self.status)

    @property
    def not_finished_because(self) -> str:
        return NOT_FINISHED_BECAUSE.get(self.status, f"is {self.get_status_display().lower()}")

    @property
    def latest_retry(self) -> RetryCard | None:
        return self.retries[0] if self.retries else None

    @property
    def skyvern_retries(self) -> bool:
        return skyvern_retries(self.retry_pending, self.next_attempt_at)


def _columns(cls) -> tuple[str, ...]:
    return tuple(f.metadata["column"] for f in fields(cls) if "column" in f.metadata)


RUN_COLUMNS = _columns(RunCard)
RETRY_COLUMNS = _columns(RetryCard)
ACTION_COLUMNS = _columns(ActionCard)


def read_cards(queryset, limit: int | None = None) -> list[RunCard]:
    """The cards of the runs of `queryset` (the first `limit` of them), in
    its order: one query for the runs, one for all their retries."""
    rows = queryset.values_list(*RUN_COLUMNS)
    rows = list(rows[:limit] if limit is not None else rows)
    return cards_of_rows(rows, using=queryset.db)


def cards_of_rows(rows, *, using: str) -> list[RunCard]:
    """The cards of runs read as RUN_COLUMNS, with all their retries in one query."""
    if not rows:
        return []
    retries = _counted_retries([row[0] for row in rows], using=using)
    actions = _counted_actions(rows, using=using)
    known = _known_workflows(rows, using=using)
    return [
        RunCard(
            *row,
            retries=tuple(retries.get(row[0], ())),
            actions=tuple(actions.get(row[0], ())),
            **_workflow_facts(row, known),
        )
        for row in rows
    ]


_STATUS_AT = RUN_COLUMNS.index("status")
_WEBHOOK_FAILURE_AT = RUN_COLUMNS.index("webhook_failure_reason")
_CONNECTION_AT = RUN_COLUMNS.index("connection_id")
_WPID_AT = RUN_COLUMNS.index("workflow_permanent_id")
_VERSION_AT = RUN_COLUMNS.index("workflow_version")
_VERSION_ID_AT = RUN_COLUMNS.index("workflow_version_id")


def _known_workflows(rows, *, using: str) -> dict[tuple[int, str], KnownWorkflow]:
    """What Skyvern last said of the workflows of the finished runs (whose
    cards speak of versions and attempts), by (connection, workflow)."""
    wanted = {
        (row[_CONNECTION_AT], row[_WPID_AT])
        for row in rows
        if row[_WPID_AT] and row[_STATUS_AT] in TERMINAL_STATUSES
    }
    connection_ids = sorted({c for c, _ in wanted})
    workflow_ids = sorted({w for _, w in wanted})
    if not wanted or len(connection_ids) > _KNOWN_CONNECTIONS or len(workflow_ids) > _KNOWN_IDS:
        return KnownWorkflow.objects.using(using).of_workflows(wanted)
    # A page's few connections and workflows, padded with repeats of the first.
    connection_ids += connection_ids[:1] * (_KNOWN_CONNECTIONS - len(connection_ids))
    workflow_ids += workflow_ids[:1] * (_KNOWN_IDS - len(workflow_ids))
    found = _KNOWN_WORKFLOWS.instances(*connection_ids, *workflow_ids, using=using)
    return {
        (k.connection_id, k.workflow_permanent_id): k
        for k in found
        if (k.connection_id, k.workflow_permanent_id) in wanted
    }


# The known workflows of a page of runs (51 at most) of a few connections:
# one query shape, compiled once (console/compiled.py).
_KNOWN_CONNECTIONS, _KNOWN_IDS = 4, 64
_KNOWN_WORKFLOWS = CompiledQuery(
    lambda *ids: KnownWorkflow.objects.filter(
        connection_id__in=ids[:_KNOWN_CONNECTIONS],
        workflow_permanent_id__in=ids[_KNOWN_CONNECTIONS:],
    ),
    *(-11 - number for number in range(_KNOWN_CONNECTIONS)),
    *(f"stand-in workflow {number}" for number in range(_KNOWN_IDS)),
)


def _workflow_facts(row, known) -> dict:
    workflow = known.get((row[_CONNECTION_AT], row[_WPID_AT]))
    if workflow is None:
        return {}
    number, version_id = row[_VERSION_AT], row[_VERSION_ID_AT]
    return {
        "ran_version": workflow.version_of(number, version_id),
        "latest_version": workflow.current_version,
        "max_attempts": workflow.max_attempts(number, version_id),
    }


def _counted_actions(rows, *, using: str) -> dict[int, list[ActionCard]]:
    """The counted replays and cancels of the runs that offer them, by run."""
    pks = [
        row[0]
        for row in rows
        if row[_STATUS_AT] not in TERMINAL_STATUSES
        or (row[_STATUS_AT] == Status.FAILED and row[_WEBHOOK_FAILURE_AT])
    ]
    if not pks:
        return {}
    by_run = defaultdict(list)
    for run_pk, *values in (
        RunAction.objects.using(using)
        .filter(run_id__in=pks, state__in=COUNTED_ACTION_STATES)
        .order_by("-number", "-id")
        .values_list("run_id", *ACTION_COLUMNS)
    ):
        by_run[run_pk].append(ActionCard(*values))
    return by_run


def read_card(queryset) -> RunCard | None:
    """The card of the first run of `queryset`, if there is one."""
    cards = read_cards(queryset, 1)
    return cards[0] if cards else None


def _counted_retries(run_pks: list[int], *, using: str) -> dict[int, list[RetryCard]]:
    """Each run's counted retries, newest first, by run."""
    connection = connections[using]
    size = _RETRIES_QUERY_SIZE
    while size < len(run_pks):
        size *= 2
    sql, params, converters, compiler = _retries_query(connection, size)
    padding = [_NO_RUN] * (size - len(run_pks))
    with prepared_cursor(connection) as cursor:
        cursor.execute(sql, [*run_pks, *padding, *params])
        rows = cursor.fetchall()
    if converters:
        rows = compiler.apply_converters(rows, converters)
    by_run = defaultdict(list)
    for run_pk, *values in rows:
        by_run[run_pk].append(RetryCard(*values))
    return by_run


# The retries query takes run ids by the 64 (a page is 51 runs): a few
# shapes, each compiled once; the ids it doesn't need are one that no run has.
_RETRIES_QUERY_SIZE = 64
_NO_RUN = 0


def _retries_query(connection, size: int):
    """The retries query for `size` run ids, compiled by Django once per
    database connection (building and compiling it on every page cost more
    than the database's answer; docs/performance.md, changes 16 and 21): its SQL with
    the run ids' placeholders first, the other parameters, and what turns the
    driver's values into values_list()'s (bound to this connection, which
    is why they are kept on it)."""
    queries = connection.__dict__.setdefault("_run_card_retries_queries", {})
    if size not in queries:
        # The run ids are the query's only parameters that change: -1, -2, …
        # stand for them, and must come first.
        stand_ins = [-1 - position for position in range(size)]
        queryset = (
            Retry.objects.using(connection.alias)
            .filter(run_id__in=stand_ins, state__in=COUNTED_RETRY_STATES)
            .order_by("-number")
            .values_list("run_id", *RETRY_COLUMNS)
        )
        compiler = queryset.query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        if list(params[:size]) != stand_ins:
            raise ImproperlyConfigured("the retries query's run ids are not its first parameters")
        converters = compiler.get_converters([column for column, _, _ in compiler.select])
        queries[size] = (sql, list(params[size:]), converters, compiler)
    return queries[size]


def render_cards(
    cards,
    *,
    team,
    can_retry: bool,
    form_fields: str = "",
    card_error: str | None = None,
    refresh_error: str | None = None,
    confirming: bool = False,
    confirm_cancel: bool = False,
    rows: bool = False,
    open_card: bool = False,
) -> SafeString:
    """The cards, in order, for this viewer; `form_fields` go into each of
    their forms (drawn per request: FORM_FIELDS_TEMPLATE). A card with a
    message on it, or asking to confirm a retry or a cancel (only ever a single card),
    is not cached. `rows`: the runs' compact rows instead (row_html.py), cached
    alike; `open_card`: a row with its card unfolded (not cached)."""
    drawing = {"team_slug": team.slug, "can_retry": can_retry}
    draw = row_html.draw_row if rows else draw_card
    if rows and open_card:
        drawing["open_card"] = True
    if card_error or refresh_error or confirming or confirm_cancel or (rows and open_card):
        drawn = [
            draw(
                card,
                **drawing,
                form_fields=form_fields,
                card_error=card_error,
                refresh_error=refresh_error,
                confirming=confirming,
                confirm_cancel=confirm_cancel,
            )
            for card in cards
        ]
        return mark_safe("".join(drawn))  # noqa: S308 (escaped where drawn)

    viewing = _viewing(team, can_retry, rows).encode()
    keys = [_key(viewing, card) for card in cards]
    cache = caches[CACHE]
    pieces = cache.get_many(keys)
    new = {
        key: tuple(draw(card, **drawing, form_fields=FORM_FIELDS_MARK).split(FORM_FIELDS_MARK))
        for key, card in zip(keys, cards, strict=True)
        if key not in pieces
    }
    if new:
        cache.set_many(new)
        pieces.update(new)
    return mark_safe(  # noqa: S308 (escaped where drawn)
        "".join(form_fields.join(pieces[key]) for key in keys)
    )


def _key(viewing: bytes, card: RunCard) -> str:
    """The card's cache key: a digest of how it is viewed and of its value
    (repr() tells apart every str, int, None, datetime and JSON value a card
    holds, and costs less than pickle; docs/performance.md, change 15)."""
    digest = hashlib.blake2b(viewing, digest_size=16)
    digest.update(repr(card).encode())
    # Skyvern's own retry stops being ahead once its time has come: the card
    # drawn before then shows no Retry button, the one after does.
    digest.update(b"s" if card.skyvern_retries else b"-")
    return "card:" + digest.hexdigest()


def _viewing(team, can_retry: bool, rows: bool = False) -> str:
    """What else a card's markup depends on: who views it, and where (and
    whether as a row)."""
    return ":".join(
        (
            "row-" + row_html.version() if rows else card_html.version(),
            translation.get_language() or "",
            timezone.get_current_timezone_name(),
            team.slug,
            "r" if can_retry else "v",
        )
    )
