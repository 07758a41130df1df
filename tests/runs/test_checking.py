"""Checking a retry whose outcome is unknown: the evidence Skyvern has, a link
only on certainty or a person's word, never a duplicate advised."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console.audit.models import AuditEntry
from console.runs import services
from console.runs.checking import retry_check, retry_link
from console.runs.models import Retry, RetryState, Run
from console.runs.services import RetryRefused
from console.skyvern import SkyvernClient
from console.sync.services import connection_sync
from tests.helpers import page_text

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def failed_run(world):
    return world.add_run(status="failed", workflow_title="Download carrier invoices")


def unknown_retry(world, run_id, *, made=True) -> Retry:
    """Retry `run_id` while the connection drops: Skyvern made the run (`made`)
    or not, and the console can't tell."""
    state = world.simulator.state
    state.configure(drop_connection=True, apply_then_fail=made)
    run = Run.objects.get(run_id=run_id)
    outcome = services.run_retry(run=run, user=world.operator, seen_retries=0)
    state.configure(drop_connection=False, apply_then_fail=True)
    assert outcome.retry.state == RetryState.UNKNOWN
    return outcome.retry


def new_runs_at_skyvern(world, known) -> list[str]:
    connection = world.connection_a
    listed = SkyvernClient(connection.base_url, connection.api_key()).list_runs(page_size=1000)
    return [s.run_id for s in listed if s.run_id not in known]


def check_url(run_id, number=1, name="runs:retry_check"):
    return reverse(name, kwargs={"team_slug": "acme", "run_id": run_id, "number": number})


# --- the service ----------------------------------------------------------------------------


def test_null_lineage_is_evidence_to_show_not_a_no(world, failed_run):
    """Issue 11: Skyvern's null retried_from_workflow_run_id means "doesn't say"."""
    retry = unknown_retry(world, failed_run)
    [made] = new_runs_at_skyvern(world, [failed_run])

    check = retry_check(retry=retry, user=world.operator)

    assert check.linked is None and not check.failed
    assert "probably not created" not in check.message and made in check.message
    [candidate] = check.candidates
    assert candidate.run_id == made and candidate.same_parameters is True
    assert (
        candidate.after_text.startswith("+") and "after the retry was sent" in candidate.after_text
    )
    assert candidate.app_url.endswith(made) and not candidate.certain
    retry.refresh_from_db()
    assert retry.state == RetryState.UNKNOWN and retry.new_run is None  # never on a guess
    assert retry.proposed_runs == made and retry.check_note == check.message
    assert retry.check_evidence[0]["run_id"] == made
    entry = AuditEntry.objects.get(action="run_retry_check")
    assert entry.outcome == "unknown" and entry.details["candidates"] == [made]
    assert world.simulator.state.retry_count(failed_run) == 1


def test_a_run_skyvern_names_as_the_retry_is_linked(world, failed_run):
    world.simulator.state.configure(link_retries=True)  # kinder than Skyvern, for this case
    retry = unknown_retry(world, failed_run)
    [made] = new_runs_at_skyvern(world, [failed_run])

    check = retry_check(retry=retry, user=world.operator)

    assert check.linked is not None and check.linked.run_id == made
    assert check.candidates[0].certain and "linked" in check.message
    retry.refresh_from_db()
    assert (retry.state, retry.new_run.run_id) == (RetryState.RETRIED, made)
    new_run = Run.objects.get(run_id=made)
    assert new_run.retried_from.run_id == failed_run and new_run.retried_by == world.operator
    assert new_run.retried_at == retry.requested_at


def test_several_candidates_are_all_shown_with_their_parameters(world, failed_run):
    retry = unknown_retry(world, failed_run)
    [made] = new_runs_at_skyvern(world, [failed_run])
    # A customer started the same workflow by hand just after, with other parameters.
    other = world.add_run(
        status="running",
        workflow_title="Download carrier invoices",
        created_at=timezone.now(),
        parameters={"carrier": "someone else"},
        cache=False,
    )
    # And an older run of the workflow is no candidate at all.
    world.add_run(status="failed", workflow_title="Download carrier invoices", cache=False)

    check = retry_check(retry=retry, user=world.operator)

    by_id = {c.run_id: c for c in check.candidates}
    assert set(by_id) == {made, other} and check.linked is None
    assert by_id[made].same_parameters is True and by_id[other].same_parameters is False
    assert "2 runs of this workflow" in check.message and "none was linked" in check.message
    assert Retry.objects.get(pk=retry.pk).state == RetryState.UNKNOWN


def test_nothing_made_says_so(world, failed_run):
    retry = unknown_retry(world, failed_run, made=False)
    check = retry_check(retry=retry, user=world.operator)
    assert check.candidates == [] and "No new run of this workflow" in check.message
    assert "probably not created" in check.message


def test_a_skyvern_error_during_the_check_changes_nothing(world, failed_run):
    retry = unknown_retry(world, failed_run)
    world.simulator.state.configure(error_rates={500: 1.0})

    check = retry_check(retry=retry, user=world.operator)

    assert check.failed and check.message.startswith("Couldn't check with Skyvern")
    retry.refresh_from_db()
    assert retry.state == RetryState.UNKNOWN and retry.checked_at is None
    assert AuditEntry.objects.get(action="run_retry_check").outcome == "failed"


def test_a_run_already_taken_by_another_retry_is_refused(world, failed_run):
    other_run = world.add_run(status="failed", workflow_title="Download carrier invoices")
    retry = unknown_retry(world, failed_run)
    [made] = new_runs_at_skyvern(world, [failed_run, other_run])
    taker = unknown_retry(world, other_run, made=False)
    retry_link(retry=taker, run_id=made, user=world.operator)

    assert retry_check(retry=retry, user=world.operator).candidates == []  # taken: not shown
    with pytest.raises(RetryRefused, match=f"{made} is already the new run of retry #1"):
        retry_link(retry=retry, run_id=made, user=world.operator)
    assert Retry.objects.get(pk=retry.pk).state == RetryState.UNKNOWN


def test_link_records_the_lineage_a_successful_retry_would(world, failed_run):
    retry = unknown_retry(world, failed_run)
    [made] = new_runs_at_skyvern(world, [failed_run])

    new_run = retry_link(retry=retry, run_id=made, user=world.admin)

    retry.refresh_from_db()
    assert (retry.state, retry.new_run, retry.error) == (RetryState.RETRIED, new_run, "")
    assert new_run.retried_from.run_id == failed_run
    assert new_run.retried_by == world.operator  # who asked for the retry
    assert new_run.app_url.endswith(made) and new_run.workflow_title == "Download carrier invoices"
    entry = AuditEntry.objects.get(action="run_retry_link")
    assert entry.user == world.admin and entry.details["new_run"] == made
    # Twice is harmless; another run now is refused.
    assert retry_link(retry=retry, run_id=made, user=world.admin) == new_run
    with pytest.raises(RetryRefused, match="nothing to link"):
        retry_link(retry=retry, run_id=failed_run + "0", user=world.admin)


def test_link_refuses_a_run_of_another_workflow_or_unknown_to_skyvern(world, failed_run):
    retry = unknown_retry(world, failed_run)
    stranger = world.add_run(status="failed", workflow_title="Reconcile freight bills")
    with pytest.raises(RetryRefused, match="another workflow"):
        retry_link(retry=retry, run_id=stranger, user=world.operator)
    with pytest.raises(RetryRefused, match="Couldn't read wr_404404"):
        retry_link(retry=retry, run_id="wr_404404", user=world.operator)
    with pytest.raises(RetryRefused, match="own retry"):
        retry_link(retry=retry, run_id=failed_run, user=world.operator)
    assert Retry.objects.get(pk=retry.pk).state == RetryState.UNKNOWN


def test_only_an_operator_of_the_team_may_check_or_link(world, failed_run):
    retry = unknown_retry(world, failed_run)
    [made] = new_runs_at_skyvern(world, [failed_run])
    for person in (world.viewer, world.outsider):
        with pytest.raises(PermissionDenied):
            retry_check(retry=retry, user=person)
        with pytest.raises(PermissionDenied):
            retry_link(retry=retry, run_id=made, user=person)
    assert Retry.objects.get(pk=retry.pk).checked_at is None


def test_a_retry_that_is_not_unknown_is_not_checked(world, failed_run):
    run = Run.objects.get(run_id=failed_run)
    outcome = services.run_retry(run=run, user=world.operator, seen_retries=0)
    with pytest.raises(RetryRefused, match="unknown"):
        retry_check(retry=outcome.retry, user=world.operator)


# --- the sync proposes ----------------------------------------------------------------------


def test_the_sync_proposes_the_run_skyvern_made_and_links_nothing(world, client_as, failed_run):
    retry = unknown_retry(world, failed_run)
    [made] = new_runs_at_skyvern(world, [failed_run])
    client = client_as(world.operator)
    before = page_text(client.get(reverse("runs:run_list", args=["acme"])))
    assert "Skyvern didn't confirm" in before

    connection_sync(connection=world.connection_a)

    retry.refresh_from_db()
    assert retry.proposed_runs == made and retry.state == RetryState.UNKNOWN
    assert Run.objects.get(run_id=made).retried_from is None
    text = page_text(client.get(reverse("runs:run_list", args=["acme"])))
    assert f"Skyvern has a run that may be this retry: {made}" in text


def test_the_sync_proposes_nothing_older_than_the_retry(world, failed_run):
    retry = unknown_retry(world, failed_run, made=False)
    world.add_run(
        status="failed",
        workflow_title="Download carrier invoices",
        created_at=timezone.now() - timedelta(minutes=1),
        cache=False,
    )
    connection_sync(connection=world.connection_a)
    retry.refresh_from_db()
    assert retry.proposed_runs == ""


# --- the views ------------------------------------------------------------------------------


def test_check_then_link_in_the_card_with_htmx(world, client_as, failed_run):
    unknown_retry(world, failed_run)
    [made] = new_runs_at_skyvern(world, [failed_run])
    client = client_as(world.operator)
    page = client.get(reverse("runs:run_list", args=["acme"])).content.decode()
    assert check_url(failed_run) in page

    response = client.post(check_url(failed_run), {"next": "/t/acme/runs/"}, **HTMX)

    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    text = page_text(response)
    assert made in text and "same parameters as the original" in text
    assert "after the retry was sent" in text and "This is the retry" in text
    assert check_url(failed_run, name="runs:retry_link") in html

    response = client.post(check_url(failed_run, name="runs:retry_link"), {"run_id": made}, **HTMX)

    assert response.status_code == 200
    assert f"Retried → {made}" in page_text(response)
    assert Retry.objects.get().state == RetryState.RETRIED


def test_check_and_link_without_javascript_come_back_with_a_message(world, client_as, failed_run):
    unknown_retry(world, failed_run)
    [made] = new_runs_at_skyvern(world, [failed_run])
    client = client_as(world.operator)
    back = reverse("runs:run_detail", args=["acme", failed_run])

    response = client.post(check_url(failed_run), {"next": back})
    assert response.status_code == 302 and response["Location"] == back
    page = client.get(back)
    assert made in page_text(page) and "This is the retry" in page_text(page)

    response = client.post(
        check_url(failed_run, name="runs:retry_link"), {"run_id": made, "next": back}
    )
    assert response.status_code == 302 and response["Location"] == back
    assert f"{made} linked as the new run" in page_text(client.get(back))


def test_a_refused_link_is_explained_on_the_card(world, client_as, failed_run):
    unknown_retry(world, failed_run)
    client = client_as(world.operator)
    response = client.post(
        check_url(failed_run, name="runs:retry_link"), {"run_id": "wr_nowhere"}, **HTMX
    )
    assert response.status_code == 200 and 'role="alert"' in response.content.decode()
    assert "Couldn't read wr_nowhere from Skyvern" in page_text(response)


def test_viewers_see_no_check_and_cannot_post_it(world, client_as, failed_run):
    unknown_retry(world, failed_run)
    client = client_as(world.viewer)
    page = client.get(reverse("runs:run_list", args=["acme"])).content.decode()
    assert check_url(failed_run) not in page and "Retry outcome unknown" in page
    assert client.post(check_url(failed_run), **HTMX).status_code == 403
    assert client.post(check_url(failed_run, name="runs:retry_link"), {}).status_code == 403
    assert Retry.objects.get().checked_at is None


def test_check_and_link_need_the_csrf_token(world, failed_run):
    retry = unknown_retry(world, failed_run)
    [made] = new_runs_at_skyvern(world, [failed_run])
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.operator)
    assert client.post(check_url(failed_run), **HTMX).status_code == 403
    link = check_url(failed_run, name="runs:retry_link")
    assert client.post(link, {"run_id": made}, **HTMX).status_code == 403
    retry.refresh_from_db()
    assert retry.state == RetryState.UNKNOWN and retry.checked_at is None
    # With the token the page carries (htmx sends it as a header), it works.
    page = client.get(reverse("runs:run_list", args=["acme"]))
    token = page.cookies["csrftoken"].value
    response = client.post(check_url(failed_run), HTTP_X_CSRFTOKEN=token, **HTMX)
    assert response.status_code == 200 and made in page_text(response)
