"""The worker against the simulator: each item sent once with lineage, every
fault the simulator injects ending in the right item state, unknown items
checked or retried anyway, pause/resume/cancel, progress, and picking up
after a dead worker."""

import socket
import time
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from console.bulk import services
from console.bulk.models import (
    BulkRetryItem,
    ConnectionThrottle,
    ItemState,
    JobState,
    SkipReason,
)
from console.bulk.services import (
    BulkRetryRefused,
    bulk_item_check,
    bulk_item_claim,
    bulk_item_retry_anyway,
    bulk_item_send,
    bulk_job_progress,
    bulk_jobs_revive,
    bulk_retry_cancel,
    bulk_retry_pause,
    bulk_retry_preview,
    bulk_retry_resume,
)
from console.bulk.tasks import bulk_retry_watchdog, bulk_retry_work
from console.runs.checking import retry_link
from console.runs.models import Retry, RetryState, Run
from console.runs.services import RetryRefused
from console.skyvern import SkyvernClient
from console.teams.models import Connection

from .conftest import make_job


def items_of(job):
    return list(job.items.select_related("run", "new_run", "retry").order_by("id"))


def claim_and_send(job):
    claim = bulk_item_claim(job_id=job.pk)
    assert claim.item is not None, claim
    return claim.item, bulk_item_send(item=claim.item)


def make_due(job):
    BulkRetryItem.objects.filter(job=job, state=ItemState.PENDING).update(next_attempt_at=None)
    ConnectionThrottle.objects.update(paused_until=None, next_send_at=None)


def test_worker_sends_each_run_once_and_stores_lineage(world, failed_runs):
    job = make_job(world, max_steps_override=7)

    assert bulk_retry_work.call(job.pk) == "Finished."

    state = world.simulator.state
    for item in items_of(job):
        assert item.state == ItemState.RETRIED and item.attempts == 1
        assert state.retry_count(item.run.run_id) == 1
        new = item.new_run
        assert new.retried_from == item.run and new.retried_by == world.operator
        assert new.retried_at is not None and new.app_url.startswith(world.simulator.url)
        assert (item.retry.state, item.retry.number, item.retry.new_run) == (
            RetryState.RETRIED,
            1,
            new,
        )
        assert state.find_run(new.run_id).max_steps_override == 7
    job.refresh_from_db()
    assert job.state == JobState.FINISHED and job.started_at and job.finished_at
    progress = bulk_job_progress(job)
    assert (progress.total, progress.done, progress.percent, progress.active) == (6, 6, 100, False)
    assert progress.counts[ItemState.RETRIED] == 6 and progress.rate > 0 and progress.eta is None

    bulk_retry_work.call(job.pk)  # again: nothing more is sent
    assert all(state.retry_count(run_id) == 1 for run_id in failed_runs)


@pytest.mark.parametrize(
    "knobs",
    [
        {"error_rates": {429: 1.0}, "rate_limit_retry_after": 1},
        {"busy": 1.0, "busy_retry_after": 1},
    ],
    ids=["429", "503-retry-after"],
)
def test_rate_limited_or_busy_items_wait_then_go_again(world, knobs):
    run_ids = [world.add_run(status="failed") for _ in range(2)]
    job = make_job(world, run_ids)
    state = world.simulator.state
    state.configure(**knobs)

    started = timezone.now()
    first, outcome = claim_and_send(job)
    first.refresh_from_db()
    assert outcome == ItemState.PENDING and first.state == ItemState.PENDING
    assert first.next_attempt_at >= started + timedelta(seconds=1)
    assert first.retry.state == RetryState.FAILED  # certainly not created: not counted
    throttle = ConnectionThrottle.objects.get(connection=world.connection_a)
    assert throttle.paused_until >= started + timedelta(seconds=1) and throttle.pause_reason
    # The whole connection waits, not only the item that got the answer.
    claim = bulk_item_claim(job_id=job.pk)
    assert claim.item is None and claim.wait_until == throttle.paused_until
    assert state.retry_counts() == {}

    state.configure(error_rates={}, busy=0.0)
    bulk_retry_work.call(job.pk)  # sleeps until the Retry-After has passed

    assert timezone.now() - started >= timedelta(seconds=1)
    items = items_of(job)
    assert [item.state for item in items] == [ItemState.RETRIED] * 2
    assert [item.attempts for item in items] == [2, 1]
    assert all(state.retry_count(run_id) == 1 for run_id in run_ids)
    assert items[0].retry.number == 1  # the failed attempt freed its number


AMBIGUOUS = {
    "500": {"error_rates": {500: 1.0}},
    "502": {"error_rates": {502: 1.0}},
    "503-without-retry-after": {"error_rates": {503: 1.0}},
    "504": {"error_rates": {504: 1.0}},
    "dropped": {"drop_connection": 1.0},
    "malformed-json": {"malformed_json": 1.0},
    "truncated-body": {"truncate_body": 1.0},
    "read-timeout": {"hang_seconds": 3},
}


@pytest.mark.parametrize("fault", AMBIGUOUS)
def test_answers_that_leave_the_outcome_open_make_the_item_unknown(world, settings, fault):
    settings.SKYVERN_READ_TIMEOUT = 0.5
    run_id = world.add_run(status="failed")
    job = make_job(world, [run_id])
    state = world.simulator.state
    state.configure(**AMBIGUOUS[fault])

    bulk_retry_work.call(job.pk)

    [item] = items_of(job)
    assert item.state == ItemState.UNKNOWN, item.error
    assert "may or may not" in item.error and item.retry.state == RetryState.UNKNOWN
    assert state.retry_count(run_id) == 1  # the simulator did create it
    state.configure(**{name: type(value)() for name, value in AMBIGUOUS[fault].items()})
    bulk_retry_work.call(job.pk)
    assert state.retry_count(run_id) == 1  # never re-sent blindly
    job.refresh_from_db()
    assert job.state == JobState.FINISHED
    assert bulk_job_progress(job).counts[ItemState.UNKNOWN] == 1


def test_certain_refusals_fail_with_skyverns_reason(world):
    invalid = world.add_run(status="failed")
    not_finished = world.add_run(status="failed")
    world.simulator.state.set_status(not_finished, "running")
    missing = Run.objects.create(
        team=world.team_a,
        connection=world.connection_a,
        run_id="wr_404404404",
        status="failed",
        created_at=timezone.now(),
    )
    job = make_job(world, [invalid, not_finished, missing.run_id])
    world.simulator.state.configure(error_rates={422: 1.0}, fault_endpoints=["retry"])
    claim_and_send(job)  # the oldest: `invalid`, answered 422
    world.simulator.state.configure(error_rates={})
    bulk_retry_work.call(job.pk)

    errors = {item.run.run_id: (item.state, item.error) for item in items_of(job)}
    assert errors[invalid][0] == ItemState.FAILED and "invalid" in errors[invalid][1]
    assert errors[not_finished][0] == ItemState.FAILED
    assert "terminal" in errors[not_finished][1]  # Skyvern's own words
    assert errors["wr_404404404"][0] == ItemState.FAILED
    assert "no such run" in errors["wr_404404404"][1]
    assert world.simulator.state.retry_counts() == {}


def test_a_rejected_key_fails_the_connections_items_and_marks_the_key(world, failed_runs):
    job = make_job(world)
    connection = Connection.objects.get(pk=world.connection_a.pk)
    connection.set_api_key("sk-revoked-0123456789-XXXX")
    Connection.objects.filter(pk=connection.pk).update(
        api_key_encrypted=connection.api_key_encrypted
    )

    bulk_retry_work.call(job.pk)

    items = items_of(job)
    assert {item.state for item in items} == {ItemState.FAILED}
    assert sum(item.attempts for item in items) == 1  # one 403 is enough
    assert all("rejected" in item.error for item in items)
    assert all("sk-revoked" not in item.error for item in items)
    preview = bulk_retry_preview(
        team=world.team_a,
        runs=Run.objects.filter(team=world.team_a),
        include_already_retried=False,
    )
    assert [group.reason for group in preview.skipped] == [SkipReason.KEY_FAILING]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_waits_then_goes_again(world):
    run_id = world.add_run(status="failed")
    job = make_job(world, [run_id])
    Connection.objects.filter(pk=world.connection_a.pk).update(
        base_url=f"http://127.0.0.1:{closed_port()}"
    )

    item, outcome = claim_and_send(job)
    item.refresh_from_db()
    assert outcome == ItemState.PENDING and "unreachable" in item.error
    assert ConnectionThrottle.objects.get(connection=world.connection_a).paused_until

    Connection.objects.filter(pk=world.connection_a.pk).update(base_url=world.simulator.url)
    make_due(job)
    bulk_retry_work.call(job.pk)
    item.refresh_from_db()
    assert item.state == ItemState.RETRIED and item.attempts == 2
    assert world.simulator.state.retry_count(run_id) == 1


def test_gives_up_after_the_most_attempts(world, settings):
    settings.BULK_RETRY_MAX_ATTEMPTS = 2
    run_id = world.add_run(status="failed")
    job = make_job(world, [run_id])
    world.simulator.state.configure(error_rates={429: 1.0}, rate_limit_retry_after=0)
    claim_and_send(job)
    make_due(job)
    item, outcome = claim_and_send(job)
    item.refresh_from_db()
    assert outcome == ItemState.FAILED and "Gave up after 2 attempts" in item.error


def runs_made_by_retries(world, run_ids) -> dict[str, str]:
    """{original run: the run its retry made}, known to the simulator by the
    parameters a retry copies (Skyvern itself doesn't say)."""
    connection = world.connection_a
    listed = SkyvernClient(connection.base_url, connection.api_key()).list_runs(page_size=1000)
    state = world.simulator.state
    originals = [state.find_run(original).parameters for original in run_ids]
    assert all(originals.count(p) == 1 for p in originals), "give each run its own parameters"
    made = {
        original: summary.run_id
        for summary in listed
        if summary.run_id not in run_ids
        for original in run_ids
        if state.find_run(summary.run_id).parameters == state.find_run(original).parameters
    }
    assert len(made) == len(run_ids)
    return made


def test_check_shows_the_runs_skyvern_did_create_and_the_person_links_one(world):
    """Issue 11, defect 1: Skyvern fills retried_from_workflow_run_id with null
    for API retries. Check must not read that as "not retried from this run"
    (and advise a duplicate): it lists the candidates with their evidence,
    links none on a guess, and the person links the right one."""
    # Parameters of their own: the simulator's made-up ones coincide now and
    # then, and the parameters are what tell the two retries' runs apart.
    run_ids = [world.add_run(status="failed", parameters={"invoice": f"INV-{n}"}) for n in range(2)]
    job = make_job(world, run_ids)
    state = world.simulator.state
    state.configure(drop_connection=1.0)  # each retry made its run, then the answer was lost
    bulk_retry_work.call(job.pk)
    state.configure(drop_connection=0.0)
    first, second = items_of(job)
    assert first.state == second.state == ItemState.UNKNOWN
    made = runs_made_by_retries(world, run_ids)

    result = bulk_item_check(item=second, user=world.operator)

    second.refresh_from_db()
    assert result.linked is None and second.state == ItemState.UNKNOWN  # never on a guess
    assert "probably not created" not in result.message
    assert made[run_ids[1]] in result.message and second.check_note == result.message
    by_id = {c.run_id: c for c in result.candidates}
    assert set(by_id) == set(made.values())
    # The evidence tells them apart: only the right one has the original's parameters.
    assert by_id[made[run_ids[1]]].same_parameters is True
    assert by_id[made[run_ids[0]]].same_parameters is False
    assert all("after the retry was sent" in c.after_text for c in result.candidates)

    new_run = retry_link(retry=second.retry, run_id=made[run_ids[1]], user=world.operator)

    second.refresh_from_db()
    assert second.state == ItemState.RETRIED and second.new_run == new_run
    assert new_run.retried_from == second.run and new_run.retried_by == world.operator
    retry = Retry.objects.get(pk=second.retry_id)
    assert (retry.state, retry.new_run) == (RetryState.RETRIED, new_run)
    assert state.retry_count(run_ids[1]) == 1
    with pytest.raises(BulkRetryRefused):
        bulk_item_check(item=second, user=world.operator)
    # The first item's run can't be linked to the run already taken.
    with pytest.raises(RetryRefused, match="already the new run"):
        retry_link(retry=first.retry, run_id=made[run_ids[1]], user=world.operator)


def test_check_finding_nothing_then_retry_anyway_sends_once_more(
    world, django_capture_on_commit_callbacks
):
    run_id = world.add_run(status="failed")
    job = make_job(world, [run_id])
    state = world.simulator.state
    state.configure(drop_connection=1.0, apply_then_fail=False)  # dropped before acting
    bulk_retry_work.call(job.pk)
    state.configure(drop_connection=0.0, apply_then_fail=True)
    [item] = items_of(job)
    assert item.state == ItemState.UNKNOWN and state.retry_count(run_id) == 0

    result = bulk_item_check(item=item, user=world.operator)
    item.refresh_from_db()
    assert result.linked is None and "No new run" in result.message
    assert item.state == ItemState.UNKNOWN and item.check_note == result.message

    with django_capture_on_commit_callbacks(execute=True):
        item = bulk_item_retry_anyway(item=item, user=world.operator)
    assert item.state == ItemState.PENDING and item.seen_retries == 1
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and job.finished_at is None
    assert DBTaskResult.objects.filter(task_path=bulk_retry_work.module_path).exists()

    bulk_retry_work.call(job.pk)
    item.refresh_from_db()
    assert item.state == ItemState.RETRIED and item.retry.number == 2
    assert state.retry_count(run_id) == 1
    job.refresh_from_db()
    assert job.state == JobState.FINISHED


def test_a_job_whose_worker_pass_waits_is_not_booked_again(
    world, failed_runs, django_capture_on_commit_callbacks
):
    """Pausing and resuming a job whose worker pass is still waiting adds no
    second pass to the queue."""
    with django_capture_on_commit_callbacks(execute=True):
        job = make_job(world)
    bulk_retry_pause(job=job, user=world.operator)
    with django_capture_on_commit_callbacks(execute=True):
        bulk_retry_resume(job=job, user=world.operator)

    waiting = DBTaskResult.objects.filter(task_path=bulk_retry_work.module_path, status="READY")
    assert waiting.count() == 1


def test_viewers_can_watch_but_not_steer(world, failed_runs):
    job = make_job(world)
    for action in (bulk_retry_pause, bulk_retry_resume, bulk_retry_cancel):
        with pytest.raises(PermissionDenied):
            action(job=job, user=world.viewer)
    item = job.items.first()
    for action in (bulk_item_check, bulk_item_retry_anyway):
        with pytest.raises(PermissionDenied):
            action(item=item, user=world.viewer)
    assert bulk_job_progress(job).total == 6  # watching needs no role


def test_pause_resume_and_cancel(world, failed_runs, django_capture_on_commit_callbacks):
    job = make_job(world)
    state = world.simulator.state

    job = bulk_retry_pause(job=job, user=world.operator)
    assert job.state == JobState.PAUSED and job.state_changed_by == world.operator
    assert bulk_retry_work.call(job.pk) == "The job is paused."
    assert bulk_item_claim(job_id=job.pk).stop and state.retry_counts() == {}

    with django_capture_on_commit_callbacks(execute=True):
        job = bulk_retry_resume(job=job, user=world.admin)
    assert job.state == JobState.QUEUED
    assert DBTaskResult.objects.filter(task_path=bulk_retry_work.module_path).exists()
    sent, _ = claim_and_send(job)
    job.refresh_from_db()
    assert job.state == JobState.RUNNING

    job = bulk_retry_cancel(job=job, user=world.operator)
    assert job.state == JobState.CANCELED and job.finished_at
    items = items_of(job)
    assert [item.state for item in items] == [ItemState.RETRIED] + [ItemState.SKIPPED] * 5
    assert {item.skip_reason for item in items[1:]} == {SkipReason.JOB_CANCELED}
    bulk_retry_work.call(job.pk)
    assert state.retry_counts() == {sent.run.run_id: 1}
    with pytest.raises(BulkRetryRefused):
        bulk_retry_pause(job=job, user=world.operator)
    with pytest.raises(BulkRetryRefused):
        bulk_retry_resume(job=job, user=world.operator)
    progress = bulk_job_progress(job)
    assert progress.done == 6 and not progress.active


def test_an_item_out_when_the_job_is_canceled_keeps_its_outcome(world):
    run_ids = [world.add_run(status="failed") for _ in range(2)]
    job = make_job(world, run_ids)
    world.simulator.state.configure(error_rates={429: 1.0})
    claim = bulk_item_claim(job_id=job.pk)
    bulk_retry_cancel(job=job, user=world.operator)  # while the first is out
    assert bulk_item_send(item=claim.item) == ItemState.PENDING
    assert {item.state for item in items_of(job)} == {ItemState.SKIPPED}


def test_only_delayed_items_left_books_the_worker_for_later(world):
    run_id = world.add_run(status="failed")
    job = make_job(world, [run_id])
    world.simulator.state.configure(busy=1.0, busy_retry_after=30)
    started = time.monotonic()

    result = bulk_retry_work.call(job.pk)

    assert time.monotonic() - started < 5 and result.startswith("Waiting")
    booked = DBTaskResult.objects.get(task_path=bulk_retry_work.module_path, status="READY")
    assert booked.args_kwargs["args"] == [job.pk]
    assert booked.run_after >= timezone.now() + timedelta(seconds=25)
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    progress = bulk_job_progress(job)
    assert progress.active and progress.waiting_until and "busy" in progress.waiting_reason


def test_progress_counts_rate_and_time_left(world, failed_runs):
    job = make_job(world)
    for _ in range(3):
        claim_and_send(job)
    progress = bulk_job_progress(job)
    assert (progress.total, progress.done, progress.remaining) == (6, 3, 3)
    assert progress.counts[ItemState.PENDING] == 3 and progress.counts[ItemState.RETRIED] == 3
    assert progress.percent == 50 and progress.active and progress.state == JobState.RUNNING
    assert progress.rate > 0 and progress.eta > timedelta(0)


def test_a_dead_workers_items_become_unknown_and_the_job_is_picked_up(world):
    run_ids = [world.add_run(status="failed") for _ in range(3)]
    job = make_job(world, run_ids)
    claim = bulk_item_claim(job_id=job.pk)  # ...and the worker dies mid-call
    DBTaskResult.objects.all().delete()
    assert bulk_jobs_revive() == []  # its lease has not run out yet
    past = timezone.now() - services.sending_lease() - timedelta(seconds=1)
    BulkRetryItem.objects.filter(pk=claim.item.pk).update(sent_at=past)
    job.__class__.objects.filter(pk=job.pk).update(heartbeat_at=past)

    assert bulk_jobs_revive() == [job.pk]

    claim.item.refresh_from_db()
    assert claim.item.state == ItemState.UNKNOWN and "worker stopped" in claim.item.error
    assert Retry.objects.get(pk=claim.item.retry_id).state == RetryState.UNKNOWN
    assert DBTaskResult.objects.filter(task_path=bulk_retry_work.module_path).count() == 1
    bulk_retry_work.call(job.pk)
    states = [item.state for item in items_of(job)]
    assert states == [ItemState.UNKNOWN, ItemState.RETRIED, ItemState.RETRIED]
    assert world.simulator.state.retry_counts() == {run_ids[1]: 1, run_ids[2]: 1}


def test_the_watchdog_books_itself_while_a_job_is_active(world, failed_runs):
    make_job(world)
    DBTaskResult.objects.all().delete()
    bulk_retry_watchdog.call()
    waiting = DBTaskResult.objects.filter(task_path=bulk_retry_watchdog.module_path, status="READY")
    assert waiting.count() == 1


def test_bulk_retry_status_command(world, failed_runs, capsys):
    from django.core.management import CommandError, call_command

    job = make_job(world)
    call_command("bulk_retry_status")
    assert f"#{job.pk} acme queued: 0/6 done (6 waiting)" in capsys.readouterr().out
    bulk_retry_work.call(job.pk)
    call_command("bulk_retry_status", str(job.pk), "--revive")
    out = capsys.readouterr().out
    assert "Revived: none" in out and f"#{job.pk} acme finished: 6/6 done (6 retried)" in out
    with pytest.raises(CommandError):
        call_command("bulk_retry_status", "999999")
