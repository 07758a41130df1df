"""Issue 14 in a real Chromium: an operator replays a webhook-only failure's
webhook from its card, cancels a running run from its card through the
card's confirmation, and cancels a bulk job through its confirmation page."""

import re

import pytest
from playwright.sync_api import expect

from console.bulk.models import BulkRetryJob, JobState
from console.bulk.services import bulk_retry_create
from console.runs.models import Run
from tests.browser.conftest import mark_page, page_marker, sign_in
from tests.conftest import PASSWORD
from tests.runs.test_actions import webhook_only_run
from tests.skyvern.test_client_cancel_webhooks_workflows import Receiver

# About cards on the runs page: shown as cards (compact rows are the default).
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("cards_layout")]

RUNS = "/t/acme/runs/"


def card(page, run_id):
    return page.locator(f'article.run-card[data-run-id="{run_id}"]')


@pytest.fixture
def receiver():
    made = Receiver(body=b'{"received": true, "ticket": "<i>T-1</i>"}')
    yield made
    made.close()


def test_operator_replays_a_webhook_from_its_card(page, live_world, console_watch, receiver):
    run_id = webhook_only_run(live_world, receiver.url)
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    marker = mark_page(page)

    hooked = card(page, run_id)
    expect(hooked.locator(".webhook-only")).to_contain_text("Only the webhook failed")
    expect(hooked.get_by_role("button", name="Retry anyway")).to_be_visible()
    hooked.get_by_role("button", name="Replay webhook").click()

    result = hooked.locator(".webhook-replay")
    expect(result).to_contain_text(re.compile(r"delivered, HTTP 200 in \d+ ms by acme-operator"))
    hooked.get_by_text("Receiver's answer").click()
    expect(hooked.locator(".replay-response pre")).to_have_text(
        '{"received": true, "ticket": "<i>T-1</i>"}'
    )
    assert len(receiver.requests) == 1
    assert page_marker(page) == marker  # swapped in place, no reload
    console_watch.assert_clean()


def test_operator_cancels_a_running_run_from_its_card(page, live_world, console_watch):
    run_id = live_world.add_run(status="running")
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)

    running = card(page, run_id)
    expect(running.locator(".badge")).to_have_text(re.compile(r"^\s*Running\s*$"))
    running.get_by_role("button", name="Cancel run…").click()
    expect(running.locator(".confirm-cancel")).to_contain_text("Cancel this run at Skyvern?")
    # Not yet: the question alone cancels nothing.
    assert live_world.simulator.state.find_run(run_id).status == "running"
    running.get_by_role("button", name="Keep it running").click()
    expect(running.get_by_role("button", name="Cancel run…")).to_be_visible()

    running.get_by_role("button", name="Cancel run…").click()
    running.get_by_role("button", name="Yes, cancel this run").click()

    expect(running.locator(".badge")).to_have_text(re.compile(r"^\s*Canceled\s*$"))
    assert live_world.simulator.state.find_run(run_id).status == "canceled"
    assert Run.objects.get(run_id=run_id).status == "canceled"
    console_watch.assert_clean()


def test_operator_cancels_a_bulk_job_through_the_confirmation_page(page, live_world, console_watch):
    run_ids = [live_world.add_run(status="failed") for _ in range(3)]
    job = bulk_retry_create(
        team=live_world.team_a,
        user=live_world.operator,
        runs=Run.objects.filter(run_id__in=run_ids),
        reason="Portal down overnight",
        include_already_retried=False,
        max_steps_override=None,
        selection={},
    )  # no worker runs in this test: the job waits
    job_page = f"/t/acme/bulk/{job.pk}/"
    sign_in(page, live_world.operator, PASSWORD, then=job_page)

    page.get_by_role("button", name="Cancel job…").click()
    expect(page.get_by_role("heading", name=f"Cancel bulk retry #{job.pk}?")).to_be_visible()
    warning = page.locator(".cancel-job-warning")
    expect(warning).to_contain_text("3 runs not sent yet will be skipped")
    page.get_by_role("button", name="Keep it going").click()
    expect(page).to_have_url(re.compile(re.escape(job_page) + "$"))
    job.refresh_from_db()
    assert job.state == JobState.QUEUED

    page.get_by_role("button", name="Cancel job…").click()
    page.get_by_role("button", name="Yes, cancel this job").click()

    expect(page).to_have_url(re.compile(re.escape(job_page) + "$"))
    expect(page.get_by_text("Canceled: runs not sent yet are skipped")).to_be_visible()
    assert BulkRetryJob.objects.get(pk=job.pk).state == JobState.CANCELED
    assert live_world.simulator.state.retry_counts() == {}
    console_watch.assert_clean()


def test_admin_reads_replay_and_cancel_jobs_in_their_own_words_in_the_audit_log(
    page, live_world, console_watch
):
    hooked = webhook_only_run(live_world, "https://hooks.example.com/acme")
    finished = [live_world.add_run(status="completed") for _ in range(2)]
    for kind, run_ids in (("replay_webhook", [hooked]), ("cancel", finished)):
        bulk_retry_create(
            team=live_world.team_a,
            user=live_world.operator,
            runs=Run.objects.filter(run_id__in=run_ids),
            reason="Receiver down overnight",
            include_already_retried=False,
            max_steps_override=None,
            selection={},
            kind=kind,
        )  # no worker runs here; the cancel job, with nothing to cancel, ends at once
    sign_in(page, live_world.admin, PASSWORD, then=RUNS)

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Action").select_option(label="Bulk job created")
    page.get_by_role("button", name="Filter").click()

    log = page.get_by_role("table")
    expect(log.get_by_role("cell", name="Bulk webhook replay created")).to_be_visible()
    expect(log.get_by_role("cell", name="Bulk cancel created")).to_be_visible()
    expect(log.get_by_text("Bulk retry")).to_have_count(0)
    expect(log.get_by_text("Bulk cancel finished")).to_have_count(0)  # filtered out

    page.get_by_role("link", name="Clear").click()
    expect(page.get_by_role("cell", name="Bulk cancel finished")).to_be_visible()
    console_watch.assert_clean()
