"""Queries compiled once and run with each request's values (console/compiled.py)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test.utils import CaptureQueriesContext

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


def test_on_postgresql_a_compiled_query_is_prepared_once_per_connection(settings):
    """Planning a page's query took longer than running it: PostgreSQL keeps
    each compiled query planned on the connection. Query logging still sees
    each run of it, and DATABASE_PREPARED=0 (for a pooler that can't keep
    prepared statements) turns it off."""
    connection = connections["default"]
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    ann = make_user("ann")

    def prepared():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                           ['%"auth_user"."username"%'])  # fmt: skip
            return cursor.fetchone()[0]

    settings.DATABASE_PREPARED = False
    assert USERNAMES.rows(ann.pk) == [("ann",)]
    assert prepared() == 0
    settings.DATABASE_PREPARED = True
    with CaptureQueriesContext(connection) as queries:
        assert USERNAMES.rows(ann.pk) == [("ann",)]
        assert USERNAMES.rows(0) == []
    assert prepared() == 1
    assert len(queries) == 2
