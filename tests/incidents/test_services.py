"""The inbox across teams counts each cause in every team it hit, even when
the team groups shown are limited."""

import pytest

from console.incidents.services import inbox_across_teams
from console.runs.models import Run
from console.teams.models import Membership, Role

pytestmark = pytest.mark.django_db


def fail(world, connection=None, reason="Login failed: portal rejected the password"):
    run_id = world.add_run(
        connection, status="failed", failure_reason=reason, workflow_permanent_id="wpid_same"
    )
    return Run.objects.get(run_id=run_id, connection=connection or world.connection_a)


def test_a_cause_past_the_limit_in_one_team_still_names_every_team(world):
    Membership.objects.create(team=world.team_b, user=world.operator, role=Role.VIEWER)
    old = fail(world, world.connection_b)
    Run.objects.filter(pk=old.pk).update(created_at=old.created_at.replace(year=2020))
    fail(world, reason="Element #btn-7 not found")
    Run.objects.filter(failure_reason__startswith="Element").update(
        created_at=old.created_at.replace(year=2021)
    )
    fail(world)  # the newest: the same cause as B's oldest

    inbox = inbox_across_teams(user=world.operator, limit=1)

    assert inbox.truncated
    [cause] = inbox.causes
    assert [(team.slug, group.count) for team, group in cause.parts] == [
        ("acme", 1),
        ("globex", 1),
    ]
    assert cause.total.count == 2
    assert cause.retryable  # an operator in acme, though a viewer in globex


def test_a_cause_only_in_a_team_where_i_view_is_not_retryable(world):
    Membership.objects.create(team=world.team_b, user=world.operator, role=Role.VIEWER)
    fail(world, world.connection_b)
    [cause] = inbox_across_teams(user=world.operator).causes
    assert not cause.retryable
