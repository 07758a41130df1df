"""Filters for showing Skyvern's data on the run detail page.

`safe_http_url` applies the client's one rule for URLs from Skyvern
(`console.skyvern.types.http_url`) to what is cached
(app_url, recording_url, screenshots, downloaded files): only a plain
http(s) URL may become a link, an image or a video source. Anything else
(`javascript:`, `data:`, relative paths, URLs with white space or control
characters) gives "", and the template shows the text instead of a link.
"""

from datetime import timedelta

from django import template

from console.skyvern.types import http_url

register = template.Library()


@register.filter
def safe_http_url(value) -> str:
    """`value` if it is an absolute http(s) URL with a host, else ""."""
    return http_url(value) or ""


@register.filter
def duration(value) -> str:
    """A timedelta as a person says it: "850 ms", "4 s", "2 min 55 s", "1 h 3 min"."""
    if not isinstance(value, timedelta):
        return ""
    seconds = value.total_seconds()
    if seconds < 0:
        return "—"
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{round(seconds)} s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if secs else f"{minutes} min"
