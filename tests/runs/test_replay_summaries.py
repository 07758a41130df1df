"""The ticket-ready summary of a webhook replay, single and bulk: wording pinned per case."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from console.bulk.models import BulkRetryItem, BulkRetryJob, ItemState, JobKind
from console.bulk.summaries import bulk_job_summary
from console.runs.models import ActionKind, ActionState, Run, RunAction
from console.runs.summaries import replay_summary
from tests.helpers import page_text

ASKED = datetime(2026, 12, 6, 4, 50, tzinfo=UTC)
HOOK = "https://hooks.customer.example/skyvern/secret-token?sig=abc"
FAILURE = "Webhook POST to the receiver failed: HTTP 502 Bad Gateway"


def make_run(world, run_id, **fields):
    defaults = {
        "status": "failed",
        "workflow_title": "Download carrier invoices",
        "created_at": ASKED,
        "app_url": f"https://app.skyvern.example/runs/{run_id}",
        "webhook_url": HOOK,
        "webhook_failure_reason": FAILURE,
        "failure_reason": FAILURE,
    }
    return Run.objects.create(
        team=world.team_a, connection=world.connection_a, run_id=run_id, **(defaults | fields)
    )


@pytest.fixture
def original(world):
    return make_run(world, "wr_1")


def replay_of(world, run, *, state=ActionState.DONE, number=1, **fields):
    return RunAction.objects.create(
        run=run,
        kind=ActionKind.REPLAY_WEBHOOK,
        number=number,
        state=state,
        requested_by=world.admin,
        requested_at=ASKED,
        **fields,
    )


WHAT = (
    "The Download carrier invoices run wr_1 (https://app.skyvern.example/runs/wr_1) failed "
    "only because its webhook could not be delivered: Webhook POST to the receiver failed: "
    "HTTP 502 Bad Gateway. The automation itself succeeded and its output is intact. "
    "On 2026-12-06 04:50 UTC, acme-admin replayed its webhook to hooks.customer.example "
    "(no browser work was redone)."
)


def test_a_replay_the_receiver_took(world, original):
    action = replay_of(world, original, status_code=200, latency_ms=142, target_url=HOOK)
    summary = replay_summary(action)
    assert summary.text == WHAT + " The receiver answered HTTP 200 in 142 ms: delivered."
    assert summary.markdown.startswith(
        "The Download carrier invoices run [`wr_1`](https://app.skyvern.example/runs/wr_1) "
    )
    assert "secret-token" not in summary.text + summary.markdown


def test_a_replay_the_receiver_refused(world, original):
    action = replay_of(world, original, status_code=503, latency_ms=20, target_url=HOOK)
    assert replay_summary(action).text == WHAT + (
        " The receiver answered HTTP 503 in 20 ms: the webhook is still not delivered."
    )


def test_a_replay_that_reached_no_receiver(world, original):
    action = replay_of(world, original, error="Connection refused.", target_url=HOOK)
    assert replay_summary(action).text == WHAT + (
        " The receiver could not be reached: Connection refused; "
        "the webhook is still not delivered."
    )


def test_a_replay_to_another_address(world, original):
    action = replay_of(
        world,
        original,
        webhook_url="https://staging.customer.example/hook?token=x",
        target_url="https://staging.customer.example/hook?token=x",
        status_code=204,
        latency_ms=5,
    )
    text = replay_summary(action).text
    assert "replayed its webhook to another address, staging.customer.example (no browser" in text
    assert "token=x" not in text


def test_a_replay_skyvern_refused(world, original):
    action = replay_of(
        world, original, state=ActionState.FAILED, error="Skyvern has no such run for this key."
    )
    assert replay_summary(action).text == WHAT + (
        " Skyvern did not replay it: Skyvern has no such run for this key. Nothing was sent."
    )


def test_a_replay_whose_answer_was_lost(world, original):
    action = replay_of(world, original, state=ActionState.UNKNOWN, error="timeout")
    assert replay_summary(action).text == WHAT + (
        " Skyvern's answer was lost, so whether the webhook was sent again is unknown. "
        "It will not be sent again without checking."
    )


def test_a_replay_being_sent(world, original):
    action = replay_of(world, original, state=ActionState.SENDING)
    assert replay_summary(action).text == WHAT + " It is being sent to Skyvern now."


def test_the_run_page_has_each_replays_summary_to_copy(world, client_as, original):
    replay_of(world, original, status_code=200, latency_ms=142, target_url=HOOK)
    replay_of(world, original, number=2, status_code=500, latency_ms=9, target_url=HOOK)
    url = reverse("runs:run_detail", kwargs={"team_slug": "acme", "run_id": "wr_1"})
    response = client_as(world.viewer).get(url)
    text = page_text(response)
    assert "Summary of webhook replay #1" in text and "Summary of webhook replay #2" in text
    assert "The receiver answered HTTP 500 in 9 ms" in text
    assert response.content.decode().count("Copy summary") == 2


# --- a bulk webhook replay job ------------------------------------------------------------


def replay_job(world, runs_and_actions, *, skipped=(), failed=()):
    job = BulkRetryJob.objects.create(
        team=world.team_a,
        created_by=world.operator,
        reason="Receiver down overnight",
        kind=JobKind.REPLAY_WEBHOOK,
    )
    BulkRetryJob.objects.filter(pk=job.pk).update(created_at=ASKED)
    for run, action, state in runs_and_actions:
        BulkRetryItem.objects.create(
            job=job, run=run, connection=run.connection, state=state, action=action
        )
    for run in skipped:
        BulkRetryItem.objects.create(
            job=job,
            run=run,
            connection=run.connection,
            state=ItemState.SKIPPED,
            skip_reason="not_webhook_only",
        )
    for run in failed:
        BulkRetryItem.objects.create(
            job=job, run=run, connection=run.connection, state=ItemState.FAILED, error="404"
        )
    return BulkRetryJob.objects.get(pk=job.pk)


def test_a_bulk_replay_job_says_how_each_receiver_answered(world, original):
    second = make_run(world, "wr_2", app_url="")
    third = make_run(world, "wr_3", app_url="")
    ok = replay_of(world, original, status_code=200, latency_ms=142)
    refused = replay_of(world, second, status_code=503, latency_ms=30)
    job = replay_job(
        world,
        [(original, ok, ItemState.DONE), (second, refused, ItemState.FAILED)],
        skipped=[make_run(world, "wr_4", webhook_failure_reason="")],
        failed=[third],
    )
    summary = bulk_job_summary(job)
    assert summary.text == (
        f"On 2026-12-06 04:50 UTC, acme-operator started bulk webhook replay #{job.pk} of "
        "4 runs whose automation succeeded but whose webhook failed (reason: Receiver down "
        "overnight); only the webhooks were sent again, no browser work was redone. "
        "Webhooks replayed: 1 delivered, 1 refused by the receiver (2 sent). Skipped 1 "
        "(1 not a webhook-only failure: nothing to replay). Skyvern did not "
        "replay 1; nothing was sent for them. Runs: wr_1 (https://app.skyvern.example/runs/wr_1) "
        "delivered (HTTP 200 in 142 ms); wr_2 refused by the receiver (HTTP 503 in 30 ms). "
        "Nothing is pending."
    )
    assert "[`wr_1`](https://app.skyvern.example/runs/wr_1) delivered" in summary.markdown
    assert "bulk retry" not in summary.text


def test_a_bulk_replay_job_still_going(world, original):
    job = replay_job(world, [(original, None, ItemState.PENDING)])
    text = bulk_job_summary(job).text
    assert "Webhooks replayed" not in text
    assert text.endswith("Still pending: 1 still to be sent.")
