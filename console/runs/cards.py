"""Run cards, rendered once per version of the run and reused.

A runs page draws 50 cards, and drawing them was most of the page's time
(~0.27 ms a card with Django's templates). A card's markup depends only on
the run as the console knows it, its retries, the team and whether the viewer
may retry, so it is cached under a fingerprint of exactly those values: a
run that changes gets a new fingerprint and so a new card, and nothing ever
has to be invalidated. The two things that differ per request, the CSRF token
and the address to come back to after a retry without JavaScript, are
rendered as placeholders and filled in on the way out.

tests/runs/test_cards.py changes every field of a run and of its retries and
fails if the card's markup changes while its fingerprint does not: a field
added to the card template must be added to card_fingerprint() too.
"""

import hashlib
import pickle

from django.conf import settings
from django.core.cache import caches
from django.template import Context
from django.template.loader import get_template
from django.utils import timezone, translation
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

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


def card_fingerprint(run) -> bytes:
    """Everything a run's card shows (see the module docstring)."""
    # Prefetched by listing.with_card_data(); without it the card shows none.
    retries = getattr(run, "counted_retries", ())
    values = (
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
            )
            for retry in retries
        ),
    )
    return hashlib.blake2b(pickle.dumps(values, protocol=5), digest_size=16).digest()


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
                    runs,
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
    cached = cache.get_many(keys)
    to_draw = {key: run for key, run in zip(keys, runs, strict=True) if key not in cached}
    missing = dict(
        zip(
            to_draw,
            _draw(
                template,
                to_draw.values(),
                **shared,
                csrf_token=CSRF_PLACEHOLDER,
                retry_next=NEXT_PLACEHOLDER,
            ),
            strict=True,
        )
    )
    if missing:
        cache.set_many(missing)
        cached.update(missing)
    html = "".join(cached[key] for key in keys)
    if can_retry:
        # Both are attribute values in the template: escaped as it would have.
        html = html.replace(CSRF_PLACEHOLDER, escape(csrf_token)).replace(
            NEXT_PLACEHOLDER, escape(retry_next)
        )
    return mark_safe(html)  # noqa: S308 (rendered templates, escaped there)


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
