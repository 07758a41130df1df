"""The failure inbox: groups stored with each run, counted per team, linked to
the runs page and to a bulk retry of the group."""

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps
from django.urls import reverse

from console.runs.failures import failure_fields
from console.runs.inbox import HISTOGRAM_HOURS, failure_groups
from console.runs.models import Retry, RetryState, Run
from console.runs.store import run_upsert_detail, runs_store_listing
from console.skyvern import RunDetail, RunSummary
from tests.helpers import page_text

NOW = datetime(2026, 12, 6, 12, 30, tzinfo=UTC)
LOGIN_FAILED = [
    {"category": "CREDENTIAL_ERROR", "confidence_float": 0.4, "reasoning": "maybe"},
    {"category": "AUTH_FAILURE", "confidence_float": 0.9, "reasoning": "Login was refused."},
]


def listed(run_id, *, status="failed", reason="element #btn-42 not found", category=None, **extra):
    return RunSummary.from_json(
        {
            "workflow_run_id": run_id,
            "status": status,
            "workflow_permanent_id": "wpid_invoices",
            "workflow_title": "Download carrier invoices",
            "failure_reason": reason,
            "failure_category": category,
            "created_at": "2026-12-06T10:00:00+00:00",
            "modified_at": "2026-12-06T10:05:00+00:00",
            **extra,
        }
    )


def detail(run_id, *, status="failed", reason="element #btn-7 not found", modified="10:06"):
    return RunDetail.from_json(
        {
            "run_id": run_id,
            "status": status,
            "failure_reason": reason,
            "created_at": "2026-12-06T10:00:00+00:00",
            "modified_at": f"2026-12-06T{modified}:00+00:00",
            "run_request": {},
        }
    )


def test_a_listed_run_keeps_skyverns_most_confident_category_and_its_group(world):
    runs_store_listing(
        connection=world.connection_a,
        summaries=[
            listed("wr_1", category=LOGIN_FAILED),
            listed("wr_2", category=LOGIN_FAILED, reason="element #btn-7 not found"),
            listed("wr_3", status="completed", reason="", category=None),
        ],
    )
    one, two, done = Run.objects.order_by("run_id")
    assert one.failure_category == "AUTH_FAILURE"
    assert one.failure_reason_normalised == "element <element> not found"
    assert one.failure_group and one.failure_group == two.failure_group
    assert (done.failure_category, done.failure_group) == ("", "")


def test_a_full_view_keeps_the_listed_category_and_moves_the_group_with_the_status(world):
    runs_store_listing(
        connection=world.connection_a, summaries=[listed("wr_1", category=LOGIN_FAILED)]
    )
    group = Run.objects.get().failure_group

    # Skyvern's full view has no failure_category: the listed one stays.
    run_upsert_detail(connection=world.connection_a, detail=detail("wr_1"))
    run = Run.objects.get()
    assert (run.failure_category, run.failure_group) == ("AUTH_FAILURE", group)

    # Another reason is another group; a completed run is in none.
    run_upsert_detail(
        connection=world.connection_a,
        detail=detail("wr_1", reason="Login failed", modified="10:07"),
    )
    run.refresh_from_db()
    assert run.failure_group not in ("", group)
    assert run.failure_reason_normalised == "Login failed"
    run_upsert_detail(
        connection=world.connection_a,
        detail=detail("wr_1", status="completed", reason="", modified="10:08"),
    )
    run.refresh_from_db()
    assert (run.failure_category, run.failure_group) == ("AUTH_FAILURE", "")


def test_a_later_listing_without_a_category_clears_it(world):
    runs_store_listing(
        connection=world.connection_a, summaries=[listed("wr_1", category=LOGIN_FAILED)]
    )
    runs_store_listing(
        connection=world.connection_a,
        summaries=[listed("wr_1", category=None, modified_at="2026-12-06T10:09:00+00:00")],
    )
    assert Run.objects.get().failure_category == ""


def test_the_migration_fills_existing_runs_from_raw(world):
    runs_store_listing(
        connection=world.connection_a,
        summaries=[listed("wr_1", category=LOGIN_FAILED), listed("wr_2", status="running")],
    )
    stored = {r.run_id: r.failure_group for r in Run.objects.all()}
    Run.objects.update(failure_category="", failure_group="", failure_reason_normalised="")

    migration = importlib.import_module("console.runs.migrations.0006_failure_groups")
    migration.fill_failure_groups(apps, None)

    assert {r.run_id: r.failure_group for r in Run.objects.all()} == stored
    assert Run.objects.get(run_id="wr_1").failure_category == "AUTH_FAILURE"


# --- counting the groups ----------------------------------------------------------------


def cached(
    world,
    run_id,
    *,
    status="failed",
    reason="element #btn-1 not found",
    team=None,
    category="ELEMENT_NOT_FOUND",
    workflow="wpid_invoices",
    ago=timedelta(hours=1),
    retried_from=None,
):
    connection = world.connection_b if team == "b" else world.connection_a
    return Run.objects.create(
        team=connection.team,
        connection=connection,
        run_id=run_id,
        status=status,
        failure_reason=reason,
        workflow_permanent_id=workflow,
        workflow_title="Download <b>carrier</b> invoices",
        created_at=NOW - ago,
        retried_from=retried_from,
        **failure_fields(
            status=status, failure_reason=reason, category=category, workflow=workflow
        ),
    )


def retried(world, run, new_status, number=1):
    new = cached(
        world,
        f"{run.run_id}_r{number}",
        status=new_status,
        retried_from=run,
        ago=timedelta(minutes=5),
    )
    Retry.objects.create(run=run, number=number, state=RetryState.RETRIED, new_run=new)
    return new


def test_groups_count_runs_seen_hours_retries_and_their_success(world):
    a1 = cached(world, "wr_a1", reason="element #btn-42 not found", ago=timedelta(minutes=30))
    a2 = cached(world, "wr_a2", reason="element #btn-7 not found", ago=timedelta(hours=3))
    cached(
        world, "wr_a3", reason="element #btn-9 not found", status="timed_out", ago=timedelta(days=3)
    )
    cached(world, "wr_b1", reason="Login failed", category="AUTH_FAILURE", ago=timedelta(hours=2))
    cached(world, "wr_ok", status="completed", reason="")
    retried(world, a1, "completed")
    retried(world, a2, "failed")
    retried(world, a2, "running", number=2)

    inbox = failure_groups(Run.objects.filter(team=world.team_a), now=NOW)

    # The retry that failed again failed the same way: it counts in its group.
    assert inbox.total_groups == 2
    assert inbox.total_runs == 5
    by_reason = {g.reason: g for g in inbox.groups if g.workflow_permanent_id == "wpid_invoices"}
    group = next(g for g in inbox.groups if g.category == "ELEMENT_NOT_FOUND" and g.count == 4)
    assert group.reason == "element <element> not found"
    assert group.first_seen == NOW - timedelta(days=3)
    assert group.last_seen == NOW - timedelta(minutes=5)
    assert len(group.per_hour) == HISTOGRAM_HOURS
    assert sum(group.per_hour) == 3  # the run of three days ago is older than the histogram
    assert group.per_hour[-1] == 2 and group.per_hour[-4] == 1  # this hour, three hours ago
    assert group.retried == 2
    assert (group.retries_completed, group.retries_finished, group.success_rate) == (1, 2, 50)
    login = by_reason["Login failed"]
    assert (login.count, login.retried, login.success_rate) == (1, 0, None)


def test_groups_are_kept_apart_by_team(world):
    cached(world, "wr_a", reason="Login failed")
    cached(world, "wr_b", reason="Login failed", team="b")
    inbox = failure_groups(Run.objects.all(), now=NOW)
    assert sorted(g.team_id for g in inbox.groups) == sorted([world.team_a.pk, world.team_b.pk])
    assert len({g.key for g in inbox.groups}) == 1


def test_the_most_recently_seen_groups_are_shown_first(world):
    for i in range(5):
        cached(world, f"wr_{i}", reason=f"cause {'abcde'[i]}", ago=timedelta(hours=i + 1))
    inbox = failure_groups(Run.objects.all(), now=NOW, limit=3)
    assert [g.reason for g in inbox.groups] == ["cause a", "cause b", "cause c"]
    assert inbox.total_groups == 5


# --- the page -------------------------------------------------------------------------


def inbox_page(client):
    return client.get(reverse("runs:failure_inbox", kwargs={"team_slug": "acme"}))


def test_a_viewer_sees_the_groups_escaped_without_a_retry_button(world, client_as):
    cached(world, "wr_1", reason='Field "x" has <script>alert(1)</script>')
    cached(world, "wr_2", reason='Field "y" has <script>alert(2)</script>')
    cached(world, "wr_other", reason="Only in Globex", team="b")
    response = inbox_page(client_as(world.viewer))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in html and "&lt;script&gt;alert(&lt;n&gt;)" in html
    assert "<b>carrier</b>" not in html
    text = page_text(response)
    assert "2 failed runs in 1 group" in text
    assert "no retries yet" in text
    assert "Only in Globex" not in text
    assert "Retry this group" not in text
    assert 'href="/t/acme/failures/"' in html  # in the team navigation


def test_an_operator_retries_a_group_through_the_bulk_preview(world, client_as):
    runs = [cached(world, f"wr_{i}", reason=f"element #btn-{i} not found") for i in range(3)]
    cached(world, "wr_x", reason="Something else")
    client = client_as(world.operator)
    html = inbox_page(client).content.decode()
    group = runs[0].failure_group
    assert f'name="f-group" value="{group}"' in html
    assert 'name="scope" value="filter"' in html
    assert f'href="/t/acme/runs/?group={group}"' in html

    preview = client.post(
        reverse("bulk:bulk_retry_preview", kwargs={"team_slug": "acme"}),
        {"scope": "filter", "f-group": group},
    )
    assert preview.status_code == 200
    assert preview.context["preview"].total == 3
    assert "Failure group" in page_text(preview)


def test_the_runs_page_filters_by_group_and_category(world, client_as):
    a = cached(world, "wr_a", reason="element #btn-1 not found")
    cached(world, "wr_b", reason="Login failed", category="AUTH_FAILURE")
    client = client_as(world.viewer)
    url = reverse("runs:run_list", kwargs={"team_slug": "acme"})

    by_group = client.get(url, {"group": a.failure_group})
    assert [c.run_id for c in by_group.context["page"].runs] == ["wr_a"]
    by_category = client.get(url, {"category": "AUTH_FAILURE"})
    assert [c.run_id for c in by_category.context["page"].runs] == ["wr_b"]
    bad = client.get(url, {"group": "not-a-group"}, headers={"HX-Request": "true"})
    assert "not a failure group" in page_text(bad)


@pytest.mark.parametrize("who", ["outsider"])
def test_another_team_gets_no_inbox(world, client_as, who):
    cached(world, "wr_1", reason="Secret cause")
    response = inbox_page(client_as(getattr(world, who)))
    assert response.status_code == 404
