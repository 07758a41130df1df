"""The per-connection throttle: at most C requests in flight and R per
second, shared by every job and worker; a 429 holds the whole connection."""

import contextlib
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console.bulk.models import BulkRetryItem, ConnectionThrottle, ItemState
from console.bulk.services import bulk_item_claim, bulk_item_send, bulk_job_work, sending
from console.runs.models import Retry
from console.skyvern import RateLimited, SkyvernClient

from .conftest import add_failed_runs, make_job


def override(world, **fields):
    ConnectionThrottle.objects.update_or_create(connection=world.connection_a, defaults=fields)


def test_no_more_than_c_claims_in_flight(world, failed_runs):
    override(world, max_in_flight=2)
    job = make_job(world)
    first = bulk_item_claim(job_id=job.pk).item
    second = bulk_item_claim(job_id=job.pk).item
    assert first and second and first.pk != second.pk

    third = bulk_item_claim(job_id=job.pk)
    assert third.item is None and third.wait_until - timezone.now() < timedelta(seconds=1)

    bulk_item_send(item=first)
    assert bulk_item_claim(job_id=job.pk).item is not None


def test_sends_are_spaced_one_over_r_apart(world, failed_runs, settings):
    settings.BULK_RETRY_PER_SECOND = 2
    job = make_job(world)
    before = timezone.now()
    assert bulk_item_claim(job_id=job.pk).item is not None
    claim = bulk_item_claim(job_id=job.pk)
    assert claim.item is None
    assert before + timedelta(seconds=0.5) <= claim.wait_until
    assert claim.wait_until <= timezone.now() + timedelta(seconds=0.5)


def test_the_throttle_is_shared_by_every_job_on_the_connection(world, failed_runs):
    first_job = make_job(world, failed_runs[:3])
    other_job = make_job(world, failed_runs[3:])
    world.simulator.state.configure(error_rates={429: 1.0}, rate_limit_retry_after=5)
    bulk_item_send(item=bulk_item_claim(job_id=first_job.pk).item)

    claim = bulk_item_claim(job_id=other_job.pk)  # the other job waits too
    assert claim.item is None and claim.wait_until > timezone.now() + timedelta(seconds=4)
    assert world.simulator.state.retry_counts() == {}


def test_per_connection_overrides_win_over_settings(world, settings):
    settings.BULK_RETRY_MAX_IN_FLIGHT, settings.BULK_RETRY_PER_SECOND = 4, 2
    throttle = ConnectionThrottle.objects.create(connection=world.connection_a)
    assert (throttle.effective_max_in_flight, throttle.effective_per_second) == (4, 2)
    throttle.max_in_flight, throttle.per_second = 9, 30
    assert (throttle.effective_max_in_flight, throttle.effective_per_second) == (9, 30)


def queries_on(table, queries):
    return [q["sql"] for q in queries if f'FROM "{table}"' in q["sql"]]


def test_a_claim_reads_its_throttle_row_once_and_its_creator_with_the_job(world, failed_runs):
    job = make_job(world)
    # Made with the job, so that claims need not look for it first.
    assert ConnectionThrottle.objects.filter(connection=world.connection_a).exists()
    for _ in failed_runs:
        ConnectionThrottle.objects.update(next_send_at=None)
        with CaptureQueriesContext(db_connection) as claiming:
            claim = bulk_item_claim(job_id=job.pk)
        with CaptureQueriesContext(db_connection) as sending:
            assert bulk_item_send(item=claim.item) == ItemState.RETRIED
        assert len(queries_on("bulk_connectionthrottle", claiming)) == 1  # the locking read
        assert queries_on("auth_user", claiming) + queries_on("auth_user", sending) == []
    retries = Retry.objects.filter(bulk_items__job=job)
    assert retries.count() == len(failed_runs)
    assert {r.requested_by for r in retries} == {world.operator}
    assert {r.new_run.retried_by for r in retries} == {world.operator}


def test_a_connection_without_a_throttle_row_gets_one_at_its_first_claim(world, failed_runs):
    job = make_job(world)
    ConnectionThrottle.objects.all().delete()

    claim = bulk_item_claim(job_id=job.pk)

    assert claim.item is not None and claim.item.state == ItemState.SENDING
    throttle = ConnectionThrottle.objects.get(connection=world.connection_a)
    assert throttle.next_send_at is not None  # the claim went through it


class Recorder:
    """Wraps the client's retry call: when each started and how many were out at once."""

    def __init__(self, monkeypatch):
        self.lock = threading.Lock()
        self.out = 0
        self.most_out = 0
        self.starts = []
        self.limited_at = []  # when each 429 came back
        original = SkyvernClient.retry_run

        def retry_run(client, *args, **kwargs):
            with self.lock:
                self.out += 1
                self.most_out = max(self.most_out, self.out)
                self.starts.append(time.monotonic())
            try:
                return original(client, *args, **kwargs)
            except RateLimited:
                with self.lock:
                    self.limited_at.append(time.monotonic())
                raise
            finally:
                with self.lock:
                    self.out -= 1

        monkeypatch.setattr(SkyvernClient, "retry_run", retry_run)


def most_in_one_second(times) -> int:
    times = sorted(times)
    return max(sum(1 for t in times if start <= t < start + 1) for start in times)


@pytest.mark.django_db(transaction=True)
def test_measured_in_flight_never_exceeds_c(world, settings, monkeypatch):
    settings.BULK_RETRY_WORKER_THREADS = 6
    override(world, max_in_flight=3, per_second=1000)
    run_ids = add_failed_runs(world, 12)
    job = make_job(world, run_ids)
    world.simulator.state.configure(latency_ms=200)
    recorder = Recorder(monkeypatch)

    assert bulk_job_work(job_id=job.pk) == "Finished."

    assert recorder.most_out == 3 and len(recorder.starts) == 12
    assert all(world.simulator.state.retry_count(run_id) == 1 for run_id in run_ids)


@pytest.mark.django_db(transaction=True)
def test_measured_rate_never_exceeds_r(world, settings, monkeypatch):
    settings.BULK_RETRY_WORKER_THREADS = 4
    override(world, max_in_flight=10, per_second=5)
    run_ids = add_failed_runs(world, 11)
    job = make_job(world, run_ids)
    # The simulator itself would answer 429 past 6 a second.
    world.simulator.state.configure(latency_ms=20, rate_limit_per_second=6)
    recorder = Recorder(monkeypatch)
    started = time.monotonic()

    assert bulk_job_work(job_id=job.pk) == "Finished."

    assert time.monotonic() - started >= 10 / 5 - 0.05
    claimed = [
        sent_at.timestamp()
        for sent_at in BulkRetryItem.objects.filter(job=job).values_list("sent_at", flat=True)
    ]
    assert most_in_one_second(claimed) <= 5
    assert most_in_one_second(recorder.starts) <= 6
    assert set(BulkRetryItem.objects.values_list("state", "attempts")) == {(ItemState.RETRIED, 1)}
    db_connection.close()


class HoldWatch:
    """When the senders claimed items and when 429s held the connection back,
    each read where the throttle decides it, not when a busy machine gets
    round to the next line: a claim's time is its item's `sent_at` (taken
    under the throttle row's lock), a hold is in force from when its write
    returned. The first `together` Skyvern calls wait for each other, so that
    they reach Skyvern within the same second however slow the machine."""

    def __init__(self, monkeypatch, together: int):
        self.lock = threading.Lock()
        self.claimed_at = []
        self.calls = 0
        self.holds = []  # (429 came back, hold in force from, until)
        self.limited = threading.local()  # when this thread's last 429 came back
        self.gate = threading.Barrier(together)
        claim, hold = sending.bulk_item_claim, sending.throttle_hold
        retry_run = SkyvernClient.retry_run

        def watched_claim(**kwargs):
            result = claim(**kwargs)
            if result.item is not None:
                with self.lock:
                    self.claimed_at.append(result.item.sent_at)
            return result

        def watched_hold(connection_id, *, until, reason):
            hold(connection_id, until=until, reason=reason)
            in_force = timezone.now()
            with self.lock:
                self.holds.append((getattr(self.limited, "at", None), in_force, until))

        def watched_retry_run(client, *args, **kwargs):
            with self.lock:
                self.calls += 1
                first = self.calls <= self.gate.parties
            if first:
                # Never this long in a passing run; fewer together: the test says so.
                with contextlib.suppress(threading.BrokenBarrierError):
                    self.gate.wait(timeout=10)
            try:
                return retry_run(client, *args, **kwargs)
            except RateLimited:
                self.limited.at = timezone.now()
                raise

        monkeypatch.setattr(sending, "bulk_item_claim", watched_claim)
        monkeypatch.setattr(sending, "throttle_hold", watched_hold)
        monkeypatch.setattr(SkyvernClient, "retry_run", watched_retry_run)


@pytest.mark.django_db(transaction=True)
def test_a_429_holds_back_the_whole_connection(world, settings, monkeypatch):
    settings.BULK_RETRY_WORKER_THREADS = 3
    run_ids = add_failed_runs(world, 6)
    job = make_job(world, run_ids)
    # Two requests a second pass; the third in a second gets 429 + Retry-After: 1.
    world.simulator.state.configure(rate_limit_per_second=2, rate_limit_retry_after=1)
    watch = HoldWatch(monkeypatch, together=3)

    assert bulk_job_work(job_id=job.pk) == "Finished."

    assert not watch.gate.broken  # the first three calls went out together
    items = list(BulkRetryItem.objects.filter(job=job))
    assert {item.state for item in items} == {ItemState.RETRIED}
    assert any(item.attempts > 1 for item in items)  # some were held back and re-sent
    assert all(world.simulator.state.retry_count(run_id) == 1 for run_id in run_ids)
    assert len(watch.claimed_at) == watch.calls  # each claim made one Skyvern call
    # Each 429 held the whole connection for its Retry-After second, and no
    # item was claimed while a hold was in force. (A send claimed before the
    # hold was written may still go out after the 429 came back: Skyvern
    # answers it 429 too, and it waits like the first.)
    assert watch.holds
    for limited, in_force, until in watch.holds:
        assert limited is not None  # held because of a 429
        assert until >= limited + timedelta(seconds=1)
        assert not [t for t in watch.claimed_at if in_force < t < until]
