"""Who may do what in a team: `restrict(user, action)` on every model that
belongs to a team, `team_for()`, and the services' `require()`.

The expectations are written out here, person by person, rather than
derived from the console's own rule, so that a change to the rule shows.
"""

import re

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import connection as db_connection
from django.http import Http404
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from console.bulk.models import BulkRetryItem, BulkRetryJob
from console.runs.models import Retry, Run
from console.sync.models import ConnectionSync
from console.teams.access import allowed, require, team_for
from console.teams.models import Connection, Membership, Role, Team
from tests.conftest import make_user
from tests.helpers import page_text

A, B = "acme", "globex"
PEOPLE = ["viewer", "operator", "admin", "outsider", "superuser", "inactive", "anonymous"]
# The teams whose rows each person gets, per action. The outsider is an
# operator of team B; the inactive person was an admin of team A.
EXPECTED = {
    "view": {
        "viewer": {A},
        "operator": {A},
        "admin": {A},
        "outsider": {B},
        "superuser": {A, B},
        "inactive": set(),
        "anonymous": set(),
    },
    "retry": {
        "viewer": set(),
        "operator": {A},
        "admin": {A},
        "outsider": {B},
        "superuser": {A, B},
        "inactive": set(),
        "anonymous": set(),
    },
    "manage": {
        "viewer": set(),
        "operator": set(),
        "admin": {A},
        "outsider": set(),
        "superuser": {A, B},
        "inactive": set(),
        "anonymous": set(),
    },
}
# Each model that belongs to a team, and the lookup of its team's slug.
MODELS = {
    Team: "slug",
    Membership: "team__slug",
    Connection: "team__slug",
    ConnectionSync: "connection__team__slug",
    Run: "team__slug",
    Retry: "run__team__slug",
    BulkRetryJob: "team__slug",
    BulkRetryItem: "job__team__slug",
}


@pytest.fixture
def rows(world):
    """One row of every team model in each team."""
    inactive = make_user("acme-former-admin", is_active=False)
    Membership.objects.create(team=world.team_a, user=inactive, role=Role.ADMIN)
    for connection in (world.connection_a, world.connection_b):
        team = connection.team
        ConnectionSync.objects.get_or_create(connection=connection)
        run = Run.objects.create(
            team=team,
            connection=connection,
            run_id=f"wr_{team.slug}",
            status="failed",
            created_at=timezone.now(),
        )
        Retry.objects.create(run=run, number=1)
        job = BulkRetryJob.objects.create(team=team, reason="Access check", total=1)
        BulkRetryItem.objects.create(job=job, run=run, connection=connection)
    return inactive


def person(world, rows, who):
    if who == "anonymous":
        return AnonymousUser()
    if who == "inactive":
        return rows
    return getattr(world, who)


@pytest.mark.parametrize("who", PEOPLE)
@pytest.mark.parametrize("action", list(EXPECTED))
@pytest.mark.parametrize("model", list(MODELS), ids=lambda model: model.__name__)
def test_restrict_gives_the_rows_of_the_teams_where_the_person_may_act(
    world, rows, model, action, who
):
    user = person(world, rows, who)
    teams = set(model.objects.restrict(user, action).values_list(MODELS[model], flat=True))
    assert teams == EXPECTED[action][who]


def test_restrict_lists_each_row_once_however_many_members_the_team_has(world, rows):
    for model in MODELS:
        restricted = model.objects.restrict(world.admin, "view")
        assert restricted.count() == model.objects.filter(pk__in=restricted).count()


def test_restrict_refuses_an_action_it_does_not_know(world):
    with pytest.raises(KeyError):
        Run.objects.restrict(world.admin, "delete")


@pytest.mark.parametrize("who", PEOPLE)
@pytest.mark.parametrize("action", list(EXPECTED))
def test_a_service_asks_the_same_rule(world, rows, action, who):
    """allowed()/require(): what a service checks before it acts."""
    user = person(world, rows, who)
    run = Run.objects.get(run_id="wr_acme")
    job = BulkRetryJob.objects.get(team=world.team_a)
    may = A in EXPECTED[action][who]
    for obj in (world.team_a, run, job):
        assert allowed(user, action, obj) is may
        if may:
            require(user, action, obj)
        else:
            with pytest.raises(PermissionDenied, match="role in Acme Logistics"):
                require(user, action, obj)


def request_as(user):
    request = RequestFactory().get("/t/acme/runs/")
    request.user = user
    return request


@pytest.mark.parametrize(
    ("who", "action", "answer"),
    [
        ("viewer", "view", "ok"),
        ("viewer", "retry", 403),
        ("operator", "retry", "ok"),
        ("operator", "manage", 403),
        ("admin", "manage", "ok"),
        ("outsider", "view", 404),
        ("superuser", "manage", "ok"),
    ],
)
def test_team_for_answers_and_leaves_the_request_alone(world, who, action, answer):
    request = request_as(getattr(world, who))
    before = dict(vars(request))
    if answer == 404:
        with pytest.raises(Http404):
            team_for(request, A, action=action)
    elif answer == 403:
        with pytest.raises(PermissionDenied, match="role in Acme Logistics"):
            team_for(request, A, action=action)
    else:
        team = team_for(request, A, action=action)
        assert team == world.team_a
        assert team.may[action] is True
    assert vars(request).keys() == before.keys()


def test_team_for_says_what_the_person_may_do_in_the_team(world):
    may = {
        who: team_for(request_as(getattr(world, who)), A).may
        for who in ("viewer", "operator", "admin", "superuser")
    }
    assert may == {
        "viewer": {"view": True, "retry": False, "manage": False},
        "operator": {"view": True, "retry": True, "manage": False},
        "admin": {"view": True, "retry": True, "manage": True},
        "superuser": {"view": True, "retry": True, "manage": True},
    }


# --- pages: what the rule shows --------------------------------------------------------


ADMIN_LINKS = ["Connections", "Members", "Audit log"]


@pytest.mark.parametrize(
    ("who", "role", "admin_links"),
    [
        ("viewer", "viewer", False),
        ("operator", "operator", False),
        ("admin", "admin", True),
        ("superuser", "admin", True),
    ],
)
def test_the_top_bar_shows_my_role_and_the_admin_pages_to_admins(
    world, client_as, who, role, admin_links
):
    html = client_as(getattr(world, who)).get(reverse("runs:run_list", args=[A])).content.decode()
    assert re.search(rf'<small class="role-tag">{role}</small>', html)
    for link in ADMIN_LINKS:
        assert (f">{link}</a>" in html) is admin_links


@pytest.mark.parametrize(("who", "offered"), [("operator", False), ("admin", True)])
def test_a_team_without_connections_offers_to_add_one_to_its_admins(
    world, client_as, who, offered
):
    world.connection_a.delete()
    text = page_text(client_as(getattr(world, who)).get(reverse("runs:run_list", args=[A])))
    assert ("Add a connection with the team's Skyvern API key" in text) is offered
    assert ("A team admin can add one" in text) is not offered


def test_a_page_reads_the_persons_teams_once(world, client_as):
    """The team in the URL and the team switcher come from one query."""
    client = client_as(world.viewer)
    with CaptureQueriesContext(db_connection) as queries:
        response = client.get(reverse("runs:run_list", args=[A]))
    assert b"Globex Billing" not in response.content and b"Acme Logistics" in response.content
    of_teams = [
        query["sql"]
        for query in queries.captured_queries
        if re.search(r'\bFROM "(\w+)"', query["sql"]).group(1) == "teams_team"
    ]
    assert len(of_teams) == 1, of_teams
