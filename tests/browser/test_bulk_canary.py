"""A halted canary in a real Chromium: an operator bulk-retries 25 failed runs
while the customer's portal still rejects every login. The job sends its
canary of 5, sees them fail again, and pauses itself; the job page says so
and why, by itself. The operator then resumes it once the portal is fixed,
or cancels it."""

import re
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from console.bulk.models import BulkRetryJob, ItemState
from tests.browser.conftest import sign_in
from tests.browser.test_bulk_retry import Worker
from tests.bulk.conftest import bulk_settings  # noqa: F401 (autouse: a throttle that doesn't slow the test)
from tests.conftest import PASSWORD

# About cards on the runs page: shown as cards (compact rows are the default).
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("cards_layout")]

RUNS = "/t/acme/runs/?status=failed"
HALTED_SHOT = Path(tempfile.gettempdir()) / "console-bulk-canary-halted.png"  # looked at by people


def start_a_halting_job(page, live_world, monkeypatch):
    """25 failed runs retried in bulk while every retry fails again at Skyvern;
    returns when the job page says it paused itself."""
    monkeypatch.setattr("console.runs.services.REFRESH_AT_MOST_EVERY", timedelta(0))
    # The portal is still broken: every new run fails, a moment after it starts.
    live_world.simulator.state.configure(
        failure_rate=1.0, queued_after=0.1, running_after=0.2, finished_after=0.4
    )
    for _ in range(25):
        live_world.add_run(status="failed", workflow_title="Download carrier invoices")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    expect(page.locator("article.run-card")).to_have_count(25)
    page.get_by_label("Select all 25 on this page").check()
    page.get_by_role("button", name="Preview the selected runs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry — preview")
    expect(page.get_by_label(re.compile("^Canary first for jobs of more than"))).to_have_value("20")
    expect(page.get_by_label(re.compile("^Go on only while at least"))).to_have_value("60")
    page.get_by_role("textbox", name=re.compile(r"^Reason")).fill("Carrier portal outage")
    page.get_by_role("button", name="Retry 25 runs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Bulk retry #\d+"))
    halted = page.get_by_role("alert").filter(has_text="Paused by itself")
    expect(halted).to_contain_text("5 of 5 canary retries failed again: ", timeout=20_000)
    expect(page.locator(".job-badge")).to_have_text("Paused")
    return BulkRetryJob.objects.get()


def test_a_halted_canary_is_resumed_once_the_portal_is_fixed(
    page, live_world, console_watch, monkeypatch
):
    with Worker():
        job = start_a_halting_job(page, live_world, monkeypatch)
        page.screenshot(path=str(HALTED_SHOT), full_page=True)
        assert len(live_world.simulator.state.retry_counts()) == 5
        assert job.items.filter(state=ItemState.PENDING).count() == 20

        live_world.simulator.state.configure(failure_rate=0)  # the portal is fixed
        page.get_by_role("button", name="Resume").click()

        expect(page.get_by_role("status").filter(has_text="Resumed.")).to_be_visible()
        expect(page.locator(".job-badge")).to_have_text("Finished", timeout=20_000)
        expect(page.locator(".job-outcome")).to_contain_text(
            "20 succeeded, 5 failed again (25 sent)", timeout=20_000
        )
    expect(page.get_by_text("Paused by itself")).to_have_count(0)
    assert set(live_world.simulator.state.retry_counts().values()) == {1}
    assert len(live_world.simulator.state.retry_counts()) == 25
    console_watch.assert_clean()


def test_a_halted_canary_is_canceled_after_changing_the_threshold(
    page, live_world, console_watch, monkeypatch
):
    with Worker():
        start_a_halting_job(page, live_world, monkeypatch)

        threshold = page.get_by_label("Success threshold (%)")
        threshold.fill("40")
        page.get_by_role("button", name="Change threshold").click()
        expect(page.get_by_role("status").filter(has_text="Threshold set to 40 %")).to_be_visible()
        expect(page.locator(".job-badge")).to_have_text("Paused")

        # "Cancel job…" asks on a page of its own first.
        page.get_by_role("button", name="Cancel job…").click()
        page.get_by_role("button", name="Yes, cancel this job").click()

        expect(page.locator(".job-badge")).to_have_text("Canceled")
        expect(page.locator("#count-item-skipped")).to_contain_text("20")
    assert len(live_world.simulator.state.retry_counts()) == 5
    console_watch.assert_clean()
