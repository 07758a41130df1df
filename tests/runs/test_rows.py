"""Compact rows (issue 15): the runs page's default, one line a run.

A row says what its card says in brief and offers the card's main action with
the card's confirmations; its card unfolds under it. The choice of rows or
cards is a cookie, set by a plain form.
"""

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from django.core.cache import caches
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from console.runs import cards, layout
from console.runs.models import ActionKind, ActionState, Retry, RetryState, Run, RunAction, Status
from tests.helpers import page_text

WHEN = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
TAG_IN = '"><script>alert(1)</script><img src=x onerror=alert(1)>'
HTMX = {"HTTP_HX_REQUEST": "true"}
RUNS = reverse("runs:run_list", kwargs={"team_slug": "acme"})


@pytest.fixture(autouse=True)
def empty_card_cache():
    caches[cards.CACHE].clear()
    yield
    caches[cards.CACHE].clear()


def cached(world, run_id, **fields) -> Run:
    defaults = {
        "team": world.team_a,
        "connection": world.connection_a,
        "run_id": run_id,
        "status": Status.FAILED,
        "workflow_title": "Download carrier invoices",
        "created_at": WHEN,
        "finished_at": WHEN + timedelta(minutes=3),
    }
    return Run.objects.create(**{**defaults, **fields})


def row_of(html: str, run: Run) -> str:
    found = re.search(rf'<tbody id="run-{run.pk}".*?</tbody>', html, re.S)
    assert found, f"no row for {run.run_id}"
    return found.group(0)


def line_of(html: str, run: Run) -> str:
    """The row's line, without its card."""
    return row_of(html, run).split('<tr class="row-card">', 1)[0]


def action_of(html: str, run: Run) -> str:
    return re.search(r'<td class="row-action">(.*?)</td>', line_of(html, run), re.S).group(1)


def test_rows_are_the_default_and_stand_for_their_runs(world, client_as):
    run = cached(world, "wr_row", failure_reason="Login failed")
    html = client_as(world.operator).get(RUNS).content.decode()
    assert '<table class="run-rows stack-on-phone" id="run-rows">' in html
    assert "<article id=" not in html  # no card stands for a run
    line = line_of(html, run)
    # What the keyboard shortcuts find a run by; the bulk box.
    assert f'<tr class="row-line" data-run-id="{run.run_id}" tabindex="-1">' in line
    assert 'class="bulk-pick" form="bulk-select"' in line
    assert f'href="/t/acme/runs/{run.run_id}/"' in line
    assert "Download carrier invoices" in line and "Login failed" in line
    assert "<time datetime=" in line
    # The whole card, folded under the line, without a second box or id.
    card = row_of(html, run).split('<tr class="row-card">', 1)[1]
    assert '<details class="row-expand">' in card and 'class="run-card status-failed"' in card
    assert "bulk-pick" not in card and "data-run-id" not in card
    assert 'hx-vals=\'{"layout": "rows"}\'' in row_of(html, run)


def test_every_value_a_row_shows_is_escaped(world, client_as):
    short = cached(
        world,
        "wr_hostile",
        workflow_permanent_id=f"wpid{TAG_IN}",
        workflow_title=f"Title {TAG_IN}",
        failure_reason=f"Reason {TAG_IN}",
    )
    long_reason = f"Reason {'long ' * 40}{TAG_IN}"
    long = cached(world, "wr_hostile_long", failure_reason=long_reason)
    hook = cached(
        world,
        "wr_hostile_hook",
        status=Status.FAILED,
        webhook_failure_reason=f"Hook said {TAG_IN}",
    )
    response = client_as(world.operator).get(RUNS)
    html = response.content.decode()
    assert "<script>alert" not in html and "<img src=x" not in html
    text = page_text(response)
    for shown in (f"Title {TAG_IN}", f"Reason {TAG_IN}", f"Webhook: Hook said {TAG_IN}"):
        assert shown in text
    line = line_of(html, short)
    assert f'title="{escape(f"wpid{TAG_IN}")}"' in line
    assert f'title="{escape(f"Reason {TAG_IN}")}"' in line
    # A long reason is cut on the line, whole on hover and unfolded.
    long_line = line_of(html, long)
    assert f'<summary title="{escape(long_reason)}">' in long_line
    assert f'<p class="failure-full">{escape(long_reason)}</p>' in long_line
    assert "Webhook only" in line_of(html, hook)


def test_each_state_offers_the_cards_action_with_its_confirmations(world, client_as):
    failed = cached(world, "wr_failed")
    completed = cached(world, "wr_completed", status=Status.COMPLETED)
    hook = cached(world, "wr_hook", webhook_failure_reason="Receiver answered 500")
    running = cached(world, "wr_running", status=Status.RUNNING, finished_at=None)
    skyvern = cached(
        world, "wr_skyvern", retry_pending=True, next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    retried = cached(world, "wr_retried")
    new = cached(
        world, "wr_retried_new", created_at=WHEN + timedelta(hours=1), retried_from=retried
    )
    Retry.objects.create(
        run=retried, number=1, state=RetryState.RETRIED, requested_at=WHEN, new_run=new
    )
    unknown = cached(world, "wr_unknown")
    Retry.objects.create(run=unknown, number=1, state=RetryState.UNKNOWN, requested_at=WHEN)

    html = client_as(world.operator).get(RUNS).content.decode()
    one_click = action_of(html, failed)
    assert 'method="post"' in one_click and '<button type="submit">Retry</button>' in one_click
    assert 'name="seen_retries" value="0"' in one_click
    # A run that succeeded: a GET of the confirmation step, nothing sent.
    confirm = action_of(html, completed)
    assert 'method="get"' in confirm and "/retry/confirm/" in confirm
    # A webhook-only failure: the webhook is replayed, the run isn't redone.
    assert "Replay webhook" in action_of(html, hook)
    assert "/retry/" not in action_of(html, hook)
    assert "Cancel run…" in action_of(html, running)
    assert 'hx-trigger="every 3s"' in row_of(html, running)
    assert action_of(html, skyvern) == ""
    assert "Skyvern retries this at" in line_of(html, skyvern)
    # Retried already: no Retry on the line (again is asked on its card).
    assert action_of(html, retried) == ""
    assert (
        'Retried → <a href="/t/acme/runs/wr_retried_new/">wr_retried_new</a>'
        ' <span class="new-run-status">failed</span>'
    ) in line_of(html, retried)
    assert "Retry of" in line_of(html, new)
    assert "Check" in action_of(html, unknown)
    assert "Retry outcome unknown" in line_of(html, unknown)


def test_a_viewer_gets_no_boxes_and_no_actions(world, client_as):
    run = cached(world, "wr_viewed")
    operator_html = client_as(world.operator).get(RUNS).content.decode()  # fills the cache
    assert "bulk-pick" in line_of(operator_html, run)
    html = client_as(world.viewer).get(RUNS).content.decode()
    assert "bulk-pick" not in html and '<form method="post" action="/t/acme/runs/' not in html
    assert action_of(html, run) == ""
    assert '<span class="visually-hidden">Select</span>' not in html
    assert 'colspan="9"' in row_of(html, run)  # no box column


def test_rows_are_cached_and_each_person_gets_their_own_token(world, client_as):
    run_id = world.add_run(status="failed")
    run = Run.objects.get(run_id=run_id)
    client_as(world.operator).get(RUNS)  # fills the cache
    key = cards._key(
        cards._viewing(world.team_a, True, True).encode(),
        cards.read_card(Run.objects.filter(pk=run.pk)),
    )
    assert caches[cards.CACHE].get(key)

    admin = Client(enforce_csrf_checks=True)
    admin.force_login(world.admin)
    html = admin.get(RUNS, {"status": "failed"}).content.decode()
    assert cards.FORM_FIELDS_MARK not in html
    line = line_of(html, run)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', line).group(1)
    assert f'name="next" value="{RUNS}?status=failed"' in line
    # The token is this person's: the row's Retry without JavaScript goes through.
    response = admin.post(
        reverse("runs:run_retry", kwargs={"team_slug": "acme", "run_id": run_id}),
        {"csrfmiddlewaretoken": token, "seen_retries": "0", "next": f"{RUNS}?status=failed"},
    )
    assert response.status_code == 302 and response["Location"] == f"{RUNS}?status=failed"
    assert world.simulator.state.retry_count(run_id) == 1


def test_a_page_of_rows_costs_no_more_queries_than_a_page_of_cards(world, client_as):
    for number in range(10):
        cached(world, f"wr_q{number}", created_at=WHEN + timedelta(minutes=number))
    client = client_as(world.operator)
    client.cookies[layout.COOKIE] = layout.CARDS
    with CaptureQueriesContext(connection) as as_cards:
        client.get(RUNS)
    client.cookies[layout.COOKIE] = layout.ROWS
    with CaptureQueriesContext(connection) as as_rows:
        assert "run-rows" in client.get(RUNS).content.decode()
    assert len(as_rows) <= len(as_cards)


def test_the_choice_is_remembered_without_javascript(world, client_as):
    cached(world, "wr_choice")
    client = client_as(world.operator)
    switch = reverse("runs_layout_set")
    assert client.get(switch).status_code == 405
    response = client.post(switch, {"layout": "cards", "next": f"{RUNS}?status=failed"})
    assert response.status_code == 302 and response["Location"] == f"{RUNS}?status=failed"
    cookie = response.cookies[layout.COOKIE]
    assert cookie.value == "cards" and cookie["httponly"] and cookie["samesite"] == "Lax"
    html = client.get(RUNS).content.decode()
    assert '<article id="run-' in html and "run-rows" not in html
    assert 'aria-pressed="true" name="layout" value="cards"' in html
    # Somewhere else, or something unknown: home, and rows.
    response = client.post(switch, {"layout": "tiles", "next": "https://evil.example/"})
    assert response["Location"] == "/" and response.cookies[layout.COOKIE].value == "rows"
    assert "run-rows" in client.get(RUNS).content.decode()


def test_the_switch_needs_a_token(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.operator)
    assert client.post(reverse("runs_layout_set"), {"layout": "cards"}).status_code == 403


def test_a_retry_from_a_row_answers_with_rows(world, client_as):
    run_id = world.add_run(status="failed", workflow_title="Book freight")
    run = Run.objects.get(run_id=run_id)
    client = client_as(world.operator)
    url = reverse("runs:run_retry", kwargs={"team_slug": "acme", "run_id": run_id})
    response = client.post(url, {"seen_retries": "0", "layout": "rows"}, **HTMX)
    html = response.content.decode()
    assert world.simulator.state.retry_count(run_id) == 1
    new = Run.objects.get(retried_from=run)
    assert html.count("<tbody id=") == 2 and "<article id=" not in html
    assert "Retried → " in line_of(html, run)
    assert action_of(html, run) == ""  # never a second Retry
    assert "Retry of" in line_of(html, new)
    # Again, from a stale page: refused, and the row says so unfolded.
    again = client.post(url, {"seen_retries": "0", "layout": "rows"}, **HTMX).content.decode()
    assert world.simulator.state.retry_count(run_id) == 1
    assert '<details class="row-expand" open>' in row_of(again, run)
    assert 'class="card-error"' in row_of(again, run)


def test_a_completed_rows_retry_asks_in_its_unfolded_card(world, client_as):
    run_id = world.add_run(status="completed")
    run = Run.objects.get(run_id=run_id)
    client = client_as(world.operator)
    url = reverse("runs:run_retry_confirm", kwargs={"team_slug": "acme", "run_id": run_id})
    html = client.get(url, {"layout": "rows"}, **HTMX).content.decode()
    row = row_of(html, run)
    assert '<details class="row-expand" open>' in row and "Yes, run it again" in row
    assert world.simulator.state.retry_count(run_id) == 0
    # Without htmx, the same page as from a card.
    assert "<tbody" not in client.get(url, {"layout": "rows"}).content.decode()


def test_a_rows_refresh_keeps_it_unfolded_only_when_it_was(world, client_as):
    run_id = world.add_run(status="failed")
    run = Run.objects.get(run_id=run_id)
    client = client_as(world.operator)
    url = reverse("runs:run_card", kwargs={"team_slug": "acme", "run_id": run_id})
    folded = client.get(url, {"layout": "rows"}, **HTMX).content.decode()
    assert '<details class="row-expand">' in row_of(folded, run)
    unfolded = client.get(url, {"layout": "rows", "open": "1"}, **HTMX).content.decode()
    assert '<details class="row-expand" open>' in row_of(unfolded, run)
    # From a card (the detail page, the cards layout): a card.
    assert '<article id="run-' in client.get(url, **HTMX).content.decode()


def test_a_webhook_replay_answers_on_the_line(world, client_as):
    """The card stays folded after Replay webhook: the line itself says how
    the replay went, a replay the receiver never answered included."""

    def replay(run, number, **fields):
        RunAction.objects.create(
            run=run,
            kind=ActionKind.REPLAY_WEBHOOK,
            number=number,
            requested_by=world.operator,
            requested_at=WHEN + timedelta(hours=number),
            **fields,
        )

    unanswered = cached(world, "wr_hook_silent", webhook_failure_reason="Receiver answered 500")
    # Skyvern replayed it (done); the receiver never answered (no status code).
    replay(unanswered, 1, state=ActionState.DONE, error="connection refused")
    answered = cached(world, "wr_hook_took", webhook_failure_reason="Receiver answered 500")
    replay(answered, 1, state=ActionState.DONE, error="connection refused")
    replay(answered, 2, state=ActionState.DONE, status_code=200)
    unknown = cached(world, "wr_hook_unknown", webhook_failure_reason="Receiver answered 500")
    replay(unknown, 1, state=ActionState.UNKNOWN, error="Skyvern timed out")
    untouched = cached(world, "wr_hook_untouched", webhook_failure_reason="Receiver answered 500")

    html = client_as(world.operator).get(RUNS).content.decode()

    def retry_cell(run):
        found = re.search(r'<td class="row-retry"[^>]*>(.*?)</td>', line_of(html, run), re.S)
        return unescape(found.group(1))

    assert retry_cell(unanswered) == "Webhook only; replayed: the receiver didn't answer"
    assert retry_cell(answered) == "Webhook only; replayed: HTTP 200 (2 replays)"
    assert retry_cell(unknown) == "Webhook only; replay outcome unknown"
    assert retry_cell(untouched) == "Webhook only"
