"""Bulk retry in a real Chromium: an operator selects failed runs on the runs
page, previews, gives a reason, confirms, and watches the job page reach 100%
without a reload (the worker runs in a thread of this test process); then
opens a new run. The job page follows the retries to their end and offers to
retry the ones that failed again. A viewer gets no checkboxes."""

import re
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection as db_connection
from playwright.sync_api import expect

from console.bulk.models import BulkRetryItem, BulkRetryJob, ItemState, JobState
from console.bulk.services import bulk_jobs_follow
from console.bulk.tasks import bulk_retry_work
from tests.browser.conftest import LINES_OF, mark_page, page_marker, sign_in
from tests.bulk.conftest import bulk_settings  # noqa: F401 (autouse: a throttle that doesn't slow the test)
from tests.conftest import PASSWORD

# About cards on the runs page: shown as cards (compact rows are the default).
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("cards_layout")]

RUNS = "/t/acme/runs/"
SHOTS = Path(tempfile.gettempdir())
PREVIEW_SHOT = SHOTS / "console-bulk-preview.png"  # looked at by people
JOB_SHOT = SHOTS / "console-bulk-job.png"
RUNS_SHOT = SHOTS / "console-bulk-runs.png"
RUNNING_SHOT = SHOTS / "console-bulk-job-running.png"
FOLLOW_SHOT = SHOTS / "console-bulk-job-followed.png"


class Worker:
    """The background worker, in a thread of the test process: it works every
    bulk job as soon as it exists, and follows their retries, as
    `manage.py db_worker` would."""

    def __init__(self):
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="bulk-test-worker", daemon=True)

    def _run(self):
        try:
            while not self.stop.is_set():
                active = BulkRetryJob.objects.filter(
                    state__in=[JobState.QUEUED, JobState.RUNNING]
                ).values_list("pk", flat=True)
                for job_id in active:
                    bulk_retry_work.call(job_id)
                bulk_jobs_follow()
                time.sleep(0.1)
        except BaseException as error:  # reported by the test
            self.errors.append(error)
        finally:
            db_connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.errors, self.errors


def test_operator_selects_previews_confirms_and_watches_the_job(
    page, live_world, console_watch, settings
):
    # Slow enough to watch: two retries a second, each taking 200 ms at Skyvern.
    settings.BULK_RETRY_PER_SECOND = 2
    live_world.simulator.state.configure(
        latency_ms=200, failure_rate=0, queued_after=0.2, running_after=0.4, finished_after=1
    )
    failed = [
        live_world.add_run(
            status="failed",
            workflow_title="Download carrier invoices",
            failure_reason="Login failed: portal unavailable",
        )
        for _ in range(4)
    ]
    kept_out = live_world.add_run(
        status="failed",
        workflow_title="Upload proof of delivery",
        failure_reason="Portal timed out",
    )
    live_world.add_run(status="completed", workflow_title="Sync price list")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    marker = mark_page(page)
    page.get_by_label("Failed", exact=False).first.check()
    expect(page.locator("article.run-card")).to_have_count(5)
    assert page_marker(page) == marker  # filtered by htmx, not reloaded

    page.get_by_label("Select all 5 on this page").check()
    boxes = page.locator('input.bulk-pick[name="run"]')
    expect(boxes).to_have_count(5)
    for n in range(5):
        expect(boxes.nth(n)).to_be_checked()
    page.locator(f'article.run-card[data-run-id="{kept_out}"] input.bulk-pick').uncheck()
    page.locator("details.more-filters > summary").click()
    page.screenshot(path=str(RUNS_SHOT), full_page=True)
    page.get_by_role("button", name="Preview the selected runs").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry — preview")
    expect(page.locator(".bulk-to-send")).to_have_text("4")
    expect(page.locator(".by-workflow")).to_contain_text("Download carrier invoices")
    assert kept_out not in page.content()
    assert live_world.simulator.state.retry_counts() == {}
    reason = page.get_by_role("textbox", name=re.compile(r"^Reason"))
    reason.fill("Carrier portal down overnight; fixed at 08:40")
    page.screenshot(path=str(PREVIEW_SHOT), full_page=True)

    with Worker():
        page.get_by_role("button", name="Retry 4 runs").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Bulk retry #\d+"))
        marker = mark_page(page)
        bar = page.get_by_role("progressbar")
        expect(bar).to_have_attribute("aria-valuemax", "4")
        if bar.get_attribute("aria-valuenow") != "4":
            page.screenshot(path=str(RUNNING_SHOT), full_page=True)
        # The bar fills through polling, without a reload, and polling stops.
        expect(bar).to_have_attribute("aria-valuenow", "4", timeout=20_000)
        expect(page.locator(".job-numbers")).to_contain_text("(100%)")
        expect(page.locator(".job-badge")).to_have_text("Finished")
        # Then the page follows the new runs until they end, and stops polling.
        expect(page.locator(".job-outcome")).to_contain_text(
            "4 succeeded, 0 failed again (4 sent)", timeout=20_000
        )
        expect(page.locator("#job-live")).not_to_have_attribute("hx-trigger", re.compile("."))
        assert page_marker(page) == marker
    job = BulkRetryJob.objects.get()
    assert job.state == JobState.FINISHED
    assert set(job.items.values_list("state", flat=True)) == {ItemState.RETRIED}
    assert live_world.simulator.state.retry_counts() == {run_id: 1 for run_id in failed}
    expect(page.locator(".job-reason")).to_contain_text("Carrier portal down overnight")
    page.screenshot(path=str(JOB_SHOT), full_page=True)

    # Open one of the new runs.
    link = page.locator("a.new-run").first
    new_id = link.inner_text().strip()
    link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(new_id)
    console_watch.assert_clean()


def test_a_viewer_sees_no_checkboxes_and_no_buttons(page, live_world, console_watch):
    live_world.add_run(status="failed")
    sign_in(page, live_world.viewer, PASSWORD, then=RUNS)
    expect(page.locator("article.run-card")).to_have_count(1)
    expect(page.locator("input.bulk-pick")).to_have_count(0)
    expect(page.locator("#bulk-select")).to_have_count(0)
    page.get_by_role("link", name="Bulk retry jobs →").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("bulk retries")
    console_watch.assert_clean()


def test_all_on_this_page_previews_and_confirms_into_a_job(page, live_world, console_watch):
    """"Select all N on this page", ticked as a person does: preview,
    reason, confirm, and the job page names every run of that page."""
    live_world.simulator.state.configure(failure_rate=0)
    # A long title: the job page's table has to share out its width.
    title = "Book a pickup with the carrier, then fetch the signed bill of lading for the TMS " * 2
    failed = [live_world.add_run(status="failed", workflow_title=title) for _ in range(3)]

    sign_in(page, live_world.operator, PASSWORD, then=RUNS + "?status=failed")
    expect(page.locator("article.run-card")).to_have_count(3)
    page.get_by_label("Select all 3 on this page").check()
    page.get_by_role("button", name="Preview the selected runs").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry — preview")
    expect(page.locator(".bulk-to-send")).to_have_text("3")
    page.get_by_role("textbox", name=re.compile(r"^Reason")).fill("Portal back after outage")
    with Worker():
        page.get_by_role("button", name="Retry 3 runs").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Bulk retry #\d+"))
        expect(page.locator(".job-badge")).to_have_text("Finished", timeout=20_000)
    for run_id in failed:
        shown = page.get_by_text(run_id, exact=True).first
        expect(shown).to_be_visible()
        assert shown.evaluate(LINES_OF) == 1, run_id  # a desktop has room for a whole run id
    assert live_world.simulator.state.retry_counts() == {run_id: 1 for run_id in failed}
    console_watch.assert_clean()


def test_the_job_follows_its_retries_and_retries_the_ones_that_failed_again(
    page, live_world, console_watch, settings, monkeypatch
):
    """Six failed runs retried in bulk; at Skyvern four of the new runs
    complete and two fail again. The job page says so by itself, then one
    click previews exactly the two that failed again."""
    monkeypatch.setattr("console.runs.services.REFRESH_AT_MOST_EVERY", timedelta(0))
    # The new runs wait at Skyvern until the test ends each one.
    live_world.simulator.state.configure(failure_rate=0, finished_after=600)
    for _ in range(6):
        live_world.add_run(status="failed", workflow_title="Download carrier invoices")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS + "?status=failed")
    expect(page.locator("article.run-card")).to_have_count(6)
    page.get_by_label("Select all 6 on this page").check()
    page.get_by_role("button", name="Preview the selected runs").click()
    page.get_by_role("textbox", name=re.compile(r"^Reason")).fill("Carrier portal outage")
    with Worker():
        page.get_by_role("button", name="Retry 6 runs").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Bulk retry #\d+"))
        expect(page.locator(".job-badge")).to_have_text("Finished", timeout=20_000)
        outcome = page.locator(".job-outcome")
        expect(outcome).to_contain_text("0 succeeded, 0 failed again, 6 still running")
        expect(outcome).to_contain_text("Following the new runs until they end")
        new_runs = list(
            BulkRetryItem.objects.order_by("id").values_list("new_run__run_id", flat=True)
        )
        for run_id in new_runs[:4]:
            live_world.simulator.state.set_status(run_id, "completed")
        for run_id in new_runs[4:]:
            live_world.simulator.state.set_status(
                run_id, "failed", "Login failed: portal rejected the password"
            )
        expect(outcome).to_contain_text("4 succeeded, 2 failed again (6 sent)", timeout=20_000)
        expect(page.locator("#job-live")).not_to_have_attribute("hx-trigger", re.compile("."))
    expect(page.locator(".failed-again-reason")).to_have_count(2)
    expect(page.locator(".failed-again-reason").first).to_have_text(
        "Login failed: portal rejected the password"
    )
    page.screenshot(path=str(FOLLOW_SHOT), full_page=True)

    page.get_by_role("button", name="Retry the 2 that failed again").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry — preview")
    expect(page.locator(".bulk-to-send")).to_have_text("2")
    expect(page.locator(".bulk-total")).to_have_text("2")
    expect(page.get_by_role("button", name="Retry 2 runs")).to_be_visible()
    console_watch.assert_clean()
