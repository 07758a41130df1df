"""The failure inbox in a real Chromium: an operator opens it from the team
navigation, sees failures grouped by cause with their counts, looks at one
group's runs, and starts a bulk retry of the group, whose preview holds
exactly that group's runs."""

import re
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

RUNS = "/t/acme/runs/"
INBOX_SHOT = Path(tempfile.gettempdir()) / "console-failure-inbox.png"  # looked at by people
NOT_FOUND = [{"category": "ELEMENT_NOT_FOUND", "confidence_float": 0.9, "reasoning": "Gone."}]
LOGIN = [{"category": "AUTH_FAILURE", "confidence_float": 0.8, "reasoning": "Refused."}]


def test_operator_finds_a_cause_and_retries_its_group(page, live_world, console_watch):
    for n in (42, 7, 1300):
        live_world.add_run(
            status="failed",
            workflow_title="Download carrier invoices",
            failure_reason=f"Element #btn-{n} not found",
            failure_category=NOT_FOUND,
        )
    for _ in range(2):
        live_world.add_run(
            status="failed",
            workflow_title="Download carrier invoices",
            failure_reason="Login failed: portal rejected the password",
            failure_category=LOGIN,
        )
    live_world.add_run(status="completed", workflow_title="Download carrier invoices")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    page.get_by_role("link", name="Failures").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Logistics — failures by cause")
    groups = page.locator("tr.failure-group")
    expect(groups).to_have_count(2)
    not_found = groups.filter(has_text="Element <element> not found")
    expect(not_found.locator(".failure-category")).to_have_text("ELEMENT_NOT_FOUND")
    expect(not_found.locator(".group-count")).to_have_text("3")
    expect(not_found.locator(".group-success")).to_have_text("no retries yet")
    expect(groups.filter(has_text="Login failed").locator(".group-count")).to_have_text("2")
    page.screenshot(path=str(INBOX_SHOT), full_page=True)

    # The group's runs, on the runs page, one compact row each.
    not_found.get_by_role("link", name="Show runs").click()
    expect(page.locator("tr.row-line")).to_have_count(3)
    expect(page.locator("tr.row-line").first).to_contain_text(re.compile(r"Element \S+ not found"))
    page.go_back()

    page.locator("tr.failure-group", has_text="Element <element> not found").get_by_role(
        "button", name="Retry this group"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry — preview")
    expect(page.locator(".bulk-total")).to_have_text("3")
    expect(page.locator(".bulk-to-send")).to_have_text("3")
    assert live_world.simulator.state.retry_counts() == {}
    console_watch.assert_clean()


def test_a_viewer_sees_the_inbox_but_no_retry(page, live_world, console_watch):
    live_world.add_run(status="failed", failure_reason="Portal timed out after 30 s")
    sign_in(page, live_world.viewer, PASSWORD, then="/t/acme/failures/")
    expect(page.locator("tr.failure-group .group-count")).to_have_text("1")
    expect(page.get_by_role("button", name="Retry this group")).to_have_count(0)
    console_watch.assert_clean()
