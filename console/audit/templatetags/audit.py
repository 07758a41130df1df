from django import template

from console.audit.services import audit_entries_for

register = template.Library()


@register.inclusion_tag("audit/includes/_entries.html")
def audit_history(target, heading="History"):
    """`{% audit_history run %}`: the audit rows about a run or a bulk job."""
    return {"entries": audit_entries_for(target), "heading": heading}
