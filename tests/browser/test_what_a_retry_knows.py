"""Issue 14, what a retry knows before it is sent, in a real Chromium: which of
Skyvern's own attempts comes next ("attempt 2 of 3", on a card and beside
each run a bulk preview names), a run behind its workflow on the runs page,
a browser session that has closed (on a retry's confirmation step and beside
a failed run's Retry on its page), and the ticket summaries and words of
webhook replays (single and bulk)."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from playwright.sync_api import expect

from console.bulk.services import bulk_retry_create
from console.bulk.tasks import bulk_retry_work
from console.runs.models import Retry, RetryState, Run
from console.sync.services import connection_sync
from tests.browser.conftest import sign_in
from tests.conftest import PASSWORD
from tests.runs.test_actions import webhook_only_run
from tests.skyvern.test_client_cancel_webhooks_workflows import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("cards_layout")]  # what cards show

RUNS = "/t/acme/runs/"
WPID = "wpid_knows"


def card(page, run_id):
    return page.locator(f'article.run-card[data-run-id="{run_id}"]')


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def test_a_card_says_which_of_skyverns_attempts_comes_next(page, live_world, console_watch):
    cache.clear()
    sim = live_world.simulator
    run_id = live_world.add_run(
        status="failed",
        workflow_permanent_id=WPID,
        parameters={},
        retry_pending=True,
        next_attempt_at=datetime.now(UTC) + timedelta(hours=2),
    )
    sim.state.set_retry_policy(live_world.connection_a.api_key(), WPID, {"max_retries": 2})
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    # Nothing known of the workflow yet: the attempt alone.
    expect(card(page, run_id)).to_contain_text(re.compile(r"\(attempt 2\)\."))

    # The run's page asks Skyvern about the workflow; its card, and the runs
    # page after it, count the attempts.
    card(page, run_id).get_by_role("link", name=run_id).click()
    expect(page.get_by_role("heading", name=run_id)).to_be_visible()
    expect(card(page, run_id)).to_contain_text("(attempt 2 of 3)")
    page.get_by_role("link", name="Runs", exact=True).first.click()
    expect(card(page, run_id)).to_contain_text("(attempt 2 of 3)")
    expect(card(page, run_id).get_by_role("button", name="Retry")).to_have_count(0)
    console_watch.assert_clean()


def test_the_runs_page_says_a_run_is_behind_and_leads_to_the_choice(
    page, live_world, console_watch
):
    cache.clear()
    run_id = live_world.add_run(status="failed", workflow_permanent_id=WPID, parameters={})
    live_world.simulator.state.publish_workflow_version(live_world.connection_a.api_key(), WPID)
    connection_sync(connection=live_world.connection_a)  # the periodic sync

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    behind = card(page, run_id)
    expect(behind).to_contain_text(
        "Retries version 1 (this run's); the workflow is now at version 2."
    )
    behind.get_by_role("link", name="Retry as is or rerun on the latest version").click()
    version = page.get_by_role("region", name="Workflow version")
    expect(version).to_be_in_viewport()
    expect(
        version.get_by_role("button", name="Rerun on the latest version with the same parameters")
    ).to_be_visible()
    expect(version.get_by_role("button", name="Retry as is (version 1)")).to_be_visible()
    console_watch.assert_clean()


def test_a_retry_says_its_browser_session_has_closed(page, live_world, console_watch):
    run_id = live_world.add_run(
        status="completed",
        browser_session_id="pbs_closed42",
        created_at=datetime.now(UTC) - timedelta(hours=3),
    )
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    done = card(page, run_id)
    done.get_by_role("button", name="Retry").click()
    expect(done).to_contain_text(
        "It re-uses browser session pbs_closed42, which has closed: a fresh browser will be used."
    )
    expect(done.get_by_role("button", name="Yes, run it again")).to_be_visible()
    assert live_world.simulator.state.retry_count(run_id) == 0
    console_watch.assert_clean()


def test_a_failed_runs_page_says_its_browser_session_has_closed(page, live_world, console_watch):
    run_id = live_world.add_run(
        status="failed",
        browser_session_id="pbs_shut42",
        created_at=datetime.now(UTC) - timedelta(hours=3),
    )
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    # The runs page never asks Skyvern about the session.
    expect(card(page, run_id)).to_contain_text("It re-uses browser session pbs_shut42.")

    # The run's page asks once it is drawn, and says so beside the Retry.
    card(page, run_id).get_by_role("link", name=run_id).click()
    expect(page.get_by_role("heading", name=run_id)).to_be_visible()
    failed = card(page, run_id)
    expect(failed).to_contain_text(
        "It re-uses browser session pbs_shut42, which has closed: a fresh browser will be used."
    )
    assert live_world.simulator.state.retry_count(run_id) == 0

    # Retry is still one click.
    failed.get_by_role("button", name="Retry").click()
    expect(failed).to_contain_text(re.compile(r"Retried → wr_"))
    assert live_world.simulator.state.retry_count(run_id) == 1
    console_watch.assert_clean()


def test_a_bulk_preview_says_which_attempt_each_skipped_run_is(page, live_world, console_watch):
    cache.clear()
    retried = live_world.add_run(
        status="failed", workflow_permanent_id=WPID, parameters={}, attempt=2
    )
    Retry.objects.create(run=Run.objects.get(run_id=retried), number=1, state=RetryState.RETRIED)
    pending = live_world.add_run(
        status="failed",
        workflow_permanent_id=WPID,
        parameters={},
        retry_pending=True,
        next_attempt_at=datetime.now(UTC) + timedelta(hours=2),
    )
    live_world.simulator.state.set_retry_policy(
        live_world.connection_a.api_key(), WPID, {"max_retries": 2}
    )
    connection_sync(connection=live_world.connection_a)  # the periodic sync learns the policy

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    page.get_by_label("Select all 2 on this page").check()
    page.get_by_role("button", name="Preview the selected runs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry — preview")

    page.get_by_text("Already retried").click()
    expect(page.get_by_role("listitem").filter(has_text=retried)).to_contain_text("attempt 2 of 3")
    # As its card says it: the attempt Skyvern makes next.
    page.get_by_text("Skyvern retries it itself").click()
    expect(page.get_by_role("listitem").filter(has_text=pending)).to_contain_text(
        "attempt 2 of 3 comes next"
    )
    assert live_world.simulator.state.retry_counts() == {}
    console_watch.assert_clean()


def test_a_replayed_webhook_has_a_summary_for_the_ticket(page, live_world, console_watch, receiver):
    run_id = webhook_only_run(live_world, receiver.url)
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    hooked = card(page, run_id)
    hooked.get_by_role("button", name="Replay webhook").click()
    expect(hooked.locator(".webhook-replay")).to_contain_text("delivered, HTTP 200")

    hooked.get_by_role("link", name=run_id).click()
    page.get_by_text("Summary of webhook replay #1").click()
    summary = page.get_by_label("Plain text")
    expect(summary).to_have_value(
        re.compile(
            rf"^The .* run {run_id} \(\S+\) failed only because its webhook could not be "
            r"delivered: .*On .* UTC, acme-operator replayed its webhook to 127\.0\.0\.1 "
            r"\(no browser work was redone\)\. The receiver answered HTTP 200 in \d+ ms: "
            r"delivered\.$"
        )
    )
    page.get_by_role("button", name="Copy summary").click()
    expect(page.locator(".copy-state")).to_have_text(re.compile("Copied|Selected"))
    console_watch.assert_clean()


def test_a_bulk_replay_job_speaks_of_webhooks(page, live_world, console_watch, receiver):
    run_ids = [webhook_only_run(live_world, receiver.url) for _ in range(2)]
    job = bulk_retry_create(
        team=live_world.team_a,
        user=live_world.operator,
        runs=Run.objects.filter(run_id__in=run_ids),
        reason="Receiver down overnight",
        include_already_retried=False,
        max_steps_override=None,
        selection={},
        kind="replay_webhook",
    )
    bulk_retry_work.call(job.pk)
    sign_in(page, live_world.operator, PASSWORD, then=f"/t/acme/bulk/{job.pk}/")
    expect(page.get_by_text(f"Your bulk webhook replay #{job.pk}")).to_contain_text(
        "2 webhooks replayed"
    )
    states = page.get_by_role("navigation", name="Runs of this job by state")
    expect(states.get_by_role("link", name="Webhook replayed 2")).to_be_visible()
    expect(states.get_by_role("link", name=re.compile("^Retried"))).to_have_count(0)
    page.get_by_text("Summary for the ticket").click()
    expect(page.get_by_label("Plain text")).to_have_value(
        re.compile(
            rf"started bulk webhook replay #{job.pk} of 2 runs .* Webhooks replayed: "
            r"2 delivered \(2 sent\)\."
        )
    )
    console_watch.assert_clean()
