"""The incident view across teams: the failure inbox, the bulk retries and a
run found by id in all the person's teams, and one cause retried as one job
per team. Never a row of a team the person is not in."""

import re

import pytest
from django.urls import reverse

from console.bulk.models import BulkRetryItem, BulkRetryJob, ItemState, JobState
from console.runs.models import Run
from console.teams.models import Membership, Role, Team

pytestmark = pytest.mark.django_db

INBOX = reverse("incidents:failure_inbox")
JOBS = reverse("incidents:job_list")
FIND = reverse("incidents:run_find")
PREVIEW = reverse("incidents:group_retry_preview")
CREATE = reverse("incidents:group_retry_create")
WORKFLOW = "wpid_carrier_invoices"
LOGIN_FAILED = "Login failed: portal rejected the password"


def fail(world, connection=None, *, reason=LOGIN_FAILED, workflow=WORKFLOW) -> Run:
    run_id = world.add_run(
        connection,
        status="failed",
        failure_reason=reason,
        workflow_permanent_id=workflow,
        workflow_title="Download carrier invoices",
    )
    return Run.objects.get(run_id=run_id, connection=connection or world.connection_a)


def join_b(world, person, role=Role.OPERATOR):
    Membership.objects.create(team=world.team_b, user=person, role=role)


def rows(html: str) -> list[str]:
    return re.findall(r'<tr class="failure-group">(.*?)</tr>', html, re.S)


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


# --- the failure inbox ------------------------------------------------------------------


def test_one_cause_in_two_teams_is_one_row_naming_each_team(world, client_as):
    join_b(world, world.operator)
    fail(world)
    fail(world)
    fail(world, world.connection_b)
    fail(world, reason="Element #btn-7 not found")

    html = client_as(world.operator).get(INBOX).content.decode()

    found = rows(html)
    assert len(found) == 2
    login = next(row for row in found if "Login failed" in row)
    assert "Acme Logistics: 2" in text(login)
    assert "Globex Billing: 1" in text(login)
    assert re.search(r'class="num group-count">3<', login)
    assert "/t/globex/runs/?group=" in login  # each team's runs of the cause
    assert "Retry this group" in login


def test_the_inbox_shows_no_team_the_person_is_not_in(world, client_as):
    fail(world)
    fail(world, world.connection_b, reason="Globex portal: certificate expired")

    html = client_as(world.operator).get(INBOX).content.decode()

    assert "Globex" not in html
    assert "certificate expired" not in html
    assert len(rows(html)) == 1


def test_a_superuser_sees_every_team(world, client_as):
    fail(world)
    fail(world, world.connection_b)
    html = client_as(world.superuser).get(INBOX).content.decode()
    assert "Acme Logistics: 1" in text(html)
    assert "Globex Billing: 1" in text(html)


def test_a_viewer_everywhere_gets_no_retry_button(world, client_as):
    fail(world)
    html = client_as(world.viewer).get(INBOX).content.decode()
    assert len(rows(html)) == 1
    assert "Retry this group" not in html


# --- the bulk retries across teams ----------------------------------------------------------


def make_job(world, team, reason):
    connection = world.connection_b if team == world.team_b else world.connection_a
    run = fail(world, connection)
    job = BulkRetryJob.objects.create(
        team=team, created_by=None, reason=reason, total=1, state=JobState.FINISHED
    )
    BulkRetryItem.objects.create(job=job, run=run, connection=connection, state=ItemState.SKIPPED)
    return job


def test_the_jobs_list_names_each_job_s_team_and_only_mine(world, client_as):
    make_job(world, world.team_a, "Acme portal down")
    make_job(world, world.team_b, "Globex portal down")

    html = client_as(world.operator).get(JOBS).content.decode()
    assert "Acme portal down" in html
    assert "Globex portal down" not in html

    join_b(world, world.operator, Role.VIEWER)
    html = client_as(world.operator).get(JOBS).content.decode()
    assert "Globex portal down" in html
    assert (
        '<td data-label="Team" class="job-team"><a href="/t/globex/bulk/">Globex Billing</a></td>'
        in html
    )


# --- a run by id ---------------------------------------------------------------------------------


def test_a_run_id_opens_the_run_in_its_team(world, client_as):
    join_b(world, world.operator, Role.VIEWER)
    run = fail(world, world.connection_b)
    response = client_as(world.operator).get(FIND, {"run_id": f"  {run.run_id} "})
    assert response.status_code == 302
    assert response["Location"] == reverse("runs:run_detail", args=["globex", run.run_id])


def test_a_run_of_another_team_is_not_found(world, client_as):
    run = fail(world, world.connection_b)
    response = client_as(world.operator).get(FIND, {"run_id": run.run_id})
    assert response.status_code == 200
    assert "No run with the id" in text(response.content.decode())
    assert "in your teams" in text(response.content.decode())
    assert "/t/globex/" not in response.content.decode()


# --- one cause retried across teams ---------------------------------------------------------------


def cause_of(run: Run) -> str:
    return run.failure_group


def test_the_preview_shows_each_team_s_numbers_and_sends_nothing(world, client_as):
    join_b(world, world.operator)
    run = fail(world)
    fail(world)
    fail(world, world.connection_b)

    response = client_as(world.operator).post(PREVIEW, {"group": cause_of(run)})

    html = response.content.decode()
    assert response.status_code == 200
    parts = re.findall(r'<tr class="team-part">(.*?)</tr>', html, re.S)
    assert [text(part).split()[:4] for part in parts] == [
        ["Acme", "Logistics", "2", "2"],
        ["Globex", "Billing", "1", "1"],
    ]
    assert "Retry 3 runs in 2 teams" in html
    assert BulkRetryJob.objects.count() == 0
    assert world.simulator.state.retry_counts() == {}


def test_a_viewer_in_one_team_gets_that_team_left_out_with_a_note(world, client_as):
    join_b(world, world.operator, Role.VIEWER)
    run = fail(world)
    fail(world, world.connection_b)
    fail(world, world.connection_b)

    html = client_as(world.operator).post(PREVIEW, {"group": cause_of(run)}).content.decode()

    assert "Globex Billing: you are a viewer there, so its 2 runs of this group are left out" in (
        text(html)
    )
    assert 'name="team" value="globex"' not in html
    assert 'name="team" value="acme"' in html
    assert "Retry 1 run in 1 team" in html


def test_update_preview_keeps_the_teams_shown_and_the_left_out_note(world, client_as):
    join_b(world, world.operator, Role.VIEWER)
    run = fail(world)
    fail(world, world.connection_b)

    html = (
        client_as(world.operator)
        .post(
            PREVIEW,
            {
                "options": "1",
                "group": cause_of(run),
                "team": ["acme"],
                "include_already_retried": "on",
            },
        )
        .content.decode()
    )

    assert "Globex Billing: you are a viewer there" in text(html)
    assert "Retry 1 run in 1 team" in html
    assert re.search(r"<input[^>]*name=\"include_already_retried\"[^>]*checked", html)


def test_confirming_creates_one_job_per_team_each_with_its_own_runs(world, client_as):
    join_b(world, world.operator)
    run = fail(world)
    fail(world)
    run_b = fail(world, world.connection_b)
    fail(world, reason="Something else entirely")  # another cause: not selected
    client = client_as(world.operator)
    preview = client.post(PREVIEW, {"group": cause_of(run)}).content.decode()
    form = dict(re.findall(r'name="(upto-[a-z]+)" value="(\d+)"', preview))
    fail(world, world.connection_b)  # cached after the preview: not included

    response = client.post(
        CREATE,
        {
            "options": "1",
            "group": cause_of(run),
            "team": ["acme", "globex"],
            **form,
            "reason": "Carrier portal outage",
        },
    )

    assert response.status_code == 303
    jobs = {job.team.slug: job for job in BulkRetryJob.objects.select_related("team")}
    assert set(jobs) == {"acme", "globex"}
    assert jobs["acme"].total == 2
    assert jobs["globex"].total == 1
    assert {item.run_id for item in jobs["globex"].items.all()} == {run_b.pk}
    assert {item.connection_id for item in jobs["globex"].items.all()} == {world.connection_b.pk}
    assert {item.connection_id for item in jobs["acme"].items.all()} == {world.connection_a.pk}
    assert all(job.reason == "Carrier portal outage" for job in jobs.values())
    listed = client.get(response["Location"]).content.decode()
    for job in jobs.values():
        assert reverse("bulk:bulk_job_detail", args=[job.team.slug, job.pk]) in listed
    assert "Just started: 2 jobs, one per team" in listed


def test_a_confirmation_naming_another_team_is_refused_and_keeps_the_reason(world, client_as):
    run = fail(world)
    fail(world, world.connection_b)  # the outsider's team: same cause

    response = client_as(world.operator).post(
        CREATE,
        {
            "options": "1",
            "group": cause_of(run),
            "team": ["acme", "globex"],
            "reason": "Carrier portal outage",
        },
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert BulkRetryJob.objects.count() == 0
    assert "You can&#x27;t retry runs in globex: nothing was created." in html
    assert "Carrier portal outage</textarea>" in html
    assert 'name="team" value="acme"' in html  # confirming again retries acme's
    assert 'name="team" value="globex"' not in html


def test_a_viewer_in_every_team_may_not_preview(world, client_as):
    run = fail(world)
    response = client_as(world.viewer).post(PREVIEW, {"group": cause_of(run)})
    assert response.status_code == 403


def test_a_group_that_is_not_one_goes_back_to_the_inbox(world, client_as):
    response = client_as(world.operator).post(PREVIEW, {"group": "<script>"})
    assert response.status_code == 303
    assert response["Location"] == INBOX


# --- the header ---------------------------------------------------------------------------------


def test_the_header_links_the_incident_view_for_people_in_two_teams(world, client_as):
    page = reverse("runs:run_list", args=["acme"])
    link = f'<a href="{INBOX}" >All teams</a>'
    assert link not in client_as(world.operator).get(page).content.decode()
    join_b(world, world.operator, Role.VIEWER)
    assert link in client_as(world.operator).get(page).content.decode()


def test_a_team_created_later_is_not_in_anyone_s_view_but_the_superuser_s(world, client_as):
    Team.objects.create(name="Initech", slug="initech")
    html = client_as(world.operator).get(INBOX).content.decode()
    assert "Initech" not in html


def test_the_home_page_of_someone_in_two_teams_finds_a_run_by_id(world, client_as):
    join_b(world, world.operator, Role.VIEWER)
    html = client_as(world.operator).get(reverse("home")).content.decode()
    assert f'action="{FIND}"' in html
    assert f'href="{JOBS}"' in html
