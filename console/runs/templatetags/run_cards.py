"""`{% run_cards runs %}` and `{% run_card run %}`: run cards (see console/runs/cards.py).

Reads from the surrounding context what every page that shows cards has:
`team`, `can_retry`, `request`, `csrf_token`, and on a single card the
optional `card_error` and `refresh_error`.
"""

from django import template

from console.runs.cards import render_cards

register = template.Library()


@register.simple_tag(takes_context=True)
def run_cards(context, runs):
    request = context.get("request")
    can_retry = bool(context.get("can_retry"))
    return render_cards(
        runs,
        team=context["team"],
        can_retry=can_retry,
        csrf_token=str(context.get("csrf_token", "")) if can_retry else "",
        retry_next=_back_here(request) if can_retry and request is not None else "",
        card_error=context.get("card_error"),
        refresh_error=context.get("refresh_error"),
    )


@register.simple_tag(takes_context=True)
def run_card(context, run):
    return run_cards(context, [run])


def _back_here(request) -> str:
    """Where a retry without JavaScript comes back to: the page the card is on
    (for a card fetched by htmx, the page that fetched it)."""
    htmx = getattr(request, "htmx", None)
    if htmx:
        return htmx.current_url_abs_path or ""
    return request.get_full_path()
