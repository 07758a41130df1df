"""On a run's detail page, the answer to what the person did on a card (Retry,
Check, "This is the retry") reaches them and stays, however long Skyvern takes:
the page's details (the retries table...) catch up only once the answer is
drawn, and never draw over a card that carries the answer's message."""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

from .conftest import mark_page, page_marker, sign_in
from .test_runs_page import card, new_run_id_from

pytestmark = pytest.mark.browser

# Longer than the details used to wait after a click on Retry (1 s).
SLOW_MS = 2_000
# Once Skyvern has answered, the answer is drawn at once: well within this.
DRAWN_MS = 1_000


def detail_page(run_id: str) -> str:
    return f"/t/acme/runs/{run_id}/"


def retries_table(page):
    return page.get_by_role("table").filter(has_text="Started by")


def is_post_to(path: str):
    return lambda response: response.request.method == "POST" and path in response.url


def retry_and_wait_for_skyvern(page, run_card, *, timeout=10_000):
    """Click the card's Retry and return once the console has answered."""
    with page.expect_response(is_post_to("/retry/"), timeout=timeout) as answer:
        run_card.get_by_role("button", name="Retry").click()
    assert answer.value.status == 200


def open_detail_page(page, live_world, run_id, *, wait_for_skyvern=True):
    sign_in(page, live_world.operator, PASSWORD, then=detail_page(run_id))
    if wait_for_skyvern:
        expect(page.get_by_role("status")).to_contain_text("Up to date with Skyvern")
    return mark_page(page)


def test_a_slow_retry_shows_the_new_run_and_it_stays(page, live_world, console_watch):
    sim = live_world.simulator
    sim.state.configure(latency_ms=SLOW_MS, fault_endpoints=["retry"], failure_rate=0)
    failed = live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    marker = open_detail_page(page, live_world, failed)
    original = card(page, failed)

    retry_and_wait_for_skyvern(page, original)

    retried = original.locator(".retried")
    expect(retried).to_contain_text(re.compile(r"Retried → wr_"), timeout=DRAWN_MS)
    new_id = new_run_id_from(original)
    new = card(page, new_id)
    expect(new).to_be_visible(timeout=DRAWN_MS)
    # The details catch up: the retries table lists the retry and its run.
    expect(retries_table(page).get_by_role("row").filter(has_text=new_id)).to_contain_text(
        "Retried"
    )
    # ...and nothing draws over the answer afterwards.
    page.wait_for_timeout(3_000)
    expect(retried).to_contain_text(f"Retried → {new_id}")
    expect(new).to_be_visible()
    expect(page.locator("article.run-card")).to_have_count(2)
    assert sim.state.retry_count(failed) == 1
    assert page_marker(page) == marker
    console_watch.assert_clean()


def test_skyvern_busy_after_a_wait_the_message_stays_and_nothing_is_lost(
    page, live_world, console_watch
):
    sim = live_world.simulator
    sim.state.configure(
        latency_ms=SLOW_MS, fault_endpoints=["retry"], busy=True, busy_retry_after=3
    )
    failed = live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    marker = open_detail_page(page, live_world, failed)
    original = card(page, failed)

    retry_and_wait_for_skyvern(page, original)

    message = original.get_by_role("alert")
    expect(message).to_contain_text("created no run — try again in 3 s", timeout=DRAWN_MS)
    # The details catch up (the attempt is listed, not retried)...
    row = retries_table(page).get_by_role("row").filter(has_text="Not retried")
    expect(row).to_contain_text("created no run")
    # ...and the message is still there, seconds later.
    page.wait_for_timeout(3_000)
    expect(message).to_contain_text("created no run")
    expect(original.locator(".retried")).to_have_count(0)
    assert sim.state.retry_count(failed) == 0

    # Nothing lost: Retry is there as before, and works once Skyvern is free.
    sim.state.configure(busy=False)
    original.get_by_role("button", name="Retry", exact=True).click()
    new_id = new_run_id_from(original)
    expect(card(page, new_id)).to_be_visible()
    expect(retries_table(page).get_by_role("row").filter(has_text=new_id)).to_contain_text(
        "Retried"
    )
    expect(original.get_by_role("alert")).to_have_count(0)
    assert sim.state.retry_count(failed) == 1
    assert page_marker(page) == marker
    console_watch.assert_clean()


def test_an_unknown_retry_is_checked_then_linked_on_the_detail_page(
    page, live_world, console_watch, settings
):
    sim = live_world.simulator
    # Skyvern takes longer than the console waits: the retry is made, its answer lost.
    settings.SKYVERN_READ_TIMEOUT = 0.5
    sim.state.configure(latency_ms=1_500, fault_endpoints=["retry"], failure_rate=0)
    failed = live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    marker = open_detail_page(page, live_world, failed)
    original = card(page, failed)

    original.get_by_role("button", name="Retry").click()

    expect(original.locator(".retried")).to_contain_text("Retry outcome unknown")
    warning = original.get_by_role("alert")
    expect(warning).to_contain_text("may or may not have created")
    row = retries_table(page).get_by_role("row").filter(has_text="Outcome unknown")
    expect(row).to_contain_text("check Skyvern before retrying again")
    page.wait_for_timeout(2_000)
    expect(warning).to_contain_text("may or may not have created")  # still there

    # Skyvern has made the run by now (1.5 s after the retry came in).
    assert sim.state.retry_count(failed) == 1

    original.get_by_role("button", name="Check").click()

    candidate = original.locator(".retry-candidate")
    expect(candidate).to_have_count(1)
    expect(candidate).to_contain_text("same parameters as the original")
    new_id = candidate.get_attribute("data-run-id")
    assert new_id and new_id != failed
    # The details hear of the check: the table names the run Skyvern has.
    expect(row).to_contain_text(f"Skyvern has runs that may be this retry ({new_id})")
    expect(candidate).to_have_count(1)

    candidate.get_by_role("button", name="This is the retry").click()

    expect(original.locator(".retried")).to_contain_text(f"Retried → {new_id}")
    # The linked run's card joins the run's, and the table lists it.
    expect(card(page, new_id)).to_be_visible()
    linked = retries_table(page).get_by_role("row").filter(has_text=new_id)
    expect(linked).to_contain_text("Retried")
    expect(original.get_by_role("button", name="Check")).to_have_count(0)
    assert sim.state.retry_count(failed) == 1
    assert page_marker(page) == marker
    console_watch.assert_clean()


def test_a_refresh_on_its_way_when_retry_is_clicked_is_not_drawn_over_it(
    page, live_world, console_watch
):
    sim = live_world.simulator
    # Both the page's own look at Skyvern and the retry take a while.
    sim.state.configure(latency_ms=SLOW_MS, fault_endpoints=["retry", "get_run"], failure_rate=0)
    failed = live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    marker = open_detail_page(page, live_world, failed, wait_for_skyvern=False)
    original = card(page, failed)
    # Said while htmx asks Skyvern (only then: console.css).
    expect(page.get_by_text("checking Skyvern for news")).to_be_visible()

    # Retry while the page is still asking Skyvern about the run.
    retry_and_wait_for_skyvern(page, original, timeout=15_000)

    retried = original.locator(".retried")
    expect(retried).to_contain_text(re.compile(r"Retried → wr_"), timeout=DRAWN_MS)
    new_id = new_run_id_from(original)
    expect(card(page, new_id)).to_be_visible(timeout=DRAWN_MS)
    expect(retries_table(page).get_by_role("row").filter(has_text=new_id)).to_contain_text(
        "Retried"
    )
    page.wait_for_timeout(1_000)
    expect(retried).to_contain_text(f"Retried → {new_id}")
    expect(card(page, new_id)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Up to date with Skyvern")
    assert sim.state.retry_count(failed) == 1
    assert page_marker(page) == marker
    console_watch.assert_clean()
