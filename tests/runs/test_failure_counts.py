"""The failure inbox's stored counts: kept by the database on every write of
a run, equal to counting the runs, and what the inbox page reads."""

import contextlib
import importlib
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection as db_connection
from django.db import transaction
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from console.runs.failure_counts import (
    counted_groups,
    counted_hours,
    counted_statuses,
    rebuild_failure_counts,
)
from console.runs.failures import failure_fields, failure_group_key
from console.runs.inbox import failure_groups, team_failure_groups
from console.runs.models import (
    FailureGroupCount,
    FailureHourCount,
    Retry,
    RetryState,
    Run,
    RunStatusCount,
)
from console.runs.store import run_upsert_detail, runs_store_listing
from console.skyvern import RunDetail, RunSummary
from console.teams.models import Connection
from tests.helpers import run_in_threads

NOW = datetime(2026, 12, 6, 12, 30, tzinfo=UTC)
REASONS = ["element #btn-1 not found", "element #btn-2 not found", "Login failed", ""]
STATUSES = ["failed", "terminated", "timed_out", "completed", "running"]


def stored(team_id):
    """The team's stored counts, in the shape of counted_groups/counted_hours/
    counted_statuses."""
    groups = {
        row.failure_group: (row.count, row.first_seen, row.last_seen, row.failure_category,
                            row.failure_reason_normalised, row.workflow_permanent_id)
        for row in FailureGroupCount.objects.filter(team_id=team_id)
    }  # fmt: skip
    hours = {
        (row.hour, row.failure_group): row.count
        for row in FailureHourCount.objects.filter(team_id=team_id)
    }
    # A status none of the team's runs has any more may keep a row at 0.
    statuses = {
        row.status: row.count for row in RunStatusCount.objects.filter(team_id=team_id, count__gt=0)
    }
    return groups, hours, statuses


def counted(team_id):
    groups = {
        key: (row["n"], row["first"], row["last"], row["category"], row["reason"], row["workflow"])
        for key, row in counted_groups(team_id).items()
    }
    return groups, counted_hours(team_id), counted_statuses(team_id)


def assert_counts_agree(world):
    for team in (world.team_a, world.team_b):
        assert stored(team.pk) == counted(team.pk)
        fast = team_failure_groups([team.pk], now=NOW, limit=1000)
        slow = failure_groups(Run.objects.filter(team=team), now=NOW, limit=1000)
        assert (fast.total_groups, fast.total_runs) == (slow.total_groups, slow.total_runs)
        # The workflow's title is the one of the group's run written last
        # there, not of its newest run: only the title may differ.
        for group in (*fast.groups, *slow.groups):
            group.workflow_title = ""
        assert fast.groups == slow.groups


def make_run(world, run_id, *, status="failed", reason=REASONS[0], team="a", ago=1, workflow="w"):
    connection = world.connection_b if team == "b" else world.connection_a
    return Run.objects.create(
        team=connection.team,
        connection=connection,
        run_id=run_id,
        status=status,
        failure_reason=reason,
        workflow_permanent_id=workflow,
        workflow_title="Download invoices",
        created_at=NOW - timedelta(hours=ago, minutes=7),
        **failure_fields(
            status=status, failure_reason=reason, category="ELEMENT_NOT_FOUND", workflow=workflow
        ),
    )


def refail(run, *, status, reason):
    """What the store does when Skyvern's view of a run changes."""
    run.status, run.failure_reason = status, reason
    for name, value in failure_fields(
        status=status,
        failure_reason=reason,
        category=run.failure_category,
        workflow=run.workflow_permanent_id,
    ).items():
        setattr(run, name, value)
    run.save()


def test_counts_follow_runs_entering_moving_and_leaving_their_groups(world):
    first = make_run(world, "wr_1", ago=30)
    make_run(world, "wr_2", ago=2)
    last = make_run(world, "wr_3", ago=1)
    make_run(world, "wr_ok", status="completed", reason="")
    (group,) = FailureGroupCount.objects.filter(team=world.team_a)
    assert (group.count, group.first_seen, group.last_seen) == (
        3,
        first.created_at,
        last.created_at,
    )

    first.delete()  # the first seen leaves: the next one is the first now
    refail(last, status="completed", reason="")  # the last seen succeeds on a resync
    group = FailureGroupCount.objects.get(team=world.team_a)
    assert (group.count, group.first_seen, group.last_seen) == (
        1,
        NOW - timedelta(hours=2, minutes=7),
        NOW - timedelta(hours=2, minutes=7),
    )
    last.created_at = NOW - timedelta(days=2)
    last.save()  # moved in time while not failed: nothing to count
    refail(last, status="failed", reason="Login failed")  # into another group
    assert FailureGroupCount.objects.filter(team=world.team_a).count() == 2
    assert FailureHourCount.objects.filter(team=world.team_a).count() == 2
    assert_counts_agree(world)

    Run.objects.filter(team=world.team_a).delete()
    assert not FailureGroupCount.objects.filter(team=world.team_a).exists()
    assert not FailureHourCount.objects.filter(team=world.team_a).exists()


def test_runs_grouped_with_a_url_that_took_its_bracket_are_grouped_again(world):
    """Migration 0012: a URL no longer swallows the ")" after it. Runs grouped
    by the first normaliser move to the corrected group, counts and all."""
    first = importlib.import_module("console.runs.migrations.0006_failure_groups")
    fixing = importlib.import_module("console.runs.migrations.0012_failure_reason_urls")
    reason = "Bad Gateway (https://api.example/v1/runs/1)"
    runs = [make_run(world, f"wr_{n}", reason=reason, ago=n) for n in (1, 2)]
    make_run(world, "wr_plain", reason="Login failed")
    for run in runs:  # as the first normaliser left them
        run.failure_reason_normalised = first._normalise(reason)
        run.failure_group = failure_group_key(
            run.failure_category, run.failure_reason_normalised, run.workflow_permanent_id
        )
        run.save()
    assert FailureGroupCount.objects.get(count=2).failure_reason_normalised == "Bad Gateway (<url>"

    fixing.regroup_reasons_with_urls(apps, None)

    groups = {g.failure_reason_normalised: g.count for g in FailureGroupCount.objects.all()}
    assert groups == {"Bad Gateway (<url>)": 2, "Login failed": 1}
    assert_counts_agree(world)


def test_the_store_keeps_the_counts_through_listings_and_full_views(world):
    def summary(run_id, status, reason, created="10:00"):
        return RunSummary.from_json({
            "workflow_run_id": run_id, "status": status, "workflow_permanent_id": "wpid_x",
            "failure_reason": reason, "created_at": f"2026-12-06T{created}:00+00:00",
            "modified_at": "2026-12-06T10:05:00+00:00",
        })  # fmt: skip

    page = [summary("wr_1", "failed", "boom 1"), summary("wr_2", "failed", "boom 2", "09:00")]
    runs_store_listing(connection=world.connection_a, summaries=page)
    runs_store_listing(connection=world.connection_a, summaries=page)  # the same page again
    (group,) = FailureGroupCount.objects.filter(team=world.team_a)
    assert group.count == 2
    run_upsert_detail(
        connection=world.connection_a,
        detail=RunDetail.from_json(
            {
                "run_id": "wr_1",
                "status": "completed",
                "created_at": "2026-12-06T10:00:00+00:00",
                "modified_at": "2026-12-06T10:09:00+00:00",
                "run_request": {},
            }
        ),  # fmt: skip
    )
    group.refresh_from_db()
    assert group.count == 1
    assert_counts_agree(world)


def test_the_page_reads_the_counts_not_the_runs(world):
    a1 = make_run(world, "wr_a1", ago=0)
    make_run(world, "wr_a2", ago=3, reason=REASONS[1])
    make_run(world, "wr_a3", ago=72, status="timed_out")
    make_run(world, "wr_b1", reason="Login failed")
    new = make_run(world, "wr_a1_r1", status="completed", reason="")
    Retry.objects.create(run=a1, number=1, state=RetryState.RETRIED, new_run=new)
    assert_counts_agree(world)
    inbox = team_failure_groups([world.team_a.pk], now=NOW)
    assert (inbox.total_groups, inbox.total_runs) == (2, 4)
    group = next(g for g in inbox.groups if g.count == 3)
    assert (group.per_hour[-1], group.per_hour[-4], sum(group.per_hour)) == (1, 1, 2)
    assert (group.retried, group.success_rate) == (1, 100)


# A write the inbox must follow: (what, run index, status, reason, team, hours ago).
WRITES = st.lists(
    st.tuples(
        st.sampled_from(["create", "change", "move", "delete", "retitle"]),
        st.integers(0, 7),
        st.sampled_from(STATUSES),
        st.sampled_from(REASONS),
        st.sampled_from(["a", "b"]),
        st.integers(0, 40),
    ),
    max_size=25,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    # Shrinking a failure of these database writes took minutes: report it as found.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(writes=WRITES)
def test_the_counts_kept_equal_a_rebuild_after_any_writes(world, writes):
    Run.objects.all().delete()
    for what, index, status, reason, team, ago in writes:
        run = Run.objects.filter(run_id=f"wr_{index}").first()
        if run is None or what == "create":
            if run is None:
                make_run(world, f"wr_{index}", status=status, reason=reason, team=team, ago=ago)
        elif what == "change":
            refail(run, status=status, reason=reason)
        elif what == "move":
            run.created_at = NOW - timedelta(hours=ago, minutes=index)
            run.save()
        elif what == "retitle":
            Run.objects.filter(pk=run.pk).update(workflow_title=f"Title {ago}")
        else:
            run.delete()
    assert_counts_agree(world)
    before = stored(world.team_a.pk), stored(world.team_b.pk)
    rebuild_failure_counts(world.team_a.pk)
    rebuild_failure_counts(world.team_b.pk)
    assert (stored(world.team_a.pk), stored(world.team_b.pk)) == before


def test_the_command_counts_a_team_again(world, capsys):
    make_run(world, "wr_1")
    make_run(world, "wr_2", team="b")
    FailureGroupCount.objects.update(count=99)
    FailureHourCount.objects.all().delete()
    RunStatusCount.objects.update(count=99)
    call_command("rebuild_failure_counts", "acme")
    assert stored(world.team_a.pk) == counted(world.team_a.pk)
    assert stored(world.team_b.pk) != counted(world.team_b.pk)  # not named: left as it was
    assert "acme: 1 failure groups counted again" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_writers_through_several_connections_of_a_team_lose_no_count(world):
    if db_connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    others = []
    for label in ("Second", "Third", "Fourth"):
        other = Connection(team=world.team_a, label=label, base_url=world.connection_a.base_url)
        other.set_api_key(f"sk-{label}-0123456789abcdef")
        other.save()
        others.append(other)
    existing = [make_run(world, f"wr_old_{i}", ago=i % 3) for i in range(12)]

    def writer(number, connection):
        def write():
            with transaction.atomic():
                for i in range(15):
                    reason = REASONS[(i + number) % 3]  # the groups in different orders
                    Run.objects.create(
                        team=world.team_a,
                        connection=connection,
                        run_id=f"wr_{number}_{i}",
                        status="failed",
                        failure_reason=reason,
                        workflow_permanent_id="w",
                        created_at=NOW - timedelta(minutes=7 * i + number),
                        **failure_fields(
                            status="failed", failure_reason=reason,
                            category="ELEMENT_NOT_FOUND", workflow="w",
                        ),
                    )  # fmt: skip
                for run in existing[number * 3 : number * 3 + 3]:
                    run.delete()

        return write

    run_in_threads(*(writer(n, c) for n, c in enumerate([world.connection_a, *others])))
    assert stored(world.team_a.pk) == counted(world.team_a.pk)
    assert sum(g.count for g in FailureGroupCount.objects.filter(team=world.team_a)) == 60


@pytest.mark.django_db(transaction=True)
def test_writers_moving_runs_between_statuses_at_once_neither_deadlock_nor_lose_counts(world):
    """Two syncs of a team at once, each seeing one run start and a paused one
    finish, in opposite orders: each holds the counts of its first move when
    it makes its second, whose counts the other holds. Without one lock on
    the team's counts, PostgreSQL would end one of them as a deadlock."""
    if db_connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    starting = [make_run(world, f"wr_s{n}", status="queued", reason="") for n in (0, 1)]
    finishing = [make_run(world, f"wr_f{n}", status="paused", reason="") for n in (0, 1)]
    # Both first moves made before either makes its second, if the first of
    # them lets the second through at all (the lock doesn't: then go on).
    halfway = threading.Barrier(2, timeout=3)

    def sync(number):
        first, second = (starting, finishing) if number == 0 else (finishing, starting)

        def write():
            with transaction.atomic():
                _move(first[number])
                with contextlib.suppress(threading.BrokenBarrierError):
                    halfway.wait()
                _move(second[number])

        return write

    run_in_threads(sync(0), sync(1))
    assert stored(world.team_a.pk) == counted(world.team_a.pk)
    assert dict(
        RunStatusCount.objects.filter(team=world.team_a, count__gt=0).values_list("status", "count")
    ) == {"running": 2, "completed": 2}


def _move(run):
    """What a sync does as Skyvern's run starts, or as its paused run finishes."""
    moved = "running" if run.status == "queued" else "completed"
    Run.objects.filter(pk=run.pk).update(status=moved)
