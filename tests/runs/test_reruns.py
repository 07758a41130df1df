"""Version drift: a retry says which workflow version it runs, and a run behind
its workflow can be rerun on the latest version with the same parameters,
recorded (intent first, one Skyvern call per intent) like a retry."""

import pytest
from django.core.cache import cache
from django.urls import reverse

from console.audit.models import Action, AuditEntry
from console.runs import reruns
from console.runs.models import Retry, RetryKind, RetryState, Run
from console.runs.services import RetryRefused
from console.skyvern import SkyvernClient
from tests.helpers import page_text

WPID = "wpid_invoices"
PARAMETERS = {"carrier": "DHL", "month": "2026-11"}


@pytest.fixture(autouse=True)
def forget_versions():
    """Workflow versions are kept a short while per connection: not across tests."""
    cache.clear()
    yield
    cache.clear()


def listed(world, run_id, connection=None):
    """The run's version columns as the sync caches them from Skyvern's list."""
    connection = connection or world.connection_a
    client = SkyvernClient(connection.base_url, connection.api_key())
    summary = next(s for s in client.list_runs(page_size=1000) if s.run_id == run_id)
    Run.objects.filter(connection=connection, run_id=run_id).update(
        workflow_version_id=summary.workflow_id or "", workflow_version=summary.workflow_version
    )
    return Run.objects.get(connection=connection, run_id=run_id)


@pytest.fixture
def drifted(world):
    """A failed run of version 1; the workflow has been edited twice since."""
    run_id = world.add_run(
        status="failed",
        workflow_permanent_id=WPID,
        workflow_title="Download carrier invoices",
        failure_reason="Login failed: invalid credentials",
        parameters=PARAMETERS,
        webhook_url="https://hooks.customer.example/skyvern",
    )
    key = world.connection_a.api_key()
    world.simulator.state.publish_workflow_version(key, WPID)
    world.simulator.state.publish_workflow_version(key, WPID)
    return listed(world, run_id)


def rerun_url(world, run_id):
    return reverse("runs:run_rerun", kwargs={"team_slug": world.team_a.slug, "run_id": run_id})


def detail_url(world, run_id):
    return reverse("runs:run_detail", kwargs={"team_slug": world.team_a.slug, "run_id": run_id})


def workflow_runs(world):
    key = world.connection_a.api_key()
    state = world.simulator.state
    return [
        state.get_run(key, r.run_id)
        for r in SkyvernClient(world.connection_a.base_url, key).list_runs(page_size=1000)
        if r.workflow_permanent_id == WPID
    ]


def test_drift_names_the_runs_version_and_the_current_one(world, drifted):
    drift = reruns.run_drift(drifted)
    assert (drift.run_version, drift.current_version, drift.behind) == (1, 3, True)
    assert drift.sentence == ("Retries version 1 (this run's); the workflow is now at version 3.")


def test_a_run_of_the_latest_version_is_not_behind(world):
    run = listed(world, world.add_run(status="failed", workflow_permanent_id=WPID))
    drift = reruns.run_drift(run)
    assert not drift.behind
    assert drift.sentence == "Retries version 1, the workflow's latest."


def test_the_version_id_alone_is_looked_up_among_the_versions(world, drifted):
    Run.objects.filter(pk=drifted.pk).update(workflow_version=None)
    drifted.refresh_from_db()
    assert drifted.workflow_version_id
    assert reruns.run_drift(drifted).run_version == 1


def test_unreachable_skyvern_means_version_unknown_not_a_block(world, client_as, drifted):
    connection = world.connection_a
    connection.base_url = "http://127.0.0.1:9"  # nothing listens there
    connection.save()
    drift = reruns.run_drift(Run.objects.select_related("connection").get(pk=drifted.pk))
    assert drift.current_version is None and not drift.behind
    assert drift.sentence == "Workflow version unknown: Skyvern couldn't be asked just now."
    page = client_as(world.operator).get(detail_url(world, drifted.run_id))
    assert page.status_code == 200
    text = page_text(page)
    assert "Workflow version unknown" in text
    assert "Rerun on the latest version" not in text
    assert 'class="retry-form"' in page.content.decode()  # Retry is still offered


def test_versions_are_asked_once_per_connection_for_a_while(world, drifted, monkeypatch):
    calls = []
    real = SkyvernClient.workflow_versions

    def counting(self, wpid):
        calls.append(wpid)
        return real(self, wpid)

    monkeypatch.setattr(SkyvernClient, "workflow_versions", counting)
    for _ in range(3):
        reruns.run_drift(drifted)
    assert calls == [WPID]


def test_detail_page_offers_retry_as_is_or_rerun_on_latest(world, client_as, drifted):
    text = page_text(client_as(world.operator).get(detail_url(world, drifted.run_id)))
    assert "Retries version 1 (this run's); the workflow is now at version 3." in text
    assert "Retry as is (version 1)" in text
    assert "Rerun on the latest version with the same parameters" in text
    # A viewer may not retry: no choice, and no call to Skyvern for it.
    text = page_text(client_as(world.viewer).get(detail_url(world, drifted.run_id)))
    assert "Rerun on the latest version" not in text


def test_rerun_starts_the_latest_version_with_the_same_parameters(world, client_as, drifted):
    before = {r.run_id for r in workflow_runs(world)}
    response = client_as(world.operator).post(
        rerun_url(world, drifted.run_id), {"seen_retries": "0"}
    )
    assert response.status_code == 302
    assert response["Location"] == detail_url(world, drifted.run_id)

    retry = Retry.objects.get(run=drifted)
    assert (retry.kind, retry.version, retry.state) == (RetryKind.RERUN, 3, RetryState.RETRIED)
    new = retry.new_run
    assert new.retried_from == drifted and new.retried_by == world.operator
    [sim_run] = [r for r in workflow_runs(world) if r.run_id not in before]
    assert sim_run.run_id == new.run_id
    assert sim_run.parameters == PARAMETERS
    assert sim_run.webhook_url == "https://hooks.customer.example/skyvern"
    assert world.simulator.state.retry_count(drifted.run_id) == 0  # not a retry at Skyvern
    numbers = world.simulator.state.workflow_version_numbers(world.connection_a.api_key())
    assert numbers[sim_run.workflow_id] == 3

    entry = AuditEntry.objects.get(action=Action.RUN_RERUN)
    assert entry.details["new_run"] == new.run_id
    assert (entry.details["from_version"], entry.details["to_version"]) == (1, 3)
    assert set(entry.details) == {"number", "connection", "from_version", "to_version", "new_run"}

    page = client_as(world.operator).get(detail_url(world, drifted.run_id))
    html = page.content.decode()
    assert "Rerun on v3 → <a" in html and new.run_id in html
    assert f"Reran {drifted.run_id} on version 3 as {new.run_id}." in page_text(page)


def test_a_second_click_with_the_same_page_sends_nothing(world, client_as, drifted):
    client = client_as(world.operator)
    client.post(rerun_url(world, drifted.run_id), {"seen_retries": "0"})
    runs = len(workflow_runs(world))
    page = client.post(rerun_url(world, drifted.run_id), {"seen_retries": "0"}, follow=True)
    assert len(workflow_runs(world)) == runs
    assert Retry.objects.filter(run=drifted).count() == 1
    assert "already asked for this retry. Nothing was sent twice." in page_text(page)


def test_the_intent_is_recorded_before_skyvern_is_called(world, drifted, monkeypatch):
    seen = []
    real = SkyvernClient.run_workflow

    def watching(self, *args, **kwargs):
        seen.append(list(Retry.objects.filter(run=drifted).values_list("state", "kind")))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SkyvernClient, "run_workflow", watching)
    reruns.run_rerun(run=drifted, user=world.operator, seen_retries=0)
    assert seen == [[(RetryState.SENDING, RetryKind.RERUN)]]


def test_a_lost_answer_is_kept_unknown_and_counts(world, drifted):
    world.simulator.state.configure(
        error_rates={502: 1.0}, fault_endpoints=["run_workflow"], apply_then_fail=True
    )
    outcome = reruns.run_rerun(run=drifted, user=world.operator, seen_retries=0)
    assert outcome.sent and outcome.error is not None
    retry = outcome.retry
    assert retry.state == RetryState.UNKNOWN
    assert "may or may not have created the new run" in retry.error
    entry = AuditEntry.objects.get(action=Action.RUN_RERUN_FAILED)
    assert entry.outcome == "unknown"
    assert set(entry.details) == {"number", "connection", "from_version", "to_version", "error"}
    assert entry.details["error"] == retry.error
    # Counted: the same page can't send it again.
    again = reruns.run_rerun(run=drifted, user=world.operator, seen_retries=0)
    assert not again.sent


def test_a_refused_rerun_is_kept_failed(world, drifted):
    world.simulator.state.configure(busy=1.0)
    outcome = reruns.run_rerun(run=drifted, user=world.operator, seen_retries=0)
    assert outcome.retry.state == RetryState.FAILED
    assert AuditEntry.objects.get(action=Action.RUN_RERUN_FAILED).outcome == "failed"


def test_a_run_not_behind_is_not_rerun(world):
    run = listed(world, world.add_run(status="failed", workflow_permanent_id=WPID))
    with pytest.raises(RetryRefused, match="retry it instead"):
        reruns.run_rerun(run=run, user=world.operator, seen_retries=0)
    assert not Retry.objects.filter(run=run).exists()


def test_a_new_required_input_refuses_the_rerun_before_recording(world):
    run_id = world.add_run(status="failed", workflow_permanent_id=WPID, parameters=PARAMETERS)
    world.simulator.state.publish_workflow_version(
        world.connection_a.api_key(), WPID, add_parameters={"account": None}
    )
    run = listed(world, run_id)
    with pytest.raises(RetryRefused, match="Version 2 needs account"):
        reruns.run_rerun(run=run, user=world.operator, seen_retries=0)
    assert not Retry.objects.filter(run=run).exists()


def test_viewers_and_other_teams_cannot_rerun(world, client_as, drifted):
    response = client_as(world.viewer).post(rerun_url(world, drifted.run_id), {"seen_retries": "0"})
    assert response.status_code == 403
    response = client_as(world.outsider).post(
        rerun_url(world, drifted.run_id), {"seen_retries": "0"}
    )
    assert response.status_code == 404
    assert not Retry.objects.exists()


def test_a_listing_keeps_the_runs_version(world):
    from console.runs.store import runs_store_listing

    run_id = world.add_run(status="failed", workflow_permanent_id=WPID, cache=False)
    client = SkyvernClient(world.connection_a.base_url, world.connection_a.api_key())
    runs_store_listing(connection=world.connection_a, summaries=client.list_runs(page_size=100))
    run = Run.objects.get(run_id=run_id)
    assert run.workflow_version == 1 and run.workflow_version_id.startswith("w")
