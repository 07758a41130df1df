"""How the console shows a moment to a person: in their own time zone (the
current one, see console/teams/timezones.py), always labelled with it, with
the full time and zone name in a tooltip, and, where it helps, how long ago.

    Dec 6, 14:05 CET                      what the page reads
    2026-12-06T14:05:00+01:00 Europe/Berlin   its tooltip
    12 min ago                           its relative form

A `<time>` keeps the moment's ISO time (UTC, as stored) in `datetime`. One
marked `data-relative` has its relative form added by static/console/console.js
and kept current there: markup that is cached (run cards) stays true however
long it is kept. Pages drawn afresh each time may say it themselves
(`relative()`). CSV exports are not for people reading here: they stay
ISO 8601 UTC.
"""

from datetime import datetime
from functools import lru_cache
from html import escape

from django.utils import timezone, translation
from django.utils.dates import MONTHS_3

#: The forms a moment is shown in (name -> what it reads, before the label).
STYLES = {
    "short": "Dec 6, 14:05",
    "seconds": "Dec 6, 14:05:09",
    "full": "2026-12-06 14:05:09",
    "minute": "2026-12-06 14:05",
    "time": "14:05:09",
    "day": "6 Dec 2026",
}


@lru_cache
def _months(language) -> tuple[str, ...]:
    return ("", *(str(MONTHS_3[month]).title() for month in range(1, 13)))


def zone_label(local: datetime) -> str:
    """The zone's abbreviation at that moment ("CET", "EDT"), or its offset
    where the zone has no abbreviation ("UTC+04" for Asia/Dubai)."""
    name = local.tzname() or ""
    if not name or name[0] in "+-":
        offset = local.strftime("%z")  # +0400, +0530
        hours, minutes = offset[:3], offset[3:]
        return f"UTC{hours}" + (f":{minutes}" if minutes != "00" else "")
    return name


def wall_time(moment: datetime, style: str = "short", zone=None) -> str:
    """The moment's wall time in `zone` (the person's, by default), unlabelled."""
    local = moment.astimezone(zone or timezone.get_current_timezone())
    if style == "full":
        return f"{local:%Y-%m-%d %H:%M:%S}"
    if style == "minute":
        return f"{local:%Y-%m-%d %H:%M}"
    if style == "time":
        return f"{local:%H:%M:%S}"
    month = _months(translation.get_language())[local.month]
    if style == "day":
        return f"{local.day} {month} {local.year}"
    shown = f"{month} {local.day}, {local.hour:02}:{local.minute:02}"
    return f"{shown}:{local.second:02}" if style == "seconds" else shown


def shown(moment: datetime, style: str = "short", zone=None) -> str:
    """What a person reads: the wall time and its zone ("Dec 6, 14:05 CET");
    a day alone has no zone to name."""
    zone = zone or timezone.get_current_timezone()
    text = wall_time(moment, style, zone)
    if style == "day":
        return text
    return f"{text} {zone_label(moment.astimezone(zone))}"


def full(moment: datetime, zone=None) -> str:
    """The tooltip: the ISO time with its offset and the zone's name."""
    zone = zone or timezone.get_current_timezone()
    local = moment.astimezone(zone)
    return f"{local.isoformat(timespec='seconds')} {getattr(zone, 'key', None) or zone}"


def _amount(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h"
    return f"{hours // 24} days"


def relative(moment: datetime, now: datetime | None = None) -> str:
    """How far from now, coarsely: "just now", "12 min ago", "in 5 min",
    "3 h ago", "4 days ago" (console.js says the same)."""
    delta = (moment - (now or timezone.now())).total_seconds()
    if abs(delta) < 60:
        return "just now"
    return f"in {_amount(delta)}" if delta > 0 else f"{_amount(-delta)} ago"


def time_html(moment: datetime, style: str = "short", *, live=False, zone=None) -> str:
    """A `<time>` for the moment: labelled, with the full time in its tooltip;
    `live` marks it for console.js to add how long ago it was."""
    zone = zone or timezone.get_current_timezone()
    attrs = ' data-relative=""' if live else ""
    return (
        f'<time datetime="{escape(moment.isoformat())}" title="{escape(full(moment, zone))}"'
        f"{attrs}>{escape(shown(moment, style, zone))}</time>"
    )
