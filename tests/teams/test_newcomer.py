"""A newcomer's first steps (issue 11, defect 10): each page says what to do next."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from console.teams.models import Membership, Role, Team
from tests.conftest import make_user
from tests.helpers import page_text


def test_the_new_team_form_shows_where_the_short_name_goes(world, client_as):
    page = client_as(world.superuser).get(reverse("team_create"))

    assert page.status_code == 200
    assert "Used in the team's addresses (/t/<short name>/)" in page_text(page)


def test_a_superuser_in_a_console_without_teams_is_told_to_create_the_first(db, client_as):
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")

    page = client_as(root).get(reverse("home"))

    text = page_text(page)
    assert "Create the first team" in text
    assert "Ask a team admin" not in text
    assert re.search(r'<a href="/teams/new/">Create the first team</a>', page.content.decode())


def test_someone_in_no_team_is_told_to_ask_an_admin(db, client_as):
    page = client_as(make_user("newcomer")).get(reverse("home"))

    text = page_text(page)
    assert "Ask a team admin to add you." in text
    assert "Create the first team" not in text


@pytest.fixture
def empty_team(db):
    """A team without a Skyvern connection, with an admin and a viewer."""
    team = Team.objects.create(name="Initech", slug="initech")
    people = {}
    for role in (Role.ADMIN, Role.VIEWER):
        people[role] = make_user(f"initech-{role.value}")
        Membership.objects.create(team=team, user=people[role], role=role)
    return team, people


def test_an_admin_of_a_team_without_a_connection_gets_a_link_to_add_one(empty_team, client_as):
    team, people = empty_team

    page = client_as(people[Role.ADMIN]).get(reverse("runs:run_list", args=[team.slug]))

    assert page.status_code == 200
    assert "This team has no Skyvern connection yet." in page_text(page)
    link = reverse("teams:connection_create", args=[team.slug])
    assert f'<a href="{link}">Add a connection</a>' in page.content.decode()


def test_a_viewer_of_a_team_without_a_connection_is_told_who_adds_one(empty_team, client_as):
    team, people = empty_team

    page = client_as(people[Role.VIEWER]).get(reverse("runs:run_list", args=[team.slug]))

    text = page_text(page)
    assert "This team has no Skyvern connection yet." in text
    assert "A team admin can add one" in text
    assert reverse("teams:connection_create", args=[team.slug]) not in page.content.decode()
