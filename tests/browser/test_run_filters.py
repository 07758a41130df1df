"""The runs page's time filters in a real Chromium: a support person narrows
to failed runs of the last hour, clicks Filter, selects all matching, and the
bulk preview counts exactly those runs."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from console.runs.models import Run
from tests.browser.conftest import sign_in
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

RUNS = "/t/acme/runs/"


def test_failed_in_the_last_hour_then_all_matching_previews_the_right_count(
    page, live_world, console_watch
):
    world = live_world
    now = timezone.now()
    recent = [world.add_run(status="failed", failure_reason="Portal down") for _ in range(3)]
    earlier = [world.add_run(status="failed", failure_reason="Portal down") for _ in range(2)]
    done = world.add_run(status="completed")
    Run.objects.filter(run_id__in=recent).update(finished_at=now - timedelta(minutes=20))
    Run.objects.filter(run_id__in=earlier).update(finished_at=now - timedelta(hours=3))
    Run.objects.filter(run_id=done).update(finished_at=now - timedelta(minutes=10))

    sign_in(page, world.operator, PASSWORD, then=RUNS)
    page.get_by_role("checkbox", name=re.compile(r"^Failed")).check()
    # "Finished" sits beside the search box, not under "More filters".
    page.get_by_label("Finished", exact=True).select_option(label="Last hour")
    page.get_by_role("button", name="Filter", exact=True).click()

    expect(page).to_have_url(re.compile(r"finished_within=1h"))
    expect(page.locator(".filter-summary")).to_contain_text("Finished: Last hour")
    expect(page.locator(".filter-summary")).to_contain_text("Status: Failed")
    expect(page.locator("#result-count")).to_have_text("3 runs match.")

    page.get_by_role("button", name=re.compile(r"matching this filter")).click()
    expect(page.get_by_role("heading", name="Bulk retry — preview")).to_be_visible()
    expect(page.locator(".bulk-total")).to_have_text("3")
    expect(page.locator(".bulk-to-send")).to_have_text("3")
    console_watch.assert_clean()
