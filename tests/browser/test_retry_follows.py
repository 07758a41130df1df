"""A retry's answer always reaches the person, and both pages follow the new
run to its end: a search fired as the search box loses focus to the Retry
button must not wipe the retried card, and the run's detail page follows the
new run the way the runs page does."""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

from .conftest import mark_page, page_marker, sign_in
from .test_runs_page import RUNS, card, new_run_id_from, retry_posts

# About cards on the runs page: shown as cards (compact rows are the default).
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("cards_layout")]


def test_typing_a_run_id_then_clicking_retry_keeps_the_retrys_answer(
    page, live_world, console_watch
):
    sim = live_world.simulator
    sim.state.configure(failure_rate=0)
    failed = live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    live_world.add_run(status="completed", workflow_title="Sync price list")
    live_world.add_run(status="terminated", workflow_title="Reconcile ledger")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    marker = mark_page(page)
    posts = retry_posts(page)
    original = card(page, failed)

    # Type the run id and go straight for its Retry button, without Enter:
    # the search box loses focus as the button is pressed, which fires a search.
    page.get_by_label("Search runs").fill(failed)
    original.get_by_role("button", name="Retry").click()

    new_id = new_run_id_from(original)
    new = card(page, new_id)
    expect(new).to_be_visible()
    expect(original.get_by_role("button", name="Retry again")).to_be_visible()
    # ...and it stays: nothing that was in flight replaces it afterwards.
    page.wait_for_timeout(1_500)
    expect(original.locator(".retried")).to_contain_text(f"Retried → {new_id}")
    expect(new).to_be_visible()
    expect(original.get_by_role("button", name="Retry", exact=True)).to_have_count(0)
    assert len(posts) == 1, posts
    assert sim.state.retry_count(failed) == 1
    assert page_marker(page) == marker

    # The search the person typed still works when they ask for it.
    page.get_by_label("Search runs").press("Enter")
    expect(page.locator("article.run-card")).to_have_count(1)
    expect(original.locator(".retried")).to_contain_text(f"Retried → {new_id}")
    console_watch.assert_clean()


def test_a_search_on_its_way_when_retry_is_clicked_is_not_drawn_over_it(
    page, live_world, console_watch
):
    sim = live_world.simulator
    sim.state.configure(failure_rate=0)
    failed = live_world.add_run(status="failed", failure_reason="Login failed: invalid credentials")
    live_world.add_run(status="failed", failure_reason="Carrier portal is down")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    original = card(page, failed)
    searches = []
    page.on("request", lambda r: searches.append(r.url) if "reason=" in r.url else None)

    # A text filter searches when it loses focus: here, to the Retry button.
    page.get_by_text("More filters").click()
    page.get_by_label("Failure reason contains").fill("invalid credentials")
    original.get_by_role("button", name="Retry").click()

    new_id = new_run_id_from(original)
    expect(card(page, new_id)).to_be_visible()
    page.wait_for_timeout(1_500)
    assert searches, "the search did go out"
    expect(original.locator(".retried")).to_contain_text(f"Retried → {new_id}")
    expect(card(page, new_id)).to_be_visible()
    assert sim.state.retry_count(failed) == 1
    console_watch.assert_clean()


def test_retrying_from_the_detail_page_follows_the_new_run_to_its_end(
    page, live_world, console_watch
):
    sim = live_world.simulator
    sim.state.configure(queued_after=0.5, running_after=1, finished_after=4, failure_rate=0)
    failed = live_world.add_run(status="failed", workflow_title="Download carrier invoices")

    sign_in(page, live_world.operator, PASSWORD, then=f"/t/acme/runs/{failed}/")
    marker = mark_page(page)
    expect(page.get_by_role("status")).to_contain_text("Up to date with Skyvern")
    original = card(page, failed)

    original.get_by_role("button", name="Retry").click()

    new_id = new_run_id_from(original)
    new = card(page, new_id)
    expect(new).to_be_visible()
    expect(new.locator(".badge")).to_have_text(re.compile(r"^\s*(Created|Queued|Running)\s*$"))
    retries = page.get_by_role("table").filter(has_text="Started by")
    expect(retries.get_by_role("link", name=new_id)).to_be_visible()

    # The new run's card and the page's list of retries both follow it to the end.
    expect(new.locator(".badge")).to_have_text(re.compile(r"^\s*Completed\s*$"), timeout=20_000)
    expect(retries.get_by_role("row").filter(has_text=new_id)).to_contain_text(
        "Completed", timeout=10_000
    )
    expect(new).to_be_visible()
    assert sim.state.retry_count(failed) == 1
    assert page_marker(page) == marker
    console_watch.assert_clean()
