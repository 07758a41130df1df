"""Older news never overwrites newer news, even when they cross: a webhook
that stores a newer view of a run while a sync is comparing an older one
with the cache keeps its view.

The webhook here is the real one (`run_store_delivery`) on a database
connection of its own, in another thread, arriving right after the sync (or
run_upsert_detail) has read the cached runs it compares with. It is told
not to wait for a lock: when it would have to, it says so and is delivered
again once the other writer is done, which is what waiting comes to. No
timing decides an outcome.
"""

import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from django.db import OperationalError, transaction
from django.db import connection as db_connection

from console.runs.models import Run, WriteLock
from console.runs.services import run_refresh
from console.runs.store import (
    retry_lineage_store,
    run_store_delivery,
    run_upsert_detail,
)
from console.skyvern import SkyvernClient
from console.sync import services
from console.sync.models import ConnectionSync
from console.sync.services import connection_sync, sync_state_for

WHEN = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

# --- helpers --------------------------------------------------------------------------


def skyvern_view(world, run_id, connection=None):
    """What Skyvern says of the run now (GET /v1/runs/{id})."""
    connection = connection or world.connection_a
    return SkyvernClient(connection.base_url, connection.api_key()).get_run(run_id)


@pytest.fixture
def listing_only(monkeypatch):
    """Syncs that only read the listing: the one-by-one refresh of unfinished
    runs would otherwise repair what the listing got wrong, and hide it."""
    monkeypatch.setattr(services, "REFRESH_LIMIT", 0)
    monkeypatch.setattr(services, "DETAIL_LIMIT", 0)


def deliver_without_waiting(sync: ConnectionSync, detail) -> str:
    """Apply a webhook delivery on another database connection; "waited"
    instead of waiting when another writer holds what it needs."""
    outcome = []

    def deliver():
        try:
            db_connection.ensure_connection()
            with db_connection.cursor() as cursor:
                if db_connection.vendor == "sqlite":
                    cursor.execute("PRAGMA busy_timeout = 0")
                else:
                    cursor.execute("SET lock_timeout = '200ms'")
            try:
                outcome.append(run_store_delivery(connection=sync.connection, detail=detail))
            except OperationalError:  # "database is locked" / lock timeout
                outcome.append("waited")
        except BaseException as error:  # noqa: BLE001 - reported to the test
            outcome.append(error)
        finally:
            db_connection.close()

    thread = threading.Thread(target=deliver)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the delivery hung"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


@contextmanager
def right_after_the_first_runs_read(action):
    """Call action() once, just after this connection first reads the runs table."""
    table = Run._meta.db_table
    done = []

    def wrapper(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not done and sql.lstrip().upper().startswith("SELECT") and table in sql:
            done.append(True)
            action()
        return result

    with db_connection.execute_wrapper(wrapper):
        yield
    assert done, "the runs table was never read"


class LateWebhook:
    """The run finishes at Skyvern and its webhook arrives, at the given moment."""

    def __init__(self, world, run_id):
        self.world, self.run_id = world, run_id
        self.sync = sync_state_for(world.connection_a)
        self.detail = None
        self.outcome = None

    def arrive(self):
        self.world.simulator.state.set_status(self.run_id, "completed")
        self.detail = skyvern_view(self.world, self.run_id)
        self.outcome = deliver_without_waiting(self.sync, self.detail)

    def after_waiting(self):
        """The delivery that had to wait goes through once the lock is free."""
        if self.outcome == "waited":
            run_store_delivery(connection=self.sync.connection, detail=self.detail)

    def assert_kept(self):
        run = Run.objects.get(connection=self.world.connection_a, run_id=self.run_id)
        assert (run.status, run.modified_at) == ("completed", self.detail.modified_at), (
            f"the webhook's newer view ({self.outcome}) was overwritten by an older one"
        )
        # It could not store between the other writer's read and its write.
        assert self.outcome == "waited"


# --- a sync's listing page and a webhook ----------------------------------------------


def sync_with_a_late_webhook(world, run_id):
    """A sync during which the run's webhook arrives just after the listing
    page was compared with the cache; the sync's result and the webhook."""
    webhook = LateWebhook(world, run_id)
    with right_after_the_first_runs_read(webhook.arrive):
        result = connection_sync(connection=world.connection_a)
    webhook.after_waiting()
    return result, webhook


@pytest.mark.django_db(transaction=True)
def test_a_webhook_between_the_listings_read_and_write_keeps_its_newer_view(world, listing_only):
    run_id = world.add_run(status="running")  # cached, and listed as running

    result, webhook = sync_with_a_late_webhook(world, run_id)

    assert not result.error and result.checked == 1 and result.created == 0
    webhook.assert_kept()


@pytest.mark.django_db(transaction=True)
def test_a_run_a_webhook_adds_meanwhile_is_not_overwritten_by_the_listing(world, listing_only):
    world.add_run(status="completed")
    run_id = world.add_run(cache=False, status="running")  # new to the cache

    result, webhook = sync_with_a_late_webhook(world, run_id)

    assert not result.error and result.checked == 2 and result.created == 1
    webhook.assert_kept()


def test_a_run_stored_meanwhile_outside_the_lock_is_not_overwritten_by_the_listing(
    world, listing_only
):
    """Should a run the listing found new be stored before the listing writes
    it, the listing adds runs; it never overwrites one it hasn't compared."""
    run_id = world.add_run(cache=False, status="running")
    stored = {}

    def store_newer():
        world.simulator.state.set_status(run_id, "completed")
        stored["detail"] = skyvern_view(world, run_id)
        run_upsert_detail(connection=world.connection_a, detail=stored["detail"])

    with right_after_the_first_runs_read(store_newer):
        result = connection_sync(connection=world.connection_a)

    assert not result.error and result.created == 1
    run = Run.objects.get(connection=world.connection_a, run_id=run_id)
    assert (run.status, run.modified_at) == ("completed", stored["detail"].modified_at)


# --- run_upsert_detail and a webhook --------------------------------------------------


def test_run_upsert_detail_ignores_an_older_view_and_stores_a_newer_one(world):
    run_id = world.add_run(status="running")
    older = skyvern_view(world, run_id)
    world.simulator.state.set_status(run_id, "completed")
    newer = skyvern_view(world, run_id)
    assert older.modified_at < newer.modified_at

    run, created = run_upsert_detail(connection=world.connection_a, detail=newer)
    assert not created and (run.status, run.modified_at) == ("completed", newer.modified_at)

    run, created = run_upsert_detail(connection=world.connection_a, detail=older)
    assert not created
    stored = Run.objects.get(connection=world.connection_a, run_id=run_id)
    assert (stored.status, stored.modified_at) == ("completed", newer.modified_at)

    uncached = world.add_run(cache=False, status="failed")
    run, created = run_upsert_detail(
        connection=world.connection_a, detail=skyvern_view(world, uncached)
    )
    assert created and run.team == world.team_a and run.status == "failed"


def test_run_upsert_detail_makes_the_lock_row_it_locks_when_there_is_none(world):
    WriteLock.objects.filter(connection=world.connection_a).delete()  # as if loaded raw
    uncached = world.add_run(cache=False, status="failed")

    run_upsert_detail(connection=world.connection_a, detail=skyvern_view(world, uncached))

    assert Run.objects.filter(connection=world.connection_a, run_id=uncached).exists()
    assert WriteLock.objects.filter(connection=world.connection_a).count() == 1


def test_a_new_connection_has_its_lock_row_from_the_start(world):
    assert WriteLock.objects.filter(connection=world.connection_a).exists()


@pytest.mark.django_db(transaction=True)
def test_a_webhook_between_run_upsert_details_read_and_write_keeps_its_newer_view(world):
    run_id = world.add_run(status="running")
    polled = skyvern_view(world, run_id)  # what a refresh got from Skyvern, just before
    webhook = LateWebhook(world, run_id)

    with right_after_the_first_runs_read(webhook.arrive):
        run_upsert_detail(connection=world.connection_a, detail=polled)
    webhook.after_waiting()

    webhook.assert_kept()


# --- a card's refresh and a webhook ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_webhook_while_a_card_refreshes_keeps_its_newer_view(world, monkeypatch):
    """The card asked Skyvern (the run was still running); the webhook of its
    finish lands before the card stores what it heard."""
    run_id = world.add_run(status="running")
    run = Run.objects.select_related("connection").get(run_id=run_id)
    webhook = LateWebhook(world, run_id)
    get_run = SkyvernClient.get_run

    def get_run_then_webhook(client, *args, **kwargs):
        heard = get_run(client, *args, **kwargs)
        if webhook.outcome is None:
            monkeypatch.setattr(SkyvernClient, "get_run", get_run)  # the webhook's own read
            webhook.arrive()
        return heard

    monkeypatch.setattr(SkyvernClient, "get_run", get_run_then_webhook)
    assert run_refresh(run=run, force=True) is None

    stored = Run.objects.get(pk=run.pk)
    assert webhook.outcome == "updated"
    assert (stored.status, stored.modified_at) == ("completed", webhook.detail.modified_at)
    # The card it draws shows the newer news too, not what it heard.
    assert (run.status, run.modified_at) == ("completed", webhook.detail.modified_at)


# --- a retry's new run that a webhook stored first ------------------------------------


def test_a_retrys_new_run_stored_first_by_a_webhook_keeps_its_newer_view(world):
    """Skyvern's answer to the retry (the new run, just queued) is stored
    after the webhook of the new run's finish: the run gets its lineage and
    keeps the newer view."""
    original = Run.objects.get(run_id=world.add_run(status="failed"))
    new_run_id = world.add_run(cache=False, status="queued")
    answer = skyvern_view(world, new_run_id)
    world.simulator.state.set_status(new_run_id, "completed")
    finished = skyvern_view(world, new_run_id)
    run_upsert_detail(connection=world.connection_a, detail=finished)

    new_run = retry_lineage_store(run=original, detail=answer, user=world.operator, when=WHEN)

    stored = Run.objects.get(pk=new_run.pk)
    assert (stored.status, stored.modified_at) == ("completed", finished.modified_at)
    assert (stored.retried_from, stored.retried_by, stored.retried_at) == (
        original,
        world.operator,
        WHEN,
    )


# --- the real thing, on PostgreSQL ----------------------------------------------------


def wait_until_blocked_by_us(pid: int) -> None:
    """Until the backend `pid` waits for a lock this connection holds."""
    deadline = time.monotonic() + 30
    with db_connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_backend_pid() = ANY(pg_blocking_pids(%s))", [pid])
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    pytest.fail("the sync never waited for the webhook's transaction")


@pytest.mark.skipif(
    db_connection.vendor != "postgresql",
    reason="row locks are PostgreSQL's: on SQLite a writer holds the whole database",
)
@pytest.mark.django_db(transaction=True)
def test_a_sync_page_waits_for_a_webhook_in_progress_and_keeps_its_newer_view(
    world, listing_only, monkeypatch
):
    run_id = world.add_run(status="running")
    sync = sync_state_for(world.connection_a)
    listed, go = threading.Event(), threading.Event()
    sync_pid, results, errors = [], [], []
    list_runs = SkyvernClient.list_runs

    def list_then_pause(client, *args, **kwargs):
        summaries = list_runs(client, *args, **kwargs)  # the run, still running
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            sync_pid.append(cursor.fetchone()[0])
        listed.set()
        assert go.wait(timeout=30)
        return summaries

    def sync_in_thread():
        try:
            results.append(connection_sync(connection=world.connection_a))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            listed.set()
            db_connection.close()

    monkeypatch.setattr(SkyvernClient, "list_runs", list_then_pause)
    thread = threading.Thread(target=sync_in_thread)
    thread.start()
    try:
        assert listed.wait(timeout=30) and sync_pid
        world.simulator.state.set_status(run_id, "completed")
        detail = skyvern_view(world, run_id)
        with transaction.atomic():
            assert run_store_delivery(connection=sync.connection, detail=detail) == "updated"
            go.set()
            wait_until_blocked_by_us(sync_pid[0])
    finally:
        go.set()
        thread.join(timeout=60)
    assert not thread.is_alive() and not errors
    assert not results[0].error

    run = Run.objects.get(connection=world.connection_a, run_id=run_id)
    assert (run.status, run.modified_at) == ("completed", detail.modified_at)
