"""A retry says whether it can re-use its run's browser session: asked of
Skyvern on the confirmation step, in a bulk retry's preview and in a failed
run's page once drawn, beside its Retry (briefly, and saying so when Skyvern
can't tell), never while a card is drawn on the runs page, and never before
a retry is sent."""

from datetime import UTC, datetime, timedelta

import pytest
from django.http import HttpResponse
from django.urls import reverse

from console.bulk.services import bulk_retry_preview
from console.runs import sessions
from console.runs.models import Run
from tests.bulk.test_views import pk_of
from tests.helpers import page_text

HTMX = {"HTTP_HX_REQUEST": "true"}


def confirm_text(client, run_id, **extra):
    url = reverse("runs:run_retry_confirm", kwargs={"team_slug": "acme", "run_id": run_id})
    return page_text(client.get(url, **extra))


def old():
    return datetime.now(UTC) - timedelta(hours=3)


def test_a_closed_session_means_a_fresh_browser(world, client_as):
    run_id = world.add_run(status="completed", browser_session_id="pbs_gone1", created_at=old())
    text = confirm_text(client_as(world.operator), run_id, **HTMX)
    assert (
        "It re-uses browser session pbs_gone1, which has closed: a fresh browser will be used."
        in text
    )


def test_a_session_still_open_is_said_so_without_javascript_too(world, client_as):
    run_id = world.add_run(status="completed", browser_session_id="pbs_open1")
    text = confirm_text(client_as(world.operator), run_id)
    assert "It re-uses browser session pbs_open1, which is still open." in text
    world.simulator.state.close_browser_session("pbs_open1")
    text = confirm_text(client_as(world.operator), run_id)
    assert "pbs_open1, which has closed: a fresh browser will be used." in text


def test_a_session_skyvern_no_longer_has(world, client_as):
    run_id = world.add_run(status="completed")
    Run.objects.filter(run_id=run_id).update(browser_session_id="pbs_unknown9")
    text = confirm_text(client_as(world.operator), run_id, **HTMX)
    assert "pbs_unknown9, which Skyvern no longer has: a fresh browser will be used." in text


@pytest.mark.parametrize(
    "knobs",
    [
        {"error_rates": {500: 1.0}},
        {"error_rates": {422: 1.0}},
        {"malformed_json": True},
        {"hang_seconds": 2},
    ],
)
def test_when_skyvern_cant_say_the_retry_still_can_be_confirmed(
    world, client_as, knobs, monkeypatch
):
    monkeypatch.setattr(sessions, "SESSION_CHECK_SECONDS", 0.3)
    run_id = world.add_run(status="completed", browser_session_id="pbs_flaky1")
    world.simulator.state.configure(fault_endpoints=["browser_sessions"], **knobs)
    text = confirm_text(client_as(world.operator), run_id, **HTMX)
    assert "couldn't check the browser session with Skyvern just now" in text
    assert "Yes, run it again" in text


def test_cards_never_ask_about_sessions(world, client_as):
    run_id = world.add_run(status="failed", browser_session_id="pbs_quiet1", created_at=old())
    world.simulator.state.configure(fault_endpoints=["browser_sessions"], hang_seconds=5)
    client = client_as(world.operator)
    url = reverse("runs:run_card", kwargs={"team_slug": "acme", "run_id": run_id})
    started = datetime.now(UTC)
    text = page_text(client.get(url, **HTMX))
    assert "It re-uses browser session pbs_quiet1." in text
    assert "closed" not in text
    assert datetime.now(UTC) - started < timedelta(seconds=3)


def test_the_bulk_preview_counts_closed_sessions(world, client_as):
    closed = [
        world.add_run(status="failed", browser_session_id=f"pbs_c{n}", created_at=old())
        for n in range(2)
    ]
    still = world.add_run(status="failed", browser_session_id="pbs_still1")
    plain = world.add_run(status="failed")
    ids = [*closed, still, plain]
    shown = bulk_retry_preview(
        team=world.team_a,
        runs=Run.objects.filter(run_id__in=ids),
        include_already_retried=False,
        check_sessions=True,
    )
    assert (shown.effects.browser_sessions, shown.effects.sessions_closed) == (3, 2)
    assert shown.effects.sessions_unchecked == 0
    # Without asking (an incident's counts), nothing is checked.
    quiet = bulk_retry_preview(
        team=world.team_a, runs=Run.objects.filter(run_id__in=ids), include_already_retried=False
    )
    assert quiet.effects.sessions_closed == 0

    client = client_as(world.operator)
    url = reverse("bulk:bulk_retry_preview", args=["acme"])
    text = page_text(client.post(url, {"scope": "ids", "run": [pk_of(r) for r in ids]}))
    assert (
        "3 re-use the browser session of their run; 2 of those sessions have closed: "
        "a fresh browser will be used" in text
    )


def test_the_bulk_preview_says_which_sessions_it_couldnt_check(world, client_as, monkeypatch):
    monkeypatch.setattr(sessions, "SESSION_CHECK_SECONDS", 0.3)
    ids = [world.add_run(status="failed", browser_session_id="pbs_x1")]
    world.simulator.state.configure(fault_endpoints=["browser_sessions"], error_rates={503: 1.0})
    client = client_as(world.operator)
    url = reverse("bulk:bulk_retry_preview", args=["acme"])
    text = page_text(client.post(url, {"scope": "ids", "run": [pk_of(r) for r in ids]}))
    assert (
        "1 re-uses the browser session of its run; couldn't check the browser session of 1" in text
    )


# --- the run's page: beside a failed run's Retry ---------------------------------------


def detail_url(run_id):
    return reverse("runs:run_detail", kwargs={"team_slug": "acme", "run_id": run_id})


def refresh(client, run_id, **params):
    """The run page's refresh, as htmx asks for it once the page has loaded."""
    url = reverse("runs:run_detail_refresh", kwargs={"team_slug": "acme", "run_id": run_id})
    return client.get(url, params, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="run-details")


def card_of(response) -> str:
    """What the refreshed card (swapped out of band) says."""
    html = response.content.decode()
    return page_text(HttpResponse(html.split('<div id="run-card-slot"', 1)[1]))


@pytest.fixture
def asked(monkeypatch):
    """The browser sessions asked of Skyvern, in order."""
    seen = []
    real = sessions.browser_session_state

    def spy(connection, browser_session_id):
        seen.append(browser_session_id)
        return real(connection, browser_session_id)

    monkeypatch.setattr(sessions, "browser_session_state", spy)
    return seen


def test_a_failed_runs_page_says_its_session_has_closed_beside_retry(world, client_as, asked):
    run_id = world.add_run(status="failed", browser_session_id="pbs_shut7", created_at=old())
    client = client_as(world.operator)

    # The page is drawn from the cache at once: it says the session, asks nobody.
    first = page_text(client.get(detail_url(run_id)))
    assert "It re-uses browser session pbs_shut7." in first
    assert "closed" not in first and asked == []

    # Its refresh asks Skyvern, and the card's Retry says what the retry will find.
    response = refresh(client, run_id)
    assert response.status_code == 200
    card = card_of(response)
    assert (
        "It re-uses browser session pbs_shut7, which has closed: a fresh browser will be used. "
        "Retry" in card
    )
    assert asked == ["pbs_shut7"]
    assert world.simulator.state.retry_count(run_id) == 0


def test_a_session_still_open_is_said_so_on_the_runs_page(world, client_as):
    run_id = world.add_run(status="failed", browser_session_id="pbs_live3")
    card = card_of(refresh(client_as(world.operator), run_id))
    assert "It re-uses browser session pbs_live3, which is still open." in card


@pytest.mark.parametrize(
    "knobs",
    [
        {"error_rates": {500: 1.0}},
        {"error_rates": {403: 1.0}},
        {"malformed_json": True},
        {"hang_seconds": 2},
    ],
)
def test_when_skyvern_cant_say_the_page_still_works_and_says_so(
    world, client_as, knobs, monkeypatch
):
    monkeypatch.setattr(sessions, "SESSION_CHECK_SECONDS", 0.3)
    run_id = world.add_run(status="failed", browser_session_id="pbs_flaky2")
    world.simulator.state.configure(fault_endpoints=["browser_sessions"], **knobs)
    response = refresh(client_as(world.operator), run_id)
    assert response.status_code == 200
    assert "Up to date with Skyvern" in page_text(response)
    card = card_of(response)
    assert (
        "It re-uses browser session pbs_flaky2; "
        "couldn't check the browser session with Skyvern just now." in card
    )
    assert card.rstrip().endswith("Retry")


def test_the_check_waits_no_longer_than_elsewhere(world, client_as, monkeypatch):
    monkeypatch.setattr(sessions, "SESSION_CHECK_SECONDS", 0.5)
    run_id = world.add_run(status="failed", browser_session_id="pbs_slow1")
    world.simulator.state.configure(fault_endpoints=["browser_sessions"], hang_seconds=5)
    started = datetime.now(UTC)
    card = card_of(refresh(client_as(world.operator), run_id))
    assert "couldn't check the browser session" in card
    assert datetime.now(UTC) - started < timedelta(seconds=3)


def test_the_first_paint_and_the_retry_never_wait_for_the_session(world, client_as):
    run_id = world.add_run(status="failed", browser_session_id="pbs_hang1", created_at=old())
    world.simulator.state.configure(fault_endpoints=["browser_sessions"], hang_seconds=5)
    client = client_as(world.operator)
    started = datetime.now(UTC)
    assert client.get(detail_url(run_id)).status_code == 200
    url = reverse("runs:run_retry", kwargs={"team_slug": "acme", "run_id": run_id})
    answer = client.post(url, {"seen_retries": "0"}, **HTMX)
    assert datetime.now(UTC) - started < timedelta(seconds=3)
    assert answer.status_code == 200 and world.simulator.state.retry_count(run_id) == 1


def test_only_a_retry_offered_at_once_asks(world, client_as, asked):
    """A run that succeeded asks on its confirmation step instead; a run
    Skyvern retries itself, or still going, offers no Retry; a viewer may not
    retry; a card showing the answer to a retry just sent is kept as it is."""
    succeeded = world.add_run(status="completed", browser_session_id="pbs_a")
    itself = world.add_run(
        status="failed",
        browser_session_id="pbs_b",
        retry_pending=True,
        next_attempt_at=datetime.now(UTC) + timedelta(hours=1),
    )
    going = world.add_run(status="running", browser_session_id="pbs_c")
    failed = world.add_run(status="failed", browser_session_id="pbs_d")
    without = world.add_run(status="failed")
    assert "Retry" not in card_of(refresh(client_as(world.viewer), failed))
    operator = client_as(world.operator)
    for run_id in (succeeded, itself, going, without):
        assert refresh(operator, run_id).status_code == 200
    assert refresh(operator, failed, answered=failed).status_code == 200
    assert asked == []
    refresh(operator, failed)
    assert asked == ["pbs_d"]


def test_the_runs_list_never_asks(world, client_as, asked):
    world.add_run(status="failed", browser_session_id="pbs_list1", created_at=old())
    text = page_text(client_as(world.operator).get(reverse("runs:run_list", args=["acme"])))
    assert asked == []
    assert "closed" not in text
