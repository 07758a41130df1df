"""The incident view in a real Chromium: an operator in two teams opens it
from the header, sees one cause that hit both teams with each team's count,
retries it across both from one preview, and sees the two jobs it made, one
per team; then finds a run by its id."""

import re
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from console.bulk.models import BulkRetryJob
from console.teams.models import Membership, Role
from tests.browser.conftest import sign_in
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

SHOTS = Path(tempfile.gettempdir())  # looked at by people
LOGIN_FAILED = "Login failed: portal rejected the password"
AUTH = [{"category": "AUTH_FAILURE", "confidence_float": 0.8, "reasoning": "Refused."}]


def fail(world, connection=None, reason=LOGIN_FAILED):
    return world.add_run(
        connection,
        status="failed",
        failure_reason=reason,
        failure_category=AUTH,
        workflow_permanent_id="wpid_carrier_invoices",
        workflow_title="Download carrier invoices",
    )


def test_operator_in_two_teams_retries_one_cause_in_both(page, live_world, console_watch):
    world = live_world
    Membership.objects.create(team=world.team_b, user=world.operator, role=Role.OPERATOR)
    for _ in range(2):
        fail(world)
    fail(world, world.connection_b)
    fail(world, world.connection_b, reason="Element #btn-7 not found")

    sign_in(page, world.operator, PASSWORD, then="/t/acme/runs/")
    page.get_by_role("link", name="All teams").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Failures in all your teams")
    groups = page.locator("tr.failure-group")
    expect(groups).to_have_count(2)
    login = groups.filter(has_text="Login failed")
    expect(login.locator(".group-count")).to_have_text("3")
    expect(login.get_by_role("listitem")).to_have_text(
        [re.compile(r"Acme Logistics:\s*2"), re.compile(r"Globex Billing:\s*1")]
    )
    expect(groups.filter(has_text="Element").locator(".group-teams")).to_contain_text("Globex")
    page.screenshot(path=str(SHOTS / "console-incident-inbox.png"), full_page=True)

    login.get_by_role("button", name="Retry this group").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry across teams — preview")
    parts = page.locator("tr.team-part")
    expect(parts.filter(has_text="Acme Logistics").locator(".part-to-send")).to_have_text("2")
    expect(parts.filter(has_text="Globex Billing").locator(".part-to-send")).to_have_text("1")
    page.get_by_role("textbox", name=re.compile(r"^Reason")).fill("Carrier portal outage")
    page.screenshot(path=str(SHOTS / "console-incident-preview.png"), full_page=True)
    page.get_by_role("button", name="Retry 3 runs in 2 teams").click()

    expect(page.get_by_role("heading", level=2)).to_have_text("Just started: 2 jobs, one per team")
    created = page.locator("li.created-job")
    expect(created).to_have_count(2)
    expect(page.locator("tr.bulk-job")).to_have_count(2)
    assert sorted(BulkRetryJob.objects.values_list("team__slug", "total")) == [
        ("acme", 2),
        ("globex", 1),
    ]
    page.screenshot(path=str(SHOTS / "console-incident-jobs.png"), full_page=True)
    created.filter(has_text="Globex Billing").get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/t/globex/bulk/\d+/$"))

    # A run found by its id, in whichever team it is.
    run_id = fail(world, world.connection_b, reason="Portal timed out")
    page.get_by_role("link", name="All teams").click()
    page.get_by_label("Find a run by id").fill(run_id)
    page.get_by_role("button", name="Find run").click()
    expect(page).to_have_url(re.compile(rf"/t/globex/runs/{run_id}/$"))
    console_watch.assert_clean()


def box(locator):
    found = locator.bounding_box()
    assert found, locator
    return found


@pytest.mark.parametrize("where", ["/", "/failures/"])
def test_find_a_run_is_one_short_line(page, live_world, console_watch, where):
    """The run-id search (home page and incident view, for someone in two
    teams) reads as one line at its own size: label, box and a button as wide
    as its words, not each stretched over a third of the page."""
    Membership.objects.create(team=live_world.team_b, user=live_world.operator, role=Role.OPERATOR)
    sign_in(page, live_world.operator, PASSWORD, then=where)
    search = page.get_by_role("search")
    label, field = search.get_by_text("Find a run by id"), page.get_by_label("Find a run by id")
    button = search.get_by_role("button", name="Find run")
    parts = [box(label), box(field), box(button)]
    assert box(button)["width"] < 160
    assert box(field)["width"] <= 22 * 16 + 1  # 22rem
    # Side by side, left to right, on one line.
    assert parts[0]["x"] + parts[0]["width"] <= parts[1]["x"] < parts[2]["x"]
    middles = [p["y"] + p["height"] / 2 for p in parts]
    assert max(middles) - min(middles) < 12
    if where == "/failures/":  # beside the incident view's own links
        links = box(page.get_by_role("navigation", name="Incident view").get_by_role("list"))
        assert abs(links["y"] - parts[1]["y"]) < parts[1]["height"]
    page.screenshot(path=str(SHOTS / f"console-run-find{where.strip('/') or '-home'}.png"))
    console_watch.assert_clean()
