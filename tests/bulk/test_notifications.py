"""A person who started a bulk retry is told on their next page when it ends."""

from django.urls import reverse
from django.utils import timezone

from console.bulk.models import BulkRetryJob, JobState
from console.bulk.services import bulk_retry_create
from console.runs.models import Run
from tests.helpers import page_text


def ended_job(world, *, state=JobState.FINISHED, user=None):
    world.add_run(status="failed")
    job = bulk_retry_create(
        team=world.team_a,
        user=user or world.operator,
        runs=Run.objects.filter(team=world.team_a),
        reason="Portal outage overnight",
        include_already_retried=False,
        max_steps_override=None,
        selection={"run_ids": []},
    )
    now = timezone.now()
    followed = now if state != JobState.RUNNING else None
    BulkRetryJob.objects.filter(pk=job.pk).update(
        state=state, finished_at=now, followed_at=followed
    )
    return job


def test_the_starter_is_told_once_on_the_next_page(world, client_as):
    job = ended_job(world)
    client = client_as(world.operator)
    runs_page = reverse("runs:run_list", args=["acme"])

    first = page_text(client.get(runs_page))
    assert f"Your bulk retry #{job.pk} for Acme Logistics finished" in first
    assert "Your bulk retry" not in page_text(client.get(runs_page))


def test_a_canceled_job_says_so(world, client_as):
    job = ended_job(world, state=JobState.CANCELED)
    text = page_text(client_as(world.operator).get(reverse("runs:run_list", args=["acme"])))
    assert f"Your bulk retry #{job.pk} for Acme Logistics was canceled" in text


def test_others_and_fragments_are_not_told(world, client_as):
    ended_job(world)
    admin = client_as(world.admin)
    assert "Your bulk retry" not in page_text(admin.get(reverse("runs:run_list", args=["acme"])))
    operator = client_as(world.operator)
    fragment = operator.get(reverse("runs:run_updates", args=["acme"]), HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200
    assert BulkRetryJob.objects.get().notified_at is None  # still owed a full page


def test_a_running_job_is_not_announced(world, client_as):
    ended_job(world, state=JobState.RUNNING)
    text = page_text(client_as(world.operator).get(reverse("runs:run_list", args=["acme"])))
    assert "Your bulk retry" not in text
