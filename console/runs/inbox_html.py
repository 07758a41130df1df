"""The failure inbox's per-hour histogram, drawn in Python: a hundred groups
of 24 bars each through the template language were most of the page's
time (docs/performance.md, the failure inbox). Only numbers and a time go
into it, no text from Skyvern."""

from django.utils.safestring import SafeString, mark_safe

from console import timefmt

from .inbox import BAR_WIDTH, HISTOGRAM_HEIGHT, HISTOGRAM_HOURS, FailureGroup

WIDTH = HISTOGRAM_HOURS * BAR_WIDTH


def histogram_svg(group: FailureGroup, hours_from) -> SafeString:
    """An SVG of the group's failures per hour (no inline style: the bars'
    colour comes from console.css), with its total as the accessible name."""
    total = int(group.last_day)
    since = timefmt.shown(hours_from)
    bars = "".join(
        f'<rect x="{int(x)}" y="{int(y)}" width="{BAR_WIDTH - 1}" height="{int(height)}">'
        f"<title>{int(failures)}</title></rect>"
        for x, y, height, failures in group.bars
        if height
    )
    return mark_safe(  # noqa: S308 (numbers and a formatted time only)
        f'<svg class="failure-histogram" viewBox="0 0 {WIDTH} {HISTOGRAM_HEIGHT}" '
        f'width="{WIDTH}" height="{HISTOGRAM_HEIGHT}" role="img" '
        f'aria-label="{total} failed in the last 24 hours, per hour">'
        f"<title>{total} failed in the last 24 hours, per hour from {since}</title>"
        f'<rect class="histogram-base" x="0" y="{HISTOGRAM_HEIGHT - 1}" width="{WIDTH}" '
        f'height="1"></rect>{bars}</svg>'
    )
