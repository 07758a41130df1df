"""Run history that stays true: first, incremental and full sync, status
changes, interrupted and concurrent syncs, and Skyvern failing mid-sync."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from console.audit.models import Action, AuditEntry
from console.runs.models import Run
from console.sync import services
from console.sync.models import ConnectionSync
from console.sync.services import connection_sync
from console.sync.tasks import PERIODIC_SYNC, sync_all_connections, sync_connection
from console.teams.models import Connection
from tests.helpers import page_text, run_in_threads

SEEDED = 250


@pytest.fixture
def seeded_world(world):
    """Team A's Skyvern organisation with a history of SEEDED runs."""
    key = world.connection_a.api_key()
    world.simulator.state.add_org(key, seed="acme-sync", seed_runs=SEEDED)
    return world


def cached(connection):
    return Run.objects.filter(connection=connection)


def test_first_sync_caches_every_run_with_details_of_failures(seeded_world):
    result = connection_sync(connection=seeded_world.connection_a)

    assert not result.error and not result.skipped
    assert result.checked == SEEDED and result.created == SEEDED and result.pages == 3
    runs = cached(seeded_world.connection_a)
    assert runs.count() == SEEDED
    assert {"completed", "failed", "canceled", "running"} <= set(
        runs.values_list("status", flat=True)
    )
    failed = runs.filter(status__in=services.FAILED_STATUSES)
    with_details = failed.exclude(app_url="")
    assert with_details.count() == min(failed.count(), services.DETAIL_LIMIT)
    sample = with_details.first()
    assert sample.app_url.startswith(seeded_world.simulator.url) and sample.raw.get("run_id")
    assert runs.filter(team=seeded_world.team_b).count() == 0
    state = ConnectionSync.objects.get(connection=seeded_world.connection_a)
    assert state.last_success_at and not state.last_failed and not state.is_running


def test_incremental_sync_reads_only_what_is_new(seeded_world):
    connection_sync(connection=seeded_world.connection_a)
    key = seeded_world.connection_a.api_key()
    new_ids = [seeded_world.simulator.state.add_run(key, status="failed") for _ in range(3)]
    # add_run puts runs 10 minutes back: newer than most of the history.
    result = connection_sync(connection=seeded_world.connection_a)

    assert result.created == 3 and result.stopped_early
    assert result.pages < 3
    assert set(new_ids) <= set(cached(seeded_world.connection_a).values_list("run_id", flat=True))
    assert cached(seeded_world.connection_a).count() == SEEDED + 3


def test_full_sync_walks_every_page_and_duplicates_nothing(seeded_world):
    connection_sync(connection=seeded_world.connection_a)
    Run.objects.filter(
        run_id__in=list(cached(seeded_world.connection_a).values_list("run_id", flat=True)[200:])
    ).delete()

    result = connection_sync(connection=seeded_world.connection_a, full=True)

    assert result.pages == 3 and result.checked == SEEDED
    assert cached(seeded_world.connection_a).count() == SEEDED
    assert result.created == SEEDED - 200


def test_a_status_change_is_picked_up(seeded_world):
    key = seeded_world.connection_a.api_key()
    run_id = seeded_world.simulator.state.add_run(key, status="running")
    connection_sync(connection=seeded_world.connection_a)
    assert Run.objects.get(run_id=run_id).status == "running"

    seeded_world.simulator.state.set_status(run_id, "failed", failure_reason="Portal answered 502")
    connection_sync(connection=seeded_world.connection_a)

    run = Run.objects.get(run_id=run_id)
    assert run.status == "failed" and run.failure_reason == "Portal answered 502"
    assert run.finished_at is not None and run.app_url


def test_lineage_survives_a_sync(seeded_world, client_as):
    connection_sync(connection=seeded_world.connection_a)
    # Not one Skyvern retries itself: those have no Retry.
    original = (
        cached(seeded_world.connection_a).filter(status="failed", retry_pending=False).first()
    )
    client_as(seeded_world.operator).post(
        reverse("runs:run_retry", args=["acme", original.run_id]), {"seen_retries": "0"}
    )
    new = Run.objects.get(retried_from=original)

    connection_sync(connection=seeded_world.connection_a, full=True)

    new.refresh_from_db()
    assert new.retried_from == original and new.retried_by == seeded_world.operator
    assert cached(seeded_world.connection_a).filter(run_id=new.run_id).count() == 1


def test_skyvern_down_keeps_the_cache_and_says_why(seeded_world, client_as):
    connection_sync(connection=seeded_world.connection_a)
    before = sorted(cached(seeded_world.connection_a).values_list("run_id", "status"))
    seeded_world.simulator.state.configure(error_rates={500: 1.0})

    result = connection_sync(connection=seeded_world.connection_a, full=True)

    assert "internal error" in result.error
    assert sorted(cached(seeded_world.connection_a).values_list("run_id", "status")) == before
    state = ConnectionSync.objects.get(connection=seeded_world.connection_a)
    assert state.last_failed and not state.is_running
    page = client_as(seeded_world.viewer).get(reverse("runs:run_list", args=["acme"]))
    text = page_text(page)
    assert "The last sync failed: Skyvern had an internal error" in text
    assert before[0][0] in page.content.decode() or len(page.context["page"].runs) == 50


def test_rejected_key_is_reported_in_words(seeded_world):
    seeded_world.connection_a.set_api_key("sk-revoked-key-00000000")
    seeded_world.connection_a.save()
    result = connection_sync(connection=seeded_world.connection_a)
    assert "rejected this team's API key" in result.error
    assert not cached(seeded_world.connection_a).exists()


def test_a_sync_that_died_is_taken_over_and_a_full_sync_resumes(seeded_world):
    """A full sync killed after page 1: its lease runs out, and the next full
    sync starts at page 2 instead of page 1."""
    state = services.sync_state_for(seeded_world.connection_a)
    ConnectionSync.objects.filter(pk=state.pk).update(
        running_since=timezone.now(), running_owner="dead-worker", full_resume_page=2
    )
    assert connection_sync(connection=seeded_world.connection_a, full=True).skipped

    ConnectionSync.objects.filter(pk=state.pk).update(
        running_since=timezone.now() - services.LEASE_EXPIRES_AFTER - timedelta(seconds=1)
    )
    result = connection_sync(connection=seeded_world.connection_a, full=True)

    assert not result.skipped and result.pages == 2  # pages 2 and 3
    state.refresh_from_db()
    assert state.full_resume_page is None and not state.is_running


@pytest.mark.django_db(transaction=True)
def test_two_syncs_at_once_duplicate_nothing(seeded_world):
    seeded_world.simulator.state.configure(latency_ms=30)

    def sync():
        return connection_sync(connection=seeded_world.connection_a, full=True)

    results = run_in_threads(sync, sync)

    assert sorted(r.skipped for r in results) == [False, True]
    assert cached(seeded_world.connection_a).count() == SEEDED


@pytest.mark.django_db(transaction=True)
def test_sync_killed_mid_way_resumes_cleanly(seeded_world):
    """SIGKILL `manage.py sync_runs --full` in the middle; the next run completes
    the history with no duplicates."""
    seeded_world.simulator.state.configure(latency_ms=400)
    settings_dict = db_connection.settings_dict
    if db_connection.vendor == "sqlite":
        database_url = f"sqlite:///{settings_dict['NAME']}"
    else:
        database_url = (
            f"postgres://{settings_dict['USER'] or 'postgres'}@{settings_dict['HOST']}:"
            f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
        )
    # The simulator is plain http on loopback: the child must allow it, as the tests do.
    env = {**os.environ, "DATABASE_URL": database_url, "SKYVERN_ALLOW_LOOPBACK": "1"}
    child = subprocess.Popen(
        [sys.executable, "manage.py", "sync_runs", "--team", "acme", "--full"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and cached(seeded_world.connection_a).count() < 100:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    partial = cached(seeded_world.connection_a).count()
    assert 100 <= partial < SEEDED

    seeded_world.simulator.state.configure(latency_ms=0)
    state = ConnectionSync.objects.get(connection=seeded_world.connection_a)
    assert state.is_running and state.full_resume_page  # the lease the dead sync left
    ConnectionSync.objects.filter(pk=state.pk).update(
        running_since=timezone.now() - services.LEASE_EXPIRES_AFTER - timedelta(seconds=1)
    )
    call_command("sync_runs", "--team", "acme", "--full")

    assert cached(seeded_world.connection_a).count() == SEEDED
    assert ConnectionSync.objects.get(pk=state.pk).full_resume_page is None


def test_sync_runs_command(seeded_world, capsys):
    call_command("sync_runs", "--team", "acme")
    out = capsys.readouterr().out
    assert f"acme / Skyvern: {SEEDED} runs checked: {SEEDED} new" in out
    with pytest.raises(CommandError, match="No team 'nope'"):
        call_command("sync_runs", "--team", "nope")
    seeded_world.simulator.state.configure(error_rates={503: 1.0})
    with pytest.raises(CommandError, match="could not be synced"):
        call_command("sync_runs", "--team", "acme")


def test_sync_now_starts_a_background_sync_and_shows_progress(
    seeded_world, client_as, django_capture_on_commit_callbacks
):
    client = client_as(seeded_world.operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("sync:sync_now", args=["acme"]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert (
        "Sync queued" in page_text(response)
        and 'hx-trigger="every 1s"' in response.content.decode()
    )
    queued = DBTaskResult.objects.get(task_path=sync_connection.module_path)
    assert queued.args_kwargs["args"] == [seeded_world.connection_a.pk]

    sync_connection.call(seeded_world.connection_a.pk)  # what the worker does
    status = client.get(
        reverse("sync:sync_status", args=["acme"]) + "?polling=1", HTTP_HX_REQUEST="true"
    )
    assert status.status_code == 286  # done: htmx stops polling
    assert "Synced just now" in page_text(status) and f"{SEEDED} runs checked" in page_text(status)

    # The same words as everywhere else ("12 min ago", timefmt.relative).
    ConnectionSync.objects.filter(connection=seeded_world.connection_a).update(
        last_success_at=timezone.now() - timedelta(hours=2, minutes=5)
    )
    status = client.get(reverse("sync:sync_status", args=["acme"]), HTTP_HX_REQUEST="true")
    assert "Synced 2 h ago" in page_text(status)


def test_sync_now_reads_the_sync_states_once_and_skips_running_syncs(
    seeded_world, client_as, django_capture_on_commit_callbacks
):
    team = seeded_world.team_a
    for label in ("Backup", "Archive"):
        connection = Connection(team=team, label=label, base_url=seeded_world.simulator.url)
        connection.set_api_key(seeded_world.connection_a.api_key())
        connection.save()
    states = {c.label: services.sync_state_for(c) for c in team.connections.all()}
    ConnectionSync.objects.filter(pk=states["Backup"].pk).update(running_since=timezone.now())
    client = client_as(seeded_world.operator)
    url = reverse("sync:sync_now", args=["acme"])

    def sync_state_reads(queries):
        return [q["sql"] for q in queries if '"sync_connectionsync"' in q["sql"]]

    with (
        CaptureQueriesContext(db_connection) as queries,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client.post(url, HTTP_HX_REQUEST="true")
    # One read serves both the choice of what to start and the status shown,
    # however many connections the team has.
    assert len(sync_state_reads(queries)) == 1
    assert response.status_code == 200
    text = page_text(response)
    assert "Sync queued" in text and "Backup: Syncing with Skyvern" in text
    queued = DBTaskResult.objects.filter(task_path=sync_connection.module_path)
    expected = {states["Archive"].connection_id, states["Skyvern"].connection_id}
    assert {row.args_kwargs["args"][0] for row in queued} == expected
    entry = AuditEntry.objects.get(action=Action.SYNC_NOW)
    assert entry.details == {"started": ["Archive", "Skyvern"]}

    with CaptureQueriesContext(db_connection) as queries:
        response = client.post(url)
    assert len(sync_state_reads(queries)) == 1
    assert response.status_code == 302
    assert response["Location"] == reverse("runs:run_list", args=["acme"])
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Sync started; the runs page updates when it is done."
    ]


def test_viewers_cannot_start_a_sync(seeded_world, client_as):
    client = client_as(seeded_world.viewer)
    assert client.post(reverse("sync:sync_now", args=["acme"])).status_code == 403
    assert not DBTaskResult.objects.exists()
    page = client.get(reverse("runs:run_list", args=["acme"]))
    assert "Sync now" not in page_text(page)


def test_periodic_sync_books_exactly_one_next_round(seeded_world):
    assert PERIODIC_SYNC.book()
    assert not PERIODIC_SYNC.book()  # one is already waiting
    DBTaskResult.objects.all().delete()

    sync_all_connections.call()

    waiting = DBTaskResult.objects.filter(
        task_path=sync_all_connections.module_path, status="READY"
    )
    assert waiting.count() == 1 and waiting.get().run_after > timezone.now()
    assert cached(seeded_world.connection_a).count() == SEEDED
