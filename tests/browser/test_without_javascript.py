"""The console in a Chromium with JavaScript switched off, as a person uses it:
the runs page shows its counts, a retry is a form post that comes back with
the new run, a bulk retry goes through preview and confirm, the job page is
watched by clicking Refresh until the job is done, and a run's detail page
says which copy it shows and refreshes it from Skyvern on a click."""

import re

import pytest
from playwright.sync_api import expect

from console.bulk.models import BulkRetryJob, JobState
from tests.browser.conftest import TIMEOUT_MS
from tests.browser.test_bulk_retry import Worker
from tests.bulk.conftest import bulk_settings  # noqa: F401 (autouse: a throttle that doesn't slow the test)
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

RUNS = "/t/acme/runs/"


@pytest.fixture
def no_js_page(browser, live_server, console_watch):
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 900}, java_script_enabled=False
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    console_watch.attach(page)
    yield page
    context.close()


def sign_in(page, user, *, then: str):
    page.goto(then)
    expect(page).to_have_url(re.compile(r"/login/\?next="))
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(re.escape(then) + r"$"))


def line(page, run_id):
    """A run's own line in the list (compact rows, the default; another line may
    name it: the line of its retry)."""
    own = page.get_by_role("checkbox", name=f"Select {run_id} for bulk retry", exact=True)
    return page.locator("tr.row-line").filter(has=own)


def test_retry_bulk_retry_job_and_detail_pages_without_javascript(
    no_js_page, live_world, console_watch, settings
):
    page = no_js_page
    # Slow enough that the job is still going when its page first shows.
    settings.BULK_RETRY_PER_SECOND = 2
    sim = live_world.simulator
    sim.state.configure(failure_rate=0, queued_after=0.2, running_after=0.4, finished_after=1)
    failed = [
        live_world.add_run(status="failed", workflow_title="Download carrier invoices")
        for _ in range(4)
    ]
    live_world.add_run(status="completed", workflow_title="Sync price list")

    # The counts per status are on the page as it arrives.
    sign_in(page, live_world.operator, then=RUNS)
    expect(page.get_by_role("checkbox", name="Failed 4", exact=True)).to_be_visible()
    expect(page.get_by_role("checkbox", name="Completed 1", exact=True)).to_be_visible()

    # One retry: a form post, and back on the runs page with the new run on top.
    line(page, failed[0]).get_by_role("button", name="Retry", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(RUNS) + r"$"))
    message = page.get_by_text(re.compile(rf"Retried {failed[0]} as wr_\d+\."))
    expect(message).to_be_visible()
    retried_as = re.search(r"as (wr_\d+)", message.inner_text()).group(1)
    expect(page.locator("tr.row-line").first).to_contain_text(retried_as)
    expect(line(page, failed[0])).to_contain_text("Retried")

    # The status filter without JavaScript: tick, then Filter.
    page.get_by_role("checkbox", name="Failed 4", exact=True).check()
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(page.locator("tr.row-line")).to_have_count(4)

    # A bulk retry of the three others: tick them, preview, give a reason, confirm.
    for run_id in failed[1:]:
        page.get_by_role("checkbox", name=f"Select {run_id} for bulk retry").check()
    page.get_by_role("button", name="Preview the selected runs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry — preview")
    page.get_by_role("textbox", name=re.compile(r"^Reason")).fill("Carrier portal back at 08:40")
    assert sim.state.retry_counts() == {failed[0]: 1}

    with Worker():
        page.get_by_role("button", name="Retry 3 runs").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Bulk retry #\d+"))
        bar = page.get_by_role("progressbar")
        expect(bar).to_have_attribute("aria-valuemax", "3")
        # Nothing updates by itself: the person clicks Refresh until the job is done
        # and its new runs have ended (then there is nothing more to refresh).
        refresh = page.get_by_role("link", name="Refresh", exact=True)
        expect(refresh).to_be_visible()
        clicks = 0
        while refresh.count() and clicks < 100:
            page.wait_for_timeout(300)
            refresh.click()
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            clicks += 1
        assert clicks > 1  # it was watched going, not found done
        expect(refresh).to_have_count(0)
    expect(bar).to_have_attribute("aria-valuenow", "3")
    expect(page.get_by_text("Finished", exact=True)).to_be_visible()
    expect(page.get_by_text("3 succeeded, 0 failed again (3 sent)", exact=True)).to_be_visible()
    job = BulkRetryJob.objects.get()
    assert job.state == JobState.FINISHED
    assert sim.state.retry_counts() == {run_id: 1 for run_id in failed}

    # A new run's page says which copy it shows; Refresh asks Skyvern for news.
    new_link = page.get_by_role("link", name=re.compile(r"^wr_\d+$")).filter(
        has_not_text=re.compile("|".join(failed))
    )
    new_id = new_link.first.inner_text().strip()
    sim.state.set_status(new_id, "failed", "Carrier portal rejected the password")
    new_link.first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(new_id)
    expect(page.get_by_text("Showing the copy cached at")).to_be_visible()
    expect(page.get_by_text("checking Skyvern for news")).to_be_hidden()
    expect(page.get_by_text("Carrier portal rejected the password")).to_have_count(0)
    page.get_by_role("link", name="Refresh", exact=True).click()
    expect(page.get_by_text("Refreshed from Skyvern just now.")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text(new_id)
    expect(page.get_by_text("Carrier portal rejected the password").first).to_be_visible()
    console_watch.assert_clean()
