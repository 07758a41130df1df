"""Replaying a webhook-only failure's webhook and canceling a running run,
from the run's card: what the card says and offers, one Skyvern call per
intent, the role each needs, every Skyvern error, and the audit log."""

import pytest
from django.test import Client
from django.urls import reverse

from console.audit.models import AuditEntry
from console.runs import actions
from console.runs.models import ActionKind, ActionState, Retry, Run, RunAction
from console.runs.store import runs_store_listing
from console.skyvern import SkyvernClient
from tests.helpers import run_in_threads
from tests.skyvern.test_client_cancel_webhooks_workflows import Receiver

HTMX = {"HTTP_HX_REQUEST": "true"}
HOOK_FAILURE = "Webhook POST to the receiver failed: HTTP 502 Bad Gateway"


def url(name, world, run_id):
    return reverse(f"runs:{name}", kwargs={"team_slug": world.team_a.slug, "run_id": run_id})


@pytest.fixture
def receiver():
    made = Receiver(status=200, body=b'{"ok": true, "note": "<script>alert(1)</script>"}')
    yield made
    made.close()


def webhook_only_run(world, webhook_url) -> str:
    """A run that failed only because its webhook failed, cached as a sync
    caches it (the listing carries webhook_failure_reason)."""
    run_id = world.add_run(
        status="failed", webhook_url=webhook_url, webhook_failure_reason=HOOK_FAILURE
    )
    connection = world.connection_a
    summary = next(
        s
        for s in SkyvernClient(connection.base_url, connection.api_key()).list_runs(page_size=1000)
        if s.run_id == run_id
    )
    runs_store_listing(connection=connection, summaries=[summary])
    return run_id


def replay(client, world, run_id, *, seen=0, htmx=True, **extra):
    data = {"seen_replays": str(seen), **extra}
    return client.post(url("run_webhook_replay", world, run_id), data, **(HTMX if htmx else {}))


# --- a webhook-only failure ----------------------------------------------------------


def test_the_sync_keeps_why_only_the_webhook_failed(world, receiver):
    run_id = webhook_only_run(world, receiver.url)
    run = Run.objects.get(run_id=run_id)
    assert run.webhook_failure_reason == HOOK_FAILURE and run.webhook_only_failure


def test_card_says_only_the_webhook_failed_and_offers_replay_not_retry(world, client_as, receiver):
    run_id = webhook_only_run(world, receiver.url)
    html = client_as(world.operator).get(url("run_detail", world, run_id)).content.decode()
    assert "Only the webhook failed" in html and HOOK_FAILURE in html
    assert "Replay webhook</button>" in html
    # Retry stays possible, behind saying the browser work will be redone.
    assert 'name="confirm_redo"' in html and "Retry anyway</button>" in html
    assert ">Retry</button>" not in html


def test_an_ordinary_failure_offers_retry_and_no_replay(world, client_as):
    run_id = world.add_run(status="failed", failure_reason="Login failed")
    html = client_as(world.operator).get(url("run_detail", world, run_id)).content.decode()
    assert ">Retry</button>" in html
    assert "Replay webhook" not in html and "Only the webhook failed" not in html
    response = replay(client_as(world.operator), world, run_id)
    assert "Only a run whose webhook alone failed" in response.content.decode()
    assert RunAction.objects.count() == 0


def test_retry_of_a_webhook_only_failure_needs_the_confirmation(world, client_as, receiver):
    run_id = webhook_only_run(world, receiver.url)
    client = client_as(world.operator)
    retry_url = url("run_retry", world, run_id)
    refused = client.post(retry_url, {"seen_retries": "0"}, **HTMX).content.decode()
    assert "Only this run&#x27;s webhook failed" in refused
    assert world.simulator.state.retry_count(run_id) == 0 and not Retry.objects.exists()

    client.post(retry_url, {"seen_retries": "0", "confirm_redo": "yes"}, **HTMX)
    assert world.simulator.state.retry_count(run_id) == 1


def test_replay_shows_the_receivers_answer_escaped_and_is_audited(world, client_as, receiver):
    run_id = webhook_only_run(world, receiver.url)
    response = replay(client_as(world.operator), world, run_id)

    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert len(receiver.requests) == 1
    assert "Webhook replayed to " in html and "delivered, HTTP 200 in " in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    action = RunAction.objects.get()
    assert (action.kind, action.state, action.status_code) == ("replay_webhook", "done", 200)
    assert action.requested_by == world.operator and action.target_url == receiver.url
    entry = AuditEntry.objects.get(action="run_webhook_replay")
    assert (entry.outcome, entry.target_id, entry.details["status_code"]) == ("ok", run_id, 200)
    assert set(entry.details) == {"number", "connection", "status_code", "latency_ms"}
    # The card now counts the replay: the next click is a new intent.
    assert 'name="seen_replays" value="1"' in html


def test_a_receiver_that_refuses_is_shown_as_refused(world, client_as):
    failing = Receiver(status=500, body=b"database down")
    try:
        run_id = webhook_only_run(world, failing.url)
        html = replay(client_as(world.operator), world, run_id).content.decode()
    finally:
        failing.close()
    assert "refused by the receiver, HTTP 500" in html and "database down" in html
    assert RunAction.objects.get().state == ActionState.DONE


def test_double_click_replays_once(world, client_as, receiver):
    run_id = webhook_only_run(world, receiver.url)
    client = client_as(world.operator)
    replay(client, world, run_id)
    second = replay(client, world, run_id).content.decode()
    assert len(receiver.requests) == 1
    assert "Not sent again: acme-operator already asked for this webhook replay" in second
    assert AuditEntry.objects.filter(action="run_webhook_replay").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_people_at_once_replay_once(world, receiver):
    world.simulator.state.configure(latency_ms=300)
    run_id = webhook_only_run(world, receiver.url)
    run = Run.objects.select_related("connection").get(run_id=run_id)

    def click(user):
        def go():
            fresh = Run.objects.select_related("connection").get(pk=run.pk)
            return actions.run_webhook_replay(run=fresh, user=user, seen_replays=0).sent

        return go

    sent = run_in_threads(click(world.operator), click(world.admin))
    assert sorted(sent) == [False, True]
    assert len(receiver.requests) == 1


def test_replay_to_another_url_is_for_admins(world, client_as, receiver):
    run_id = webhook_only_run(world, "https://hooks.example.com/customer")
    other = {"webhook_url": receiver.url}
    assert replay(client_as(world.operator), world, run_id, **other).status_code == 403
    assert receiver.requests == []

    detail = client_as(world.admin).get(url("run_detail", world, run_id)).content.decode()
    assert "Replay the webhook to another URL" in detail
    html = replay(client_as(world.admin), world, run_id, **other).content.decode()
    assert len(receiver.requests) == 1 and f"Webhook replayed to {receiver.url}" in html
    entry = AuditEntry.objects.get(action="run_webhook_replay")
    assert entry.details["webhook_url"] == receiver.url
    assert set(entry.details) == {
        "number",
        "connection",
        "webhook_url",
        "status_code",
        "latency_ms",
    }


def test_the_operator_sees_no_other_url_form(world, client_as, receiver):
    run_id = webhook_only_run(world, receiver.url)
    html = client_as(world.operator).get(url("run_detail", world, run_id)).content.decode()
    assert "Replay the webhook to another URL" not in html


def test_a_viewer_cant_replay_and_another_team_cant_see(world, client_as, receiver):
    run_id = webhook_only_run(world, receiver.url)
    html = client_as(world.viewer).get(url("run_detail", world, run_id)).content.decode()
    assert "Replay webhook" not in html
    assert replay(client_as(world.viewer), world, run_id).status_code == 403
    assert replay(client_as(world.outsider), world, run_id).status_code == 404
    assert receiver.requests == [] and not RunAction.objects.exists()


def test_replay_needs_the_csrf_token(world, receiver):
    run_id = webhook_only_run(world, receiver.url)
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.operator)
    assert replay(client, world, run_id).status_code == 403
    assert receiver.requests == []


# Each Skyvern error: (knobs, what the intent becomes, the audit outcome, words shown).
REPLAY_ERRORS = {
    "400": ({"error_rates": {400: 1.0}}, "failed", "failed", "Skyvern"),
    "404": ({"error_rates": {404: 1.0}}, "failed", "failed", "Skyvern"),
    "422": ({"error_rates": {422: 1.0}}, "failed", "failed", "Skyvern"),
    "429": ({"error_rates": {429: 1.0}}, "failed", "failed", "Skyvern"),
    "500": ({"error_rates": {500: 1.0}}, "unknown", "unknown", "may or may not have done it"),
    "timeout": ({"hang_seconds": 2}, "unknown", "unknown", "may or may not have done it"),
    "dropped": ({"drop_connection": True}, "unknown", "unknown", "may or may not"),
}


@pytest.mark.parametrize("fault", sorted(REPLAY_ERRORS))
def test_each_skyvern_error_of_a_replay(world, client_as, receiver, settings, fault):
    settings.SKYVERN_READ_TIMEOUT = 0.5
    knobs, state, outcome, words = REPLAY_ERRORS[fault]
    run_id = webhook_only_run(world, receiver.url)
    world.simulator.state.configure(**knobs, fault_endpoints=["retry_webhook"])
    html = replay(client_as(world.operator), world, run_id).content.decode()
    action = RunAction.objects.get()
    assert action.state == state and action.error
    assert 'role="alert"' in html and words in html
    entry = AuditEntry.objects.get(action="run_webhook_replay_failed")
    assert entry.outcome == outcome
    assert entry.details == {
        "number": 1,
        "connection": world.connection_a.label,
        "error": action.error,
    }
    if state == "failed":
        # Certainly not sent: the next click may try again.
        world.simulator.state.configure(error_rates={}, hang_seconds=0, drop_connection=False)
        replay(client_as(world.operator), world, run_id, seen=0)
        assert RunAction.objects.filter(state="done").count() == 1


def test_replay_without_a_url_anywhere_is_refused_by_skyvern(world, client_as):
    run_id = webhook_only_run(world, None)
    html = replay(client_as(world.operator), world, run_id).content.decode()
    assert "No webhook URL configured for the run." in html
    assert RunAction.objects.get().state == ActionState.FAILED


def test_replay_without_javascript_comes_back_with_a_message(world, client_as, receiver):
    run_id = webhook_only_run(world, receiver.url)
    client = client_as(world.operator)
    response = replay(client, world, run_id, htmx=False, next=url("run_detail", world, run_id))
    assert response.status_code == 302 and response["Location"].endswith(f"/{run_id}/")
    page = client.get(response["Location"]).content.decode()
    assert "Webhook replayed: HTTP 200" in page


# --- canceling a run still going ----------------------------------------------------


def cancel(client, world, run_id, *, seen=0, confirm=True, htmx=True):
    data = {"seen_cancels": str(seen)}
    if confirm:
        data["confirm"] = "yes"
    return client.post(url("run_cancel", world, run_id), data, **(HTMX if htmx else {}))


def test_a_running_card_offers_cancel_behind_a_confirmation(world, client_as):
    run_id = world.add_run(status="running")
    client = client_as(world.operator)
    html = client.get(url("run_detail", world, run_id)).content.decode()
    assert "Cancel run…" in html and "Yes, cancel this run" not in html

    asking = client.get(url("run_cancel", world, run_id), **HTMX).content.decode()
    assert "Yes, cancel this run" in asking and "Keep it running" in asking
    assert 'hx-trigger="every 3s"' not in asking  # the question isn't polled away
    assert world.simulator.state.find_run(run_id).status == "running"


def test_the_confirmation_step_works_without_javascript(world, client_as):
    run_id = world.add_run(status="running")
    client = client_as(world.operator)
    page = client.get(url("run_cancel", world, run_id))
    assert page.status_code == 200 and "<html" in page.content.decode()
    assert "Yes, cancel this run" in page.content.decode()
    # A POST without the confirmation only asks again.
    again = cancel(client, world, run_id, confirm=False, htmx=False)
    assert "Yes, cancel this run" in again.content.decode()
    assert world.simulator.state.find_run(run_id).status == "running"

    done = cancel(client, world, run_id, htmx=False)
    assert done.status_code == 302
    assert world.simulator.state.find_run(run_id).status == "canceled"


def test_cancel_cancels_at_skyvern_and_the_card_shows_it(world, client_as):
    run_id = world.add_run(status="running")
    html = cancel(client_as(world.operator), world, run_id).content.decode()
    assert world.simulator.state.find_run(run_id).status == "canceled"
    assert Run.objects.get(run_id=run_id).status == "canceled"
    assert "status-canceled" in html and "Cancel run…" not in html
    action = RunAction.objects.get()
    assert (action.kind, action.state, action.requested_by) == (
        ActionKind.CANCEL,
        "done",
        world.operator,
    )
    entry = AuditEntry.objects.get(action="run_cancel")
    assert (entry.outcome, entry.target_id, entry.details["status_after"]) == (
        "ok",
        run_id,
        "canceled",
    )
    assert set(entry.details) == {"number", "connection", "status_after"}


def test_double_click_cancels_once(world, client_as):
    run_id = world.add_run(status="running")
    client = client_as(world.operator)
    world.simulator.state.configure(fault_endpoints=["get_run"], error_rates={502: 1.0})
    cancel(client, world, run_id)  # the card can't be refreshed: still "running" here
    second = cancel(client, world, run_id).content.decode()
    assert "Not sent again: acme-operator already asked for this cancel" in second
    assert RunAction.objects.count() == 1
    assert AuditEntry.objects.filter(action="run_cancel").count() == 1


def test_a_finished_run_has_nothing_to_cancel(world, client_as):
    run_id = world.add_run(status="completed")
    html = cancel(client_as(world.operator), world, run_id).content.decode()
    assert "there is nothing to cancel" in html and not RunAction.objects.exists()


def test_a_viewer_cant_cancel(world, client_as):
    run_id = world.add_run(status="running")
    client = client_as(world.viewer)
    assert "Cancel run" not in client.get(url("run_detail", world, run_id)).content.decode()
    assert client.get(url("run_cancel", world, run_id)).status_code == 403
    assert cancel(client, world, run_id).status_code == 403
    assert cancel(client_as(world.outsider), world, run_id).status_code == 404
    assert world.simulator.state.find_run(run_id).status == "running"


CANCEL_ERRORS = {
    "404": ({"error_rates": {404: 1.0}}, "failed", "failed"),
    "422": ({"error_rates": {422: 1.0}}, "failed", "failed"),
    "429": ({"error_rates": {429: 1.0}}, "failed", "failed"),
    "502": ({"error_rates": {502: 1.0}}, "unknown", "unknown"),
    "timeout": ({"hang_seconds": 2}, "unknown", "unknown"),
}


@pytest.mark.parametrize("fault", sorted(CANCEL_ERRORS))
def test_each_skyvern_error_of_a_cancel(world, client_as, settings, fault):
    settings.SKYVERN_READ_TIMEOUT = 0.5
    knobs, state, outcome = CANCEL_ERRORS[fault]
    run_id = world.add_run(status="running")
    world.simulator.state.configure(**knobs, fault_endpoints=["cancel"])
    html = cancel(client_as(world.operator), world, run_id).content.decode()
    assert RunAction.objects.get().state == state
    assert 'role="alert"' in html
    entry = AuditEntry.objects.get(action="run_cancel_failed")
    assert entry.outcome == outcome
    assert entry.details == {
        "number": 1,
        "connection": world.connection_a.label,
        "error": RunAction.objects.get().error,
    }
