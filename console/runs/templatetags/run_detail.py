"""Filters for showing Skyvern's data on the run detail page.

`safe_http_url` is the one gate for every URL that comes from Skyvern
(app_url, recording_url, screenshots, downloaded files): only a plain
http(s) URL may become a link, an image or a video source. Anything else
(`javascript:`, `data:`, relative paths, URLs with white space or control
characters) gives "", and the template shows the text instead of a link.
"""

from datetime import timedelta
from urllib.parse import urlsplit

from django import template

register = template.Library()

# Browsers drop or ignore these inside a URL, which can turn a harmless-looking
# string into another scheme ("java\tscript:"); such a URL is never linked.
_FORBIDDEN = frozenset(chr(c) for c in range(0x21)) | {"\x7f"}


@register.filter
def safe_http_url(value) -> str:
    """`value` if it is an absolute http(s) URL with a host, else ""."""
    if not isinstance(value, str) or not value or len(value) > 8000:
        return ""
    if any(c in _FORBIDDEN for c in value):
        return ""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    return value


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
