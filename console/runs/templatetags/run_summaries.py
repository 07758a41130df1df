"""`{% ticket_summary retry run as summary %}`: the ticket paragraph of a retry
(console/runs/summaries.py), for the "Copy summary" boxes."""

from django import template

from ..summaries import replay_summary, retry_summary

register = template.Library()


@register.simple_tag
def ticket_summary(retry, run):
    retry.run = run  # the page's run: no query for it
    return retry_summary(retry)


@register.simple_tag
def replay_ticket_summary(action, run):
    action.run = run  # the page's run: no query for it
    return replay_summary(action)
