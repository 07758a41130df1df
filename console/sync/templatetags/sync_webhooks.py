from django import template

from ..views import webhooks_context

register = template.Library()


@register.inclusion_tag("sync/includes/webhooks.html", takes_context=True)
def connection_webhooks(context) -> dict:
    """The webhook section of the team's Connections page (admins only),
    drawn by the sync app: `{% connection_webhooks %}` where `team` and
    `request` are set."""
    return webhooks_context(context["request"], context["team"])
