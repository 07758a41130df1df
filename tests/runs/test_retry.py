"""Retrying one run from its card: the new run appears, lineage is kept,
Skyvern is called exactly once per intent, and every failure is explained."""

import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from console.runs import services
from console.runs.models import Retry, RetryState, Run
from tests.helpers import page_text, run_in_threads

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "run-1"}


def retry_url(world, run_id, team=None):
    team = team or world.team_a
    return reverse("runs:run_retry", kwargs={"team_slug": team.slug, "run_id": run_id})


def post_retry(client, world, run_id, *, seen=0, again=False, htmx=True):
    data = {"seen_retries": str(seen)}
    if again:
        data["confirm_again"] = "yes"
    return client.post(retry_url(world, run_id), data, **(HTMX if htmx else {}))


@pytest.fixture
def failed_run(world):
    return world.add_run(
        status="failed",
        workflow_title="Download carrier invoices",
        failure_reason="Login failed: invalid credentials",
    )


def test_retry_swaps_in_the_new_run_card_with_lineage(world, client_as, failed_run):
    client = client_as(world.operator)
    response = post_retry(client, world, failed_run)

    assert response.status_code == 200
    html = response.content.decode()
    original = Run.objects.get(run_id=failed_run)
    new = Run.objects.get(retried_from=original)
    assert new.retried_by == world.operator and new.retried_at is not None
    assert new.run_id != failed_run and new.run_id.startswith("wr_")
    assert new.team == world.team_a and new.connection == world.connection_a
    assert new.workflow_title == "Download carrier invoices"
    # The fragment holds the original card, now saying where its retry went,
    # and the new run's card with its status and link into Skyvern.
    assert html.count('class="run-card') == 2
    assert "Retried → <a" in html and new.run_id in html
    assert f'href="{new.app_url}"' in html and new.app_url.startswith(world.simulator.url)
    assert "Created" in html and new.get_status_display() in html
    assert "<html" not in html
    assert world.simulator.state.retry_count(failed_run) == 1
    retry = Retry.objects.get(run=original)
    assert (retry.state, retry.new_run, retry.requested_by) == (
        RetryState.RETRIED,
        new,
        world.operator,
    )


def test_new_run_card_polls_until_finished_and_shows_the_recording(world, client_as, failed_run):
    client = client_as(world.operator)
    post_retry(client, world, failed_run)
    new = Run.objects.get(retried_from__run_id=failed_run)
    card_url = reverse("runs:run_card", kwargs={"team_slug": "acme", "run_id": new.run_id})

    response = client.get(card_url, **HTMX)
    html = response.content.decode()
    # It polls saying which status it shows; unchanged, nothing else on the page is told.
    assert f'hx-get="{card_url}?shown=created"' in html and 'hx-trigger="every 3s"' in html
    assert "recording-link" not in html
    assert "HX-Trigger" not in response.headers

    world.simulator.state.set_status(new.run_id, "completed")
    Run.objects.filter(pk=new.pk).update(synced_at=new.synced_at.replace(year=2000))
    response = client.get(card_url, {"shown": "created"}, **HTMX)
    html = response.content.decode()
    new.refresh_from_db()
    assert new.status == "completed" and new.recording_url
    assert "recording-link" in html and escape(new.recording_url) in html
    assert "hx-trigger" not in html  # finished: the card stops polling
    # The status moved on: the page hears of it once the card is drawn (the run
    # detail page follows it), and the runs page draws the original's card again.
    assert "HX-Trigger" not in response.headers
    assert json.loads(response.headers["HX-Trigger-After-Settle"]) == {
        "run-changed": {
            "run_id": new.run_id,
            "retried_from": {
                "run_id": failed_run,
                "card_url": reverse(
                    "runs:run_card", kwargs={"team_slug": "acme", "run_id": failed_run}
                ),
            },
        }
    }
    original = client.get(
        reverse("runs:run_card", kwargs={"team_slug": "acme", "run_id": failed_run}), **HTMX
    ).content.decode()
    assert re.search(
        rf"Retried → <a [^>]+>{new.run_id}</a> \(now <span [^>]+>completed</span>\)", original
    )


def test_double_click_makes_one_skyvern_call(world, client_as, failed_run):
    client = client_as(world.operator)
    first = post_retry(client, world, failed_run, seen=0)
    second = post_retry(client, world, failed_run, seen=0)

    assert first.status_code == second.status_code == 200
    assert world.simulator.state.retry_count(failed_run) == 1
    assert Run.objects.filter(retried_from__run_id=failed_run).count() == 1
    assert "Nothing was sent" in second.content.decode()


def test_already_retried_run_needs_explicit_confirmation(world, client_as, failed_run):
    client = client_as(world.operator)
    post_retry(client, world, failed_run, seen=0)
    page = client.get(reverse("runs:run_list", kwargs={"team_slug": "acme"})).content.decode()
    assert "Retry again" in page and 'name="confirm_again"' in page

    refused = post_retry(client, world, failed_run, seen=1)
    assert "Confirm to retry it again" in page_text(refused)
    assert world.simulator.state.retry_count(failed_run) == 1

    again = post_retry(client, world, failed_run, seen=1, again=True)
    assert again.status_code == 200
    assert world.simulator.state.retry_count(failed_run) == 2
    assert Run.objects.filter(retried_from__run_id=failed_run).count() == 2
    assert "(2 retries)" in again.content.decode()


def test_retry_without_javascript_redirects_back_with_a_message(world, client_as, failed_run):
    client = client_as(world.operator)
    back = reverse("runs:run_list", kwargs={"team_slug": "acme"}) + "?status=failed"
    response = client.post(
        retry_url(world, failed_run), {"seen_retries": "0", "next": back}, follow=True
    )
    assert response.redirect_chain[-1][0] == back
    new = Run.objects.get(retried_from__run_id=failed_run)
    assert f"Retried {failed_run} as {new.run_id}." in page_text(response)


def test_retry_refuses_an_offsite_next_url(world, client_as, failed_run):
    client = client_as(world.operator)
    response = client.post(
        retry_url(world, failed_run), {"seen_retries": "0", "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("runs:run_list", kwargs={"team_slug": "acme"})


def test_running_run_shows_why_it_cannot_be_retried(world, client_as):
    running = world.add_run(status="running")
    client = client_as(world.operator)
    page = client.get(reverse("runs:run_list", kwargs={"team_slug": "acme"}))
    assert "Can't retry yet: this run is still running" in page_text(page)

    response = post_retry(client, world, running)
    assert "only finished runs can be retried" in page_text(response)
    assert world.simulator.state.retry_count(running) == 0
    assert not Retry.objects.exists()


STILL_RUNNING = (
    "Skyvern says this run is still running; it can be retried once it finishes. "
    "Nothing was retried."
)


def test_a_run_skyvern_still_has_running_is_refreshed_and_not_offered_again(
    world, client_as, failed_run
):
    # Cached as failed, but Skyvern has it running again (its own retry, say):
    # Skyvern answers 400 "Only terminal workflow runs can be retried".
    world.simulator.state.set_status(failed_run, "running")
    client = client_as(world.operator)

    response = post_retry(client, world, failed_run)

    assert response.status_code == 200
    html = response.content.decode()
    assert STILL_RUNNING in page_text(response) and 'role="alert"' in html
    assert html.count('class="run-card') == 1
    # Redrawn with Skyvern's status: no Retry button, and the card follows the run.
    assert "status-running" in html and "Running" in page_text(response)
    assert "retry-form" not in html
    assert "Can't retry yet: this run is still running" in page_text(response)
    assert 'hx-trigger="every 3s"' in html
    assert Run.objects.get(run_id=failed_run).status == "running"
    assert world.simulator.state.retry_count(failed_run) == 0
    assert Retry.objects.get().state == RetryState.FAILED  # on record, not counted

    # Once it finishes at Skyvern, the card's next poll offers Retry again.
    world.simulator.state.set_status(failed_run, "failed")
    Run.objects.filter(run_id=failed_run).update(synced_at=timezone.now() - timedelta(seconds=5))
    card_url = reverse("runs:run_card", kwargs={"team_slug": "acme", "run_id": failed_run})
    card = client.get(card_url, **HTMX).content.decode()
    assert "status-failed" in card and ">Retry</button>" in card


def test_a_run_skyvern_still_has_running_without_javascript(world, client_as, failed_run):
    world.simulator.state.set_status(failed_run, "queued")
    client = client_as(world.operator)
    back = reverse("runs:run_list", kwargs={"team_slug": "acme"})

    response = client.post(
        retry_url(world, failed_run), {"seen_retries": "0", "next": back}, follow=True
    )

    assert response.redirect_chain[-1][0] == back
    text = page_text(response)
    assert (
        f"{failed_run}: Skyvern says this run is still queued; it can be retried once it "
        "finishes." in text
    )
    assert "Can't retry yet: this run is still queued" in text
    assert "retry-form" not in response.content.decode()
    assert world.simulator.state.retry_count(failed_run) == 0


def test_a_run_skyvern_refuses_and_cant_be_refreshed_says_so(world, client_as, failed_run):
    world.simulator.state.set_status(failed_run, "running")
    world.simulator.state.configure(error_rates={502: 1.0}, fault_endpoints=["get_run"])
    client = client_as(world.operator)

    response = post_retry(client, world, failed_run)

    text = page_text(response)
    assert "Skyvern says this run can't be retried" in text
    assert "Couldn't refresh from Skyvern" in text and "Showing the cached copy" in text
    assert Run.objects.get(run_id=failed_run).status == "failed"  # unchanged
    assert world.simulator.state.retry_count(failed_run) == 0


def test_a_run_skyvern_never_retries_keeps_skyverns_answer(world, client_as, failed_run):
    # Refused although finished at Skyvern too: its own answer is shown.
    world.simulator.state.configure(error_rates={400: 1.0}, fault_endpoints=["retry"])
    client = client_as(world.operator)

    response = post_retry(client, world, failed_run)

    assert "Skyvern says this run is still" not in page_text(response)
    assert 'role="alert"' in response.content.decode()
    assert ">Retry</button>" in response.content.decode()
    assert Run.objects.get(run_id=failed_run).status == "failed"


def test_viewer_sees_no_retry_button_and_cannot_post(world, client_as, failed_run):
    client = client_as(world.viewer)
    page = client.get(reverse("runs:run_list", kwargs={"team_slug": "acme"})).content.decode()
    assert failed_run in page
    assert "retry-form" not in page
    assert post_retry(client, world, failed_run).status_code == 403
    assert world.simulator.state.retry_count(failed_run) == 0


def test_outsider_gets_404_and_nothing_is_sent(world, client_as, failed_run):
    client = client_as(world.outsider)
    assert post_retry(client, world, failed_run).status_code == 404
    # Their own team's URL with team A's run id: not found either.
    url = reverse("runs:run_retry", kwargs={"team_slug": "globex", "run_id": failed_run})
    assert client.post(url, {"seen_retries": "0"}, **HTMX).status_code == 404
    assert world.simulator.state.retry_count(failed_run) == 0


# --- every failure Skyvern can answer with ------------------------------------

SKYVERN_FAILURES = [
    # (how to provoke it, message shown, state kept, may a run exist?)
    # (Skyvern refusing a run it has as unfinished: test_a_run_skyvern_still_has_running_...)
    pytest.param(
        lambda w, run_id: w.simulator.state.configure(error_rates={400: 1.0}),
        "can't be retried",
        RetryState.FAILED,
        id="400-not-retryable",
    ),
    pytest.param(
        lambda w, run_id: w.simulator.state.configure(error_rates={404: 1.0}),
        "no such run",
        RetryState.FAILED,
        id="404-not-found",
    ),
    pytest.param(
        lambda w, run_id: w.simulator.state.configure(error_rates={422: 1.0}),
        "invalid",
        RetryState.FAILED,
        id="422-validation",
    ),
    pytest.param(
        lambda w, run_id: w.simulator.state.configure(error_rates={429: 1.0}),
        "rate limiting",
        RetryState.FAILED,
        id="429-rate-limited",
    ),
    pytest.param(
        lambda w, run_id: w.simulator.state.configure(busy=True),
        "busy and created no run",
        RetryState.FAILED,
        id="503-busy",
    ),
    pytest.param(
        lambda w, run_id: _wrong_key(w),
        "rejected this team's API key",
        RetryState.FAILED,
        id="403-key-rejected",
    ),
    pytest.param(
        lambda w, run_id: _nothing_listening(w),
        "unreachable",
        RetryState.FAILED,
        id="unreachable",
    ),
    pytest.param(
        lambda w, run_id: w.simulator.state.configure(error_rates={500: 1.0}),
        "may or may not have created the new run",
        RetryState.UNKNOWN,
        id="500-server-error",
    ),
    pytest.param(
        lambda w, run_id: w.simulator.state.configure(hang_seconds=2),
        "did not answer in time",
        RetryState.UNKNOWN,
        id="timeout",
    ),
    pytest.param(
        lambda w, run_id: w.simulator.state.configure(drop_connection=True),
        "dropped",
        RetryState.UNKNOWN,
        id="dropped-connection",
    ),
    pytest.param(
        lambda w, run_id: w.simulator.state.configure(malformed_json=True),
        "could not read",
        RetryState.UNKNOWN,
        id="malformed-json",
    ),
]


def _wrong_key(world):
    world.connection_a.set_api_key("sk-this-key-was-revoked-0000")
    world.connection_a.save()


def _nothing_listening(world):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    world.connection_a.base_url = f"http://127.0.0.1:{port}"
    world.connection_a.save()


@pytest.mark.parametrize(("provoke", "message", "state"), SKYVERN_FAILURES)
def test_skyvern_failure_is_explained_on_the_card_and_loses_nothing(
    world, client_as, failed_run, settings, provoke, message, state
):
    settings.SKYVERN_READ_TIMEOUT = 0.5
    original = Run.objects.get(run_id=failed_run)
    before = {f.name: getattr(original, f.name) for f in Run._meta.concrete_fields}
    provoke(world, failed_run)
    client = client_as(world.operator)

    response = post_retry(client, world, failed_run)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'role="alert"' in html and message in page_text(response)
    assert html.count('class="run-card') == 1  # no new card
    assert Run.objects.count() == 1  # nothing new cached...
    original.refresh_from_db()
    assert {f.name: getattr(original, f.name) for f in Run._meta.concrete_fields} == before
    retry = Retry.objects.get(run=original)  # ...but the attempt is on record
    assert retry.state == state and retry.error
    if state == RetryState.FAILED:
        # Skyvern certainly made nothing: the plain Retry button is back.
        assert ">Retry</button>" in html
    else:
        # It may have: say so, and ask for an explicit decision to send again.
        assert "Retry outcome unknown" in html and 'name="confirm_again"' in html


def test_after_a_certain_failure_the_button_works_again(world, client_as, failed_run):
    world.simulator.state.configure(busy=True)
    client = client_as(world.operator)
    post_retry(client, world, failed_run)
    world.simulator.state.configure(busy=False)

    response = post_retry(client, world, failed_run, seen=0)

    assert world.simulator.state.retry_count(failed_run) == 1
    assert Run.objects.filter(retried_from__run_id=failed_run).count() == 1
    assert "Retried →" in response.content.decode()


def test_api_key_never_reaches_the_page_or_the_log(world, client_as, failed_run, caplog):
    world.simulator.state.configure(error_rates={500: 1.0})
    client = client_as(world.operator)
    pages = [
        post_retry(client, world, failed_run),
        client.get(reverse("runs:run_list", kwargs={"team_slug": "acme"})),
        client.get(reverse("runs:run_detail", kwargs={"team_slug": "acme", "run_id": failed_run})),
    ]
    key = world.connection_a.api_key()
    for response in pages:
        assert key not in response.content.decode()
    assert key not in caplog.text
    assert all(key not in r.error for r in Retry.objects.all())


def test_failure_reason_from_skyvern_is_escaped(world, client_as):
    run_id = world.add_run(status="failed", failure_reason='<script>alert("x")</script><b>bold')
    client = client_as(world.operator)
    page = client.get(reverse("runs:run_list", kwargs={"team_slug": "acme"})).content.decode()
    assert run_id in page
    assert "<script>alert" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;b&gt;bold" in page


def test_a_retry_cut_off_mid_call_becomes_unknown_not_resent(world, failed_run):
    original = Run.objects.get(run_id=failed_run)
    stale = Retry.objects.create(run=original, number=1, requested_by=world.operator)
    Retry.objects.filter(pk=stale.pk).update(
        requested_at=stale.requested_at - services.SENDING_GIVES_UP_AFTER * 2
    )
    outcome = services.run_retry(run=original, user=world.operator, seen_retries=0)
    assert not outcome.sent
    stale.refresh_from_db()
    assert stale.state == RetryState.UNKNOWN
    assert world.simulator.state.retry_count(failed_run) == 0


@pytest.mark.django_db(transaction=True)
def test_two_people_clicking_at_the_same_moment_make_one_skyvern_call(world, failed_run):
    """Two requests racing through the service in separate threads and
    database connections: the constraint lets exactly one of them call Skyvern."""
    world.simulator.state.configure(latency_ms=300)
    original = Run.objects.get(run_id=failed_run)

    def click(user):
        return services.run_retry(run=original, user=user, seen_retries=0)

    outcomes = run_in_threads(lambda: click(world.operator), lambda: click(world.admin), timeout=30)

    assert sorted(o.sent for o in outcomes) == [False, True]
    assert world.simulator.state.retry_count(failed_run) == 1
    assert Run.objects.filter(retried_from=original).count() == 1
