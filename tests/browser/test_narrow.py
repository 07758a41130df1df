"""Phones and narrow windows: every page of the accessibility pass (its PAGES,
as the same roles), at a phone's width, fits the window — nothing scrolls
sideways — and Sign out can be reached, straight away or from the Menu.

Screenshots go to $TMPDIR/console-narrow, for people to look at.
"""

import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.test import Client
from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT_MS

# The same pages, roles and data as the accessibility pass; autouse: a
# throttle that doesn't slow the test, the job's retries followed at once.
from tests.browser.test_accessibility import (  # noqa: F401
    CODE_NOT_GIVEN,
    PAGES,
    bulk_settings,
    end_new_runs,
    follow_at_once,
    signed_in_context,
    site,
)

pytestmark = pytest.mark.browser

SHOTS = Path(tempfile.gettempdir()) / "console-narrow"
# A common phone, and the narrowest still in wide use.
SIZES = {"390": {"width": 390, "height": 844}, "360": {"width": 360, "height": 740}}

# What sticks out past the window's right edge, for the failure message.
WIDEST = """() => {
  const limit = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (box.width && box.right > limit + 0.5) {
      const name = el.tagName.toLowerCase() + (el.className && typeof el.className === "string"
        ? "." + el.className.trim().split(/\\s+/).join(".") : "");
      out.push(`${name} right=${Math.round(box.right)}`);
    }
  }
  return out.slice(0, 8);
}"""


def sideways_overflow(page) -> str | None:
    """How far the page scrolls sideways, with what sticks out; None when it fits."""
    width, inner = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    if width <= inner:
        return None
    return f"page is {width}px wide in a {inner}px window: " + ", ".join(page.evaluate(WIDEST))


def sign_out_reachable(page) -> bool:
    """Sign out is on screen, or shows once the Menu is opened."""
    sign_out = page.get_by_role("button", name="Sign out", exact=True)
    if page.locator("dialog[open]").count():
        # The shortcuts' list left open: Esc closes it, as a person would.
        page.keyboard.press("Escape")
        expect(page.locator("dialog[open]")).to_have_count(0)
    if page.locator("details.dropdown[open]").count():
        # A switcher left open: a tap beside it closes it (Pico's overlay).
        page.mouse.click(2, page.viewport_size["height"] - 2)
        expect(page.locator("details.dropdown[open]")).to_have_count(0)
    if not sign_out.is_visible():
        page.get_by_text("Menu", exact=True).click()
    expect(sign_out).to_be_visible()
    expect(sign_out).to_be_in_viewport()
    return True


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("role", PAGES, ids=lambda role: role or "anonymous")
def test_every_page_fits_a_phone_and_sign_out_is_reachable(
    browser,
    live_server,
    live_world,
    site,  # noqa: F811 (the fixture, imported above)
    role,
    size,
):
    user = getattr(live_world, role) if role else None
    context = signed_in_context(
        browser,
        live_server,
        user,
        theme="auto",
        system="light",
        code_given=role not in CODE_NOT_GIVEN,
    )
    page = context.new_page()
    page.set_viewport_size(SIZES[size])
    page.emulate_media(reduced_motion="reduce")  # screenshots without fades half done
    SHOTS.mkdir(exist_ok=True)
    failures = []
    try:
        # The page's own sideways scrolling must not be switched off to hide a
        # page that is too wide: that would cut content off instead.
        for visit in PAGES[role]:
            url = visit.url.format(**site)
            page.goto(url)
            assert urlsplit(page.url).path == urlsplit(url).path, (visit.name, page.url)
            if visit.then:
                visit.then(page)
            page.wait_for_load_state("networkidle")
            slug = re.sub(r"[^a-z0-9]+", "-", visit.name.lower()).strip("-")
            shot = SHOTS / f"{role or 'anonymous'}-{size}-{slug}"
            page.screenshot(path=f"{shot}.png")
            page.screenshot(path=f"{shot}-whole.png", full_page=True)
            clipped = page.evaluate(
                "() => [document.documentElement, document.body]"
                ".map(el => getComputedStyle(el).overflowX)"
                ".filter(v => v === 'hidden' || v === 'clip')"
            )
            assert not clipped, f"{visit.name}: the page hides its sideways overflow"
            wide = sideways_overflow(page)
            if wide:
                failures.append(f"{visit.name} ({url}): {wide}")
            if user is not None:
                assert sign_out_reachable(page)
                page.screenshot(path=f"{shot}-sign-out.png")
                wide = sideways_overflow(page)
                if wide:
                    failures.append(f"{visit.name} ({url}), menu open: {wide}")
    finally:
        context.close()
    assert not failures, f"At {size}px, as {role or 'anonymous'}:\n" + "\n".join(failures)


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_the_menu_opens_from_the_keyboard_with_or_without_javascript(
    browser, live_server, live_world, javascript
):
    """On a phone the header's links wait in the Menu; on a wide window they
    are in the bar and there is no Menu."""
    context = browser.new_context(
        base_url=live_server.url, viewport=SIZES["360"], java_script_enabled=javascript
    )
    context.set_default_timeout(TIMEOUT_MS)
    client = Client()
    client.force_login(live_world.admin)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    try:
        page = context.new_page()
        page.goto("/t/acme/runs/")
        runs = page.get_by_role("link", name="Runs", exact=True)
        audit = page.get_by_role("link", name="Audit log")
        sign_out = page.get_by_role("button", name="Sign out")
        for hidden in (runs, audit, sign_out):
            expect(hidden).to_be_hidden()
        page.get_by_text("Menu", exact=True).focus()
        page.keyboard.press("Enter")
        for shown in (runs, audit, sign_out):
            expect(shown).to_be_visible()
            expect(shown).to_be_in_viewport()
        page.keyboard.press("Tab")
        expect(runs).to_be_focused()
        page.keyboard.press("Enter")
        expect(page).to_have_url(f"{live_server.url}/t/acme/runs/")

        page.set_viewport_size({"width": 1280, "height": 900})
        expect(page.get_by_text("Menu", exact=True)).to_be_hidden()
        for shown in (runs, audit, sign_out):
            expect(shown).to_be_visible()
    finally:
        context.close()
