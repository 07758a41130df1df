"""`{% run_cards cards %}` and `{% run_card card %}`: run cards, from RunCards
(see console/runs/cards.py).

Reads from the surrounding context what every page that shows cards has:
`team`, `can_retry`, `request`, `csrf_token`, and on a single card the
optional `card_error`, `refresh_error` and `confirm_cancel`; `rows` draws
the runs' compact rows instead (and `open_card` unfolds their cards).
"""

from django import template
from django.template.loader import get_template

from console.runs.cards import FORM_FIELDS_TEMPLATE, RunCard, render_cards

register = template.Library()


@register.simple_tag(takes_context=True)
def run_cards(context, cards):
    request = context.get("request")
    can_retry = bool(context.get("can_retry"))
    form_fields = ""
    if can_retry:
        form_fields = get_template(FORM_FIELDS_TEMPLATE).render(
            {
                "csrf_token": context.get("csrf_token", ""),
                "retry_next": context.get("retry_next")
                or (_back_here(request) if request is not None else ""),
            }
        )
    return render_cards(
        cards,
        team=context["team"],
        can_retry=can_retry,
        form_fields=form_fields,
        card_error=context.get("card_error"),
        refresh_error=context.get("refresh_error"),
        confirming=bool(context.get("confirming")),
        confirm_cancel=bool(context.get("confirm_cancel")),
        rows=bool(context.get("rows")),
        open_card=bool(context.get("open_card")),
    )


@register.simple_tag(takes_context=True)
def run_card(context, card):
    if not isinstance(card, RunCard):
        # A run as a model would draw without its retries, and be cached so.
        raise TypeError(f"run_card draws a RunCard (cards.read_card()), not {type(card)!r}")
    return run_cards(context, [card])


def _back_here(request) -> str:
    """Where a retry without JavaScript comes back to: the page the card is on
    (for a card fetched by htmx, the page that fetched it)."""
    htmx = getattr(request, "htmx", None)
    if htmx:
        return htmx.current_url_abs_path or ""
    return request.get_full_path()
