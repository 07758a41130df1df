"""In a real browser: a retry says what it will do before it is sent. A run
that succeeded asks for confirmation, then retries; a run Skyvern retries
itself has no Retry; the bulk preview shows what it skips and the tick box
that lets those runs in."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from console.audit.models import AuditEntry
from console.bulk.models import BulkRetryJob
from tests.conftest import PASSWORD

from .conftest import LINES_OF, mark_page, page_marker, sign_in
from .test_runs_page import RUNS, card, new_run_id_from

# About cards on the runs page: shown as cards (compact rows are the default;
# tests/browser/test_compact_rows.py asks the same of rows).
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("cards_layout")]

HOOK = "https://hooks.customer.example/skyvern/secret-token"


def test_a_completed_runs_retry_asks_for_confirmation_then_retries(page, live_world, console_watch):
    sim = live_world.simulator
    done = live_world.add_run(
        status="completed", workflow_title="Sync price list", webhook_url=HOOK
    )

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    marker = mark_page(page)
    original = card(page, done)
    original.get_by_role("button", name="Retry").click()

    # The card asks, in place; nothing has been sent.
    expect(original.get_by_text("This run succeeded; retrying runs it again.")).to_be_visible()
    expect(original).to_contain_text(
        "This retry will call the customer's webhook at hooks.customer.example again."
    )
    assert sim.state.retry_count(done) == 0

    # Changing one's mind puts the card back as it was.
    original.get_by_role("button", name="Don't retry").click()
    expect(original.get_by_text("This run succeeded")).to_have_count(0)
    assert sim.state.retry_count(done) == 0

    original.get_by_role("button", name="Retry").click()
    original.get_by_role("button", name="Yes, run it again").click()
    new_id = new_run_id_from(original)
    expect(card(page, new_id)).to_be_visible()
    assert sim.state.retry_count(done) == 1
    assert page_marker(page) == marker  # all in place, by htmx
    console_watch.assert_clean()


def test_a_run_skyvern_retries_itself_has_no_retry_button(page, live_world, console_watch):
    at = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=3)
    pending = live_world.add_run(status="failed", retry_pending=True, next_attempt_at=at)
    other = live_world.add_run(status="failed")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    waiting = card(page, pending)
    expect(waiting).to_contain_text(
        f"Skyvern retries this at {at:%b} {at.day}, {at:%H:%M} UTC (attempt 2)"
    )
    expect(waiting.get_by_role("button", name=re.compile("Retry"))).to_have_count(0)
    expect(card(page, other).get_by_role("button", name="Retry")).to_be_visible()

    # Its page lists Skyvern's attempts.
    waiting.locator(".run-id").click()
    expect(page.get_by_role("heading", name="Skyvern's own attempts")).to_be_visible()
    expect(page.locator("table.attempts tbody tr")).to_have_count(1)
    console_watch.assert_clean()


def test_the_bulk_preview_shows_skipped_counts_and_the_override(page, live_world, console_watch):
    sim = live_world.simulator
    failed = [live_world.add_run(status="failed", webhook_url=HOOK) for _ in range(2)]
    pending = live_world.add_run(status="failed", retry_pending=True)
    done = live_world.add_run(status="completed")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    page.get_by_label("Select all 4 on this page").check()
    page.get_by_role("button", name="Preview the selected runs").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry — preview")
    expect(page.locator(".bulk-to-send")).to_have_text("2")
    skipped = page.locator(".bulk-skipped")
    expect(skipped).to_contain_text(re.compile(r"Skyvern retries it itself\s*:\s*1"))
    expect(skipped).to_contain_text(re.compile(r"It succeeded \(retrying runs it again\)\s*:\s*1"))
    expect(page.locator(".bulk-effects")).to_contain_text(
        "2 will call the customer's webhook again: hooks.customer.example (2)"
    )

    page.get_by_label("Retry now the runs Skyvern retries itself").check()
    page.get_by_label("Also retry runs that succeeded").check()
    page.get_by_role("button", name="Update preview").click()
    expect(page.locator(".bulk-to-send")).to_have_text("4")
    expect(page.locator(".bulk-effects")).to_contain_text("1 succeeded and will run again")
    expect(page.locator(".bulk-effects")).to_contain_text(
        "1 will run beside Skyvern's own retry of them"
    )
    expect(page.get_by_label("Also retry runs that succeeded")).to_be_checked()
    assert sim.state.retry_counts() == {}

    page.get_by_role("textbox", name=re.compile(r"^Reason")).fill("Customer asked for a re-run")
    page.get_by_role("button", name="Retry 4 runs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Bulk retry #\d+"))
    job = BulkRetryJob.objects.get()
    assert set(job.items.values_list("run__run_id", flat=True)) == {*failed, pending, done}
    event = AuditEntry.objects.get(action="bulk_job_create", target_id=str(job.pk))
    assert event.details["skyvern_retries_overridden"] == 1
    assert event.details["completed_included"] == 1
    console_watch.assert_clean()


def test_the_attempts_table_keeps_headings_and_error_codes_whole(page, live_world, console_watch):
    """On a desktop the table of Skyvern's own attempts has room: no heading
    or error code is broken in the middle of a word ("Atte mpt"). And the
    page's sections look alike: "Workflow version" is not the one in large
    print."""
    at = datetime.now(UTC) + timedelta(hours=3)
    pending = live_world.add_run(status="failed", retry_pending=True, next_attempt_at=at)
    sign_in(page, live_world.operator, PASSWORD, then=f"{RUNS}{pending}/")
    size = "element => getComputedStyle(element).fontSize"
    version = page.get_by_role("heading", name="Workflow version", level=2)
    attempts = page.get_by_role("heading", name="Skyvern's own attempts", level=2)
    assert version.evaluate(size) == attempts.evaluate(size)
    table = page.get_by_role("table").filter(has=page.get_by_role("columnheader", name="Attempt"))
    expect(table.get_by_role("row")).to_have_count(2)
    headings = table.get_by_role("columnheader")
    assert headings.count() == 6
    for n in range(headings.count()):
        heading = headings.nth(n)
        assert heading.evaluate(LINES_OF) == 1, heading.inner_text()
    codes = table.get_by_role("cell").locator("code")
    assert codes.count() >= 1
    for n in range(codes.count()):
        assert codes.nth(n).evaluate(LINES_OF) == 1, codes.nth(n).inner_text()
    console_watch.assert_clean()
