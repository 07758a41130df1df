"""The runs page from the keyboard alone: skip links, the shortcuts (/ j k x
r ?), and the focus kept on the run a person acted on, with what changed said
in the page's live region. On the default compact rows; one test on cards."""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

from .conftest import mark_page, page_marker, sign_in
from .test_runs_page import RUNS, card, new_run_id_from

pytestmark = pytest.mark.browser


def row(page, run_id):
    """The run's line in the table: the row with the run's own box."""
    box = page.get_by_role("checkbox", name=f"Select {run_id} for bulk retry", exact=True)
    return page.get_by_role("row").filter(has=box)


def row_group(page, run_id):
    """The run's line and the card unfolding under it."""
    return page.get_by_role("rowgroup").filter(has=row(page, run_id))


def on_retry(page) -> bool:
    return page.evaluate(
        "() => document.activeElement?.matches('button') && "
        "document.activeElement.textContent.trim() === 'Retry'"
    )


def tabs_to_first_retry(page, limit=80) -> int:
    for presses in range(1, limit + 1):
        page.keyboard.press("Tab")
        if on_retry(page):
            return presses
    raise AssertionError(f"no Retry button after {limit} Tabs")


def run_lines(page):
    return page.locator("tr[data-run-id]")


def runs_in_order(page, runs) -> list[str]:
    return [runs.nth(n).get_attribute("data-run-id") for n in range(runs.count())]


def announced(page):
    return page.locator("#live-announcer")


def test_skip_to_runs_takes_few_tabs_to_the_first_retry(page, live_world, console_watch):
    for _ in range(3):
        live_world.add_run(status="failed", failure_reason="Login failed: portal unavailable")
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    # Tabbing through everything: the header, the filters, the bulk bar...
    without_skipping = tabs_to_first_retry(page)
    assert without_skipping > 20, without_skipping

    page.reload()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    expect(page.get_by_role("link", name="Skip to content")).to_be_in_viewport()
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to runs")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    with_skipping = 2 + 1 + tabs_to_first_retry(page, limit=20)
    assert with_skipping <= 10, with_skipping  # past the filters; now the first row's box and link

    # "Skip to content" leads into the page's own content, past the header.
    page.reload()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.querySelector('main').contains(document.activeElement)")
    console_watch.assert_clean()


def test_slash_goes_to_the_search_box(page, live_world, console_watch):
    wanted = live_world.add_run(status="failed", workflow_title="Download carrier invoices")
    live_world.add_run(status="failed", workflow_title="Sync price list")
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    expect(page.get_by_text("Press ? for keyboard shortcuts")).to_be_visible()
    expect(run_lines(page)).to_have_count(2)

    page.keyboard.press("/")
    search = page.get_by_label("Search runs")
    expect(search).to_be_focused()
    # Typed letters are text, not shortcuts (r, k, j, x, ? included).
    page.keyboard.type("carrier")
    expect(search).to_have_value("carrier")
    expect(run_lines(page)).to_have_count(1)
    expect(row(page, wanted)).to_be_visible()
    expect(announced(page)).to_have_text("1 run matches.")
    expect(page.get_by_role("dialog")).to_have_count(0)
    console_watch.assert_clean()


def test_j_and_k_move_between_rows_and_x_ticks_the_row(page, live_world, console_watch):
    for title in ("Download carrier invoices", "Upload proof of delivery", "Sync price list"):
        live_world.add_run(status="failed", workflow_title=title)
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    first, second, third = runs_in_order(page, run_lines(page))
    # An unfolded card is part of its row: j goes past it to the next row.
    page.get_by_text(f"Card of {first}").click()
    expect(row_group(page, first).get_by_role("article")).to_be_visible()
    page.locator("h1").click()  # the pointer away: j starts from the top again

    page.keyboard.press("j")
    expect(row(page, first)).to_be_focused()
    page.keyboard.press("j")
    expect(row(page, second)).to_be_focused()
    page.keyboard.press("j")
    expect(row(page, third)).to_be_focused()
    page.keyboard.press("j")  # the last: stays
    expect(row(page, third)).to_be_focused()
    page.keyboard.press("k")
    expect(row(page, second)).to_be_focused()
    # A visible focus ring around it.
    outline = row(page, second).evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline == "solid", outline

    box = row(page, second).get_by_role("checkbox", name=f"Select {second} for bulk retry")
    page.keyboard.press("x")
    expect(box).to_be_checked()
    page.keyboard.press("x")
    expect(box).not_to_be_checked()
    page.keyboard.press("x")
    expect(box).to_be_checked()
    expect(row(page, second)).to_be_focused()
    expect(row(page, first).get_by_role("checkbox")).not_to_be_checked()
    # From inside the unfolded card, k and j move by rows too.
    row_group(page, first).get_by_role("article").get_by_role("link").first.focus()
    page.keyboard.press("j")
    expect(row(page, second)).to_be_focused()

    page.get_by_role("button", name="Preview the selected runs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk retry — preview")
    expect(page.locator(".bulk-to-send")).to_have_text("1")
    expect(page.locator("main")).to_contain_text("Upload proof of delivery")
    console_watch.assert_clean()


def test_r_retries_a_failed_run_and_the_focus_stays_on_its_row(page, live_world, console_watch):
    sim = live_world.simulator
    failed = live_world.add_run(status="failed", failure_reason="Login failed")
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    marker = mark_page(page)

    page.keyboard.press("j")
    original = row(page, failed)
    expect(original).to_be_focused()
    page.keyboard.press("r")

    expect(original).to_contain_text(re.compile(r"Retried → wr_"))
    new_id = original.get_by_role("link").filter(has_text=re.compile(r"^wr_")).last.inner_text()
    assert new_id != failed
    expect(row(page, new_id)).to_be_visible()
    # The redrawn row has the focus (not the page), and what happened is said.
    expect(original).to_be_focused()
    expect(announced(page)).to_have_text(
        re.compile(rf"^Run {failed} retried: new run {new_id} (created|queued|running)\.$")
    )
    assert sim.state.retry_count(failed) == 1
    assert page_marker(page) == marker

    # r on the run already retried: its row has no Retry; its card unfolds at
    # "Retry again", whose box must be ticked first.
    page.keyboard.press("r")
    again = row_group(page, failed).get_by_role("checkbox", name="Yes, retry it again")
    expect(again).to_be_visible()
    expect(again).to_be_focused()
    assert sim.state.retry_count(failed) == 1
    console_watch.assert_clean()


def test_r_on_a_run_that_succeeded_asks_and_never_retries_alone(page, live_world, console_watch):
    sim = live_world.simulator
    done = live_world.add_run(status="completed", workflow_title="Sync price list")
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)

    page.keyboard.press("j")
    page.keyboard.press("r")
    original, group = row(page, done), row_group(page, done)
    expect(group.get_by_text("This run succeeded; retrying runs it again.")).to_be_visible()
    expect(original).to_be_focused()
    expect(announced(page)).to_contain_text(
        f"Run {done}: This run succeeded; retrying runs it again."
    )
    # r again only goes to the question's answer; Enter gives it.
    page.keyboard.press("r")
    expect(group.get_by_role("button", name="Yes, run it again")).to_be_focused()
    assert sim.state.retry_count(done) == 0

    # With the mouse too, the answer's row gets the focus, not the page.
    group.get_by_role("button", name="Don't retry").click()
    expect(group.get_by_text("This run succeeded")).to_have_count(0)
    expect(original).to_be_focused()
    assert sim.state.retry_count(done) == 0
    console_watch.assert_clean()


def test_r_on_a_run_without_retry_sends_nothing(page, live_world, console_watch):
    sim = live_world.simulator
    going = live_world.add_run(status="running")
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    page.keyboard.press("j")
    expect(row(page, going)).to_be_focused()
    page.keyboard.press("r")
    expect(announced(page)).to_have_text(f"Run {going} has no Retry.")
    expect(row(page, going)).to_be_focused()
    page.get_by_text(f"Card of {going}").click()
    expect(row_group(page, going).get_by_text("Can't retry yet")).to_be_visible()
    assert sim.state.retry_count(going) == 0
    console_watch.assert_clean()


@pytest.mark.usefixtures("cards_layout")
def test_on_cards_j_k_x_and_r_work_the_same(page, live_world, console_watch):
    sim = live_world.simulator
    for title in ("Download carrier invoices", "Upload proof of delivery", "Sync price list"):
        live_world.add_run(status="failed", workflow_title=title)
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    expect(page.get_by_role("table")).to_have_count(0)
    first, second, third = runs_in_order(page, page.locator("article.run-card"))

    page.keyboard.press("j")
    expect(card(page, first)).to_be_focused()
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(card(page, third)).to_be_focused()
    page.keyboard.press("k")
    expect(card(page, second)).to_be_focused()
    outline = card(page, second).evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline == "solid", outline

    box = card(page, second).get_by_role("checkbox", name=f"Select {second} for bulk retry")
    page.keyboard.press("x")
    expect(box).to_be_checked()
    expect(card(page, second)).to_be_focused()
    expect(card(page, first).locator("input.bulk-pick")).not_to_be_checked()

    page.keyboard.press("r")
    original = card(page, second)
    new_id = new_run_id_from(original)
    expect(card(page, new_id)).to_be_visible()
    expect(original).to_be_focused()
    expect(announced(page)).to_have_text(
        re.compile(rf"^Run {second} retried: new run {new_id} (created|queued|running)\.$")
    )
    assert sim.state.retry_count(second) == 1
    # j goes on to the new run's card, drawn right after it.
    page.keyboard.press("j")
    expect(card(page, new_id)).to_be_focused()
    # r on the run already retried presses "Retry again": its box must be ticked first.
    page.keyboard.press("k")
    page.keyboard.press("r")
    expect(original.get_by_role("checkbox", name="Yes, retry it again")).to_be_focused()
    assert sim.state.retry_count(second) == 1
    console_watch.assert_clean()


def test_question_mark_lists_the_shortcuts(page, live_world, console_watch):
    failed = live_world.add_run(status="failed")
    sign_in(page, live_world.operator, PASSWORD, then=RUNS)
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_hidden()

    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Next / previous run")
    expect(dialog).to_contain_text("Search runs")
    # Behind the list, the keys do nothing.
    page.keyboard.press("j")
    expect(row(page, failed)).not_to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    console_watch.assert_clean()
