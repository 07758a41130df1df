"""Team admins manage their members; superusers create teams; a team always
keeps an admin; a new account's password-set link works once."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from console.audit.models import AuditEntry
from console.teams import services
from console.teams.models import Membership, Role, Team
from tests.conftest import PASSWORD, make_user
from tests.helpers import page_text, run_in_threads

MEMBERS = reverse("members:member_list", args=["acme"])
ADD = reverse("members:member_add", args=["acme"])
INVITE = reverse("members:member_invite", args=["acme"])
NEW_PASSWORD = "a long and new pass phrase 42"


def role_url(membership):
    return reverse("members:member_role_change", args=[membership.team.slug, membership.pk])


def remove_url(membership):
    return reverse("members:member_remove", args=[membership.team.slug, membership.pk])


def membership(world, user) -> Membership:
    return Membership.objects.get(team=world.team_a, user=user)


def test_admins_see_the_members_with_their_roles(world, client_as):
    response = client_as(world.admin).get(MEMBERS)
    assert response.status_code == 200
    text = page_text(response)
    for person in ("acme-viewer", "acme-operator", "acme-admin"):
        assert person in text
    assert "globex-operator" not in text
    assert (
        MEMBERS
        in client_as(world.admin).get(reverse("runs:run_list", args=["acme"])).content.decode()
    )


@pytest.mark.parametrize("login", ["newcomer", "NEWCOMER", "newcomer@example.com"])
def test_add_an_existing_account_by_username_or_email(world, client_as, login):
    newcomer = make_user("newcomer")
    response = client_as(world.admin).post(ADD, {"login": login, "role": "operator"})
    assert response.status_code == 303 and response["Location"] == MEMBERS
    assert membership(world, newcomer).role == Role.OPERATOR


@pytest.mark.parametrize(
    ("setup", "login", "says"),
    [
        (None, "nobody", "No account is called"),
        (None, "acme-viewer", "already a member"),
        ("inactive", "sleeper", "deactivated"),
        ("twins", "shared@example.com", "Several accounts match"),
    ],
)
def test_add_is_refused_in_words(world, client_as, setup, login, says):
    if setup == "inactive":
        make_user("sleeper", is_active=False)
    if setup == "twins":
        for name in ("twin1", "twin2"):
            get_user_model().objects.create_user(name, "shared@example.com", PASSWORD)
    before = Membership.objects.count()
    response = client_as(world.admin).post(ADD, {"login": login, "role": "viewer"})
    assert response.status_code == 400
    assert says in page_text(response)
    assert Membership.objects.count() == before


def invite(client, username="fresh", role="operator"):
    return client.post(
        INVITE, {"username": username, "email": f"{username}@example.com", "role": role}
    )


def test_a_new_account_gets_a_one_time_password_link(world, client_as):
    response = invite(client_as(world.admin))
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    fresh = get_user_model().objects.get(username="fresh")
    assert not fresh.has_usable_password()
    assert membership(world, fresh).role == Role.OPERATOR
    link = re.search(r"http://testserver(/welcome/[^<\s]+/)", response.content.decode()).group(1)
    # The members page doesn't show it again.
    assert link not in client_as(world.admin).get(MEMBERS).content.decode()

    newcomer = Client()
    landing = newcomer.get(link, follow=True)
    assert landing.status_code == 200 and "Set your password" in landing.content.decode()
    form_url = landing.redirect_chain[-1][0]
    done = newcomer.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == reverse("login")
    fresh.refresh_from_db()
    assert fresh.check_password(NEW_PASSWORD)
    assert AuditEntry.objects.filter(action="password_set", user=fresh).count() == 1

    # Once only: the same link now says it no longer works, and changes nothing.
    again = Client().get(link, follow=True)
    assert "This link no longer works" in again.content.decode()
    signed_in = Client().post(reverse("login"), {"username": "fresh", "password": NEW_PASSWORD})
    assert signed_in.status_code == 302 and signed_in["Location"] != reverse("login")


def test_the_password_link_refuses_a_weak_password(world, client_as):
    invite(client_as(world.admin))
    fresh = get_user_model().objects.get(username="fresh")
    link = services.password_set_path(fresh)
    newcomer = Client()
    landing = newcomer.get(link, follow=True)
    response = newcomer.post(
        landing.redirect_chain[-1][0], {"new_password1": "123", "new_password2": "123"}
    )
    assert response.status_code == 200
    fresh.refresh_from_db()
    assert not fresh.has_usable_password()


def test_an_existing_username_cannot_be_created_again(world, client_as):
    response = invite(client_as(world.admin), username="ACME-viewer")
    assert response.status_code == 400 and "exists; add it instead" in page_text(response)


def test_an_invalid_username_is_refused(world, client_as):
    response = invite(client_as(world.admin), username="no spaces <b>")
    assert response.status_code == 400
    assert not get_user_model().objects.filter(username__startswith="no spaces").exists()


def test_change_a_role_and_remove(world, client_as):
    client = client_as(world.admin)
    viewer = membership(world, world.viewer)
    response = client.post(role_url(viewer), {"role": "admin"})
    assert response.status_code == 303
    viewer.refresh_from_db()
    assert viewer.role == Role.ADMIN

    confirm = client.get(remove_url(viewer))
    assert confirm.status_code == 200 and "Remove acme-viewer" in page_text(confirm)
    response = client.post(remove_url(viewer), follow=True)
    assert not Membership.objects.filter(pk=viewer.pk).exists()
    assert "acme-viewer was removed" in page_text(response)
    assert get_user_model().objects.filter(username="acme-viewer").exists()


def test_an_unknown_role_changes_nothing(world, client_as):
    viewer = membership(world, world.viewer)
    response = client_as(world.admin).post(role_url(viewer), {"role": "owner"}, follow=True)
    assert "Choose one of the roles" in page_text(response)
    viewer.refresh_from_db()
    assert viewer.role == Role.VIEWER
    assert not AuditEntry.objects.filter(action="member_role_change").exists()


def test_the_last_admin_cannot_be_demoted_or_removed(world, client_as):
    client = client_as(world.admin)
    admin = membership(world, world.admin)

    response = client.post(role_url(admin), {"role": "viewer"}, follow=True)
    assert "last admin of Acme Logistics" in page_text(response)
    response = client.post(remove_url(admin), follow=True)
    assert "last admin of Acme Logistics" in page_text(response)

    admin.refresh_from_db()
    assert admin.role == Role.ADMIN
    assert not AuditEntry.objects.filter(action__startswith="member_").exists()


def test_with_a_second_admin_one_may_step_down(world, client_as):
    Membership.objects.filter(team=world.team_a, user=world.operator).update(role=Role.ADMIN)
    client = client_as(world.admin)
    response = client.post(role_url(membership(world, world.admin)), {"role": "viewer"})
    # No longer an admin: sent on to what they may still see.
    assert response.status_code == 303
    assert membership(world, world.admin).role == Role.VIEWER
    assert client.get(MEMBERS).status_code == 403


def test_leaving_the_team_goes_home(world, client_as):
    Membership.objects.filter(team=world.team_a, user=world.operator).update(role=Role.ADMIN)
    client = client_as(world.admin)
    response = client.post(remove_url(membership(world, world.admin)))
    assert response.status_code == 303 and response["Location"] == reverse("home")


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin(world):
    """Each admin demotes the other at the same moment: one wins, one is refused."""
    Membership.objects.filter(team=world.team_a, user=world.operator).update(role=Role.ADMIN)
    first, second = membership(world, world.admin), membership(world, world.operator)

    def demote(target, by):
        try:
            services.member_role_change(
                team=world.team_a, membership=target, role=Role.VIEWER, by=by
            )
            return "changed"
        except services.MemberRefused:
            return "refused"

    outcomes = run_in_threads(
        lambda: demote(first, world.operator), lambda: demote(second, world.admin), timeout=30
    )

    assert sorted(outcomes) == ["changed", "refused"]
    assert Membership.objects.filter(team=world.team_a, role=Role.ADMIN).count() == 1
    assert AuditEntry.objects.filter(action="member_role_change").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_admins_removing_each_other_at_once_leave_one_admin(world):
    Membership.objects.filter(team=world.team_a, user=world.operator).update(role=Role.ADMIN)
    first, second = membership(world, world.admin), membership(world, world.operator)

    def remove(target, by):
        try:
            services.member_remove(team=world.team_a, membership=target, by=by)
            return "removed"
        except services.MemberRefused:
            return "refused"
        except Membership.DoesNotExist:
            return "gone"

    outcomes = run_in_threads(
        lambda: remove(first, world.operator), lambda: remove(second, world.admin), timeout=30
    )

    assert sorted(outcomes) == ["refused", "removed"]
    assert Membership.objects.filter(team=world.team_a, role=Role.ADMIN).count() == 1


# --- teams ------------------------------------------------------------------------------------


def test_superusers_create_teams(world, client_as):
    client = client_as(world.superuser)
    assert client.get(reverse("team_create")).status_code == 200
    response = client.post(reverse("team_create"), {"name": "Initech Support", "slug": ""})
    team = Team.objects.get(name="Initech Support")
    assert team.slug == "initech-support"
    assert response.status_code == 303
    assert response["Location"] == reverse("members:member_list", args=["initech-support"])
    entry = AuditEntry.objects.get(action="team_create")
    assert entry.team == team and entry.user == world.superuser

    # Then its first admin.
    client.post(
        reverse("members:member_add", args=["initech-support"]),
        {"login": "acme-viewer", "role": "admin"},
    )
    assert Membership.objects.get(team=team, user=world.viewer).role == Role.ADMIN


def test_a_team_name_or_short_name_is_not_taken_twice(world, client_as):
    client = client_as(world.superuser)
    response = client.post(reverse("team_create"), {"name": "acme logistics", "slug": "other"})
    assert "exists" in page_text(response)
    response = client.post(reverse("team_create"), {"name": "Other", "slug": "acme"})
    assert "exists" in page_text(response)
    assert Team.objects.count() == 2


@pytest.mark.parametrize("person", ["admin", "operator", "viewer", "outsider"])
def test_only_superusers_create_teams(world, client_as, person):
    client = client_as(getattr(world, person))
    assert client.get(reverse("team_create")).status_code == 403
    assert client.post(reverse("team_create"), {"name": "Sneaky"}).status_code == 403
    assert not Team.objects.filter(name="Sneaky").exists()


def test_outsiders_cannot_touch_team_as_members(world, client_as):
    client = client_as(world.outsider)
    viewer = membership(world, world.viewer)
    assert client.get(MEMBERS).status_code == 404
    assert client.post(role_url(viewer), {"role": "admin"}).status_code == 404
    assert client.post(remove_url(viewer)).status_code == 404
    viewer.refresh_from_db()
    assert viewer.role == Role.VIEWER


@pytest.mark.parametrize("pk", ["0", "99999", "99999999999999999999999999"])
def test_a_member_number_that_does_not_exist_is_not_found(world, client_as, pk):
    client = client_as(world.admin)
    for path in ("role", "remove"):
        url = f"{MEMBERS}{pk}/{path}/"
        assert client.post(url, {"role": "admin"}).status_code == 404, url
