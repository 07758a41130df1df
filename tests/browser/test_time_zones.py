"""Times in the person's own zone, in a real Chromium whose clock says
Europe/Berlin: the first sign-in takes the browser's zone, a saved choice
stays, the account page changes it, and cards say how long ago."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from console.runs.models import Run
from console.teams.models import AccountSettings
from tests.conftest import PASSWORD

from .conftest import TIMEOUT_MS, sign_in

pytestmark = pytest.mark.browser

RUNS = "/t/acme/runs/"
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def berlin_page(browser, live_server, console_watch):
    """A fresh browser context whose own time zone is Europe/Berlin."""
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 1280, "height": 900},
        timezone_id="Europe/Berlin",
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    console_watch.attach(page)
    yield page
    context.close()


def a_run(world, minutes_ago=12):
    created = timezone.now() - timedelta(minutes=minutes_ago, seconds=10)
    Run.objects.create(
        team=world.team_a,
        connection=world.connection_a,
        run_id="wr_berlin",
        status="failed",
        workflow_permanent_id="wpid_1",
        workflow_title="Invoices",
        created_at=created,
        finished_at=created,
    )
    return created


def card_times(page):
    """When the run was created, on its line of the runs page (compact rows, the default)."""
    return page.locator('tr.row-line[data-run-id="wr_berlin"] .row-created')


def test_the_first_sign_in_shows_times_in_the_browsers_zone(live_world, berlin_page, console_watch):
    created = a_run(live_world).astimezone(BERLIN)
    sign_in(berlin_page, live_world.viewer, PASSWORD, then=RUNS)

    shown = f"{created:%b} {created.day}, {created:%H:%M} CET"
    expect(card_times(berlin_page)).to_contain_text(f"{shown} (12 min ago)")
    assert AccountSettings.objects.get(user=live_world.viewer).time_zone == "Europe/Berlin"

    # The account page shows it chosen; choosing another zone changes every time.
    berlin_page.get_by_role("link", name="acme-viewer").click()
    zone = berlin_page.get_by_label("Time zone")
    expect(zone).to_have_value("Europe/Berlin")
    zone.select_option("America/New_York")
    berlin_page.get_by_role("button", name="Save time zone").click()
    expect(berlin_page.get_by_text("Times are now shown in America/New_York.")).to_be_visible()
    berlin_page.goto(RUNS)
    in_new_york = created.astimezone(ZoneInfo("America/New_York"))
    expect(card_times(berlin_page)).to_contain_text(
        f"{in_new_york:%b} {in_new_york.day}, {in_new_york:%H:%M} EST"
    )
    console_watch.assert_clean()


def test_a_saved_zone_is_not_overridden_by_the_browsers(live_world, berlin_page, console_watch):
    AccountSettings.objects.create(user=live_world.viewer, time_zone="UTC")
    created = a_run(live_world)
    sign_in(berlin_page, live_world.viewer, PASSWORD, then=RUNS)

    expect(card_times(berlin_page)).to_contain_text(
        f"{created:%b} {created.day}, {created:%H:%M} UTC"
    )
    assert AccountSettings.objects.get(user=live_world.viewer).time_zone == "UTC"
    console_watch.assert_clean()
