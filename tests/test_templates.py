"""Developer notes in templates never reach the page.

Django's `{# #}` comment ends at the line's end: one spread over two lines is
drawn as text on the page, in front of support staff. Notes that need more
than a line go in `{% comment %}`.
"""

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@pytest.mark.parametrize(
    "template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES))
)
def test_no_note_spreads_over_lines(template):
    text = template.read_text()
    spread = [
        text.count("\n", 0, match.start()) + 1
        for match in re.finditer(r"\{#(.*?)#\}", text, re.S)
        if "\n" in match.group(1)
    ]
    assert not spread, f"{{# #}} over several lines at line(s) {spread}: use {{% comment %}}"
