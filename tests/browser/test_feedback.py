"""What the runs page tells the person as they act (issue 15, point 6): how
many runs are ticked, one "Select all" control, a Retry on its way, the
list after "Sync now", each retry's result and how it ended."""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

from .conftest import TIMEOUT_MS, mark_page, page_marker, sign_in
from .test_compact_rows import row
from .test_runs_page import RUNS, card, new_run_id_from

pytestmark = pytest.mark.browser


def test_the_bulk_bar_counts_the_ticked_runs_and_waits_for_one(page, live_world, console_watch):
    runs = [live_world.add_run(status="failed") for _ in range(3)]
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)

    preview = page.get_by_role("button", name="Preview the selected runs")
    count = page.locator(".ticked-count")
    expect(count).to_have_text("0 runs ticked")
    expect(preview).to_be_disabled()
    expect(page.get_by_role("button", name="Cancel the selected runs…")).to_be_disabled()

    row(page, runs[0]).get_by_role("checkbox").check()
    expect(count).to_have_text("1 run ticked")
    expect(preview).to_be_enabled()

    # One control selects the page: a box, no second button beside it.
    select_all = page.get_by_label("Select all 3 on this page")
    expect(page.get_by_role("button", name=re.compile("on this page"))).to_have_count(0)
    select_all.check()
    expect(count).to_have_text("3 runs ticked")
    select_all.uncheck()
    expect(count).to_have_text("0 runs ticked")
    expect(preview).to_be_disabled()

    row(page, runs[1]).get_by_role("checkbox").check()
    row(page, runs[2]).get_by_role("checkbox").check()
    expect(count).to_have_text("2 runs ticked")
    preview.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry — preview")
    expect(page.locator(".bulk-to-send")).to_have_text("2")
    console_watch.assert_clean()


def test_without_javascript_select_all_is_one_button_that_previews_the_page(
    browser, live_server, live_world
):
    for _ in range(3):
        live_world.add_run(status="failed")
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(RUNS)
        page.get_by_label("Username").fill(live_world.operator.get_username())
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(re.escape(RUNS) + "$"))
        expect(page.get_by_role("checkbox", name=re.compile("Select all"))).to_have_count(0)
        expect(page.get_by_text("0 runs ticked")).to_be_hidden()
        # Nothing ticked: the server says so, as before.
        page.get_by_role("button", name="Preview the selected runs").click()
        expect(page.get_by_text("No runs were selected", exact=False)).to_be_visible()
        page.goto(RUNS)
        page.get_by_role("button", name="Select all 3 on this page").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry — preview")
        expect(page.locator(".bulk-to-send")).to_have_text("3")
    finally:
        context.close()


@pytest.mark.usefixtures("cards_layout")  # what a card shows
def test_retry_shows_a_spinner_while_it_is_on_its_way(page, live_world, console_watch):
    sim = live_world.simulator
    sim.state.configure(failure_rate=0)
    failed = live_world.add_run(status="failed")
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    sim.state.configure(latency_ms=1500)

    original = card(page, failed)
    button = original.get_by_role("button", name="Retry")
    button.click()
    expect(button).to_have_attribute("aria-busy", "true")
    expect(button).to_be_disabled()
    new_id = new_run_id_from(original)
    expect(card(page, new_id)).to_be_visible()
    sim.state.configure(latency_ms=0)
    console_watch.assert_clean()


def test_sync_now_draws_the_list_and_its_counts_again_when_done(
    page, live_world, console_watch, settings
):
    from console.sync.tasks import sync_connection

    settings.RUNS_PAGE_POLL_SECONDS = 600  # no poll brings the new run meanwhile
    live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    marker = mark_page(page)
    expect(page.locator("article.run-card")).to_have_count(1)
    expect(page.locator("#count-failed")).to_have_text("1")
    # A run Skyvern has that the cache doesn't yet.
    new = live_world.add_run(status="failed", workflow_title="Upload proof", cache=False)

    page.get_by_role("button", name="Sync now").click()
    expect(page.get_by_text("Sync queued")).to_be_visible()
    sync_connection.call(live_world.connection_a.pk)  # as the worker would

    expect(row(page, new)).to_be_visible()
    expect(page.locator("article.run-card")).to_have_count(2)
    expect(page.locator("#result-count")).to_contain_text("2 runs match")
    expect(page.locator("#count-failed")).to_have_text("2")
    assert page_marker(page) == marker
    console_watch.assert_clean()


@pytest.mark.usefixtures("cards_layout")  # what a card shows
def test_the_original_card_says_how_its_retry_ended_and_retry_again_answers_alike(
    page, live_world, console_watch
):
    sim = live_world.simulator
    # The retry's new run fails a moment after it starts.
    sim.state.configure(failure_rate=1.0, queued_after=0.3, running_after=0.6, finished_after=1.5)
    failed = live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    marker = mark_page(page)
    original = card(page, failed)

    original.get_by_role("button", name="Retry").click()
    first = new_run_id_from(original)
    expect(card(page, first)).to_be_visible()
    # The new card follows its run to its end; the original then says how it ended.
    expect(card(page, first).locator(".badge")).to_have_text("Failed", timeout=15_000)
    expect(original.locator(".retried")).to_contain_text(f"Retried → {first} (now failed)")

    # "Retry again" answers as the first Retry did: the new run's card, right
    # after the original, and the original naming it.
    sim.state.configure(failure_rate=0.0, finished_after=600)
    original.get_by_label("Yes, retry it again").check()
    original.get_by_role("button", name="Retry again").click()
    expect(original.locator(".retried")).not_to_contain_text(first)
    second = new_run_id_from(original)
    assert second not in (first, failed)
    expect(card(page, second)).to_be_visible()
    following = page.locator(f'article.run-card[data-run-id="{failed}"] + article.run-card')
    expect(following).to_have_attribute("data-run-id", second)
    expect(original.locator(".retried")).to_contain_text(
        re.compile(r"\(now (created|queued|running)\)")
    )
    expect(original.locator(".retried")).to_contain_text("(2 retries)")
    assert page_marker(page) == marker
    assert sim.state.retry_count(failed) == 2
    console_watch.assert_clean()


def test_a_search_for_a_run_not_cached_yet_offers_sync_now_which_finds_it(
    page, live_world, console_watch, settings
):
    from console.sync.tasks import sync_connection

    settings.RUNS_PAGE_POLL_SECONDS = 600
    live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    missing = live_world.add_run(status="failed", workflow_title="Upload proof", cache=False)
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)

    page.get_by_label("Search runs").fill(missing)
    page.get_by_label("Search runs").press("Enter")
    told = page.locator(".unknown-run")
    expect(told).to_contain_text(f"No cached run {missing} in Acme Logistics: Sync now")
    told.get_by_role("button", name="Sync now").click()
    expect(page.get_by_text("Sync queued")).to_be_visible()
    sync_connection.call(live_world.connection_a.pk)

    expect(row(page, missing)).to_be_visible()
    expect(told).to_have_count(0)
    console_watch.assert_clean()


def test_a_searched_list_opened_from_a_link_shows_its_counts_as_it_loads(
    page, live_world, console_watch, settings
):
    """Under a search the counts are counted, not stored: the page comes
    without them and the script asks for them as it loads (runs/views.py),
    not at the next poll."""
    settings.RUNS_PAGE_POLL_SECONDS = 600  # only the request made on load can bring them
    live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    live_world.add_run(status="failed", workflow_title="Upload proof of delivery")
    live_world.add_run(status="completed", workflow_title="Upload proof of delivery")
    sign_in(page, live_world.operator, PASSWORD, then=RUNS + "?q=Upload")

    expect(page.locator("#result-count")).to_contain_text("2 runs match")
    expect(page.locator("#count-failed")).to_have_text("1")
    expect(page.locator("#count-completed")).to_have_text("1")
    expect(page.locator("#count-running")).to_have_text("0")
    console_watch.assert_clean()
