"""A bulk preview names each run it lists with which of Skyvern's attempts it
is ("attempt 2 of 3"), as the run's card says it: from what is stored only
(the workflows' versions read once for the whole list, nobody asked), and
nothing where nothing is known."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from console.bulk.models import SkipReason
from console.bulk.services import bulk_retry_preview
from console.runs import reruns, sessions
from console.runs.models import KnownWorkflow, Retry, RetryState, Run
from tests.bulk.test_views import pk_of
from tests.helpers import page_text

WPID = "wpid_preview_attempts"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def forget_versions():
    cache.clear()
    yield
    cache.clear()


def retried_run(world, **fields):
    """A failed run retried from the console before: a retry's preview skips it
    and lists it by name."""
    fields.setdefault("workflow_permanent_id", WPID)
    run_id = world.add_run(status="failed", parameters={}, **fields)
    Retry.objects.create(run=Run.objects.get(run_id=run_id), number=1, state=RetryState.RETRIED)
    return run_id


def policy(world, max_retries, wpid=WPID):
    """Skyvern's retry policy for the workflow, and the drift check that keeps it."""
    world.simulator.state.set_retry_policy(
        world.connection_a.api_key(), wpid, {"max_retries": max_retries}
    )
    reruns.workflow_versions(world.connection_a, wpid)


def listed(world, run_ids) -> dict[str, str]:
    """The runs the preview names with an attempt, and what it says."""
    shown = bulk_retry_preview(
        team=world.team_a,
        runs=Run.objects.filter(run_id__in=run_ids),
        include_already_retried=False,
    )
    return {
        run.run_id: attempt for group in shown.skipped for run, attempt in group.listed if attempt
    }


def preview_text(client, run_ids):
    url = reverse("bulk:bulk_retry_preview", args=["acme"])
    return page_text(client.post(url, {"scope": "ids", "run": [pk_of(r) for r in run_ids]}))


def test_a_listed_run_says_which_attempt_it_is(world, client_as):
    second = retried_run(world, attempt=2, workflow_title="Pay invoices")
    first = retried_run(world)
    policy(world, 2)
    assert listed(world, [second, first]) == {second: "attempt 2 of 3", first: "attempt 1 of 3"}

    text = preview_text(client_as(world.operator), [second, first])
    assert f"{second} — Pay invoices Failed attempt 2 of 3" in text
    assert f"{first} — Download carrier invoices Failed attempt 1 of 3" in text


def test_a_run_skyvern_retries_says_the_attempt_coming_as_its_card_does(world, client_as):
    run_id = world.add_run(
        status="failed",
        workflow_permanent_id=WPID,
        parameters={},
        retry_pending=True,
        next_attempt_at=timezone.now() + timedelta(hours=2),
    )
    policy(world, 2)
    client = client_as(world.operator)
    card = reverse("runs:run_card", kwargs={"team_slug": "acme", "run_id": run_id})
    assert "(attempt 2 of 3)" in page_text(client.get(card, **HTMX))
    assert listed(world, [run_id]) == {run_id: "attempt 2 of 3 comes next"}
    text = preview_text(client, [run_id])
    assert SkipReason.SKYVERN_RETRIES.label in text
    assert f"{run_id} — Download carrier invoices Failed attempt 2 of 3 comes next" in text


def test_nothing_known_says_nothing_and_asks_nobody(world, client_as, monkeypatch):
    """No policy kept for the workflow: the attempt number alone past the first,
    nothing for a first attempt, and Skyvern is not asked for the policy."""
    asked = []
    monkeypatch.setattr(reruns, "workflow_versions", lambda *a: asked.append(a))
    second = retried_run(world, attempt=2)
    first = retried_run(world)
    assert listed(world, [second, first]) == {second: "attempt 2"}
    text = preview_text(client_as(world.operator), [second, first])
    assert f"{second} — Download carrier invoices Failed attempt 2" in text
    assert "attempt 2 of" not in text and "attempt 1" not in text
    assert asked == []


def test_a_workflow_without_a_policy_says_the_attempt_alone(world):
    run_id = retried_run(world, attempt=2)
    reruns.workflow_versions(world.connection_a, WPID)
    assert KnownWorkflow.objects.filter(workflow_permanent_id=WPID).exists()
    assert listed(world, [run_id]) == {run_id: "attempt 2"}


def test_the_workflows_are_read_once_for_the_whole_list(world, client_as):
    """Runs of several workflows in several skip groups: one query of what is known."""
    ids = [retried_run(world, workflow_permanent_id=f"{WPID}_{n}") for n in range(4)]
    ids.append(world.add_run(status="running", workflow_permanent_id=f"{WPID}_0"))
    for n in range(4):
        policy(world, n + 1, wpid=f"{WPID}_{n}")
    client = client_as(world.operator)
    with CaptureQueriesContext(connection) as queries:
        text = preview_text(client, ids)
    read = [q["sql"] for q in queries.captured_queries if "runs_knownworkflow" in q["sql"]]
    assert len(read) == 1
    for n in range(4):
        assert f"{ids[n]} — Download carrier invoices Failed attempt 1 of {n + 2}" in text
    assert f"{ids[4]} — Download carrier invoices Running attempt 1 of 2" in text


def test_another_teams_known_workflow_says_nothing(world):
    run_id = retried_run(world)
    KnownWorkflow.objects.create(
        connection=world.connection_b,
        workflow_permanent_id=WPID,
        current_version=9,
        versions={"w_x": [9, 5]},
    )
    assert listed(world, [run_id]) == {}


def test_the_attempts_need_no_skyvern_even_when_it_is_down(world, client_as, monkeypatch):
    """What is kept still says "attempt 2 of 3" while Skyvern fails every call."""
    monkeypatch.setattr(sessions, "SESSION_CHECK_SECONDS", 0.3)
    run_id = retried_run(world, attempt=2)
    policy(world, 2)
    world.simulator.state.configure(error_rates={500: 1.0})
    text = preview_text(client_as(world.operator), [run_id])
    assert f"{run_id} — Download carrier invoices Failed attempt 2 of 3" in text
