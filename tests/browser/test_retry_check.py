"""A retry whose answer was lost, in a real Chromium: the card says the outcome
is unknown, Check shows the run Skyvern did make, and the person links it."""

import re
import time

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

from .conftest import mark_page, page_marker, sign_in

# About cards on the runs page: shown as cards (compact rows are the default).
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("cards_layout")]

RUNS = "/t/acme/runs/"


def card(page, run_id):
    return page.locator(f'article.run-card[data-run-id="{run_id}"]')


def test_a_timed_out_retry_is_checked_then_linked(page, live_world, console_watch, settings):
    sim = live_world.simulator
    # Skyvern takes longer than the console waits: the retry is made, its answer lost.
    settings.SKYVERN_READ_TIMEOUT = 0.5
    sim.state.configure(latency_ms=1500, fault_endpoints=["retry"])
    failed = live_world.add_run(
        status="failed",
        workflow_title="Download carrier invoices",
        failure_reason="Login failed: invalid credentials",
    )

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    marker = mark_page(page)
    original = card(page, failed)

    original.get_by_role("button", name="Retry").click()

    expect(original.locator(".retried")).to_contain_text("Retry outcome unknown")
    expect(original.get_by_role("alert")).to_contain_text("may or may not have created")
    # Skyvern finishes making the run a moment later (the person would wait too).
    deadline = time.monotonic() + 10
    while sim.state.retry_count(failed) == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert sim.state.retry_count(failed) == 1

    original.get_by_role("button", name="Check").click()

    candidate = original.locator(".retry-candidate")
    expect(candidate).to_have_count(1)
    expect(candidate).to_contain_text("after the retry was sent")
    expect(candidate).to_contain_text("same parameters as the original")
    new_id = candidate.get_attribute("data-run-id")
    assert new_id and new_id != failed
    expect(original.locator(".check-note")).to_contain_text(new_id)
    expect(original.locator(".check-note")).not_to_contain_text("probably not created")

    candidate.get_by_role("button", name="This is the retry").click()

    retried = original.locator(".retried")
    expect(retried).to_contain_text(re.compile(r"Retried → " + re.escape(new_id)))
    expect(original.get_by_role("button", name="Check")).to_have_count(0)
    assert page_marker(page) == marker  # all in place, no reload
    assert sim.state.retry_count(failed) == 1  # still one run at Skyvern
    console_watch.assert_clean()
