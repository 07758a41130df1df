"""A retry says whether it can re-use its run's browser session: asked of
Skyvern on the confirmation step and in a bulk retry's preview (briefly,
and saying so when Skyvern can't tell), never while a card is drawn."""

from datetime import UTC, datetime, timedelta

import pytest
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
