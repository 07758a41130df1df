"""A card says which of Skyvern's attempts comes next ("attempt 2 of 3", from
the run's workflow version's retry policy) and when the run is behind its
workflow, from what Skyvern last said of the workflow (KnownWorkflow): the
drift check and the sync ask, the card never does."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from console.runs import reruns
from console.runs.models import KnownWorkflow, Run
from console.sync.services import connection_sync
from tests.helpers import page_text

WPID = "wpid_attempts"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def forget_versions():
    cache.clear()
    yield
    cache.clear()


def card_text(client, team, run_id):
    url = reverse("runs:run_card", kwargs={"team_slug": team.slug, "run_id": run_id})
    return page_text(client.get(url, **HTMX))


def list_text(client, team):
    return page_text(client.get(reverse("runs:run_list", args=[team.slug])))


def with_version(world, run_id):
    """The run's version columns, as the sync caches them from Skyvern's list."""
    ran = world.simulator.state.find_run(run_id).workflow_id
    Run.objects.filter(run_id=run_id).update(workflow_version_id=ran)
    return run_id


def pending_run(world, **fields):
    at = timezone.now() + timedelta(hours=2)
    run_id = world.add_run(
        status="failed",
        workflow_permanent_id=WPID,
        parameters={},
        retry_pending=True,
        next_attempt_at=at,
        **fields,
    )
    return with_version(world, run_id)


def ask_skyvern(world):
    """What the drift check does when a run's page is opened."""
    reruns.workflow_versions(world.connection_a, WPID)


def test_the_card_counts_attempts_once_the_workflows_policy_is_known(world, client_as):
    run_id = pending_run(world)
    key = world.connection_a.api_key()
    world.simulator.state.set_retry_policy(key, WPID, {"max_retries": 2})
    client = client_as(world.operator)

    # Nothing known yet: the card says what it knows, and asks nobody.
    calls = world.simulator.state.retry_counts()
    assert "(attempt 2)." in card_text(client, world.team_a, run_id)
    assert "attempt 2 of" not in card_text(client, world.team_a, run_id)
    assert world.simulator.state.retry_counts() == calls

    ask_skyvern(world)
    # The card drawn before is not served again: its value changed.
    assert "(attempt 2 of 3)" in card_text(client, world.team_a, run_id)
    assert "(attempt 2 of 3)" in list_text(client, world.team_a)


def test_attempts_follow_the_runs_own_version_not_the_current_one(world, client_as):
    key = world.connection_a.api_key()
    run_id = pending_run(world)
    world.simulator.state.set_retry_policy(key, WPID, {"max_retries": 1})
    world.simulator.state.publish_workflow_version(key, WPID)
    world.simulator.state.set_retry_policy(key, WPID, {"max_retries": 4})
    ask_skyvern(world)
    client = client_as(world.operator)
    assert "(attempt 2 of 2)" in card_text(client, world.team_a, run_id)


def test_a_version_skyvern_doesnt_list_falls_back_to_the_current_one(world, client_as):
    key = world.connection_a.api_key()
    run_id = pending_run(world)
    world.simulator.state.set_retry_policy(key, WPID, {"max_retries": 3})
    Run.objects.filter(run_id=run_id).update(workflow_version=None, workflow_version_id="w_gone")
    ask_skyvern(world)
    client = client_as(world.operator)
    assert "(attempt 2 of 4)" in card_text(client, world.team_a, run_id)


def test_no_policy_says_the_attempt_alone(world, client_as):
    run_id = pending_run(world)
    ask_skyvern(world)
    assert KnownWorkflow.objects.get(workflow_permanent_id=WPID).current_version == 1
    text = card_text(client_as(world.operator), world.team_a, run_id)
    assert "(attempt 2)." in text and "attempt 2 of" not in text


def test_the_detail_page_counts_attempts_too(world, client_as):
    key = world.connection_a.api_key()
    run_id = pending_run(world, attempt=2)
    world.simulator.state.set_retry_policy(key, WPID, {"max_retries": 3})
    url = reverse("runs:run_detail", kwargs={"team_slug": "acme", "run_id": run_id})
    text = page_text(client_as(world.operator).get(url))
    assert "(attempt 3 of 4), under the same run id" in text


def test_the_sync_learns_the_workflows_of_recent_failures(world):
    key = world.connection_a.api_key()
    pending_run(world)
    world.simulator.state.set_retry_policy(key, WPID, {"max_retries": 2})
    assert not KnownWorkflow.objects.exists()
    connection_sync(connection=world.connection_a)
    known = KnownWorkflow.objects.get(connection=world.connection_a, workflow_permanent_id=WPID)
    assert known.current_version == 1
    assert list(known.versions.values()) == [[1, 3]]


def test_another_teams_known_workflow_is_not_used(world, client_as):
    """The same workflow id under another team's connection says nothing here."""
    run_id = pending_run(world)
    KnownWorkflow.objects.create(
        connection=world.connection_b,
        workflow_permanent_id=WPID,
        current_version=9,
        versions={"w_x": [9, 5]},
    )
    text = card_text(client_as(world.operator), world.team_a, run_id)
    assert "of 5" not in text


# --- version drift on the runs page ---------------------------------------------------------


def drifted_run(world):
    key = world.connection_a.api_key()
    run_id = world.add_run(status="failed", workflow_permanent_id=WPID, parameters={})
    world.simulator.state.publish_workflow_version(key, WPID)
    world.simulator.state.publish_workflow_version(key, WPID)
    return with_version(world, run_id)


def test_a_card_behind_its_workflow_says_so_and_links_to_the_choice(world, client_as):
    run_id = drifted_run(world)
    client = client_as(world.operator)
    assert "the workflow is now at version" not in list_text(client, world.team_a)

    ask_skyvern(world)
    html = client.get(reverse("runs:run_list", args=["acme"])).content.decode()
    text = page_text(client.get(reverse("runs:run_list", args=["acme"])))
    assert "Retries version 1 (this run's); the workflow is now at version 3." in text
    detail = reverse("runs:run_detail", kwargs={"team_slug": "acme", "run_id": run_id})
    assert f'href="{detail}#h-version"' in html
    assert "Retry as is or rerun on the latest version" in text


def test_a_viewer_and_an_up_to_date_run_get_no_drift(world, client_as):
    run_id = with_version(
        world, world.add_run(status="failed", workflow_permanent_id=WPID, parameters={})
    )
    ask_skyvern(world)
    assert "now at version" not in card_text(client_as(world.operator), world.team_a, run_id)
    drifted = drifted_run(world)
    cache.clear()
    ask_skyvern(world)
    assert "now at version" not in card_text(client_as(world.viewer), world.team_a, drifted)
    assert "now at version 3" in card_text(client_as(world.operator), world.team_a, drifted)


def test_a_succeeded_runs_retry_confirmation_says_it_is_behind(world, client_as):
    key = world.connection_a.api_key()
    run_id = with_version(
        world, world.add_run(status="completed", workflow_permanent_id=WPID, parameters={})
    )
    world.simulator.state.publish_workflow_version(key, WPID)
    ask_skyvern(world)
    url = reverse("runs:run_retry_confirm", kwargs={"team_slug": "acme", "run_id": run_id})
    text = page_text(client_as(world.operator).get(url, **HTMX))
    assert "This run succeeded; retrying runs it again." in text
    assert "Retries version 1 (this run's); the workflow is now at version 2." in text


def test_a_page_of_many_workflows_finds_each_ones_known_versions(world):
    """Cards read the known workflows of a page in one compiled query for a
    page's usual few connections and workflows, and by the ORM beyond: both
    find the same, and nothing of another connection's same workflow id."""
    from console.runs.cards import _KNOWN_IDS, _known_workflows
    from console.runs.listing import RUN_COLUMNS

    def known(connection, number):
        return KnownWorkflow.objects.create(
            connection=connection,
            workflow_permanent_id=f"wpid_{number}",
            current_version=number,
            versions={f"w_{number}": [number, 3]},
        )

    for number in range(_KNOWN_IDS + 6):
        known(world.connection_a, number)
    known(world.connection_b, 1000)  # another team's: never asked for below
    row = dict.fromkeys(RUN_COLUMNS, None) | {"status": "failed"}

    def rows(numbers):
        return [
            tuple(
                (
                    row
                    | {"connection_id": world.connection_a.pk, "workflow_permanent_id": f"wpid_{n}"}
                )[c]
                for c in RUN_COLUMNS
            )
            for n in numbers
        ]

    few = _known_workflows(rows([1, 2, 2, 1000]), using="default")
    assert {key: k.current_version for key, k in few.items()} == {
        (world.connection_a.pk, "wpid_1"): 1,
        (world.connection_a.pk, "wpid_2"): 2,
    }
    many = _known_workflows(rows(range(_KNOWN_IDS + 6)), using="default")
    assert len(many) == _KNOWN_IDS + 6
    assert many[(world.connection_a.pk, "wpid_69")].max_attempts(None, "w_69") == 3
