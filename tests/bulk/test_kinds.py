"""Bulk jobs that are not retries (issue 14): replaying the webhooks of
webhook-only failures, and canceling runs still going, with the preview, the
job machinery (intent, throttle, audit, results) and every Skyvern error."""

import io
import logging

import pytest
from django.core.management import call_command
from django.urls import reverse

from console.audit.models import AuditEntry
from console.bulk.models import BulkRetryJob, ItemState, JobKind, JobState, SkipReason
from console.bulk.services import throttle as throttle_module
from console.bulk.tasks import bulk_retry_work
from console.runs.models import ActionKind, Run, RunAction
from console.skyvern import SkyvernClient
from tests.helpers import page_text
from tests.runs.test_actions import HOOK_FAILURE, webhook_only_run
from tests.skyvern.test_client_cancel_webhooks_workflows import Receiver


def preview_url(kind=None):
    url = reverse("bulk:bulk_retry_preview", args=["acme"])
    return f"{url}?kind={kind}" if kind else url


def create_url():
    return reverse("bulk:bulk_retry_create", args=["acme"])


def pks(run_ids):
    return [Run.objects.get(run_id=r).pk for r in run_ids]


def make_job(client, run_ids, kind):
    data = {"scope": "ids", "run": pks(run_ids), "reason": "Receiver down overnight"}
    response = client.post(create_url(), {**data, "kind": kind})
    assert response.status_code == 303, response.content.decode()[:2000]
    return BulkRetryJob.objects.order_by("-pk").first()


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


@pytest.fixture
def hooks(world, receiver):
    """Two webhook-only failures, an ordinary failure and a running run."""
    return {
        "webhook_only": [webhook_only_run(world, receiver.url) for _ in range(2)],
        "failed": [world.add_run(status="failed", failure_reason="Login failed")],
        "running": [world.add_run(status="running")],
    }


# --- webhook-only failures in a bulk retry's preview ----------------------------------


def test_a_retry_preview_sets_webhook_only_failures_aside_and_offers_replay(
    world, client_as, hooks
):
    runs = hooks["webhook_only"] + hooks["failed"]
    html = (
        client_as(world.operator)
        .post(preview_url(), {"scope": "ids", "run": pks(runs)})
        .content.decode()
    )
    assert 'class="bulk-to-send">1<' in html and "will be retried" in html
    assert SkipReason.WEBHOOK_ONLY.label in html
    assert "2</strong> runs failed only because their webhooks failed" in html
    assert f'action="{preview_url("replay_webhook")}"' in html
    assert "Replay webhooks instead" in html

    # A retry job over them leaves them alone.
    job = make_job(client_as(world.operator), runs, "retry")
    skipped = job.items.filter(skip_reason=SkipReason.WEBHOOK_ONLY)
    assert sorted(i.run.run_id for i in skipped) == sorted(hooks["webhook_only"])


def test_a_replay_preview_sends_only_webhook_only_failures(world, client_as, hooks):
    runs = hooks["webhook_only"] + hooks["failed"]
    html = (
        client_as(world.operator)
        .post(preview_url("replay_webhook"), {"scope": "ids", "run": pks(runs)})
        .content.decode()
    )
    assert "Bulk webhook replay — preview" in html
    assert 'class="bulk-to-send">2<' in html and "will have their webhook replayed" in html
    assert SkipReason.NOT_WEBHOOK_ONLY.label in html
    assert 'name="kind" value="replay_webhook"' in html
    assert "Replay the webhooks of 2 runs</button>" in html
    assert "max_steps_override" not in html  # a retry's option only


def test_a_bulk_replay_replays_each_webhook_once_and_reports_it(world, client_as, hooks, receiver):
    runs = hooks["webhook_only"] + hooks["failed"]
    client = client_as(world.operator)
    job = make_job(client, runs, "replay_webhook")
    assert job.kind == JobKind.REPLAY_WEBHOOK

    bulk_retry_work.call(job.pk)
    bulk_retry_work.call(job.pk)  # a second pass sends nothing again

    job.refresh_from_db()
    assert job.state == JobState.FINISHED and job.followed_at is not None
    assert len(receiver.requests) == 2
    states = {i.run.run_id: i.state for i in job.items.select_related("run")}
    assert [states[r] for r in hooks["webhook_only"]] == [ItemState.DONE] * 2
    assert states[hooks["failed"][0]] == ItemState.SKIPPED
    actions = RunAction.objects.filter(kind=ActionKind.REPLAY_WEBHOOK)
    assert {(a.state, a.status_code, a.requested_by) for a in actions} == {
        ("done", 200, world.operator)
    }
    assert world.simulator.state.retry_counts() == {}  # no browser work redone
    create = AuditEntry.objects.get(action="bulk_job_create")
    assert create.details["kind"] == "replay_webhook"
    assert AuditEntry.objects.filter(action="bulk_job_finish").count() == 1
    page = client.get(reverse("bulk:bulk_job_detail", args=["acme", job.pk])).content.decode()
    assert "Bulk webhook replay #" in page


def test_a_receiver_that_refuses_fails_the_item_with_its_answer(world, client_as):
    failing = Receiver(status=503, body=b"maintenance <b>window</b>")
    try:
        run_id = webhook_only_run(world, failing.url)
        job = make_job(client_as(world.operator), [run_id], "replay_webhook")
        bulk_retry_work.call(job.pk)
    finally:
        failing.close()
    item = job.items.get()
    assert item.state == ItemState.FAILED
    assert item.error == "The receiver answered HTTP 503: maintenance <b>window</b>"
    page = (
        client_as(world.viewer)
        .get(reverse("bulk:bulk_job_detail", args=["acme", job.pk]))
        .content.decode()
    )
    assert "maintenance &lt;b&gt;window&lt;/b&gt;" in page


@pytest.mark.parametrize(
    ("knobs", "state"),
    [
        ({"error_rates": {404: 1.0}}, ItemState.FAILED),
        ({"error_rates": {502: 1.0}}, ItemState.UNKNOWN),
    ],
)
def test_skyvern_errors_of_a_bulk_replay(world, client_as, hooks, knobs, state):
    job = make_job(client_as(world.operator), hooks["webhook_only"][:1], "replay_webhook")
    world.simulator.state.configure(**knobs, fault_endpoints=["retry_webhook"])
    bulk_retry_work.call(job.pk)
    item = job.items.get()
    assert item.state == state and item.error
    assert item.action.state == ("failed" if state == ItemState.FAILED else "unknown")


def test_a_busy_skyvern_holds_a_bulk_replay_back_and_it_goes_again(world, client_as, hooks):
    job = make_job(client_as(world.operator), hooks["webhook_only"][:1], "replay_webhook")
    world.simulator.state.configure(
        error_rates={429: 1.0}, rate_limit_retry_after=30, fault_endpoints=["retry_webhook"]
    )
    bulk_retry_work.call(job.pk)
    item = job.items.get()
    assert item.state == ItemState.PENDING and item.next_attempt_at is not None
    assert item.connection.bulk_throttle.paused_until is not None


# --- bulk cancel -----------------------------------------------------------------------


def test_the_runs_page_offers_to_cancel_the_selected_runs(world, client_as, hooks):
    html = client_as(world.operator).get(reverse("runs:run_list", args=["acme"])).content.decode()
    assert f'formaction="{preview_url("cancel")}"' in html
    assert "Cancel the selected runs…" in html


def test_a_cancel_preview_sends_only_runs_still_going(world, client_as, hooks):
    runs = hooks["running"] + hooks["failed"]
    html = (
        client_as(world.operator)
        .post(preview_url("cancel"), {"scope": "ids", "run": pks(runs)})
        .content.decode()
    )
    assert "Bulk cancel — preview" in html and "will be canceled at Skyvern" in html
    assert 'class="bulk-to-send">1<' in html and SkipReason.FINISHED.label in html
    assert "Cancel 1 run</button>" in html


def test_a_bulk_cancel_sends_100_runs_a_call(world, client_as, monkeypatch):
    monkeypatch.setattr(throttle_module, "BULK_CANCEL_LIMIT", 2)
    calls = []
    original = SkyvernClient.cancel_runs

    def spy(self, run_ids):
        calls.append(list(run_ids))
        return original(self, run_ids)

    monkeypatch.setattr(SkyvernClient, "cancel_runs", spy)
    running = [world.add_run(status="running") for _ in range(5)]
    finished_meanwhile = running[-1]
    job = make_job(client_as(world.operator), running, "cancel")
    world.simulator.state.set_status(finished_meanwhile, "completed")

    bulk_retry_work.call(job.pk)

    assert [len(c) for c in calls] == [2, 2, 1]
    for run_id in running[:-1]:
        assert world.simulator.state.find_run(run_id).status == "canceled"
    states = {i.run.run_id: (i.state, i.error) for i in job.items.select_related("run")}
    assert {states[r][0] for r in running[:-1]} == {ItemState.DONE}
    assert states[finished_meanwhile][0] == ItemState.FAILED
    assert "had finished already" in states[finished_meanwhile][1]
    assert RunAction.objects.filter(kind="cancel", state="done").count() == 4
    job.refresh_from_db()
    assert job.state == JobState.FINISHED
    assert AuditEntry.objects.get(action="bulk_job_create").details["kind"] == "cancel"


@pytest.mark.parametrize(
    ("knobs", "state"),
    [
        ({"error_rates": {422: 1.0}}, ItemState.FAILED),
        ({"error_rates": {500: 1.0}}, ItemState.UNKNOWN),
        ({"error_rates": {429: 1.0}, "rate_limit_retry_after": 30}, ItemState.PENDING),
    ],
)
def test_skyvern_errors_of_a_bulk_cancel(world, client_as, knobs, state):
    running = [world.add_run(status="running") for _ in range(2)]
    job = make_job(client_as(world.operator), running, "cancel")
    world.simulator.state.configure(**knobs, fault_endpoints=["cancel"])
    bulk_retry_work.call(job.pk)
    assert {i.state for i in job.items.all()} == {state}
    if state != ItemState.PENDING:
        assert {i.action.state for i in job.items.select_related("action")} == {
            "failed" if state == ItemState.FAILED else "unknown"
        }
    if state != ItemState.UNKNOWN:  # (a 500 may come after Skyvern canceled them)
        for run_id in running:
            assert world.simulator.state.find_run(run_id).status == "running"


def test_viewers_cant_start_any_kind(world, client_as, hooks):
    client = client_as(world.viewer)
    for kind in ("replay_webhook", "cancel"):
        assert client.post(preview_url(kind), {"scope": "ids", "run": [1]}).status_code == 403
        data = {"scope": "ids", "run": pks(hooks["running"]), "reason": "x", "kind": kind}
        assert client.post(create_url(), data).status_code == 403
    assert not BulkRetryJob.objects.exists()
    assert HOOK_FAILURE  # the runs above are webhook-only failures


def test_an_unknown_replay_is_never_retried_anyway(world, client_as, hooks):
    """Retry anyway would redo the browser work the replay job was there to spare."""
    client = client_as(world.operator)
    job = make_job(client, hooks["webhook_only"][:1], "replay_webhook")
    world.simulator.state.configure(error_rates={502: 1.0}, fault_endpoints=["retry_webhook"])
    bulk_retry_work.call(job.pk)
    item = job.items.get()
    assert item.state == ItemState.UNKNOWN
    page = client.get(reverse("bulk:bulk_job_detail", args=["acme", job.pk])).content.decode()
    assert "Retry anyway" not in page
    url = reverse("bulk:bulk_item_retry_anyway", args=["acme", job.pk, item.pk])
    client.post(url, {"confirm": "on"})
    item.refresh_from_db()
    assert item.state == ItemState.UNKNOWN
    assert world.simulator.state.retry_counts() == {}


# --- each kind in its own words ---------------------------------------------------------
# A webhook replay job and a cancel job say what they did (the job page, the
# jobs list, the end notice, the status command, the log), never a retry's.


def job_page(client, job):
    return page_text(client.get(reverse("bulk:bulk_job_detail", args=["acme", job.pk])))


def test_a_replay_job_speaks_of_webhooks_replayed(world, client_as, hooks, caplog):
    client = client_as(world.operator)
    runs = hooks["webhook_only"] + hooks["failed"]
    job = make_job(client, runs, "replay_webhook")
    with caplog.at_level(logging.INFO, logger="console"):
        bulk_retry_work.call(job.pk)
    assert {i.state for i in job.items.all()} == {ItemState.DONE, ItemState.SKIPPED}

    # The end notice, on the next page the person opens.
    notice = page_text(client.get(reverse("runs:run_list", args=["acme"])))
    assert f"Your bulk webhook replay #{job.pk} for Acme Logistics finished: " in notice
    assert "2 webhooks replayed, 1 skipped." in notice

    text = job_page(client, job)
    assert "Webhook replayed 2" in text
    assert "Only the webhooks are sent again: no browser work is redone" in text
    assert "Retried 0" not in text and "not retried" not in text.lower()
    assert "Already-retried runs" not in text

    listed = page_text(client.get(reverse("bulk:bulk_job_list", args=["acme"])))
    assert "2 webhooks replayed" in listed

    out = io.StringIO()
    call_command("bulk_retry_status", str(job.pk), stdout=out)
    line = out.getvalue()
    assert f"#{job.pk} bulk webhook replay acme finished" in line
    assert "2 webhook replayed, 1 skipped" in line and "retried" not in line

    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"Bulk webhook replay #{job.pk} finished" in logged
    assert f"bulk retry #{job.pk}" not in logged.lower()


def test_a_cancel_job_speaks_of_runs_cancelled(world, client_as):
    client = client_as(world.operator)
    running = [world.add_run(status="running") for _ in range(3)]
    job = make_job(client, running, "cancel")
    world.simulator.state.set_status(running[-1], "completed")  # finished meanwhile
    bulk_retry_work.call(job.pk)

    notice = page_text(client.get(reverse("runs:run_list", args=["acme"])))
    assert f"Your bulk cancel #{job.pk} for Acme Logistics finished: " in notice
    assert "2 runs cancelled, 1 not cancelled." in notice

    text = job_page(client, job)
    assert "Cancelled 2" in text and "Not cancelled 1" in text
    assert "Runs still going are cancelled at Skyvern" in text
    assert "Not retried" not in text and "Retried 0" not in text

    listed = page_text(client.get(reverse("bulk:bulk_job_list", args=["acme"])))
    assert "2 cancelled" in listed and "1 not cancelled" in listed


def test_a_retry_job_keeps_its_words(world, client_as):
    client = client_as(world.operator)
    failed = [world.add_run(status="failed")]
    job = make_job(client, failed, "retry")
    bulk_retry_work.call(job.pk)
    assert "Retried 1" in job_page(client, job)
    out = io.StringIO()
    call_command("bulk_retry_status", str(job.pk), stdout=out)
    assert out.getvalue().startswith(f"#{job.pk} acme ")
