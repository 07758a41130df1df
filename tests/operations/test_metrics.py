"""/metrics: Prometheus text for whoever holds METRICS_TOKEN (or, without
one, for this machine only); the console's own numbers, read from the
database at scrape time or counted where they happen."""

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import DatabaseError
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from console.audit.models import Action, AuditEntry
from console.background.workers import worker_beat
from console.bulk.models import BulkRetryItem, BulkRetryJob
from console.operations import metrics
from console.runs.models import Retry, Run
from console.skyvern import KeyRejected, SkyvernClient
from console.skyvern.observe import Call
from console.sync.services import sync_state_for
from console.sync.tasks import sync_connection
from tests.conftest import KEY_A
from tests.sync.test_webhooks import deliver, payload, signed

ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN = "metrics-token-0123456789"


def samples(response) -> dict[tuple, float]:
    """{(name, sorted labels...): value} of every sample."""
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return found


def scrape(client, token=TOKEN, headers=(), **extra):
    headers = {"authorization": f"Bearer {token}", **dict(headers)}
    return client.get("/metrics", headers=headers, **extra)


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN


# --- who may read them ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_token_is_required_when_set(client, token):
    assert scrape(client).status_code == 200
    for wrong in ("", "metrics-token-0123456788", TOKEN + "x"):
        response = scrape(client, wrong)
        assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
    # From this very machine too, once there is a token.
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"authorization": TOKEN}).status_code == 401


@pytest.mark.django_db
def test_without_a_token_only_this_machine_not_through_a_proxy(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 401
    # A proxy on this machine forwards outside requests from 127.0.0.1.
    forwarded = client.get(
        "/metrics", REMOTE_ADDR="127.0.0.1", headers={"x-forwarded-for": "203.0.113.9"}
    )
    assert forwarded.status_code == 401


@pytest.mark.django_db
def test_metrics_are_served_past_the_https_redirect_and_host_check(client, token, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["console.example.com"]
    response = scrape(client, headers={"host": "10.0.0.5"})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


# --- what they say ----------------------------------------------------------------------


def test_retries_and_bulk_items_by_state_per_team(world, client, token):
    runs = [Run.objects.get(run_id=world.add_run(status="failed")) for _ in range(3)]
    Retry.objects.create(run=runs[0], number=1, state="retried")
    Retry.objects.create(run=runs[1], number=1, state="unknown")
    Retry.objects.create(run=runs[2], number=1, state="failed")
    Retry.objects.create(run=runs[2], number=1, state="failed")
    job = BulkRetryJob.objects.create(team=world.team_a, reason="carrier outage")
    for run, state in zip(runs, ("retried", "pending", "pending"), strict=True):
        BulkRetryItem.objects.create(job=job, run=run, connection=run.connection, state=state)

    found = samples(scrape(client))
    assert found[("console_retries", ("state", "retried"), ("team", "acme"))] == 1
    assert found[("console_retries", ("state", "unknown"), ("team", "acme"))] == 1
    assert found[("console_retries", ("state", "failed"), ("team", "acme"))] == 2
    assert found[("console_retry_intents_total", ("team", "acme"))] == 4
    assert ("console_retry_intents_total", ("team", "globex")) not in found
    assert found[("console_bulk_retry_items", ("state", "pending"), ("team", "acme"))] == 2
    assert found[("console_bulk_retry_items", ("state", "retried"), ("team", "acme"))] == 1
    assert found[("console_bulk_retry_jobs", ("state", "queued"), ("team", "acme"))] == 1


def test_sync_age_untested_keys_workers_and_queue(world, client, token):
    sync = sync_state_for(world.connection_a)
    sync.last_success_at = timezone.now() - timedelta(seconds=100)
    sync.save()
    world.connection_b.key_untested = True
    world.connection_b.save()
    worker_beat("host:1")
    found = samples(scrape(client))
    labels_a = (("connection", world.connection_a.label), ("team", "acme"))
    labels_b = (("connection", world.connection_b.label), ("team", "globex"))
    assert 100 <= found[("console_sync_age_seconds", *labels_a)] < 110
    assert ("console_sync_age_seconds", *labels_b) not in found  # never synced
    assert found[("console_connection_key_untested", *labels_b)] == 1
    assert found[("console_connection_key_untested", *labels_a)] == 0
    assert found[("console_workers_alive",)] == 1
    assert found[("console_database_up",)] == 1
    assert found[("console_tasks", ("state", "due"))] == 0


def test_queue_depth_counts_waiting_tasks(world, client, token):
    before = samples(scrape(client))[("console_tasks", ("state", "due"))]
    sync_connection.enqueue(world.connection_a.pk)
    sync_connection.enqueue(world.connection_b.pk)
    assert samples(scrape(client))[("console_tasks", ("state", "due"))] == before + 2


def test_skyvern_latency_and_errors_are_counted(world, client, token):
    def value(name, **labels):
        return metrics.PROCESS.get_sample_value(name, labels) or 0

    calls = value("console_skyvern_request_seconds_count", operation="list_runs")
    rejected = value("console_skyvern_errors_total", operation="list_runs", error="KeyRejected")
    base_url = world.connection_a.base_url
    SkyvernClient(base_url, KEY_A).list_runs()
    with pytest.raises(KeyRejected):
        SkyvernClient(base_url, "sk-wrong-key-000000").list_runs()

    assert value("console_skyvern_request_seconds_count", operation="list_runs") == calls + 2
    assert (
        value("console_skyvern_errors_total", operation="list_runs", error="KeyRejected")
        == rejected + 1
    )
    found = samples(scrape(client))
    assert found[("console_skyvern_request_seconds_count", ("operation", "list_runs"))] >= 2
    # Nothing about where or with what: the endpoint's name only.
    text = scrape(client).content.decode()
    assert KEY_A not in text and base_url not in text


def test_webhook_deliveries_are_counted_by_answer(world, client, token):
    def value(outcome, status):
        return (
            metrics.PROCESS.get_sample_value(
                "console_webhook_deliveries_total", {"outcome": outcome, "status": status}
            )
            or 0
        )

    accepted, refused, unknown = (
        value("accepted", "200"),
        value("refused", "401"),
        value("refused", "404"),
    )
    url = reverse("skyvern_webhook", args=[sync_state_for(world.connection_a).webhook_token])
    run_id = world.add_run(status="running")
    world.simulator.state.set_status(run_id, "failed", "Carrier portal asked for a new password")
    body = payload(world, run_id)
    assert deliver(client, url, body, signed(body)).status_code == 200
    assert deliver(client, url, body, {}).status_code == 401
    assert deliver(client, "/webhooks/skyvern/nope/", body, {}).status_code == 404
    assert value("accepted", "200") == accepted + 1
    assert value("refused", "401") == refused + 1
    assert value("refused", "404") == unknown + 1
    found = samples(scrape(client))
    assert found[("console_webhook_refusals_recorded_total", ("team", "acme"))] == 1
    assert AuditEntry.objects.filter(action=Action.WEBHOOK_REJECTED).count() == 1


@pytest.mark.django_db
def test_a_database_that_is_away_still_gives_the_process_counts(client, token, monkeypatch):
    def away():
        raise DatabaseError("connection refused")

    monkeypatch.setattr(metrics, "_retries", away)
    metrics.skyvern_call_record(Call("get_run", 0.1, "ok"))
    response = scrape(client)
    assert response.status_code == 200
    found = samples(response)
    assert found[("console_database_up",)] == 0
    assert any(name[0].startswith("console_skyvern_request_seconds") for name in found)
    assert ("console_tasks", ("state", "due")) not in found


def test_several_processes_add_up_in_multiprocess_mode(tmp_path):
    """Two processes count Skyvern calls; a third (another gunicorn worker,
    say) serves /metrics with both processes' counts."""
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "console.settings",
    }
    count = textwrap.dedent(
        """
        import django; django.setup()
        from console.skyvern.observe import Call, call_report
        call_report(Call("retry_run", 0.2, "ok"))
        call_report(Call("retry_run", 3.0, "SkyvernTimeout"))
        """
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], cwd=ROOT, env=env, check=True)
    read = textwrap.dedent(
        """
        import django; django.setup()
        from console.operations.metrics import PROCESS, MultiProcessCollector
        from prometheus_client import CollectorRegistry, generate_latest
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        print(generate_latest(registry).decode())
        """
    )
    text = subprocess.run(
        [sys.executable, "-c", read], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, *sorted(sample.labels.items()))] = sample.value
    assert found[("console_skyvern_request_seconds_count", ("operation", "retry_run"))] == 4
    timeouts = ("console_skyvern_errors_total", ("error", "SkyvernTimeout"))
    assert found[(*timeouts, ("operation", "retry_run"))] == 2
