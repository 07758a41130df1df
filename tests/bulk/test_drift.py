"""Bulk retry and version drift: the preview counts the runs behind their
workflow's latest version, and the job either retries them as they are or,
when the person chooses, reruns them on the latest version."""

import pytest
from django.core.cache import cache
from django.urls import reverse

from console.bulk.models import BulkRetryItem, BulkRetryJob, ItemState
from console.bulk.tasks import bulk_retry_work
from console.runs.models import Retry, RetryKind, RetryState
from console.skyvern import SkyvernClient
from tests.bulk.conftest import make_job
from tests.bulk.test_views import confirm_data, pk_of, post_pairs, preview_url
from tests.helpers import page_text
from tests.runs.test_reruns import PARAMETERS, WPID, listed


@pytest.fixture(autouse=True)
def forget_versions():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def mixed(world):
    """Two failed runs of version 1, then version 2, then one failed run of it."""
    old = [
        world.add_run(status="failed", workflow_permanent_id=WPID, parameters=PARAMETERS)
        for _ in range(2)
    ]
    world.simulator.state.publish_workflow_version(world.connection_a.api_key(), WPID)
    new = [world.add_run(status="failed", workflow_permanent_id=WPID, parameters=PARAMETERS)]
    for run_id in old + new:
        listed(world, run_id)
    return {"old": old, "new": new}


def test_the_preview_says_how_many_are_behind_and_offers_the_choice(world, client_as, mixed):
    client = client_as(world.operator)
    run_ids = mixed["old"] + mixed["new"]
    response = client.post(preview_url(), {"scope": "ids", "run": [pk_of(r) for r in run_ids]})
    text = page_text(response)
    assert "2 of the runs to send are behind their workflow's latest version" in text
    assert "Rerun the runs behind on their workflow's latest version (2)" in text


def test_no_choice_when_none_is_behind(world, client_as, mixed):
    client = client_as(world.operator)
    response = client.post(preview_url(), {"scope": "ids", "run": [pk_of(mixed["new"][0])]})
    assert "behind" not in page_text(response)


def test_rerun_on_latest_reruns_the_runs_behind_and_retries_the_rest(world, client_as, mixed):
    client = client_as(world.operator)
    run_ids = mixed["old"] + mixed["new"]
    preview = client.post(preview_url(), {"scope": "ids", "run": [pk_of(r) for r in run_ids]})
    data = confirm_data(
        preview.content.decode(), reason="Portal fixed in version 2", rerun_on_latest="on"
    )
    post_pairs(client, reverse_create(), data)
    job = BulkRetryJob.objects.get()
    assert job.rerun_on_latest
    bulk_retry_work.call(job.pk)

    assert BulkRetryItem.objects.filter(job=job, state=ItemState.RETRIED).count() == 3
    reruns = Retry.objects.filter(kind=RetryKind.RERUN, state=RetryState.RETRIED)
    assert sorted(r.run.run_id for r in reruns) == sorted(mixed["old"])
    assert {r.version for r in reruns} == {2}
    # The latest run was retried as it is (a retry at Skyvern), the others not.
    state = world.simulator.state
    assert state.retry_counts() == {mixed["new"][0]: 1}
    key = world.connection_a.api_key()
    numbers = state.workflow_version_numbers(key)
    for rerun in reruns:
        made = state.get_run(key, rerun.new_run.run_id)
        assert numbers[made.workflow_id] == 2 and made.parameters == PARAMETERS


def test_unticked_every_run_is_retried_as_it_is(world, mixed):
    job = make_job(world, mixed["old"] + mixed["new"])
    assert not job.rerun_on_latest
    bulk_retry_work.call(job.pk)
    assert not Retry.objects.filter(kind=RetryKind.RERUN).exists()
    assert len(world.simulator.state.retry_counts()) == 3


def test_skyvern_unreachable_at_preview_means_no_run_counts_as_behind(world, client_as, mixed):
    world.connection_a.base_url = "http://127.0.0.1:9"
    world.connection_a.save()
    client = client_as(world.operator)
    response = client.post(preview_url(), {"scope": "ids", "run": [pk_of(mixed["old"][0])]})
    assert response.status_code == 200
    assert "behind" not in page_text(response)


def reverse_create():
    return reverse("bulk:bulk_retry_create", args=["acme"])


def test_client_sees_versions(world, mixed):  # the fixture's premise
    client = SkyvernClient(world.connection_a.base_url, world.connection_a.api_key())
    assert [w.version for w in client.workflow_versions(WPID)] == [1, 2]
