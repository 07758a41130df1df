"""The theme switch in a real Chromium: Auto follows the system's dark mode;
Light and Dark apply at once with JavaScript, after a reload without it, and
are remembered."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT_MS, mark_page, page_marker, sign_in
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

RUNS = "/t/acme/runs/"
# Pico's page backgrounds.
LIGHT_BG = "rgb(255, 255, 255)"
DARK_BG = "rgb(19, 23, 31)"


def background(page) -> str:
    return page.evaluate("() => getComputedStyle(document.documentElement).backgroundColor")


def choose(page, label):
    page.locator("details.theme-switch > summary").click()
    page.get_by_role("button", name=label, exact=True).click()


def test_auto_follows_the_system_and_a_choice_applies_at_once_and_is_remembered(
    browser, live_server, live_world, console_watch
):
    context = browser.new_context(base_url=live_server.url, color_scheme="dark")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    console_watch.attach(page)
    try:
        live_world.add_run(status="failed", failure_reason="Login failed")
        sign_in(page, live_world.operator, PASSWORD, then=RUNS)
        assert background(page) == DARK_BG
        expect(page.locator("details.theme-switch > summary")).to_have_text("Theme: Auto")

        marker = mark_page(page)
        choose(page, "Light")
        expect(page.locator("html")).to_have_attribute("data-theme", "light")
        assert background(page) == LIGHT_BG
        expect(page.locator("details.theme-switch > summary")).to_have_text("Theme: Light")
        # The switch closes; opened again, it shows the choice.
        page.locator("details.theme-switch > summary").click()
        expect(page.get_by_role("button", name="Light", exact=True, pressed=True)).to_be_visible()
        expect(page.get_by_role("button", name="Auto", exact=True, pressed=False)).to_be_visible()
        page.locator("details.theme-switch > summary").click()
        assert page_marker(page) == marker  # applied in place, not by a reload

        # Remembered: a new page comes in the chosen theme.
        page.wait_for_load_state("networkidle")
        page.reload()
        expect(page.locator("html")).to_have_attribute("data-theme", "light")
        assert background(page) == LIGHT_BG

        choose(page, "Auto")
        expect(page.locator("html")).not_to_have_attribute("data-theme", "light")
        assert background(page) == DARK_BG
        page.wait_for_load_state("networkidle")
        page.reload()
        assert background(page) == DARK_BG
        console_watch.assert_clean()
    finally:
        context.close()


def test_without_javascript_the_switch_posts_and_comes_back_in_the_new_theme(
    browser, live_server, live_world
):
    context = browser.new_context(
        base_url=live_server.url, color_scheme="light", java_script_enabled=False
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto("/login/")
        assert background(page) == LIGHT_BG
        choose(page, "Dark")
        expect(page).to_have_url(f"{live_server.url}/login/")
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        assert background(page) == DARK_BG
        page.get_by_label("Username").fill(live_world.viewer.get_username())
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    finally:
        context.close()
