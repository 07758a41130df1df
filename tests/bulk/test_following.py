"""A bulk job follows each sent retry's new run to its end: completed, failed
again (failed, terminated, timed out), canceled at Skyvern, still running,
outcome unknown; whichever way the new run's status arrives (the job's own
follow pass, a webhook, the sync). The job's end is announced only then,
saying how many succeeded; the runs that failed again are one click from a
new preview of exactly them, whose retries keep the lineage."""

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from console.bulk.models import BulkRetryItem, BulkRetryJob, ItemState, JobState, Outcome
from console.bulk.services import (
    bulk_item_retry_anyway,
    bulk_job_follow,
    bulk_job_settle,
    bulk_jobs_follow,
    bulk_retry_cancel,
    bulk_retry_create,
    following,
    item_outcomes,
)
from console.bulk.services.common import FOLLOW
from console.bulk.tasks import bulk_retry_follow, bulk_retry_work
from console.runs.checking import retry_link
from console.runs.models import Run
from console.sync.services import connection_sync
from tests.bulk.conftest import add_failed_runs, end_new_runs, make_job
from tests.bulk.test_worker import runs_made_by_retries
from tests.helpers import page_text
from tests.sync.test_webhooks import deliver, payload, signed, webhook_url

HTMX = {"HX-Request": "true"}
STOP_POLLING = 286
REASON = "Login failed: portal rejected the password"


def job_url(job, name="bulk_job_detail"):
    return reverse(f"bulk:{name}", args=[job.team.slug, job.pk])


def sent_job(world, n=3, **fields):
    """A job over `n` failed runs, sent (Skyvern took every retry); the new
    runs have not ended yet."""
    run_ids = add_failed_runs(world, n, workflow_title="Download carrier invoices", **fields)
    job = make_job(world, run_ids)
    bulk_retry_work.call(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.FINISHED
    assert BulkRetryItem.objects.filter(job=job, state=ItemState.RETRIED).count() == n
    return job


def new_run_ids(job) -> list[str]:
    return list(
        BulkRetryItem.objects.filter(job=job, state=ItemState.RETRIED)
        .order_by("id")
        .values_list("new_run__run_id", flat=True)
    )


def outcomes(job) -> list[str]:
    return list(
        BulkRetryItem.objects.filter(job=job)
        .with_outcome()
        .order_by("id")
        .values_list("outcome", flat=True)
    )


def announced(world, client_as) -> str:
    """What the job's starter is told on their next page."""
    return page_text(client_as(world.operator).get(reverse("runs:run_list", args=["acme"])))


# --- each outcome ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("completed", Outcome.COMPLETED),
        ("failed", Outcome.FAILED_AGAIN),
        ("terminated", Outcome.FAILED_AGAIN),
        ("timed_out", Outcome.FAILED_AGAIN),
        ("canceled", Outcome.CANCELED),
    ],
)
def test_each_new_runs_end_is_its_items_outcome(world, client_as, status, outcome):
    job = sent_job(world, 2)
    assert outcomes(job) == [Outcome.STILL_RUNNING] * 2
    assert item_outcomes(job.pk).still_running == 2
    assert BulkRetryJob.objects.get(pk=job.pk).followed_at is None
    assert "Your bulk retry" not in announced(world, client_as)  # not over yet

    assert end_new_runs(world, job, status) is True

    assert outcomes(job) == [outcome] * 2
    follow = item_outcomes(job.pk)
    assert getattr(follow, outcome) == 2 and follow.sent == 2 and follow.still_running == 0
    assert BulkRetryJob.objects.get(pk=job.pk).followed_at is not None


def test_the_end_notice_says_how_many_succeeded_and_failed_again(world, client_as):
    job = sent_job(world, 4)
    end_new_runs(world, job, "completed", "failed", "timed_out", "completed")

    text = announced(world, client_as)
    assert (
        f"Your bulk retry #{job.pk} for Acme Logistics finished: "
        "2 succeeded, 2 failed again (4 sent)." in text
    )
    assert "Your bulk retry" not in announced(world, client_as)  # once


def test_the_job_page_shows_outcomes_and_escaped_reasons_of_runs_that_failed_again(
    world, client_as
):
    job = sent_job(world, 3)
    hostile = '<img src=x onerror="alert(1)"> Login failed'
    end_new_runs(world, job, "completed", "failed", reason=hostile)

    response = client_as(world.viewer).get(job_url(job))
    html = response.content.decode()
    text = page_text(response)
    assert "1 succeeded, 2 failed again (3 sent)" in text
    assert '<img src=x onerror="alert(1)">' not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; Login failed" in html
    assert text.count("failed again (failed)") == 2
    # The outcome filter lists exactly the runs that failed again.
    failed_again = client_as(world.viewer).get(job_url(job), {"outcome": "failed_again"})
    rows = re.findall(r'<tr id="item-\d+"', failed_again.content.decode())
    assert len(rows) == 2
    # A viewer may not retry: no button.
    assert "that failed again" not in text


def test_the_csv_has_each_items_outcome_and_the_reason_it_failed_again(world, client_as):
    job = sent_job(world, 2)
    end_new_runs(world, job, "completed", "terminated", reason="=HYPERLINK(evil) portal down")

    response = client_as(world.viewer).get(job_url(job, "bulk_job_export"))
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["outcome"], r["new_run_status"]) for r in rows] == [
        ("completed", "completed"),
        ("failed_again", "terminated"),
    ]
    assert rows[1]["outcome_label"] == "Failed again"
    assert rows[0]["new_run_failure_reason"] == ""
    assert rows[1]["new_run_failure_reason"] == "'=HYPERLINK(evil) portal down"


def test_an_unknown_outcome_is_counted_and_does_not_hold_the_job_open(world, client_as):
    run_ids = add_failed_runs(world, 2)
    job = make_job(world, run_ids)
    # The first retry's answer is lost: Skyvern may or may not have made the run.
    world.simulator.state.configure(
        drop_connection=1.0, fault_endpoints=["retry"], apply_then_fail=True
    )
    item = BulkRetryItem.objects.filter(job=job).order_by("id").first()
    BulkRetryItem.objects.exclude(pk=item.pk).filter(job=job).update(
        next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    bulk_retry_work.call(job.pk)
    world.simulator.state.configure(drop_connection=0.0, fault_endpoints=None)
    BulkRetryItem.objects.filter(job=job).update(next_attempt_at=None)
    bulk_retry_work.call(job.pk)
    assert outcomes(job) == [Outcome.UNKNOWN, Outcome.STILL_RUNNING]

    end_new_runs(world, job, "completed")

    assert item_outcomes(job.pk) == following.FollowUp(completed=1, unknown=1)
    assert BulkRetryJob.objects.get(pk=job.pk).followed_at is not None
    assert "1 succeeded, 0 failed again, 1 outcome unknown (2 sent)" in announced(world, client_as)


def test_runs_still_running_when_the_follow_ends_are_reported_so(world, client_as, settings):
    settings.BULK_RETRY_FOLLOW_LIMIT_SECONDS = 3600
    job = sent_job(world, 3)
    first, *_ = new_run_ids(job)
    world.simulator.state.set_status(first, "completed")

    assert bulk_job_follow(job_id=job.pk) is False  # two still running, within the limit
    assert "Your bulk retry" not in announced(world, client_as)
    page = page_text(client_as(world.viewer).get(job_url(job)))
    assert "1 succeeded, 0 failed again, 2 still running (3 sent)" in page
    assert "Following the new runs until they end" in page

    BulkRetryJob.objects.filter(pk=job.pk).update(
        finished_at=timezone.now() - timedelta(seconds=3601)
    )
    assert bulk_job_follow(job_id=job.pk) is True
    assert outcomes(job) == [Outcome.COMPLETED, Outcome.STILL_RUNNING, Outcome.STILL_RUNNING]
    assert "1 succeeded, 0 failed again, 2 still running (3 sent)" in announced(world, client_as)
    page = client_as(world.viewer).get(job_url(job, "bulk_job_progress"), headers=HTMX)
    assert page.status_code == STOP_POLLING
    assert "those runs were still running then" in page_text(page)


def test_a_job_is_not_followed_to_its_end_while_it_still_sends(world):
    run_ids = add_failed_runs(world, 2)
    job = make_job(world, run_ids)
    assert bulk_job_settle(job_id=job.pk) is False
    assert bulk_job_follow(job_id=job.pk) is False
    assert BulkRetryJob.objects.get(pk=job.pk).followed_at is None


def test_a_canceled_jobs_sent_retries_are_still_followed(world, client_as):
    run_ids = add_failed_runs(world, 3)
    job = make_job(world, run_ids)
    last = BulkRetryItem.objects.filter(job=job).order_by("-id").first()
    last.next_attempt_at = timezone.now() + timedelta(hours=1)
    last.save()
    bulk_retry_work.call(job.pk)  # two sent, the third waits
    bulk_retry_cancel(job=job, user=world.operator)
    assert BulkRetryJob.objects.get(pk=job.pk).followed_at is None

    end_new_runs(world, job, "failed")

    text = announced(world, client_as)
    assert f"Your bulk retry #{job.pk} for Acme Logistics was canceled: " in text
    assert "0 succeeded, 2 failed again (2 sent), 1 skipped." in text


def test_a_job_that_sent_nothing_is_followed_at_once(world, client_as):
    (run_id,) = add_failed_runs(world, 1)
    job = make_job(world, [run_id])
    bulk_retry_work.call(job.pk)
    end_new_runs(world, job, "completed")
    # Retrying the same run again: every run is skipped ("already retried").
    again = make_job(world, [run_id])
    assert again.state == JobState.FINISHED and again.followed_at is not None
    assert f"Your bulk retry #{again.pk} for Acme Logistics finished: 1 skipped." in announced(
        world, client_as
    )


# --- the ways a new run's status arrives ----------------------------------------------


@pytest.fixture
def polls(monkeypatch):
    """The run ids the follow pass asks Skyvern about."""
    asked = []
    real = following.run_refresh

    def spy(*, run, **kwargs):
        asked.append(run.run_id)
        return real(run=run, **kwargs)

    monkeypatch.setattr(following, "run_refresh", spy)
    return asked


def test_the_follow_pass_asks_skyvern_about_unfinished_new_runs_only(world, polls):
    job = sent_job(world, 2)
    first, second = new_run_ids(job)
    world.simulator.state.set_status(first, "failed", REASON)

    assert bulk_job_follow(job_id=job.pk) is False
    assert sorted(polls) == sorted([first, second])
    polls.clear()
    assert bulk_job_follow(job_id=job.pk) is False
    assert polls == [second]  # the first has ended: never asked again
    assert outcomes(job) == [Outcome.FAILED_AGAIN, Outcome.STILL_RUNNING]
    assert Run.objects.get(run_id=first).failure_reason == REASON


def test_a_webhook_brings_the_outcome_without_asking_skyvern(world, client, polls):
    job = sent_job(world, 1)
    (new_run,) = new_run_ids(job)
    world.simulator.state.set_status(new_run, "failed", REASON)
    body = payload(world, new_run)

    response = deliver(client, webhook_url(world.connection_a), body, signed(body))

    assert response.status_code == 200
    assert outcomes(job) == [Outcome.FAILED_AGAIN]
    assert bulk_jobs_follow() == [job.pk]
    assert polls == []  # the webhook said it all
    assert json.loads(body)["failure_reason"] == REASON


def test_the_sync_brings_the_outcome_too(world, polls):
    job = sent_job(world, 2)
    for run_id in new_run_ids(job):
        world.simulator.state.set_status(run_id, "completed")

    connection_sync(connection=world.connection_a)

    assert outcomes(job) == [Outcome.COMPLETED, Outcome.COMPLETED]
    assert bulk_job_follow(job_id=job.pk) is True
    assert polls == []


def test_the_follow_chain_goes_on_while_a_job_is_not_followed_to_its_end(world):
    job = sent_job(world, 1)
    assert FOLLOW.needed() is True
    assert bulk_retry_follow.call() == []
    end_new_runs(world, job, "completed")
    assert FOLLOW.needed() is False


# --- retrying the ones that failed again ------------------------------------------------


def test_retry_the_ones_that_failed_again_previews_exactly_them_and_keeps_the_lineage(
    world, client_as
):
    job = sent_job(world, 4)
    end_new_runs(world, job, "completed", "failed", "terminated", "completed")
    failed_again = new_run_ids(job)[1:3]
    operator = client_as(world.operator)

    page = operator.get(job_url(job)).content.decode()
    assert "Retry the 2 that failed again" in page
    form = page[page.index('class="inline-form retry-failed-again"') :]
    form = form[: form.index("</form>")]
    assert reverse("bulk:bulk_retry_preview", args=["acme"]) in page
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)
    data = [(name, value) for name, value in fields if name != "csrfmiddlewaretoken"]
    assert sorted(int(v) for n, v in data if n == "run") == sorted(
        Run.objects.filter(run_id__in=failed_again).values_list("pk", flat=True)
    )

    posted: dict[str, list[str]] = {}
    for name, value in data:
        posted.setdefault(name, []).append(value)
    preview = operator.post(reverse("bulk:bulk_retry_preview", args=["acme"]), posted)
    assert preview.status_code == 200
    html = preview.content.decode()
    to_send = re.search(
        r'<span class="bulk-to-send">(\d+)</span> of <span class="bulk-total">(\d+)', html
    )
    assert to_send.groups() == ("2", "2")

    # Confirming retries the retries: original → retry → retry of the retry.
    second = bulk_retry_create(
        team=world.team_a,
        user=world.operator,
        runs=Run.objects.filter(run_id__in=failed_again),
        reason="Portal fixed again",
        include_already_retried=False,
        max_steps_override=None,
        selection={},
    )
    assert second.total == 2
    bulk_retry_work.call(second.pk)
    for item in BulkRetryItem.objects.filter(job=second).select_related("new_run", "run"):
        assert item.new_run.retried_from == item.run
        assert item.run.retried_from is not None  # the first retry's origin
        assert item.run.retried_from.retried_from is None
        detail = page_text(
            operator.get(reverse("runs:run_detail", args=["acme", item.new_run.run_id]))
        )
        assert item.run.run_id in detail  # the retry of the retry names its origin
        first_detail = page_text(
            operator.get(reverse("runs:run_detail", args=["acme", item.run.run_id]))
        )
        assert item.run.retried_from.run_id in first_detail  # which names its own


def test_no_button_when_nothing_failed_again(world, client_as):
    job = sent_job(world, 2)
    end_new_runs(world, job, "completed")
    assert "that failed again" not in page_text(client_as(world.operator).get(job_url(job)))


# --- elsewhere: the jobs list, the shell, an unknown item sent again --------------------


def test_the_jobs_list_says_how_many_succeeded_and_failed_again(world, client_as):
    job = sent_job(world, 4)
    first, second, *_ = new_run_ids(job)
    world.simulator.state.set_status(first, "completed")
    world.simulator.state.set_status(second, "failed", REASON)
    bulk_job_follow(job_id=job.pk)

    text = page_text(client_as(world.viewer).get(reverse("bulk:bulk_job_list", args=["acme"])))
    assert "1 succeeded 1 failed again 2 still running" in text
    # The jobs table, not the keyboard shortcuts' list after it.
    table = text.split("State", 1)[1].split("Keyboard shortcuts", 1)[0]
    assert "retried" not in table


def test_the_status_command_reports_the_retries_outcomes(world):
    job = sent_job(world, 2)
    out = io.StringIO()
    call_command("bulk_retry_status", str(job.pk), stdout=out)
    assert "retries: 0 succeeded, 0 failed again, 2 still running (2 sent); following" in (
        out.getvalue()
    )
    end_new_runs(world, job, "completed", "failed")
    out = io.StringIO()
    call_command("bulk_retry_status", str(job.pk), stdout=out)
    assert "retries: 1 succeeded, 1 failed again (2 sent)\n" in out.getvalue()


def test_an_unknown_item_sent_again_is_followed_and_announced_again(world, client_as):
    (run_id,) = add_failed_runs(world, 1)
    job = make_job(world, [run_id])
    world.simulator.state.configure(
        drop_connection=1.0, fault_endpoints=["retry"], apply_then_fail=True
    )
    bulk_retry_work.call(job.pk)
    world.simulator.state.configure(drop_connection=0.0, fault_endpoints=None)
    assert "0 succeeded, 0 failed again, 1 outcome unknown (1 sent)" in announced(world, client_as)
    item = BulkRetryItem.objects.get(job=job)

    bulk_item_retry_anyway(item=item, user=world.operator)
    job.refresh_from_db()
    assert job.followed_at is None and job.notified_at is None
    bulk_retry_work.call(job.pk)
    assert outcomes(job) == [Outcome.STILL_RUNNING]
    assert "Your bulk retry" not in announced(world, client_as)

    end_new_runs(world, job, "completed")
    assert "1 succeeded, 0 failed again (1 sent)" in announced(world, client_as)


def test_an_unknown_item_linked_to_its_new_run_is_followed_to_that_runs_end(world):
    (run_id,) = add_failed_runs(world, 1)
    job = make_job(world, [run_id])
    state = world.simulator.state
    state.configure(drop_connection=1.0)  # the retry made its run, then the answer was lost
    bulk_retry_work.call(job.pk)
    state.configure(drop_connection=0.0)
    assert BulkRetryJob.objects.get(pk=job.pk).followed_at is not None  # 1 outcome unknown
    made = runs_made_by_retries(world, [run_id])[run_id]
    item = BulkRetryItem.objects.get(job=job)

    retry_link(retry=item.retry, run_id=made, user=world.operator)

    assert outcomes(job) == [Outcome.STILL_RUNNING]
    assert BulkRetryJob.objects.get(pk=job.pk).followed_at is None  # followed again
    end_new_runs(world, job, "failed")
    assert outcomes(job) == [Outcome.FAILED_AGAIN]
    assert BulkRetryJob.objects.get(pk=job.pk).followed_at is not None
