"""The Django admin's connection page keeps the rules of the team's own pages."""

import pytest
from django.urls import reverse

from console.teams.models import Connection
from tests.conftest import KEY_A


@pytest.fixture
def root(world, client_as):
    return client_as(world.superuser)


def change(root, connection, **data):
    url = reverse("admin:teams_connection_change", args=[connection.pk])
    return root.post(url, {"label": connection.label, "base_url": connection.base_url, **data})


def test_admin_can_rename_and_move_a_connection_over_https(world, root):
    response = change(root, world.connection_a, label="Acme EU", base_url="https://eu.example")
    assert response.status_code == 302
    world.connection_a.refresh_from_db()
    assert (world.connection_a.label, world.connection_a.base_url) == (
        "Acme EU",
        "https://eu.example",
    )
    assert world.connection_a.api_key() == KEY_A


@pytest.mark.parametrize(
    "base_url", ["http://api.skyvern.com", "https://user:secret@api.skyvern.com"]
)
def test_admin_applies_the_base_url_rules(world, root, base_url):
    response = change(root, world.connection_a, base_url=base_url)
    assert response.status_code == 200
    world.connection_a.refresh_from_db()
    assert world.connection_a.base_url == world.simulator.url
    assert "secret" not in response.content.decode()


def test_admin_rejects_a_duplicate_label_instead_of_failing(world, root):
    other = Connection(team=world.team_a, label="Billing", base_url="https://api.skyvern.com")
    other.set_api_key(KEY_A)
    other.save()
    response = change(root, other, label="skyvern")
    assert response.status_code == 200
    assert "This team already has a connection with that label." in response.content.decode()


def test_admin_can_neither_add_connections_nor_move_them_to_another_team(world, root):
    assert root.get(reverse("admin:teams_connection_add")).status_code == 403
    response = change(root, world.connection_a, team=world.team_b.pk)
    assert response.status_code == 302
    world.connection_a.refresh_from_db()
    assert world.connection_a.team == world.team_a


def test_admin_pages_never_show_the_key(world, root):
    for url in (
        reverse("admin:teams_connection_changelist"),
        reverse("admin:teams_connection_change", args=[world.connection_a.pk]),
    ):
        html = root.get(url).content.decode()
        assert KEY_A not in html
        assert KEY_A[:-4] not in html
        assert "••••A1B2" in html
