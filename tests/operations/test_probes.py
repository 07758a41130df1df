"""/healthz and /readyz: unauthenticated, answered before the https redirect,
the host check and sign-in, and leaking nothing that names a team, a
connection, a host or a person."""

import json
from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone

from console.background.models import WorkerBeat
from console.background.workers import worker_beat
from console.operations import health
from console.sync.models import ConnectionSync
from tests.conftest import KEY_A, KEY_B


def probe(client, path, **extra):
    response = client.get(path, **extra)
    return response, json.loads(response.content)


def test_healthz_answers_without_database_session_or_sign_in(client):
    # No django_db mark: any database access would raise.
    response, body = probe(client, "/healthz")
    assert response.status_code == 200 and body == {"status": "ok"}
    assert "Set-Cookie" not in response.headers and response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_probes_work_where_the_console_itself_redirects_or_refuses(client, settings):
    """A load balancer probes by address, over plain http, with no session."""
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["console.example.com"]
    settings.TWO_FACTOR_REQUIRED_FOR_ADMINS = True
    settings.READY_WORKER_SECONDS = 0
    assert client.get("/", headers={"host": "10.0.0.5"}).status_code in (301, 400)
    for path in ("/healthz", "/readyz", "/healthz/"):
        assert client.get(path, headers={"host": "10.0.0.5"}).status_code == 200, path


@pytest.mark.django_db
def test_readyz_is_503_until_a_worker_is_seen(client, settings):
    settings.READY_WORKER_SECONDS = 60
    response, body = probe(client, "/readyz")
    assert response.status_code == 503
    assert body["ready"] is False and body["database"] == "ok"
    assert body["worker"] == {
        "ok": False,
        "required_within_seconds": 60,
        "last_seen_seconds_ago": None,
        "alive": 0,
    }
    worker_beat("host-1:123")
    response, body = probe(client, "/readyz")
    assert response.status_code == 200 and body["ready"] is True
    assert body["worker"]["alive"] == 1 and body["worker"]["last_seen_seconds_ago"] == 0


@pytest.mark.django_db
def test_a_worker_not_seen_for_too_long_is_not_ready(client, settings):
    settings.READY_WORKER_SECONDS = 60
    worker_beat("host-1:123")
    WorkerBeat.objects.update(seen_at=timezone.now() - timedelta(seconds=90))
    response, body = probe(client, "/readyz")
    assert response.status_code == 503
    assert body["worker"]["ok"] is False and body["worker"]["last_seen_seconds_ago"] == 90


@pytest.mark.django_db
def test_no_worker_needed_when_turned_off(client, settings):
    settings.READY_WORKER_SECONDS = 0
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_an_unreachable_database_is_503(client, settings, monkeypatch):
    settings.READY_WORKER_SECONDS = 0

    def down():
        raise DatabaseError("connection refused")

    monkeypatch.setattr(health, "worker_last_seen", down)
    response, body = probe(client, "/readyz")
    assert response.status_code == 503
    assert body["ready"] is False and body["database"] == "unreachable"

    monkeypatch.setattr(health, "database_reachable", lambda: False)
    response, body = probe(client, "/readyz")
    assert response.status_code == 503 and body["database"] == "unreachable"


def test_readyz_reports_sync_ages_by_number_and_names_nothing(world, client, settings):
    settings.READY_WORKER_SECONDS = 0
    settings.SYNC_INTERVAL_SECONDS = 60
    now = timezone.now()
    ConnectionSync.objects.update_or_create(
        connection=world.connection_a, defaults={"last_success_at": now - timedelta(seconds=30)}
    )
    ConnectionSync.objects.update_or_create(
        connection=world.connection_b,
        defaults={
            "last_success_at": now - timedelta(seconds=600),
            "last_error_at": now - timedelta(seconds=5),
            "last_error": "Skyvern is unreachable",
        },
    )
    response, body = probe(client, "/readyz")
    assert response.status_code == 200
    assert body["connections"] == [
        {"connection": 1, "last_sync_seconds_ago": 30, "last_sync_failed": False, "behind": False},
        {"connection": 2, "last_sync_seconds_ago": 600, "last_sync_failed": True, "behind": True},
    ]
    text = response.content.decode().lower()
    identifying = [
        world.team_a.slug,
        world.team_b.slug,
        world.team_a.name,
        world.connection_a.label,
        world.connection_b.label,
        world.connection_a.base_url,
        "127.0.0.1",
        KEY_A,
        KEY_A[-4:],
        KEY_B[-4:],
        ConnectionSync.objects.get(connection=world.connection_a).webhook_token,
        world.admin.username,
        "unreachable",  # the sync's error text
    ]
    for value in identifying:
        assert value.lower() not in text, value
    # Not even a database id: the numbers are positions.
    assert set(body["connections"][0]) == {
        "connection",
        "last_sync_seconds_ago",
        "last_sync_failed",
        "behind",
    }


@pytest.mark.django_db
def test_probes_refuse_writes(client):
    assert client.post("/readyz").status_code == 405
    assert client.post("/healthz").status_code == 405
