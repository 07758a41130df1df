"""Sign-in with the company's identity provider (OIDC), against a real
provider (tests/oidc_provider/, django-oauth-toolkit) in its own process:
who gets in, with which team roles, what is refused and audited, and how
two-factor sign-in applies."""

from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from console.audit.models import Action, AuditEntry
from console.oidc import services
from console.oidc.config import parse_group_roles
from console.teams.models import AccountSettings, Membership, Role
from tests.conftest import PASSWORD
from tests.oidc_provider.provider import sign_in_at_provider

LOGIN = reverse("login")
SIGN_IN = reverse("oidc:sign_in")
RUNS = reverse("runs:run_list", args=["acme"])


def sign_in_with_provider(client, username, *, then=None):
    """Click "Sign in with …", sign in at the provider, and come back: the
    console's answer to the provider's callback."""
    start = client.get(SIGN_IN, {"next": then} if then else {})
    assert start.status_code == 302
    callback = urlsplit(sign_in_at_provider(start["Location"], username))
    assert callback.netloc == "testserver"
    return client.get(f"{callback.path}?{callback.query}")


def roles_of(email):
    user = get_user_model().objects.get(email=email)
    return {m.team.slug: m.role for m in Membership.objects.filter(user=user)}


def test_without_configuration_there_is_no_provider_sign_in(client, settings):
    settings.OIDC_ISSUER = ""
    page = client.get(LOGIN)
    assert b"Sign in with" not in page.content
    assert client.get(SIGN_IN).status_code == 404
    assert client.get(reverse("oidc:callback"), {"code": "x", "state": "y"}).status_code == 404


def test_the_sign_in_page_offers_the_provider(client, oidc_on):
    page = client.get(LOGIN, {"next": RUNS})
    assert "Sign in with Example IdP" in page.text
    assert f'href="{SIGN_IN}?next={RUNS}"' in page.text


def test_a_new_person_gets_an_account_and_the_role_their_group_maps_to(world, client, oidc_on):
    answer = sign_in_with_provider(client, "dana", then=RUNS)
    assert answer.status_code == 302 and answer["Location"] == RUNS
    assert client.get(RUNS).status_code == 200
    dana = get_user_model().objects.get(email="dana@example.com")
    assert dana.username == "dana@example.com"
    assert not dana.has_usable_password()
    assert roles_of("dana@example.com") == {"acme": Role.OPERATOR}
    # The provider's "support-globex" group is not hers: no role there.
    assert client.get(reverse("runs:run_list", args=["globex"])).status_code == 404
    sign_in = AuditEntry.objects.get(action=Action.LOGIN, user=dana)
    assert sign_in.details["via"] == "Example IdP"
    assert sign_in.details["groups"] == "support-acme"
    assert sign_in.details["team_roles"] == "acme: operator, globex: none"
    added = AuditEntry.objects.get(action=Action.MEMBER_ADD, user=dana)
    assert added.team == world.team_a
    assert added.details == {"role": "operator", "by": "Example IdP groups"}


def test_the_highest_role_of_the_groups_wins(world, client, oidc_on):
    sign_in_with_provider(client, "erin")
    assert roles_of("erin@example.com") == {"acme": Role.ADMIN}


def test_unmapped_groups_give_no_role_until_an_admin_adds_them(world, client, oidc_on):
    answer = sign_in_with_provider(client, "frank")
    assert answer.status_code == 302
    assert roles_of("frank@example.com") == {}
    home = client.get(reverse("home"))
    assert "You are not a member of any team yet" in home.text


def test_a_disallowed_email_domain_is_refused_and_audited(world, client, oidc_on):
    answer = sign_in_with_provider(client, "mallory")
    assert answer.status_code == 302 and answer["Location"] == LOGIN
    page = client.get(LOGIN)
    assert "Accounts at elsewhere.org can&#x27;t sign in to this console" in page.text
    assert "_auth_user_id" not in client.session
    assert not get_user_model().objects.filter(email="mallory@elsewhere.org").exists()
    refusal = AuditEntry.objects.get(action=Action.LOGIN_FAILED)
    assert refusal.username == "mallory@elsewhere.org"
    assert refusal.details["reason"] == "email domain elsewhere.org not allowed"
    assert refusal.details["via"] == "Example IdP"


def test_an_existing_account_is_found_by_its_email(world, client, oidc_on):
    sign_in_with_provider(client, "acme-op")
    assert client.session["_auth_user_id"] == str(world.operator.pk)
    assert roles_of("acme-operator@example.com") == {"acme": Role.OPERATOR}
    assert get_user_model().objects.filter(email__iexact="acme-operator@example.com").count() == 1


def test_a_deactivated_account_is_refused(world, client, oidc_on):
    world.operator.is_active = False
    world.operator.save()
    sign_in_with_provider(client, "acme-op")
    assert "_auth_user_id" not in client.session
    assert "is deactivated" in client.get(LOGIN).text


@pytest.fixture
def operator_with_two_factor(world):
    TOTPDevice.objects.create(user=world.operator, name="phone", confirmed=True)
    return world.operator


def test_provider_sign_in_skips_the_consoles_code_by_default(
    operator_with_two_factor, client, oidc_on
):
    sign_in_with_provider(client, "acme-op")
    assert client.get(RUNS).status_code == 200


def test_provider_sign_in_asks_for_the_code_when_configured(
    operator_with_two_factor, client, oidc_on, settings
):
    settings.OIDC_CONSOLE_TWO_FACTOR = True
    sign_in_with_provider(client, "acme-op")
    answer = client.get(RUNS)
    assert answer.status_code == 302
    assert answer["Location"].startswith(reverse("twofactor:verify"))


def test_a_password_sign_in_still_asks_for_the_code(operator_with_two_factor, client, oidc_on):
    client.post(LOGIN, {"username": "acme-operator", "password": PASSWORD})
    answer = client.get(RUNS)
    assert answer.status_code == 302
    assert answer["Location"].startswith(reverse("twofactor:verify"))


def test_an_unreachable_provider_is_said_so_and_passwords_still_work(world, client, settings):
    settings.OIDC_ISSUER = "http://127.0.0.1:9/o"
    settings.OIDC_RP_CLIENT_ID = "support-console"
    settings.OIDC_TIMEOUT = 2
    answer = client.get(SIGN_IN)
    assert answer.status_code == 302 and answer["Location"] == LOGIN
    assert "could not be reached" in client.get(LOGIN).text
    client.post(LOGIN, {"username": "acme-viewer", "password": PASSWORD})
    assert client.get(RUNS).status_code == 200


def test_a_forged_callback_signs_no_one_in(world, client, oidc_on):
    client.get(SIGN_IN)
    answer = client.get(reverse("oidc:callback"), {"code": "made-up", "state": "made-up"})
    assert answer.status_code == 302 and answer["Location"] == LOGIN
    assert "_auth_user_id" not in client.session
    assert AuditEntry.objects.get(action=Action.LOGIN_FAILED).details["reason"] == (
        "answer not verified"
    )


def test_groups_decide_the_roles_in_mapped_teams_at_every_sign_in(world, oidc_on):
    dana = get_user_model().objects.create_user("dana@example.com", "dana@example.com")
    services.team_roles_apply(user=dana, groups=["support-acme", "support-globex"])
    assert roles_of("dana@example.com") == {"acme": Role.OPERATOR, "globex": Role.VIEWER}
    services.team_roles_apply(user=dana, groups=["leads"])
    assert roles_of("dana@example.com") == {"acme": Role.ADMIN}
    assert AuditEntry.objects.filter(action=Action.MEMBER_REMOVE, user=dana).count() == 1
    assert AuditEntry.objects.filter(action=Action.MEMBER_ROLE_CHANGE, user=dana).count() == 1


def test_the_last_admin_is_not_removed_by_the_groups(world, oidc_on):
    held = services.team_roles_apply(user=world.admin, groups=[])
    assert held["acme"] == Role.ADMIN
    assert Membership.objects.get(user=world.admin, team=world.team_a).role == Role.ADMIN


@pytest.mark.parametrize(
    "text",
    ["support-acme:acme", "support-acme:acme:boss", ":acme:viewer", "g:acme:"],
)
def test_a_malformed_group_mapping_fails_the_system_check(text, settings):
    with pytest.raises(ValueError):
        parse_group_roles(text)
    settings.OIDC_GROUP_ROLES = text
    with pytest.raises(Exception, match="oidc.E001"):
        call_command("check")


def test_group_names_may_hold_colons():
    (entry,) = parse_group_roles("urn:corp:support:acme:operator")
    assert (entry.group, entry.team_slug, entry.role) == ("urn:corp:support", "acme", "operator")


def test_the_audit_log_page_says_how_someone_signed_in(world, client, oidc_on):
    sign_in_with_provider(client, "erin")
    client.force_login(world.superuser)
    page = client.get(reverse("audit:audit_log"), {"person": "erin"})
    assert "via: Example IdP" in page.text
    assert "groups: leads, support-acme" in page.text
    assert "team_roles: acme: admin, globex: none" in page.text


def test_refusals_by_the_provider_do_not_lock_out_the_address(world, client, oidc_on, settings):
    """django-axes counts wrong passwords only: domain refusals are not guesses."""
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(3):
        sign_in_with_provider(client, "mallory")
    answer = sign_in_with_provider(client, "dana")
    assert answer.status_code == 302 and answer["Location"] == "/"
    assert client.session["_auth_user_backend"] == "console.oidc.backends.OidcBackend"
    client.logout()
    client.post(LOGIN, {"username": "acme-viewer", "password": "wrong"})
    client.post(LOGIN, {"username": "acme-viewer", "password": "wrong"})
    locked = client.post(LOGIN, {"username": "acme-viewer", "password": PASSWORD})
    assert locked.status_code == 429, "wrong passwords are still counted"


def test_an_account_named_like_the_email_but_someone_elses_is_not_taken_over(
    world, client, oidc_on
):
    other = get_user_model().objects.create_user("dana@example.com", "someone@example.net")
    answer = sign_in_with_provider(client, "dana")
    assert answer["Location"] == LOGIN
    assert "_auth_user_id" not in client.session
    assert "is called dana@example.com but has another email" in client.get(LOGIN).text
    assert roles_of("someone@example.net") == {}
    other.refresh_from_db()
    assert other.email == "someone@example.net"


def test_two_accounts_with_the_email_are_refused(world, client, oidc_on):
    get_user_model().objects.create_user("dana1", "dana@example.com")
    get_user_model().objects.create_user("dana2", "Dana@example.com")
    sign_in_with_provider(client, "dana")
    assert "_auth_user_id" not in client.session
    assert "Several console accounts have the email dana@example.com" in client.get(LOGIN).text


def test_the_browsers_zone_comes_along_on_a_first_sign_in(world, client, oidc_on):
    # console.js adds the browser's zone to the "Sign in with …" link.
    start = client.get(SIGN_IN, {"time_zone": "Asia/Tokyo"})
    callback = urlsplit(sign_in_at_provider(start["Location"], "acme-op"))
    client.get(f"{callback.path}?{callback.query}")
    assert AccountSettings.objects.get(user=world.operator).time_zone == "Asia/Tokyo"

    # A saved zone stays, and a name that is no zone is not kept.
    client.logout()
    start = client.get(SIGN_IN, {"time_zone": "Europe/Berlin"})
    callback = urlsplit(sign_in_at_provider(start["Location"], "acme-op"))
    client.get(f"{callback.path}?{callback.query}")
    assert AccountSettings.objects.get(user=world.operator).time_zone == "Asia/Tokyo"
    client.logout()
    assert client.get(SIGN_IN, {"time_zone": "Mars/Olympus"}).status_code == 302
    assert "browser_time_zone" not in client.session
