"""Issue 13's two typical jobs, done as a support person does them from the
team's runs page, with every click and typed field counted: a change that
adds a step makes this test fail. The counts are in docs/ux-typical-jobs.md."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from console.bulk.models import BulkRetryItem
from console.runs.models import Run
from tests.browser.conftest import sign_in
from tests.bulk.conftest import bulk_settings  # noqa: F401 (autouse: a throttle that doesn't slow the test)
from tests.conftest import PASSWORD

from .test_bulk_retry import Worker
from .test_runs_page import card, new_run_id_from

# About cards on the runs page: shown as cards (compact rows are the default).
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("cards_layout")]

RUNS = "/t/acme/runs/"


class Counted:
    """What the person does, counted: clicks (a select's choice is one) and
    typed or pasted fields."""

    def __init__(self):
        self.clicks = 0
        self.typed = 0

    def click(self, locator):
        self.clicks += 1
        locator.click()

    def choose(self, locator, label):
        self.clicks += 1
        locator.select_option(label=label)

    def type(self, locator, text):
        self.typed += 1
        locator.fill(text)


def test_find_one_run_by_id_and_retry_it(page, live_world, console_watch):
    live_world.simulator.state.configure(failure_rate=0)
    failed = live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    for _ in range(3):
        live_world.add_run(status="failed", workflow_title="Sync price list")
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    person = Counted()

    person.type(page.get_by_label("Search runs"), failed)  # pasted
    expect(page.locator("article.run-card")).to_have_count(1)
    person.click(card(page, failed).get_by_role("button", name="Retry"))

    expect(card(page, new_run_id_from(card(page, failed)))).to_be_visible()
    assert live_world.simulator.state.retry_count(failed) == 1
    print(f"\n(a) find a run by id and retry it: {person.clicks} click, {person.typed} paste")
    assert (person.clicks, person.typed) == (1, 1)  # today: 2 clicks + paste
    console_watch.assert_clean()


def test_retry_the_last_hours_failures_see_the_outcome_and_retry_the_failed_again(
    page, live_world, console_watch, monkeypatch
):
    monkeypatch.setattr("console.runs.services.REFRESH_AT_MOST_EVERY", timedelta(0))
    live_world.simulator.state.configure(failure_rate=0, finished_after=600)
    now = timezone.now()
    recent = [live_world.add_run(status="failed", failure_reason="Portal down") for _ in range(4)]
    older = [live_world.add_run(status="failed", failure_reason="Portal down") for _ in range(2)]
    Run.objects.filter(run_id__in=recent).update(finished_at=now - timedelta(minutes=20))
    Run.objects.filter(run_id__in=older).update(finished_at=now - timedelta(hours=2))
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    person = Counted()

    # The filters apply as they change: no Filter button to press.
    person.click(page.get_by_role("checkbox", name=re.compile(r"^Failed")))
    person.choose(page.get_by_label("Finished", exact=True), "Last hour")
    expect(page.locator("#result-count")).to_have_text("4 runs match.")
    person.click(page.get_by_role("button", name=re.compile(r"matching this filter")))
    expect(page.locator(".bulk-to-send")).to_have_text("4")
    person.type(page.get_by_role("textbox", name=re.compile(r"^Reason")), "Carrier portal outage")
    with Worker():
        person.click(page.get_by_role("button", name="Retry 4 runs"))
        outcome = page.locator(".job-outcome")
        expect(outcome).to_contain_text("still running", timeout=20_000)
        new_runs = list(
            BulkRetryItem.objects.order_by("id").values_list("new_run__run_id", flat=True)
        )
        assert len(new_runs) == 4
        for run_id in new_runs[:3]:
            live_world.simulator.state.set_status(run_id, "completed")
        live_world.simulator.state.set_status(new_runs[3], "failed", "Portal down")
        expect(outcome).to_contain_text("3 succeeded, 1 failed again (4 sent)", timeout=20_000)
    assert live_world.simulator.state.retry_counts() == {run_id: 1 for run_id in recent}

    person.click(page.get_by_role("button", name="Retry the 1 that failed again"))
    expect(page.locator(".bulk-to-send")).to_have_text("1")
    # The incident's reason is offered again: nothing to type twice.
    expect(page.get_by_role("textbox", name=re.compile(r"^Reason"))).to_have_value(
        "Carrier portal outage"
    )
    with Worker():
        person.click(page.get_by_role("button", name="Retry 1 run"))
        expect(page.locator(".job-outcome")).to_contain_text("1 sent", timeout=20_000)
    assert live_world.simulator.state.retry_count(new_runs[3]) == 1

    print(f"\n(b) last hour + failed again: {person.clicks} clicks, {person.typed} typed")
    assert (person.clicks, person.typed) == (6, 1)  # today: 7 clicks + 3 typed, no outcome
    console_watch.assert_clean()
