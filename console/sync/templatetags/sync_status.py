from django import template

from ..views import sync_context

register = template.Library()


@register.inclusion_tag("sync/includes/sync_status.html", takes_context=True)
def sync_status(context) -> dict:
    """The team's sync state, drawn by the sync app on another app's page
    (the runs page): `{% sync_status %}` where `team` and `request` are set."""
    request = context["request"]
    return {"request": request, **sync_context(request, context["team"])}
