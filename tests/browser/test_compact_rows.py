"""The runs page's compact rows in a real Chromium (issue 15): the default
layout, a row's card unfolding under it, retrying from a row, and the
Cards / Compact choice remembered, with and without JavaScript."""

import re
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

from .conftest import TIMEOUT_MS, mark_page, page_marker, sign_in

pytestmark = pytest.mark.browser

RUNS = "/t/acme/runs/"
SCREENSHOT = Path(tempfile.gettempdir()) / "console-compact-rows.png"  # looked at by people


def row(page, run_id):
    """The run's line in the list (the element standing for it: data-run-id)."""
    return page.locator(f'tr.row-line[data-run-id="{run_id}"]')


def row_group(page, run_id):
    """The run's line and its card's row."""
    return page.locator("tbody.run-row").filter(has=row(page, run_id))


def card_toggle(page, run_id):
    return page.get_by_text(f"Card of {run_id}")


def test_compact_rows_by_default_expand_retry_and_switch_to_cards(page, live_world, console_watch):
    sim = live_world.simulator
    sim.state.configure(queued_after=0.5, running_after=1, finished_after=30, failure_rate=0)
    long_reason = "Login failed: the carrier portal said <b>invalid credentials</b> " + "x" * 200
    failed = live_world.add_run(
        status="failed", workflow_title="Download carrier invoices", failure_reason=long_reason
    )
    completed = live_world.add_run(status="completed", workflow_title="Sync price list")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    marker = mark_page(page)
    table = page.get_by_role("table")
    expect(table).to_be_visible()
    expect(page.locator("article.run-card:visible")).to_have_count(0)
    expect(page.get_by_role("button", name="Compact")).to_have_attribute("aria-pressed", "true")
    line = row(page, failed)
    expect(line.get_by_role("link", name=failed)).to_be_visible()
    expect(line).to_contain_text("Download carrier invoices")
    expect(line.get_by_role("checkbox", name=f"Select {failed} for bulk retry")).to_be_visible()
    # One line a run: a row is much less tall than a card.
    assert line.bounding_box()["height"] < 50
    page.screenshot(path=SCREENSHOT.with_suffix(".folded.png"), full_page=True)
    # The reason is cut to fit; all of it on hover, and unfolded.
    reason = line.locator(".row-reason summary")
    expect(reason).to_have_attribute("title", long_reason)
    assert reason.evaluate("(e) => e.scrollWidth > e.clientWidth")
    reason.click()
    expect(line.get_by_text(long_reason)).to_be_visible()
    reason.click()

    # The row's card unfolds under it.
    group = row_group(page, failed)
    card_toggle(page, failed).click()
    unfolded = group.locator("article.run-card")
    expect(unfolded).to_be_visible()
    expect(unfolded.get_by_role("link", name="Open in Skyvern")).to_be_visible()
    page.screenshot(path=SCREENSHOT, full_page=True)
    card_toggle(page, failed).click()
    expect(unfolded).to_be_hidden()

    # A completed run isn't retried in one click: its card asks first.
    row(page, completed).get_by_role("button", name="Retry").click()
    asking = row_group(page, completed).locator("article.run-card")
    expect(asking).to_contain_text("This run succeeded; retrying runs it again.")
    expect(asking.get_by_role("button", name="Yes, run it again")).to_be_visible()
    asking.get_by_role("button", name="Don't retry").click()
    expect(row_group(page, completed).locator("article.run-card")).to_be_hidden()
    assert sim.state.retry_count(completed) == 0

    # Retry from the row: the row says so, offers no second Retry, and the new run's row follows.
    row(page, failed).get_by_role("button", name="Retry").click()
    expect(row(page, failed)).to_contain_text(re.compile(r"Retried → wr_"))
    expect(row(page, failed).get_by_role("button", name="Retry")).to_have_count(0)
    new_id = row(page, failed).locator(".row-retry a").inner_text().strip()
    expect(row(page, new_id)).to_be_visible()
    expect(row(page, new_id)).to_contain_text(f"Retry of {failed}")
    assert sim.state.retry_count(failed) == 1
    assert page_marker(page) == marker

    # Cards, chosen, stay chosen.
    page.get_by_role("button", name="Cards").click()
    card = page.locator(f'article.run-card[data-run-id="{failed}"]')
    expect(card).to_be_visible()
    expect(page.get_by_role("table")).to_have_count(0)
    page.reload()
    expect(card).to_be_visible()
    expect(page.get_by_role("button", name="Cards")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="Compact").click()
    expect(row(page, failed)).to_be_visible()
    console_watch.assert_clean()


def test_a_viewer_sees_rows_without_boxes_or_retry(page, live_world, console_watch):
    failed = live_world.add_run(status="failed", failure_reason="Timed out waiting for login")
    sign_in(page, live_world.viewer, PASSWORD, then=RUNS)
    expect(row(page, failed)).to_contain_text("Timed out waiting for login")
    expect(page.get_by_role("table").get_by_role("checkbox")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Retry"))).to_have_count(0)
    # On a phone the table scrolls (or stacks): it doesn't widen the page.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(row(page, failed)).to_be_visible()
    page.screenshot(path=SCREENSHOT.with_suffix(".phone.png"), full_page=True)
    # (Wider than the screen only by what the cards layout is wider too: the top bar.)
    wide = "() => document.documentElement.scrollWidth"
    as_rows = page.evaluate(wide)
    page.get_by_role("button", name="Cards").click()
    expect(page.locator("article.run-card")).to_have_count(1)
    assert as_rows <= max(390, page.evaluate(wide))
    console_watch.assert_clean()


def test_without_javascript_rows_unfold_retry_and_the_choice_is_remembered(
    browser, live_server, live_world
):
    failed = live_world.add_run(status="failed", workflow_title="Book freight")
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(RUNS)
        page.get_by_label("Username").fill(live_world.operator.get_username())
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(row(page, failed)).to_be_visible()
        card_toggle(page, failed).click()
        expect(row_group(page, failed).get_by_role("link", name="Open in Skyvern")).to_be_visible()
        card_toggle(page, failed).click()

        row(page, failed).get_by_role("button", name="Retry").click()
        expect(page.get_by_text(re.compile(rf"Retried {failed} as wr_"))).to_be_visible()
        expect(row(page, failed)).to_contain_text("Retried → wr_")
        assert live_world.simulator.state.retry_count(failed) == 1

        page.get_by_role("button", name="Cards").click()
        expect(page.locator(f'article.run-card[data-run-id="{failed}"]')).to_be_visible()
        page.goto(RUNS)
        expect(page.locator(f'article.run-card[data-run-id="{failed}"]')).to_be_visible()
    finally:
        context.close()


def test_a_search_on_its_way_when_retry_is_clicked_on_a_row_is_not_drawn_over_it(
    page, live_world, console_watch
):
    sim = live_world.simulator
    sim.state.configure(failure_rate=0)
    failed = live_world.add_run(status="failed", failure_reason="Login failed: invalid credentials")
    live_world.add_run(status="failed", failure_reason="Carrier portal is down")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    searches = []
    page.on("request", lambda r: searches.append(r.url) if "reason=" in r.url else None)
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    # A text filter searches when it loses focus: here, to the row's Retry button.
    page.get_by_text("More filters").click()
    page.get_by_label("Failure reason contains").fill("invalid credentials")
    row(page, failed).get_by_role("button", name="Retry").click()

    expect(row(page, failed)).to_contain_text(re.compile(r"Retried → wr_"))
    new_id = row(page, failed).locator(".row-retry a").inner_text().strip()
    expect(row(page, new_id)).to_be_visible()
    page.wait_for_timeout(1_500)
    assert searches, "the search did go out"
    expect(row(page, failed)).to_contain_text(f"Retried → {new_id}")
    expect(row(page, new_id)).to_be_visible()
    assert len([url for url in posts if "/retry/" in url]) == 1, posts
    assert sim.state.retry_count(failed) == 1
    console_watch.assert_clean()


def test_a_row_says_how_its_retry_ended(page, live_world, console_watch):
    """The new run's row follows it to its end; the original row then says so."""
    sim = live_world.simulator
    sim.state.configure(failure_rate=1.0, queued_after=0.3, running_after=0.6, finished_after=1.5)
    failed = live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    marker = mark_page(page)

    row(page, failed).get_by_role("button", name="Retry").click()
    expect(row(page, failed)).to_contain_text(re.compile(r"Retried → wr_"))
    new_id = row(page, failed).locator(".row-retry a").inner_text().strip()
    expect(row(page, new_id)).to_contain_text("Failed", timeout=15_000)
    expect(row(page, failed).locator(".row-retry")).to_contain_text(
        re.compile(r"fail", re.IGNORECASE), timeout=15_000
    )
    assert page_marker(page) == marker
    assert sim.state.retry_count(failed) == 1
    console_watch.assert_clean()
