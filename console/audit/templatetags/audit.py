from django import template
from django.urls import NoReverseMatch, reverse

from console.audit.services import audit_entries_for

register = template.Library()


@register.inclusion_tag("audit/includes/_entries.html")
def audit_history(target, heading="History"):
    """`{% audit_history run %}`: the audit rows about a run or a bulk job."""
    return {"entries": audit_entries_for(target), "heading": heading}


# The page of each kind of target, by URL name (the audit log imports no app):
# its arguments after the team's slug.
TARGET_PAGES = {
    "run": ("runs:run_detail", lambda entry: [entry.target_id]),
    "bulk_job": ("bulk:bulk_job_detail", lambda entry: [int(entry.target_id)]),
    "connection": ("teams:connection_list", lambda entry: []),
}


@register.simple_tag(takes_context=True)
def target_url(context, entry) -> str:
    """`{% target_url entry as url %}`: the page of the entry's run, bulk job
    or connection, in the entry's team, or "" — and "" unless the log shown
    is that team's (its admins) or everyone's (superusers)."""
    page = TARGET_PAGES.get(entry.target_type)
    if page is None or entry.team_id is None:
        return ""
    team = context.get("team")
    if team is not None and entry.team_id != team.pk:
        return ""
    if team is None and not context["request"].user.is_superuser:
        return ""
    name, args = page
    try:
        return reverse(name, args=[entry.team.slug, *args(entry)])
    except (NoReverseMatch, ValueError):
        return ""
