"""Choosing runs: the preview's counts and every skip reason, and a job
capturing exactly the runs selected when it was created."""

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from console.bulk.models import BulkRetryItem, BulkRetryJob, ItemState, JobState, SkipReason
from console.bulk.services import BulkRetryRefused, bulk_retry_preview
from console.bulk.tasks import bulk_retry_work
from console.runs.models import Retry, RetryState, Run
from console.skyvern import KeyRejected
from console.sync.models import ConnectionSync
from console.teams.models import Connection

from .conftest import add_failed_runs, make_job


def cached_run(connection, run_id, status="failed", **fields):
    return Run.objects.create(
        team=connection.team,
        connection=connection,
        run_id=run_id,
        status=status,
        created_at=timezone.now(),
        **fields,
    )


@pytest.fixture
def mixed(world, failed_runs):
    """Six sendable runs plus one run for each skip reason."""
    running = world.add_run(status="running")
    retried = world.add_run(status="failed", workflow_title="Retried before")
    Retry.objects.create(run=Run.objects.get(run_id=retried), number=1, state=RetryState.RETRIED)
    in_job = world.add_run(status="failed", workflow_title="In another job")
    make_job(world, [in_job])
    # A connection whose stored key can't be decrypted any more...
    unreadable = Connection.objects.create(
        team=world.team_a,
        label="Old key",
        base_url=world.simulator.url,
        api_key_encrypted="not-a-fernet-token",
        api_key_last4="0000",
    )
    cached_run(unreadable, "wr_unreadable1")
    # ...and one whose last sync was refused by Skyvern.
    rejected = Connection(team=world.team_a, label="Rejected", base_url=world.simulator.url)
    rejected.set_api_key("sk-revoked-key-0000")
    rejected.save()
    ConnectionSync.objects.filter(connection=rejected).update(
        last_error=KeyRejected.default_message, last_error_at=timezone.now()
    )
    cached_run(rejected, "wr_rejected1")
    return {"running": running, "retried": retried, "in_job": in_job}


def preview(world, include_already_retried=False, runs=None):
    return bulk_retry_preview(
        team=world.team_a,
        runs=runs if runs is not None else Run.objects.filter(team=world.team_a),
        include_already_retried=include_already_retried,
    )


def test_preview_counts_breakdowns_and_every_skip_reason(world, mixed):
    result = preview(world)

    assert result.total == 11 and result.to_send == 6 and result.skipped_count == 5
    assert [(b.label, b.count) for b in result.by_workflow] == [
        ("Download carrier invoices", 4),
        ("Upload proof of delivery", 2),
    ]
    assert [(b.label, b.count) for b in result.by_failure_reason] == [
        ("Login failed", 4),
        ("Portal timed out", 2),
    ]
    skipped = {group.reason: [run.run_id for run in group.runs] for group in result.skipped}
    assert skipped == {
        SkipReason.NOT_TERMINAL: [mixed["running"]],
        SkipReason.ALREADY_RETRIED: [mixed["retried"]],
        SkipReason.IN_ACTIVE_JOB: [mixed["in_job"]],
        SkipReason.KEY_FAILING: ["wr_unreadable1", "wr_rejected1"],
    }
    assert all(group.label for group in result.skipped)
    assert world.simulator.state.retry_counts() == {}  # nothing was sent


def test_include_already_retried_sends_those_too(world, mixed):
    result = preview(world, include_already_retried=True)
    assert result.to_send == 7
    assert SkipReason.ALREADY_RETRIED not in {group.reason for group in result.skipped}


def test_a_finished_job_no_longer_holds_its_runs(world, mixed):
    BulkRetryJob.objects.update(state=JobState.FINISHED)
    assert preview(world).to_send == 7


def test_preview_breakdowns_keep_the_top_and_group_the_rest(world):
    for n in range(7):
        add_failed_runs(world, 1, workflow_title=f"Workflow {n}", failure_reason=f"Reason {n}")
    result = preview(world)
    assert len(result.by_workflow) == 6 and result.by_workflow[-1].label == "Other"
    assert result.by_workflow[-1].count == 2
    assert sum(b.count for b in result.by_failure_reason) == 7


def test_preview_is_limited_to_the_team(world, failed_runs):
    world.add_run(world.connection_b, status="failed")
    assert preview(world, runs=Run.objects.all()).total == len(failed_runs)


def test_create_captures_the_selection_and_books_the_worker(
    world, mixed, django_capture_on_commit_callbacks
):
    selection = {"filter": {"status": ["failed"]}}
    with django_capture_on_commit_callbacks(execute=True):
        job = make_job(world, selection=selection, max_steps_override=12)

    assert job.state == JobState.QUEUED and job.total == 11
    assert job.selection == selection and job.max_steps_override == 12
    assert job.reason == "Portal was down overnight" and job.created_by == world.operator
    items = BulkRetryItem.objects.filter(job=job)
    assert items.filter(state=ItemState.PENDING).count() == 6
    assert dict(
        items.filter(state=ItemState.SKIPPED).values_list("run__run_id", "skip_reason")
    ) == {
        mixed["running"]: SkipReason.NOT_TERMINAL,
        mixed["retried"]: SkipReason.ALREADY_RETRIED,
        mixed["in_job"]: SkipReason.IN_ACTIVE_JOB,
        "wr_unreadable1": SkipReason.KEY_FAILING,
        "wr_rejected1": SkipReason.KEY_FAILING,
    }
    booked = DBTaskResult.objects.get(task_path=bulk_retry_work.module_path)
    assert booked.args_kwargs["args"] == [job.pk]
    assert world.simulator.state.retry_counts() == {}  # creating sends nothing

    # A run that fails after the job was created does not slip in.
    late = world.add_run(status="failed")
    bulk_retry_work.call(job.pk)
    assert not items.filter(run__run_id=late).exists()
    assert world.simulator.state.retry_count(late) == 0
    assert items.count() == 11


def test_create_by_explicit_ids(world, failed_runs):
    job = make_job(world, failed_runs[:2])
    assert sorted(job.items.values_list("run__run_id", flat=True)) == sorted(failed_runs[:2])


def test_only_operators_and_admins_create_jobs(world, failed_runs):
    with pytest.raises(PermissionDenied):
        make_job(world, user=world.viewer)
    with pytest.raises(PermissionDenied):
        make_job(world, user=world.outsider)
    assert make_job(world, user=world.admin).total == 6


def test_create_needs_a_reason_and_some_runs(world, failed_runs):
    with pytest.raises(BulkRetryRefused, match="why"):
        make_job(world, reason="   ")
    with pytest.raises(BulkRetryRefused, match="No runs"):
        make_job(world, ["wr_nothing"])


def test_a_job_with_nothing_to_send_is_finished_at_once(world):
    running = world.add_run(status="running")
    job = make_job(world, [running])
    assert job.state == JobState.FINISHED and job.finished_at
