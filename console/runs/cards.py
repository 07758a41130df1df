"""Run cards, rendered once per version of the run and reused.

A runs page draws 50 cards, and drawing them was most of the page's time
(docs/performance.md, change 7). A card's markup depends only on
the run as the console knows it, its retries, the team and whether the viewer
may retry, so it is cached under a fingerprint of exactly those values: a
run that changes gets a new fingerprint and so a new card, and nothing ever
has to be invalidated. The two things that differ per request, the CSRF token
and the address to come back to after a retry without JavaScript, are
rendered as placeholders and filled in on the way out.

A page of cards does not load its runs as models at all: card_rows() reads
just the values a card shows, which is enough to find each cached card, and
only the runs whose card has to be drawn are loaded (for_cards()). Building
~150 model instances and Django's prefetch for every view cost more than
drawing the page around them.

tests/runs/test_cards.py changes every field of a run and of its retries and
fails if the card's markup changes while its fingerprint does not: a field
added to the card template must be added to card_values() and card_rows() too
(the same tests hold those two to the same values).
"""

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC

from django.conf import settings
from django.core.cache import caches
from django.db import connection as db_connection
from django.db.models import Prefetch
from django.template import Context
from django.template.loader import get_template
from django.utils import timezone, translation
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from .models import COUNTED_RETRY_STATES, Retry, Run

TEMPLATE = "runs/includes/run_card.html"
CACHE = "run_cards"

# Unguessable and the same in every process (a shared cache holds one copy):
# a Skyvern payload can't contain them by accident or on purpose.
_SALT = hashlib.blake2b(settings.SECRET_KEY.encode(), digest_size=12).hexdigest()
CSRF_PLACEHOLDER = f"csrf-{_SALT}"
NEXT_PLACEHOLDER = f"next-{_SALT}"


# The fields of a run its card shows (attribute names), and all the runs
# page loads of a run. Of the runs and people a card links to it shows only
# the run id and the username.
CARD_FIELDS = (
    "id",
    "run_id",
    "status",
    "workflow_permanent_id",
    "workflow_title",
    "failure_reason",
    "created_at",
    "finished_at",
    "app_url",
    "recording_url",
    "retried_from_id",
    "retried_by_id",
    "retried_at",
)


# Of a run linked to another (the run it retried, the runs retrying it) and of
# the people who asked, cards and the run page show only these: a linked
# run's row carries Skyvern's JSON, which can be megabytes.
LINKED_RUN_FIELDS = ("run_id", "status")
PERSON_FIELDS = ("username",)


def all_fields_and(model, **related) -> list[str]:
    """Every field of `model` plus only the named fields of related objects,
    for only(): `related` maps a relation to the fields to load of it."""
    fields = [field.name for field in model._meta.concrete_fields]
    return fields + [f"{rel}__{name}" for rel, names in related.items() for name in names]


def with_card_data(queryset):
    """What a run card (and the run page's lineage) shows beyond the run
    itself: two joins and one extra query."""
    return (
        queryset.select_related("retried_by", "retried_from")
        .only(*all_fields_and(Run, retried_by=PERSON_FIELDS, retried_from=LINKED_RUN_FIELDS))
        .prefetch_related(
            Prefetch(
                "retry_attempts",
                queryset=Retry.objects.filter(state__in=COUNTED_RETRY_STATES)
                .select_related("requested_by", "new_run")
                .only(
                    *all_fields_and(Retry, requested_by=PERSON_FIELDS, new_run=LINKED_RUN_FIELDS)
                )
                .order_by("-number"),
                to_attr="counted_retries",
            )
        )
    )


def for_cards(queryset):
    """Runs as models with what their cards show, nothing more (the rest of
    a cached row is mostly Skyvern's JSON): to draw cards from."""
    names = {field.attname: field.name for field in Run._meta.concrete_fields}
    return with_card_data(queryset).only(
        *(names[attname] for attname in CARD_FIELDS),
        *(f"retried_by__{name}" for name in PERSON_FIELDS),
        *(f"retried_from__{name}" for name in LINKED_RUN_FIELDS),
    )


def card_values(run) -> tuple:
    """Everything a run's card shows, as plain values: what its cache key is
    made of. `run` comes from with_card_data() (without it no retries show)."""
    retries = getattr(run, "counted_retries", ())
    return (
        *(getattr(run, name) for name in CARD_FIELDS),
        run.retried_from.run_id if run.retried_from_id else None,
        run.retried_by.get_username() if run.retried_by_id else None,
        tuple(
            (
                retry.pk,
                retry.state,
                retry.requested_at,
                retry.requested_by.get_username() if retry.requested_by_id else None,
                retry.new_run.run_id if retry.new_run_id else None,
                # A check's evidence changes only with its time and note.
                retry.proposed_runs,
                retry.checked_at,
                retry.check_note,
            )
            for retry in retries
        ),
    )


# card_values() as columns: the run's own, its lineage's, then its retries'.
ROW_FIELDS = (*CARD_FIELDS, "retried_from__run_id", "retried_by__username")
_POSITION = {name: position for position, name in enumerate(CARD_FIELDS)}


@dataclass(frozen=True, slots=True)
class CardRow:
    """A run as a page of cards holds it: the values its card shows
    (card_values() order), enough to find its card in the cache. Those of
    CARD_FIELDS read as attributes (`row.run_id`), as on a Run."""

    values: tuple

    @property
    def pk(self) -> int:
        return self.values[_POSITION["id"]]

    def __getattr__(self, name):
        try:
            return self.values[_POSITION[name]]
        except KeyError:
            raise AttributeError(name) from None


def card_rows(queryset, limit: int) -> list[CardRow]:
    """The first `limit` runs of `queryset` as CardRows: two plain queries."""
    rows = list(queryset.values_list(*ROW_FIELDS)[:limit])
    retries = _counted_retries([row[0] for row in rows]) if rows else {}
    return [CardRow((*row, tuple(retries.get(row[0], ())))) for row in rows]


# A run's counted retries, newest first, as card_values() holds them.
COUNTED_RETRIES_SQL = """
    SELECT retry.run_id, retry.id, retry.state, retry.requested_at, person.username, made.run_id,
           retry.proposed_runs, retry.checked_at, retry.check_note
    FROM runs_retry retry
    LEFT JOIN auth_user person ON person.id = retry.requested_by_id
    LEFT JOIN runs_run made ON made.id = retry.new_run_id
    WHERE retry.run_id IN ({runs}) AND retry.state IN ({states})
    ORDER BY retry.number DESC
"""


def _counted_retries(run_pks: list[int]) -> dict[int, list[tuple]]:
    """Each run's counted retries, by run.

    Written out in SQL: the query never changes shape, and Django's query
    compiler took longer than the database to answer it (docs/performance.md,
    change 16).
    tests/runs/test_cards.py holds it to what the ORM gives (card_values()).
    """
    sql = COUNTED_RETRIES_SQL.format(
        runs=", ".join(["%s"] * len(run_pks)),
        states=", ".join(["%s"] * len(COUNTED_RETRY_STATES)),
    )
    by_run = defaultdict(list)
    with db_connection.cursor() as cursor:
        cursor.execute(sql, [*run_pks, *COUNTED_RETRY_STATES])
        for run_pk, pk, state, requested_at, username, new_run_id, *check in cursor.fetchall():
            proposed, checked_at, note = check
            # SQLite gives back the stored UTC times without their zone.
            requested_at, checked_at = (_utc(requested_at), _utc(checked_at))
            by_run[run_pk].append(
                (pk, state, requested_at, username, new_run_id, proposed, checked_at, note)
            )
    return by_run


def _utc(moment):
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def card_fingerprint(run) -> bytes:
    """Everything a run's card shows (see the module docstring); `run` is a
    model from with_card_data() or a CardRow."""
    values = run.values if isinstance(run, CardRow) else card_values(run)
    # repr() tells apart every str, int, None and datetime a card holds, at
    # half pickle's cost (50 cards a page).
    return hashlib.blake2b(repr(values).encode(), digest_size=16).digest()


def render_cards(
    runs,
    *,
    team,
    can_retry: bool,
    csrf_token: str = "",
    retry_next: str = "",
    card_error: str | None = None,
    refresh_error: str | None = None,
) -> SafeString:
    """The cards of `runs`, in order, for this viewer; `retry_next` is where a
    retry without JavaScript comes back to. A card with a message on it (only
    ever a single card) is not cached."""
    template = get_template(TEMPLATE)
    shared = {"team": team, "can_retry": can_retry}
    if card_error or refresh_error:
        return mark_safe(  # noqa: S308 (rendered templates)
            "".join(
                _draw(
                    template,
                    _as_models(runs, team),
                    **shared,
                    card_error=card_error,
                    refresh_error=refresh_error,
                    csrf_token=csrf_token,
                    retry_next=retry_next,
                )
            )
        )

    prefix = _cache_prefix(template, team, can_retry)
    keys = [prefix + card_fingerprint(run).hex() for run in runs]
    cache = caches[CACHE]
    cards = cache.get_many(keys)
    to_draw = {key: run for key, run in zip(keys, runs, strict=True) if key not in cards}
    if to_draw:
        models = _as_models(to_draw.values(), team)
        drawn = _draw(
            template,
            models,
            **shared,
            csrf_token=CSRF_PLACEHOLDER,
            retry_next=NEXT_PLACEHOLDER,
        )
        by_pk = {model.pk: html for model, html in zip(models, drawn, strict=True)}
        # A run deleted since its row was read has no card.
        cards.update({key: by_pk.get(run.pk, "") for key, run in to_draw.items()})
        # Each under the key of what it shows: a run loaded after it changed
        # again must not be found by its older row.
        cache.set_many(
            {
                prefix + card_fingerprint(model).hex(): html
                for model, html in zip(models, drawn, strict=True)
            }
        )
    html = "".join(cards[key] for key in keys)
    if can_retry:
        # Both are attribute values in the template: escaped as it would have.
        html = html.replace(CSRF_PLACEHOLDER, escape(csrf_token)).replace(
            NEXT_PLACEHOLDER, escape(retry_next)
        )
    return mark_safe(html)  # noqa: S308 (rendered templates, escaped there)


def _as_models(runs, team) -> list:
    """`runs` as models to draw cards from, in order: CardRows are loaded
    (one query for all of them), models stay as they are."""
    pks = [run.pk for run in runs if isinstance(run, CardRow)]
    if not pks:
        return list(runs)
    loaded = {run.pk: run for run in for_cards(Run.objects.filter(team=team, pk__in=pks))}
    return [
        loaded[run.pk] if isinstance(run, CardRow) else run
        for run in runs
        if not isinstance(run, CardRow) or run.pk in loaded
    ]


def _draw(template, runs, **values) -> list[str]:
    """Each run's card, in one template context (a context per card costs
    more than drawing a simple card)."""
    context = Context(values, autoescape=template.template.engine.autoescape)
    drawn = []
    for run in runs:
        with context.push(run=run):
            drawn.append(str(template.template.render(context)))
    return drawn


def _cache_prefix(template, team, can_retry: bool) -> str:
    return ":".join(
        (
            "card",
            _template_version(template),
            translation.get_language() or "",
            timezone.get_current_timezone_name(),
            team.slug,
            "r" if can_retry else "v",
            "",
        )
    )


def _template_version(template) -> str:
    """A digest of the card template's source, so an edited template (a deploy,
    or the autoreloader in development) never serves cards cached before it."""
    inner = template.template
    version = getattr(inner, "_card_version", None)
    if version is None:
        version = hashlib.blake2b(inner.source.encode(), digest_size=6).hexdigest()
        inner._card_version = version
    return version
