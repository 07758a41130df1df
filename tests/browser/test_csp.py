"""The Content-Security-Policy in a real Chromium: every page a person uses
works under it, and the browser reports no CSP violation and no console error.

The `page` fixture's recorder (tests/browser/conftest.py) collects
`securitypolicyviolation` events, console errors and failed responses; the
last test shows that it does catch a violation, so a clean run means clean.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

from .conftest import sign_in

pytestmark = pytest.mark.browser

RUNS = "/t/acme/runs/"
CONNECTIONS = "/t/acme/connections/"


class HtmlResponses:
    """Every HTML (page or fragment) response from the console, with its CSP."""

    def __init__(self, page, origin):
        self.seen: list[tuple[str, str | None]] = []
        self.origin = origin
        page.on("response", self._note)

    def _note(self, response):
        if not response.url.startswith(self.origin):
            return
        if "text/html" not in (response.headers.get("content-type") or ""):
            return
        self.seen.append((response.url, response.headers.get("content-security-policy")))

    def assert_all_carry_the_policy(self, *, at_least: int):
        assert len(self.seen) >= at_least, self.seen
        for url, policy in self.seen:
            assert policy, f"no Content-Security-Policy on {url}"
            assert "script-src 'self'" in policy and "style-src 'self'" in policy, url
            assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, url


def all_images_loaded(page, selector: str) -> int:
    images = page.locator(selector)
    count = images.count()
    for index in range(count):
        image = images.nth(index)
        image.scroll_into_view_if_needed()
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") > 0, image.get_attribute("src")
    return count


def test_login_and_runs_page_with_a_retry_under_the_csp(
    page, live_world, console_watch, live_server
):
    html = HtmlResponses(page, live_server.url)
    live_world.simulator.state.configure(failure_rate=0)
    failed = live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    live_world.add_run(status="completed", workflow_title="Sync price list")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    # Compact rows (the default): a row's card unfolds, its Retry answers with rows.
    original = page.locator(f'tr.row-line[data-run-id="{failed}"]')
    page.get_by_text(f"Card of {failed}").click()
    expect(page.get_by_role("link", name="Open in Skyvern").first).to_be_visible()
    page.get_by_text(f"Card of {failed}").click()
    original.get_by_role("button", name="Retry").click()
    expect(original.locator(".row-retry")).to_contain_text(re.compile(r"Retried → wr_"))
    expect(page.locator("tr.row-line")).to_have_count(3)
    # And as cards, chosen with the switch.
    page.get_by_role("button", name="Cards").click()
    expect(page.locator("article.run-card")).to_have_count(3)

    html.assert_all_carry_the_policy(at_least=4)  # login, runs page, the retry fragment, cards
    console_watch.assert_clean()


def test_run_detail_with_screenshots_and_recording_under_the_csp(
    page, live_world, console_watch, live_server
):
    """Screenshots and the recording come from Skyvern's host (here the
    simulator, plain http on loopback, which the demo's policy allows)."""
    html = HtmlResponses(page, live_server.url)
    run_id = live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    detail = f"/t/acme/runs/{run_id}/"

    sign_in(page, live_world.viewer, PASSWORD, then=detail)
    # The details section fetches itself fresh from Skyvern (htmx, on load).
    expect(page.locator(".detail-screenshots")).to_be_visible()
    page.wait_for_load_state("networkidle")
    shown = all_images_loaded(page, ".detail-screenshots img, img.recording-player")
    assert shown >= 1, "the simulator's run has screenshots or a recording"

    html.assert_all_carry_the_policy(at_least=2)
    console_watch.assert_clean()


def test_connections_page_and_test_connection_under_the_csp(
    page, live_world, console_watch, live_server
):
    html = HtmlResponses(page, live_server.url)

    sign_in(page, live_world.admin, PASSWORD, then=CONNECTIONS)
    page.get_by_role("button", name="Test connection").first.click()
    expect(page.get_by_text("OK — Skyvern accepted the key.")).to_be_visible()
    page.get_by_role("button", name="Add a connection").click()
    expect(page.get_by_label("Base URL")).to_be_visible()

    html.assert_all_carry_the_policy(at_least=3)
    console_watch.assert_clean()


def test_the_recorder_catches_a_violation(page, live_world, console_watch, live_server):
    """The control: markup with an inline style and an inline script, put on a
    page by the page's own code, is refused by the browser and recorded."""
    page.goto("/login/")
    page.evaluate(
        """() => {
          const box = document.createElement("div");
          box.innerHTML = '<p style="color: red">styled</p>';
          document.body.append(box);
          const script = document.createElement("script");
          script.textContent = "window.__inlineRan = true";
          document.body.append(script);
        }"""
    )
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__inlineRan") is None, "the inline script ran"
    assert any("CSP violation" in problem for problem in console_watch.problems), (
        console_watch.problems
    )
    console_watch.problems.clear()
