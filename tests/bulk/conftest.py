"""Fixtures for bulk retry: failed runs in the simulator and the console's
cache, a job over them, and a fast throttle unless a test says otherwise."""

from datetime import timedelta

import pytest
from django.db import connection as db_connection

from console.bulk.models import BulkRetryItem, ItemState
from console.bulk.services import bulk_job_follow, bulk_retry_create
from console.runs.models import Run


@pytest.fixture(autouse=True)
def bulk_settings(settings):
    """Tests measure the throttle only where they set it; elsewhere it must not slow them."""
    settings.BULK_RETRY_PER_SECOND = 1000
    settings.BULK_RETRY_MAX_IN_FLIGHT = 4
    settings.BULK_RETRY_WORKER_THREADS = 1
    return settings


@pytest.fixture(autouse=True)
def follow_at_once(monkeypatch):
    """A job's follow pass asks Skyvern about a new run it heard of a moment
    ago (a card would wait a little)."""
    monkeypatch.setattr("console.runs.services.REFRESH_AT_MOST_EVERY", timedelta(0))


def end_new_runs(world, job, *statuses, reason="Login failed: portal rejected the password"):
    """End the job's new runs at Skyvern (in item order; the last status
    for the rest), then let the job's follow pass find out."""
    new_runs = (
        BulkRetryItem.objects.filter(job=job, state=ItemState.RETRIED)
        .order_by("id")
        .values_list("new_run__run_id", flat=True)
    )
    for n, run_id in enumerate(new_runs):
        status = statuses[min(n, len(statuses) - 1)]
        world.simulator.state.set_status(
            run_id, status, failure_reason=None if status == "completed" else reason
        )
    return bulk_job_follow(job_id=job.pk)


def add_failed_runs(world, n, connection=None, **fields):
    fields.setdefault("status", "failed")
    return [world.add_run(connection, **fields) for _ in range(n)]


@pytest.fixture
def failed_runs(world):
    """Six failed runs of team A: two workflows, two failure reasons."""
    ids = add_failed_runs(
        world, 4, workflow_title="Download carrier invoices", failure_reason="Login failed"
    )
    ids += add_failed_runs(
        world, 2, workflow_title="Upload proof of delivery", failure_reason="Portal timed out"
    )
    return ids


def make_job(world, run_ids=None, *, user=None, **options):
    runs = Run.objects.filter(team=world.team_a)
    if run_ids is not None:
        runs = runs.filter(run_id__in=run_ids)
    options.setdefault("reason", "Portal was down overnight")
    options.setdefault("include_already_retried", False)
    options.setdefault("max_steps_override", None)
    options.setdefault("selection", {"run_ids": list(run_ids or [])})
    return bulk_retry_create(team=world.team_a, user=user or world.operator, runs=runs, **options)


def database_url() -> str:
    """DATABASE_URL of the test database, for a subprocess."""
    settings_dict = db_connection.settings_dict
    if db_connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    return (
        f"postgres://{settings_dict['USER'] or 'postgres'}@{settings_dict['HOST']}:"
        f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
    )
