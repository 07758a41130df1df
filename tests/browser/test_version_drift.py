"""A run behind its workflow offers "Rerun on the latest version"; the rerun's
card appears, and its ticket summary can be read and copied."""

import re

import pytest
from django.core.cache import cache
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.runs.test_reruns import PARAMETERS, WPID, listed

from .conftest import sign_in

# About cards on the runs page: shown as cards (compact rows are the default).
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("cards_layout")]


def test_a_drifted_run_is_rerun_on_the_latest_version(page, live_world, console_watch):
    cache.clear()
    sim = live_world.simulator
    # The rerun's run ends at once: the page then stops checking Skyvern, and
    # its summary stays put while it is read and copied.
    sim.state.configure(failure_rate=0, queued_after=0.1, running_after=0.2, finished_after=0.5)
    run_id = live_world.add_run(
        status="failed",
        workflow_permanent_id=WPID,
        workflow_title="Download carrier invoices",
        failure_reason="Login failed: invalid credentials",
        parameters=PARAMETERS,
    )
    sim.state.publish_workflow_version(live_world.connection_a.api_key(), WPID)
    listed(live_world, run_id)

    sign_in(page, live_world.operator, PASSWORD, then=f"/t/acme/runs/{run_id}/")
    version = page.get_by_role("region", name="Workflow version")
    expect(version).to_contain_text(
        "Retries version 1 (this run's); the workflow is now at version 2."
    )
    expect(version.get_by_role("button", name="Retry as is (version 1)")).to_be_visible()
    version.get_by_role(
        "button", name="Rerun on the latest version with the same parameters"
    ).click()

    expect(page.get_by_text(re.compile(rf"Reran {run_id} on version 2 as wr_"))).to_be_visible()
    original = page.locator("article.run-card").filter(has_text=run_id).first
    expect(original).to_contain_text(re.compile(r"Rerun on v2 → wr_"))
    new_run_id = original.locator(".retried a").first.inner_text()
    # The rerun's own card follows the original's on the page.
    expect(page.locator("article.run-card").filter(has_text=new_run_id).first).to_be_visible()

    expect(page.locator(".refresh-state")).to_contain_text("Up to date", timeout=15_000)
    expect(page.locator(".refresh-state")).not_to_contain_text("checking again", timeout=15_000)
    page.get_by_text("Summary of rerun #1").click()
    summary = page.get_by_label("Plain text")
    expect(summary).to_have_value(
        re.compile(
            r"^The Download carrier invoices run wr_\S+ \(\S+\) failed: Login failed: "
            r"invalid credentials\. On .* UTC, acme-operator reran it on the workflow's "
            rf"latest version \(version 2\) with the same parameters as run {new_run_id}"
        )
    )
    page.get_by_role("button", name="Copy summary").click()
    expect(page.locator(".copy-state")).to_have_text(re.compile("Copied|Selected"))
    console_watch.assert_clean()
