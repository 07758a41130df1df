"""`manage.py doctor`: each check finds what it is about and says what to
fix; the command exits non-zero on a problem and zero on a sound deployment."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from console.background.models import WorkerBeat
from console.background.workers import worker_beat
from console.operations import doctor
from console.operations.doctor import OK, PROBLEM, WARNING
from console.sync.services import sync_state_for
from tests.sync.test_webhooks import deliver, webhook_url

PRODUCTION_ENV = {"SECRET_KEY": "x" * 50, "CONSOLE_ENCRYPTION_KEYS": "a-fernet-key"}


def levels(findings, check) -> list[str]:
    return [finding.level for finding in findings if finding.check == check]


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """A STATIC_ROOT with every static file collected (once for the module)."""
    root = tmp_path_factory.mktemp("static")
    with override_settings(STATIC_ROOT=root):
        call_command("collectstatic", "--noinput", verbosity=0)
    return root


@pytest.fixture
def production(settings, monkeypatch, collected):
    """Settings as the README's production section has them."""
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    settings.DEBUG = False
    settings.CONSOLE_HTTPS = True
    settings.ALLOWED_HOSTS = ["console.example.com"]
    settings.METRICS_TOKEN = "metrics-token-0123456789"
    settings.STATIC_ROOT = collected
    settings.READY_WORKER_SECONDS = 120
    settings.SYNC_INTERVAL_SECONDS = 180
    return settings


def synced(connection, seconds_ago=10, **fields):
    sync = sync_state_for(connection)
    sync.last_success_at = timezone.now() - timedelta(seconds=seconds_ago)
    for name, value in fields.items():
        setattr(sync, name, value)
    sync.save()


# --- settings ----------------------------------------------------------------------------


def test_secrets_falling_back_to_files_are_problems(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("CONSOLE_ENCRYPTION_KEYS", "a-fernet-key")
    found = doctor.check_secrets()
    assert [f.level for f in found] == [PROBLEM, OK]
    assert "SECRET_KEY is not set" in found[0].message and "SECRET_KEY" in found[0].fix
    monkeypatch.delenv("CONSOLE_ENCRYPTION_KEYS")
    assert levels(doctor.check_secrets(), "secrets") == [PROBLEM, PROBLEM]
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    assert levels(doctor.check_secrets(), "secrets") == [OK, OK]


def test_debug_https_hosts_and_metrics_token(settings):
    settings.DEBUG = True
    settings.CONSOLE_HTTPS = False
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
    settings.METRICS_TOKEN = ""
    assert levels(doctor.check_debug(), "debug") == [PROBLEM]
    assert levels(doctor.check_https(), "https") == [PROBLEM]
    assert levels(doctor.check_allowed_hosts(), "allowed hosts") == [PROBLEM]
    assert levels(doctor.check_metrics_token(), "metrics") == [WARNING]
    settings.ALLOWED_HOSTS = ["*"]
    assert "any host" in doctor.check_allowed_hosts()[0].message
    settings.DEBUG, settings.CONSOLE_HTTPS = False, True
    settings.ALLOWED_HOSTS = ["console.example.com"]
    settings.METRICS_TOKEN = "metrics-token-0123456789"
    assert levels(doctor.check_debug(), "debug") == [OK]
    assert levels(doctor.check_https(), "https") == [OK]
    assert levels(doctor.check_allowed_hosts(), "allowed hosts") == [OK]
    assert levels(doctor.check_metrics_token(), "metrics") == [OK]


def test_static_files_not_collected(settings, tmp_path, collected):
    settings.STATIC_ROOT = tmp_path
    found = doctor.check_static()
    assert levels(found, "static files") == [PROBLEM] and "collectstatic" in found[0].fix
    settings.STATIC_ROOT = collected
    assert levels(doctor.check_static(), "static files") == [OK]


# --- the database ------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unreachable_database_is_one_problem_and_skips_its_checks(production, monkeypatch):
    monkeypatch.setattr(doctor, "database_reachable", lambda: False)
    found = doctor.doctor_checks()
    assert levels(found, "database") == [PROBLEM]
    assert not levels(found, "migrations") and not levels(found, "worker")


@pytest.mark.django_db(transaction=True)
def test_migrations_not_applied():
    assert levels(doctor.check_migrations(), "migrations") == [OK]
    call_command("migrate", "background", "0001", verbosity=0)
    try:
        found = doctor.check_migrations()
        assert levels(found, "migrations") == [PROBLEM]
        assert "background.0002_worker_beat" in found[0].message
        assert "manage.py migrate" in found[0].fix
    finally:
        call_command("migrate", "background", verbosity=0)


@pytest.mark.django_db
def test_a_worker_never_seen_or_gone(settings):
    settings.READY_WORKER_SECONDS = 60
    assert levels(doctor.check_worker(), "worker") == [PROBLEM]
    worker_beat("host:1")
    assert levels(doctor.check_worker(), "worker") == [OK]
    WorkerBeat.objects.update(seen_at=timezone.now() - timedelta(seconds=300))
    found = doctor.check_worker()
    assert levels(found, "worker") == [PROBLEM] and "300 s" in found[0].message


def test_each_connections_sync_age_and_untested_key(world, settings):
    settings.SYNC_INTERVAL_SECONDS = 60
    found = doctor.check_connections()
    assert levels(found, "sync") == [PROBLEM, PROBLEM]  # never synced
    assert "acme / " in found[0].message and "never synced" in found[0].message

    synced(world.connection_a, seconds_ago=30)
    synced(world.connection_b, seconds_ago=3600)
    found = doctor.check_connections()
    assert levels(found, "sync") == [OK, PROBLEM]
    assert "60 min ago" in found[1].message

    synced(world.connection_b, last_error_at=timezone.now(), last_error="Skyvern is unreachable")
    world.connection_a.key_untested = True
    world.connection_a.save()
    found = doctor.check_connections()
    assert levels(found, "sync") == [OK, WARNING]
    assert levels(found, "keys") == [WARNING]
    assert "Test connection" in [f for f in found if f.check == "keys"][0].fix


def test_recent_webhook_refusals(world, client):
    assert levels(doctor.check_webhook_refusals(), "webhooks") == [OK]
    url = webhook_url(world.connection_a)
    for _ in range(2):
        assert deliver(client, url, b"{}", {}).status_code == 401
    found = doctor.check_webhook_refusals()
    assert levels(found, "webhooks") == [WARNING]
    assert found[0].message.startswith("acme: 2 webhook deliveries refused")


# --- the command -------------------------------------------------------------------------


def test_the_command_exits_non_zero_and_says_what_to_fix(world, settings, capsys):
    settings.DEBUG = True
    with pytest.raises(CommandError) as raised:
        call_command("doctor")
    assert raised.value.returncode == 1
    out = capsys.readouterr().out
    assert "PROBLEM  debug: DEBUG is on" in out and "fix: unset DEBUG" in out


def test_a_sound_deployment_passes(world, production, capsys):
    worker_beat("host:1")
    synced(world.connection_a)
    synced(world.connection_b)
    call_command("doctor")
    out = capsys.readouterr().out
    assert "PROBLEM" not in out and "0 problem(s), 0 warning(s)" in out
