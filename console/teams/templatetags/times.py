"""`{{ moment|when }}`: a moment as a person reads it (console/timefmt.py).

The argument names the style ("short", "seconds", "full", "minute", "time",
"day") and may add "live" for console.js to say how long ago:
`{{ job.created_at|when:"seconds live" }}`.
"""

from django import template
from django.utils.safestring import mark_safe

from console import timefmt

register = template.Library()


@register.filter
def when(moment, arg="short"):
    if not moment:
        return ""
    words = arg.split()
    style = next((word for word in words if word in timefmt.STYLES), "short")
    return mark_safe(timefmt.time_html(moment, style, live="live" in words))  # noqa: S308 - escaped there


@register.filter
def when_text(moment, style="short"):
    """The labelled wall time as plain text (no markup), for a sentence or a title."""
    return timefmt.shown(moment, style) if moment else ""


@register.filter
def relative(moment):
    """ "12 min ago", "in 5 min": for pages drawn afresh each time."""
    return timefmt.relative(moment) if moment else ""


@register.filter
def when_full(moment):
    """The tooltip's text: ISO time with its offset, and the zone's name."""
    return timefmt.full(moment) if moment else ""
