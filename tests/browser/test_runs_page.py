"""The runs page in a real Chromium: retrying from a card, the new run's card
following the run to its end, roles, inline errors, and a clean console."""

import re
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

from .conftest import mark_page, page_marker, sign_in

# About cards on the runs page: shown as cards (compact rows are the default).
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("cards_layout")]

RUNS = "/t/acme/runs/"
SCREENSHOT = Path(tempfile.gettempdir()) / "console-after-retry.png"  # looked at by people


def card(page, run_id):
    return page.locator(f'article.run-card[data-run-id="{run_id}"]')


def card_requests(page, run_id) -> list[str]:
    """Every request the page makes for `run_id`'s card (its polling), from now on."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if f"/runs/{run_id}/card/" in r.url else None)
    return seen


def retry_posts(page) -> list[str]:
    seen: list[str] = []

    def note(request):
        if request.method == "POST" and "/retry/" in request.url:
            seen.append(request.url)

    page.on("request", note)
    return seen


def new_run_id_from(original_card) -> str:
    """The id in the original card's "Retried → wr_…" line."""
    retried = original_card.locator(".retried")
    expect(retried).to_contain_text(re.compile(r"Retried → wr_"))
    new_id = retried.locator("a").first.inner_text().strip()
    assert re.fullmatch(r"wr_[A-Za-z0-9_-]+", new_id), new_id
    return new_id


def test_operator_retries_and_the_new_card_follows_the_run(page, live_world, console_watch):
    sim = live_world.simulator
    # Short lifecycle: the new run is queued, runs (recording) and finishes
    # within a few of the card's 3 s polls.
    sim.state.configure(queued_after=0.5, running_after=1, finished_after=5, failure_rate=0)
    failed = live_world.add_run(
        status="failed",
        workflow_title="Download carrier invoices",
        failure_reason="Login failed: invalid credentials",
    )
    live_world.add_run(status="completed", workflow_title="Sync price list")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    marker = mark_page(page)
    original = card(page, failed)
    expect(original.locator(".badge")).to_have_text("Failed")

    original.get_by_role("button", name="Retry").click()

    new_id = new_run_id_from(original)
    assert new_id != failed
    new = card(page, new_id)
    expect(new).to_be_visible()
    # Swapped in right after the original card, without a reload.
    next_card = page.locator(f'article.run-card[data-run-id="{failed}"] + article.run-card')
    assert next_card.get_attribute("data-run-id") == new_id
    assert page_marker(page) == marker
    assert page.locator("article.run-card").count() == 3
    expect(new.locator(".badge")).to_have_text(re.compile(r"^\s*(Created|Queued|Running)\s*$"))
    expect(new.locator(".lineage")).to_contain_text(f"Retry of {failed}")
    assert sim.state.retry_count(failed) == 1
    page.screenshot(path=SCREENSHOT, full_page=True)

    # "Open in Skyvern" goes to the simulator's page for the new run, and it loads.
    app_link = new.locator(".app-link")
    expect(app_link).to_have_text("Open in Skyvern")
    href = app_link.get_attribute("href")
    assert href.startswith(sim.url + "/") and new_id in href, href
    response = page.request.get(href)
    assert response.status == 200 and new_id in response.text()
    with page.context.expect_page() as popup_info:
        app_link.click()
    popup = popup_info.value
    expect(popup.locator("body")).to_contain_text(new_id)
    popup.close()

    # The new card refreshes itself: the recording appears, then the final status.
    polls = card_requests(page, new_id)
    recording = new.locator(".recording-link")
    expect(recording).to_be_visible(timeout=15_000)
    recording_url = recording.get_attribute("href")
    media = page.request.get(recording_url)
    assert media.status == 200
    assert re.match(r"(video|image)/", media.headers["content-type"]), media.headers
    expect(new.locator(".badge")).to_have_text(re.compile(r"^\s*Completed\s*$"), timeout=15_000)
    assert len(polls) >= 2, polls  # it kept polling while still running
    assert page_marker(page) == marker

    # Finished: the card no longer polls.
    expect(new).not_to_have_attribute("hx-trigger", re.compile(".*"))
    polls_when_done = len(polls)
    page.wait_for_timeout(3_500)
    assert len(polls) == polls_when_done, polls
    expect(new.locator(".recording-link")).to_be_visible()
    assert sim.state.retry_count(failed) == 1
    console_watch.assert_clean()


def test_double_click_and_double_submit_send_one_retry(page, live_world, console_watch):
    sim = live_world.simulator
    clicked = live_world.add_run(status="failed", workflow_title="Book freight")
    submitted = live_world.add_run(status="timed_out", workflow_title="Reconcile ledger")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    marker = mark_page(page)
    posts = retry_posts(page)

    # A fast double click on Retry.
    box = card(page, clicked).get_by_role("button", name="Retry").bounding_box()
    page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    new_id = new_run_id_from(card(page, clicked))
    expect(card(page, new_id)).to_have_count(1)
    page.wait_for_timeout(500)  # room for a second request, were one sent
    assert sim.state.retry_count(clicked) == 1
    assert len(posts) == 1, posts  # the button is disabled while the first is sent

    # Two submits of the same form at once (as from a page without htmx, or a
    # click that got past the disabled button): still one retry at Skyvern.
    answers = page.evaluate(
        """async (runId) => {
          const form = document.querySelector(
            `article.run-card[data-run-id="${runId}"] form.retry-form`);
          const send = () => fetch(form.action, {
            method: "POST", body: new FormData(form), headers: {"HX-Request": "true"}});
          const answers = await Promise.all([send(), send()]);
          return Promise.all(answers.map(async (a) => [a.status, await a.text()]));
        }""",
        submitted,
    )
    assert [status for status, _ in answers] == [200, 200]
    # One answer has the new run's card; the other says nothing was sent again.
    cards = sorted(body.count('class="run-card') for _, body in answers)
    assert cards == [1, 2], answers
    assert sum("Nothing was sent twice" in body for _, body in answers) == 1, answers
    assert sim.state.retry_count(submitted) == 1
    assert sim.state.retry_count(clicked) == 1
    assert page_marker(page) == marker
    console_watch.assert_clean()


def test_viewer_sees_the_cards_but_no_retry_button(page, live_world, console_watch):
    run_ids = [
        live_world.add_run(status=status)
        for status in ("failed", "completed", "terminated", "timed_out")
    ]

    sign_in(page, live_world.viewer, PASSWORD, then=RUNS)

    expect(page.locator("article.run-card")).to_have_count(len(run_ids))
    for run_id in run_ids:
        expect(card(page, run_id).locator(".run-id")).to_have_text(run_id)
        expect(card(page, run_id).locator(".app-link")).to_be_visible()
    expect(page.locator(".retry-form")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Retry"))).to_have_count(0)
    console_watch.assert_clean()


def test_refused_retry_shows_the_error_inline_and_the_button_works_again(
    page, live_world, console_watch
):
    sim = live_world.simulator
    failed = live_world.add_run(status="failed", workflow_title="Download carrier invoices")

    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    marker = mark_page(page)
    original = card(page, failed)
    retry_button = original.get_by_role("button", name="Retry")
    error = original.locator(".card-error")

    # Skyvern rate limits the retry: 429 with Retry-After.
    sim.state.configure(error_rates={429: 1.0}, fault_endpoints=["retry"], rate_limit_retry_after=7)
    retry_button.click()
    expect(error).to_have_text(re.compile(r"rate limiting this team — try again in 7 s"))
    expect(retry_button).to_be_enabled()
    expect(page.locator("article.run-card")).to_have_count(1)
    expect(original.locator(".retried")).to_have_count(0)

    # Skyvern is busy: 503 with Retry-After, no run created.
    sim.state.configure(error_rates={}, busy=True, busy_retry_after=3)
    retry_button.click()
    expect(error).to_have_text(re.compile(r"busy and created no run — try again in 3 s"))
    expect(retry_button).to_be_enabled()
    expect(page.locator("article.run-card")).to_have_count(1)
    assert sim.state.retry_count(failed) == 0

    # Once Skyvern accepts calls again, the same button works.
    sim.state.configure(busy=False)
    retry_button.click()
    new_id = new_run_id_from(original)
    expect(card(page, new_id)).to_be_visible()
    expect(error).to_have_count(0)
    expect(page.locator("article.run-card")).to_have_count(2)
    assert sim.state.retry_count(failed) == 1
    assert page_marker(page) == marker
    console_watch.assert_clean()
