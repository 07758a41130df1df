"""The canary: a big job sends a few runs first and goes on only if enough of
their retries succeed; it pauses itself (with the reason in words) when they
fail again, when their outcomes don't arrive in time, or when its last
finished retries start failing mid-job. The person resumes, changes the
threshold or cancels."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from console.audit.models import AuditEntry
from console.bulk.models import BulkRetryItem, BulkRetryJob, ItemState, JobState, SkipReason
from console.bulk.services import (
    BulkRetryRefused,
    bulk_job_follow,
    bulk_job_guard,
    bulk_retry_cancel,
    bulk_retry_resume,
    bulk_retry_set_threshold,
    canary_size,
)
from console.bulk.services import sending as sending_module
from console.bulk.services.canary import _top_cause
from console.bulk.tasks import bulk_retry_work
from console.runs.models import Run

from .conftest import add_failed_runs, database_url, end_new_runs, make_job

REASON = "Login failed: portal rejected the password"


def audit_rows(job, action):
    return AuditEntry.objects.filter(action=action, target_id=str(job.pk))


def sent_run_ids(world):
    return set(world.simulator.state.retry_counts())


def canary_items(job):
    return BulkRetryItem.objects.filter(job=job, canary=True).order_by("id")


@pytest.mark.parametrize(
    ("to_send", "over", "size"),
    [(20, 20, 0), (21, 20, 5), (100, 20, 5), (101, 20, 6), (400, 20, 20), (5000, 20, 50)],
)
def test_the_canary_is_5_runs_or_5_percent_at_most_50(to_send, over, size):
    assert canary_size(to_send=to_send, canary_over=over) == size


def test_a_canary_never_outgrows_the_job():
    assert canary_size(to_send=3, canary_over=2) == 3
    assert canary_size(to_send=1000, canary_over=None) == 0


def category(name, confidence):
    return {"category": name, "confidence_float": confidence, "reasoning": None}


def test_the_reason_names_the_most_common_category_and_reason():
    auth = {"failure_category": [category("CREDENTIAL_ERROR", 0.3), category("AUTH_FAILURE", 0.9)]}
    page = {"failure_category": [category("PAGE_LOAD_TIMEOUT", 0.8)]}
    coded = {"errors": [{"error_code": "LOGIN_FAILED", "reasoning": "no"}]}
    failures = [
        ("Login failed: portal rejected the password", auth),
        ("Page timed out", page),
        ("Login failed: portal rejected the password ", auth),
        ("Login failed", coded),
        ("Wrong password", auth),
    ]
    assert _top_cause(failures) == "AUTH_FAILURE 'Login failed: portal rejected the password'"
    assert _top_cause([("Login failed", coded)]) == "LOGIN_FAILED 'Login failed'"
    assert _top_cause([("", {})]) == ""
    assert _top_cause([("x" * 400, None)]) == f"'{'x' * 159}…'"


def test_a_job_under_the_threshold_skips_the_canary(world):
    run_ids = add_failed_runs(world, 20)
    job = make_job(world, run_ids)
    assert job.canary_size == 0 and not job.items.filter(canary=True).exists()

    assert bulk_retry_work.call(job.pk) == "Finished."

    assert world.simulator.state.retry_counts() == {run_id: 1 for run_id in run_ids}


def test_a_job_over_the_threshold_sends_the_canary_then_waits_without_a_worker(world):
    run_ids = add_failed_runs(world, 25)
    job = make_job(world, run_ids)
    assert job.canary_size == 5 and job.canary_over == 20 and job.min_success_percent == 60
    started = time.monotonic()

    result = bulk_retry_work.call(job.pk)

    # The pass ends at once and is booked again to look at the outcomes.
    assert result.startswith("Waiting") and time.monotonic() - started < 5
    booked = DBTaskResult.objects.get(task_path=bulk_retry_work.module_path, status="READY")
    assert booked.args_kwargs["args"] == [job.pk] and booked.run_after > timezone.now()
    canary = list(canary_items(job).values_list("run__run_id", flat=True))
    assert sent_run_ids(world) == set(canary) and len(canary) == 5
    assert job.items.filter(state=ItemState.PENDING, canary=False).count() == 20
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and job.canary_passed_at is None and not job.halt_reason


def test_a_canary_that_succeeds_lets_the_rest_go(world):
    run_ids = add_failed_runs(world, 25)
    job = make_job(world, run_ids)
    bulk_retry_work.call(job.pk)
    end_new_runs(world, job, "completed", "completed", "completed", "failed")  # 3 of 5

    assert bulk_retry_work.call(job.pk) == "Finished."

    assert world.simulator.state.retry_counts() == {run_id: 1 for run_id in run_ids}
    job.refresh_from_db()
    assert job.canary_passed_at and not job.halt_reason and job.state == JobState.FINISHED
    passed = audit_rows(job, "bulk_job_canary_pass").get()
    assert passed.details["completed"] == 3 and passed.details["judged"] == 5


def test_a_canary_that_fails_again_pauses_the_job_with_the_reason(world):
    run_ids = add_failed_runs(world, 25)
    job = make_job(world, run_ids)
    bulk_retry_work.call(job.pk)
    end_new_runs(world, job, "completed", "failed", reason=REASON)  # 1 of 5

    assert bulk_retry_work.call(job.pk) == "Stopped (paused)."
    bulk_retry_work.call(job.pk)  # a second pass changes nothing

    job.refresh_from_db()
    assert job.state == JobState.PAUSED and job.state_changed_by is None
    # Skyvern's run details carry no failure_category: the error's code stands in.
    assert job.halt_reason == f"4 of 5 canary retries failed again: UNEXPECTED_ERROR '{REASON}'"
    assert len(sent_run_ids(world)) == 5
    assert job.items.filter(state=ItemState.PENDING).count() == 20
    halt = audit_rows(job, "bulk_job_halt").get()
    assert halt.details["check"] == "canary" and halt.details["failed_again"] == 4
    assert not bulk_job_guard(job_id=job.pk).canary_only


def test_a_canary_whose_outcomes_do_not_arrive_in_time_pauses_and_asks(world, settings):
    settings.BULK_RETRY_CANARY_WAIT_SECONDS = 120
    job = make_job(world, add_failed_runs(world, 25))
    bulk_retry_work.call(job.pk)
    end_new_runs(world, job, "completed", "completed", "completed", "running")  # 2 still going

    assert bulk_retry_work.call(job.pk).startswith("Waiting")  # still within the time limit
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    # The time limit passes.
    canary_items(job).update(finished_at=timezone.now() - timedelta(seconds=121))

    bulk_retry_work.call(job.pk)

    job.refresh_from_db()
    assert job.state == JobState.PAUSED
    assert job.halt_reason.startswith(
        "2 of 5 canary retries have no outcome (2 still running after 2 minutes); "
        "3 succeeded, 0 failed again."
    )
    assert len(sent_run_ids(world)) == 5


def test_a_canary_retry_sent_without_an_answer_is_not_guessed(world):
    job = make_job(world, add_failed_runs(world, 25))
    bulk_retry_work.call(job.pk)
    end_new_runs(world, job, "completed")
    canary_items(job).filter(pk=canary_items(job).first().pk).update(state=ItemState.UNKNOWN)

    bulk_retry_work.call(job.pk)

    job.refresh_from_db()
    assert job.state == JobState.PAUSED
    assert job.halt_reason.startswith("1 of 5 canary retries have no outcome (1 sent without")


def test_the_rolling_window_halts_a_job_whose_retries_start_failing(world, settings, monkeypatch):
    """After a good canary, the retries start failing again mid-job: the job
    stops sending as soon as its last 5 finished retries are mostly failures."""
    settings.BULK_RETRY_WATCH_WINDOW = 5
    run_ids = add_failed_runs(world, 30)
    job = make_job(world, run_ids)
    bulk_retry_work.call(job.pk)
    end_new_runs(world, job, "completed")  # the canary: 5 of 5

    real_send = sending_module.bulk_item_send
    sent = []

    def send_and_fail_after_five(*, item):
        state = real_send(item=item)
        sent.append(item.pk)
        if len(sent) == 5:  # the portal breaks again: these five end failed
            new_runs = BulkRetryItem.objects.filter(pk__in=sent).values_list(
                "new_run__run_id", flat=True
            )
            for run_id in new_runs:
                world.simulator.state.set_status(run_id, "failed", failure_reason=REASON)
            bulk_job_follow(job_id=job.pk)
        return state

    monkeypatch.setattr(sending_module, "bulk_item_send", send_and_fail_after_five)

    assert bulk_retry_work.call(job.pk) == "Stopped (paused)."

    job.refresh_from_db()
    assert job.state == JobState.PAUSED
    assert job.halt_reason.startswith("5 of the last 5 retries failed again: ")
    assert job.halt_reason.endswith(f"'{REASON}'")
    assert len(sent_run_ids(world)) == 10
    assert job.items.filter(state=ItemState.PENDING).count() == 20
    assert audit_rows(job, "bulk_job_halt").get().details["check"] == "window"


def halted_job(world, n=25):
    run_ids = add_failed_runs(world, n)
    job = make_job(world, run_ids)
    bulk_retry_work.call(job.pk)
    end_new_runs(world, job, "completed", "failed", reason=REASON)
    bulk_retry_work.call(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.PAUSED and job.halt_reason
    return job, run_ids


def test_resuming_a_halted_job_sends_the_rest_once(world):
    job, run_ids = halted_job(world)
    reason = job.halt_reason

    job = bulk_retry_resume(job=job, user=world.operator)

    assert job.state == JobState.RUNNING and not job.halt_reason
    assert job.canary_passed_at and job.watch_since
    resumed = audit_rows(job, "bulk_job_resume").get()
    assert resumed.details["halt_reason"] == reason and resumed.user == world.operator
    # The canary's failures don't halt it again: only retries sent from now count.
    assert bulk_retry_work.call(job.pk) == "Finished."
    assert world.simulator.state.retry_counts() == {run_id: 1 for run_id in run_ids}


def test_bulk_retry_status_says_why_a_job_paused_itself(world, capsys):
    from django.core.management import call_command

    job, _ = halted_job(world)
    call_command("bulk_retry_status", str(job.pk))
    assert f"paused by itself: {job.halt_reason}" in capsys.readouterr().out


def test_changing_the_threshold_keeps_a_halted_job_paused_until_resumed(world):
    job, _ = halted_job(world)

    job = bulk_retry_set_threshold(job=job, user=world.operator, min_success_percent=20)

    assert job.min_success_percent == 20 and job.state == JobState.PAUSED
    changed = audit_rows(job, "bulk_job_threshold").get()
    assert (changed.details["before"], changed.details["after"]) == (60, 20)
    assert len(sent_run_ids(world)) == 5
    with pytest.raises(BulkRetryRefused):
        bulk_retry_set_threshold(job=job, user=world.operator, min_success_percent=101)
    with pytest.raises(Exception, match="(?i)permission|denied|role"):
        bulk_retry_set_threshold(job=job, user=world.viewer, min_success_percent=10)


def test_a_lower_threshold_set_before_the_verdict_lets_the_canary_pass(world):
    job = make_job(world, add_failed_runs(world, 25), min_success_percent=20)
    bulk_retry_work.call(job.pk)
    end_new_runs(world, job, "completed", "failed")  # 1 of 5 = 20 %

    assert bulk_retry_work.call(job.pk) == "Finished."


def test_canceling_a_halted_job_sends_nothing_more(world):
    job, _ = halted_job(world)

    job = bulk_retry_cancel(job=job, user=world.operator)

    assert job.state == JobState.CANCELED
    skipped = job.items.filter(state=ItemState.SKIPPED, skip_reason=SkipReason.JOB_CANCELED)
    assert skipped.count() == 20
    bulk_retry_work.call(job.pk)
    assert len(sent_run_ids(world)) == 5
    with pytest.raises(BulkRetryRefused):
        bulk_retry_set_threshold(job=job, user=world.operator, min_success_percent=10)


# --- the pages ---------------------------------------------------------------------


def job_url(world, job, name="bulk_job_detail"):
    return reverse(f"bulk:{name}", args=[world.team_a.slug, job.pk])


def test_the_job_page_says_why_it_paused_escaped(world, client):
    run_ids = add_failed_runs(world, 25)
    job = make_job(world, run_ids)
    bulk_retry_work.call(job.pk)
    end_new_runs(world, job, "failed", reason="<b>Login</b> failed")
    bulk_retry_work.call(job.pk)
    client.force_login(world.operator)

    page = client.get(job_url(world, job)).content.decode()

    assert "Paused by itself" in page and "5 of 5 canary retries failed again" in page
    assert "&#x27;&lt;b&gt;Login&lt;/b&gt; failed&#x27;" in page and "<b>Login</b>" not in page
    assert "Change threshold" in page and "Resume" in page
    listing = client.get(reverse("bulk:bulk_job_list", args=[world.team_a.slug]))
    assert "5 of 5 canary retries failed again" in listing.content.decode()


def test_threshold_form_changes_it_with_csrf_and_without_js(world):
    job, _ = halted_job(world)
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.operator)
    url = job_url(world, job, "bulk_job_threshold")

    assert client.post(url, {"min_success_percent": "10"}).status_code == 403
    page = client.get(job_url(world, job))
    token = page.cookies["csrftoken"].value if "csrftoken" in page.cookies else None
    token = token or client.cookies["csrftoken"].value
    response = client.post(url, {"min_success_percent": "10", "csrfmiddlewaretoken": token})

    assert response.status_code == 303
    job.refresh_from_db()
    assert job.min_success_percent == 10 and job.state == JobState.PAUSED
    followed = client.get(response["Location"]).content.decode()
    assert "Threshold set to 10 %. The job stays paused until it is resumed." in followed


def test_threshold_form_refuses_a_bad_value_and_a_viewer(world, client):
    job, _ = halted_job(world)
    client.force_login(world.operator)
    response = client.post(
        job_url(world, job, "bulk_job_threshold"),
        {"min_success_percent": "150"},
        headers={"HX-Request": "true", "HX-Target": "job-live"},
    )
    assert response.status_code == 200 and "less than or equal to 100" in response.content.decode()
    job.refresh_from_db()
    assert job.min_success_percent == 60

    client.force_login(world.viewer)
    response = client.post(job_url(world, job, "bulk_job_threshold"), {"min_success_percent": "1"})
    assert response.status_code in (403, 404)
    job.refresh_from_db()
    assert job.min_success_percent == 60


def test_the_preview_sets_the_canary_of_the_job(world, client):
    run_ids = add_failed_runs(world, 12)
    client.force_login(world.operator)
    response = client.post(
        reverse("bulk:bulk_retry_create", args=[world.team_a.slug]),
        {
            "scope": "ids",
            "run": list(Run.objects.filter(run_id__in=run_ids).values_list("pk", flat=True)),
            "options": "1",
            "reason": "Portal back",
            "canary_over": "10",
            "min_success_percent": "80",
        },
    )

    assert response.status_code == 303, response.content.decode()[:2000]
    job = BulkRetryJob.objects.get()
    assert (job.canary_over, job.canary_size, job.min_success_percent) == (10, 5, 80)
    assert job.items.filter(canary=True).count() == 5


# --- a worker killed while it waits for the canary -----------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_during_the_canary_wait_loses_nothing_and_sends_nothing_twice(world):
    """SIGKILL a real `manage.py db_worker` while the job waits for its canary's
    outcomes: the booked look survives it, another worker judges the canary
    and sends the rest, each run once."""
    run_ids = add_failed_runs(world, 25)
    job = make_job(world, run_ids)  # books its worker task
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "SKYVERN_ALLOW_LOOPBACK": "1",
        "BULK_RETRY_WORKER_THREADS": "2",
        "BULK_RETRY_PER_SECOND": "1000",
    }
    worker = [sys.executable, "manage.py", "db_worker", "--no-startup-delay", "--interval", "0.1"]
    child = subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # A look booked for later (a booking "at once" is stored with a far-future date).
    waiting = DBTaskResult.objects.filter(
        task_path=bulk_retry_work.module_path,
        status="READY",
        run_after__gt=timezone.now(),
        run_after__lt=timezone.now() + timedelta(hours=1),
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if waiting.exists():
                break
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert waiting.exists(), "the worker never booked its look at the canary"
    assert len(sent_run_ids(world)) == 5
    assert job.items.filter(state=ItemState.PENDING).count() == 20

    end_new_runs(world, job, "completed")
    DBTaskResult.objects.filter(task_path=bulk_retry_work.module_path, status="READY").update(
        run_after=timezone.now() - timedelta(seconds=1)
    )
    subprocess.run([*worker, "--batch"], env=env, timeout=90, check=True, capture_output=True)

    job.refresh_from_db()
    assert job.state == JobState.FINISHED and job.canary_passed_at
    assert world.simulator.state.retry_counts() == {run_id: 1 for run_id in run_ids}
