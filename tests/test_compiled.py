"""Queries compiled once and run with each request's values (console/compiled.py)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from console.compiled import CompiledQuery
from console.teams.models import Membership, Role, Team
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

USERNAMES = CompiledQuery(
    lambda user_pk: get_user_model().objects.filter(pk=user_pk).values_list("username"), -1
)


def test_each_run_uses_its_own_values_and_the_sql_is_compiled_once():
    ann, bob = make_user("ann"), make_user("bob")

    assert USERNAMES.rows(ann.pk) == [("ann",)]
    assert USERNAMES.rows(bob.pk) == [("bob",)]
    assert USERNAMES.rows(0) == []
    kept = connections["default"].__dict__["_console_compiled_queries"]
    assert USERNAMES in kept
    sql = kept[USERNAMES][0]
    USERNAMES.rows(ann.pk)
    assert kept[USERNAMES][0] is sql


def test_values_side_by_side_answer_each_set_of_values_in_one_query(
    django_assert_num_queries,
):
    ann, bob = make_user("ann"), make_user("bob")
    users_after = CompiledQuery(
        lambda user_pk, name: (
            get_user_model().objects.filter(pk__gte=user_pk, username__gt=name).values("pk")
        ),
        -1,
        "stand-in name",
        around="SELECT COUNT(*) FROM ({}) counted",
    )
    with django_assert_num_queries(1):
        counts = users_after.values_side_by_side([(ann.pk, ""), (bob.pk, ""), (ann.pk, "b")])
    assert counts == [2, 1, 1]
    assert users_after.values_side_by_side([(bob.pk + 1, ""), (ann.pk, "bz")]) == [0, 0]


def test_values_go_through_djangos_converters_and_instances_keep_annotations():
    ann = make_user("ann")
    team = Team.objects.create(name="Acme", slug="acme")
    Membership.objects.create(team=team, user=ann, role=Role.OPERATOR)
    created = CompiledQuery(
        lambda team_pk: Team.objects.filter(pk=team_pk).values_list("created_at"), -1
    )
    teams = CompiledQuery(
        lambda user_pk: Team.objects.roles_of(get_user_model()(pk=user_pk, is_active=True)), -1
    )

    assert created.rows(team.pk) == [(team.created_at,)]
    [mine] = teams.instances(ann.pk)
    assert (mine.pk, mine.slug, mine.created_at, mine.my_role) == (
        team.pk,
        "acme",
        team.created_at,
        "operator",
    )
    assert teams.instances(make_user("bob").pk) == []


def test_a_datetime_stand_in_takes_the_drivers_form_of_each_value():
    ann = make_user("ann")
    joined_before = CompiledQuery(
        lambda when: get_user_model().objects.filter(date_joined__lt=when).values_list("username"),
        datetime(1900, 1, 2, 3, 4, 5, 6789, tzinfo=UTC),
    )

    assert joined_before.rows(ann.date_joined + timedelta(microseconds=1)) == [("ann",)]
    assert joined_before.rows(ann.date_joined) == []


def test_a_stand_in_the_query_does_not_carry_is_refused():
    # The value is written into the SQL as a constant nowhere: no parameter to replace.
    dropped = CompiledQuery(lambda user_pk: get_user_model().objects.values_list("pk"), -1)
    one_of_two = CompiledQuery(
        lambda user_pk, other_pk: get_user_model().objects.filter(pk=user_pk).values_list("pk"),
        -1,
        -2,
    )
    for query in (dropped, one_of_two):
        with pytest.raises(ImproperlyConfigured, match="stand-in"):
            query.rows(1, 2) if query is one_of_two else query.rows(1)
