"""A retry says what it will do before it is sent: no Retry while Skyvern
retries a run itself, a confirmation step for a run that succeeded, and the
side effects (the customer's webhook, the browser session) on the card."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.urls import reverse
from django.utils import timezone

from console.runs.models import Run, Status
from console.runs.store import run_upsert_detail, runs_store_listing
from console.skyvern import SkyvernClient
from tests.helpers import page_text as _page_text

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "run-1"}
HOOK = "https://hooks.customer.example/skyvern/secret-token?sig=abc123"


class _Drawn:
    def __init__(self, html):
        self.content = html.encode()


def page_text(html_or_response) -> str:
    if isinstance(html_or_response, str):
        html_or_response = _Drawn(html_or_response)
    return _page_text(html_or_response)


def url(name, run_id, team="acme"):
    return reverse(name, kwargs={"team_slug": team, "run_id": run_id})


def card_of(client, run_id):
    return client.get(url("runs:run_card", run_id), **HTMX).content.decode()


def post_retry(client, run_id, **data):
    return client.post(url("runs:run_retry", run_id), {"seen_retries": "0", **data}, **HTMX)


# --- Skyvern will retry it itself -------------------------------------------------------


def test_a_run_skyvern_retries_itself_has_no_retry_but_says_when(world, client_as):
    at = (timezone.now() + timedelta(hours=2)).replace(second=0, microsecond=0)
    run_id = world.add_run(status="failed", retry_pending=True, next_attempt_at=at)
    client = client_as(world.operator)

    html = card_of(client, run_id)
    text = page_text(html)
    assert f"Skyvern retries this at {at:%b} {at.day}, {at:%H:%M} UTC (attempt 2)" in text
    assert "retry-form" not in html and "Retry</button>" not in html

    # Posting anyway (a page from before, a hand-made request) sends nothing.
    response = post_retry(client, run_id)
    assert "Skyvern retries this run itself (attempt 2)" in page_text(response.content.decode())
    assert world.simulator.state.retry_count(run_id) == 0

    # The run list says the same, to viewers too, who never had a button.
    viewer = page_text(
        client_as(world.viewer).get(reverse("runs:run_list", args=["acme"])).content.decode()
    )
    assert "Skyvern retries this at" in viewer


def test_a_next_attempt_still_to_come_counts_one_already_past_does_not(world, client_as):
    run_id = world.add_run(status="failed")
    run = Run.objects.get(run_id=run_id)
    client = client_as(world.operator)

    run.next_attempt_at = timezone.now() + timedelta(minutes=30)
    run.save(update_fields=["next_attempt_at"])
    assert "retry-form" not in card_of(client, run_id)
    assert "Skyvern retries this at" in card_of(client, run_id)

    run.next_attempt_at = timezone.now() - timedelta(minutes=1)
    run.save(update_fields=["next_attempt_at"])
    html = card_of(client, run_id)
    assert "retry-form" in html and "Skyvern retries this" not in html
    post_retry(client, run_id)
    assert world.simulator.state.retry_count(run_id) == 1


def test_the_detail_page_shows_skyverns_attempts(world, client_as):
    run_id = world.add_run(status="failed", attempt=3, retry_pending=True)
    html = client_as(world.viewer).get(url("runs:run_detail", run_id)).content.decode()
    text = page_text(html)
    assert "Skyvern's own attempts" in text
    rows = html.split('<table class="attempts stack-on-phone">')[1].split("</table>")[0]
    assert rows.count("<tr>") == 1 + 3  # the head, then attempts 1, 2 and 3
    assert "retry: Retry policy:" in page_text(rows)
    assert "(attempt 4), under the same run id" in text


def test_a_run_with_one_attempt_has_no_attempts_table(world, client_as):
    run_id = world.add_run(status="failed")
    html = client_as(world.viewer).get(url("runs:run_detail", run_id)).content.decode()
    assert "Skyvern's own attempts" not in html


# --- a run that succeeded ---------------------------------------------------------------


def test_retrying_a_completed_run_asks_first_with_htmx(world, client_as):
    run_id = world.add_run(status="completed", webhook_url=HOOK)
    client = client_as(world.operator)

    html = card_of(client, run_id)
    confirm = url("runs:run_retry_confirm", run_id)
    assert f'hx-get="{confirm}"' in html
    assert f'hx-post="{url("runs:run_retry", run_id)}"' not in html

    # One click asks; nothing is sent.
    asking = client.get(confirm, **HTMX).content.decode()
    assert "This run succeeded; retrying runs it again." in page_text(asking)
    assert "call the customer's webhook at hooks.customer.example again" in page_text(asking)
    assert 'name="confirm_completed" value="yes"' in asking
    assert world.simulator.state.retry_count(run_id) == 0

    # "Don't retry" brings the card back as it was.
    assert f'hx-get="{url("runs:run_card", run_id)}"' in asking

    # The confirmed form retries it.
    response = post_retry(client, run_id, confirm_completed="yes")
    assert response.status_code == 200
    assert world.simulator.state.retry_count(run_id) == 1
    assert Run.objects.filter(retried_from__run_id=run_id).exists()


def test_a_completed_run_is_not_retried_without_the_confirmation(world, client_as):
    run_id = world.add_run(status="completed")
    response = post_retry(client_as(world.operator), run_id)
    assert "This run succeeded; retrying runs it again. Confirm" in page_text(
        response.content.decode()
    )
    assert world.simulator.state.retry_count(run_id) == 0


def test_retrying_a_completed_run_asks_on_a_page_without_javascript(world, client_as):
    run_id = world.add_run(status="completed")
    client = client_as(world.operator)

    page = client.get(url("runs:run_retry_confirm", run_id))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<html" in html and "This run succeeded; retrying runs it again." in page_text(html)
    detail = url("runs:run_detail", run_id)
    # After confirming, back to the run, not to this question.
    assert f'name="next" value="{detail}"' in html
    token = html.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]

    response = client.post(
        url("runs:run_retry", run_id),
        {
            "csrfmiddlewaretoken": token,
            "seen_retries": "0",
            "confirm_completed": "yes",
            "next": detail,
        },
    )
    assert response.status_code == 302 and response["Location"] == detail
    assert world.simulator.state.retry_count(run_id) == 1


def test_the_confirmation_step_of_a_failed_run_is_just_its_card(world, client_as):
    run_id = world.add_run(status="failed")
    client = client_as(world.operator)
    response = client.get(url("runs:run_retry_confirm", run_id))
    assert response.status_code == 302 and response["Location"] == url("runs:run_detail", run_id)
    html = client.get(url("runs:run_retry_confirm", run_id), **HTMX).content.decode()
    assert "This run succeeded" not in html and "retry-form" in html


def test_the_confirmation_step_needs_the_operator_role(world, client_as):
    run_id = world.add_run(status="completed")
    response = client_as(world.viewer).get(url("runs:run_retry_confirm", run_id))
    assert response.status_code in (403, 404)
    other = client_as(world.operator).get(url("runs:run_retry_confirm", run_id, team="globex"))
    assert other.status_code == 404


# --- side effects -----------------------------------------------------------------------


def test_the_card_names_the_webhook_host_only_and_the_browser_session(world, client_as):
    run_id = world.add_run(status="failed", webhook_url=HOOK, browser_session_id="pbs_4411")
    html = card_of(client_as(world.operator), run_id)
    text = page_text(html)
    assert "This retry will call the customer's webhook at hooks.customer.example again." in text
    assert "It re-uses browser session pbs_4411." in text
    assert "secret-token" not in html and "abc123" not in html


def test_a_run_without_webhook_or_session_states_no_effects(world, client_as):
    run_id = world.add_run(status="failed")
    html = card_of(client_as(world.operator), run_id)
    assert "retry-effects" not in html


# --- the cache keeps what a retry decision needs ----------------------------------------


@pytest.fixture
def client_a(world):
    return SkyvernClient(world.connection_a.base_url, world.connection_a.api_key())


def test_a_sync_keeps_the_list_rows_facts_and_a_full_view_does_not_drop_them(world, client_a):
    run_id = world.add_run(
        status="failed",
        cache=False,
        webhook_url=HOOK,
        browser_session_id="pbs_1",
        retry_pending=True,
        attempt=2,
    )
    summary = next(s for s in client_a.list_runs(page_size=100) if s.run_id == run_id)
    runs_store_listing(connection=world.connection_a, summaries=[summary])
    run = Run.objects.get(run_id=run_id)
    assert (run.attempt, run.retry_pending, run.webhook_url) == (2, True, HOOK)
    assert run.browser_session_id == "pbs_1" and run.credits_used == summary.credits_used
    assert [a["number"] for a in run.attempts] == [1, 2]

    # The full view has no credits and names the webhook its own way: both kept.
    run_upsert_detail(connection=world.connection_a, detail=client_a.get_run(run_id))
    run.refresh_from_db()
    assert run.credits_used == summary.credits_used and run.webhook_url == HOOK
    assert run.retry_pending and run.status == Status.FAILED


def test_a_drawn_card_is_not_served_once_skyverns_next_attempt_has_come(
    world, client_as, monkeypatch
):
    """Cards are cached by what they show; the time of Skyvern's next attempt
    passing changes what the card shows without changing the run."""
    run_id = world.add_run(status="failed")
    later = timezone.now() + timedelta(hours=1)
    Run.objects.filter(run_id=run_id).update(next_attempt_at=later)
    list_url = reverse("runs:run_list", args=["acme"])
    client = client_as(world.operator)
    assert "Skyvern retries this at" in client.get(list_url).content.decode()

    real_now = timezone.now
    monkeypatch.setattr(
        "console.runs.models.timezone",
        SimpleNamespace(now=lambda: real_now() + timedelta(hours=2)),
    )
    html = client.get(list_url).content.decode()
    assert "Skyvern retries this" not in html and "retry-form" in html


def test_a_completed_run_retried_before_asks_to_confirm_both(world, client_as):
    run_id = world.add_run(status="completed")
    client = client_as(world.operator)
    post_retry(client, run_id, confirm_completed="yes")
    asking = client.get(url("runs:run_retry_confirm", run_id), **HTMX).content.decode()
    assert 'name="confirm_again"' in asking and 'name="confirm_completed"' in asking

    again = client.post(
        url("runs:run_retry", run_id),
        {"seen_retries": "1", "confirm_completed": "yes", "confirm_again": "yes"},
        **HTMX,
    )
    assert again.status_code == 200
    assert world.simulator.state.retry_count(run_id) == 2
