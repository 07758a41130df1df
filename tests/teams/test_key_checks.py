"""A key is tested with Skyvern before it is saved (issue 11, defect 9).

A key Skyvern refuses is never saved and the old key stays; a key that could
not be tested is saved only with an explicit "Save without testing", and the
Connections page then says so; a key of another Skyvern organisation (it
sees none of the connection's cached runs) needs a confirmation, and "Test
connection" warns about it too.
"""

import logging
import re

import pytest
from django.test import Client
from django.urls import reverse

from console.audit.models import AuditEntry
from console.skyvern import KeyRejected, SkyvernClient, ValidationFailed
from console.teams.models import Connection
from tests.conftest import KEY_A, KEY_B
from tests.helpers import page_text
from tests.teams.test_connections import HTMX, assert_no_key, closed_port, password_input

NEW_KEY = "sk-live-rotated-acme-4d3c2b1a-RT56"
WRONG_KEY = "sk-wrong-key-not-an-org-0000-ZZZZ"


def url(name, team, *args):
    return reverse(f"teams:{name}", args=[team.slug, *args])


@pytest.fixture
def admin(world, client_as):
    return client_as(world.admin)


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def replace_key(admin, world, api_key, **extra):
    return admin.post(
        url("connection_replace_key", world.team_a, world.connection_a.pk),
        {"api_key": api_key, **extra},
    )


def stored_key(world) -> str:
    return Connection.objects.get(pk=world.connection_a.pk).api_key()


def audit_actions() -> list[str]:
    return list(AuditEntry.objects.order_by("id").values_list("action", flat=True))


def unreachable(world):
    Connection.objects.filter(pk=world.connection_a.pk).update(
        base_url=f"http://127.0.0.1:{closed_port()}"
    )


# --- a key Skyvern refuses ------------------------------------------------------------


def test_a_refused_replacement_key_is_not_saved_and_the_old_key_stays(world, admin, logs):
    response = replace_key(admin, world, WRONG_KEY)

    assert response.status_code == 200
    html = response.content.decode()
    refusal = "Skyvern refused this key (HTTP 403: “Could not validate credentials”)."
    assert refusal in page_text(response)
    assert "value=" not in password_input(html), "the typed key is not put back into the form"
    assert "Save without testing" not in html, "a refused key can't be saved at all"
    assert_no_key(html, WRONG_KEY, KEY_A)
    assert stored_key(world) == KEY_A
    assert "connection_replace_key" not in audit_actions()
    assert_no_key(logs.text, WRONG_KEY, KEY_A)
    # The team's key still works.
    result = admin.post(url("connection_test", world.team_a, world.connection_a.pk), headers=HTMX)
    assert "OK — Skyvern accepted the key." in result.content.decode()


def test_a_refused_key_is_refused_even_with_save_without_testing_ticked(world, admin):
    response = replace_key(admin, world, WRONG_KEY, save_untested="on")

    assert response.status_code == 200
    assert "Skyvern refused this key" in page_text(response)
    assert stored_key(world) == KEY_A


def test_a_new_connection_with_a_refused_key_is_not_added(world, admin):
    response = admin.post(
        url("connection_create", world.team_a),
        {"label": "Staging", "base_url": world.simulator.url, "api_key": WRONG_KEY},
    )

    assert response.status_code == 200
    assert "Skyvern refused this key (HTTP 403" in page_text(response)
    assert 'value="Staging"' in response.content.decode(), "the label stays as typed"
    assert_no_key(response.content.decode(), WRONG_KEY)
    assert not Connection.objects.filter(label="Staging").exists()


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (KeyRejected, "Skyvern refused this key (HTTP 403)."),
        (ValidationFailed, "Skyvern answered, but not as expected (HTTP 422)."),
    ],
)
def test_a_server_that_echoes_the_key_does_not_get_it_onto_the_page(
    world, admin, monkeypatch, logs, error, says
):
    def echo(client):
        raise error(f"bad key {client._api_key}", detail=f"bad key {client._api_key}")

    monkeypatch.setattr(SkyvernClient, "check_key", echo)

    response = replace_key(admin, world, NEW_KEY)

    assert says in page_text(response)
    assert_no_key(response.content.decode(), NEW_KEY)
    assert_no_key(logs.text, NEW_KEY)
    assert stored_key(world) == KEY_A


def test_a_key_of_characters_no_key_has_is_refused_by_the_form(world, admin):
    response = replace_key(admin, world, "sk-live-clé-0123456789")

    assert response.status_code == 200
    assert "That doesn't look like a Skyvern API key." in page_text(response)
    assert stored_key(world) == KEY_A


# --- Skyvern can't be asked --------------------------------------------------------------

TROUBLE = {
    "unreachable": (None, "Skyvern unreachable — check the base URL"),
    "http-500": ({"error_rates": {500: 1.0}}, "Skyvern had an internal error (HTTP 500)"),
    "hangs": ({"hang_seconds": 3}, "No answer from Skyvern in time"),
}


@pytest.mark.parametrize("trouble", list(TROUBLE))
def test_an_untestable_key_is_saved_only_when_the_admin_says_so(
    world, admin, settings, logs, trouble
):
    knobs, words = TROUBLE[trouble]
    settings.SKYVERN_READ_TIMEOUT = 0.5
    world.simulator.state.add_key(KEY_A, NEW_KEY)
    if knobs:
        world.simulator.state.configure(**knobs)
    else:
        unreachable(world)

    refused = replace_key(admin, world, NEW_KEY)

    assert refused.status_code == 200
    text = page_text(refused)
    assert words in text
    assert "The key was not tested, and nothing was saved." in text
    assert 'name="save_untested"' in refused.content.decode()
    assert "Save without testing" in text
    assert "value=" not in password_input(refused.content.decode())
    assert_no_key(refused.content.decode(), NEW_KEY, KEY_A)
    assert stored_key(world) == KEY_A

    saved = replace_key(admin, world, NEW_KEY, save_untested="on")

    assert saved.status_code == 302
    assert stored_key(world) == NEW_KEY
    listing = admin.get(saved["Location"])
    text = page_text(listing)
    assert "The API key of “Skyvern” was replaced, but the new key is untested" in text
    assert "Key untested — saved while Skyvern couldn't check it." in text
    assert_no_key(listing.content.decode(), NEW_KEY, KEY_A)
    assert_no_key(logs.text, NEW_KEY, KEY_A)
    entry = AuditEntry.objects.get(action="connection_replace_key")
    assert entry.details == {"key": "••••RT56", "tested": False}


def test_a_passing_test_clears_key_untested(world, admin):
    world.simulator.state.add_key(KEY_A, NEW_KEY)
    world.simulator.state.configure(error_rates={500: 1.0})
    assert replace_key(admin, world, NEW_KEY, save_untested="on").status_code == 302
    world.simulator.state.configure(error_rates={})
    assert "Key untested" in page_text(admin.get(url("connection_list", world.team_a)))

    result = admin.post(url("connection_test", world.team_a, world.connection_a.pk), headers=HTMX)

    html = result.content.decode()
    assert "OK — Skyvern accepted the key." in html
    # The open page drops its "Key untested" note at once (htmx out-of-band delete).
    assert f'id="key-untested-{world.connection_a.pk}" hx-swap-oob="delete"' in html
    assert "Key untested" not in page_text(admin.get(url("connection_list", world.team_a)))


def test_a_new_connection_where_skyvern_cant_be_reached(world, admin):
    data = {
        "label": "Staging",
        "base_url": f"http://127.0.0.1:{closed_port()}",
        "api_key": NEW_KEY,
    }
    refused = admin.post(url("connection_create", world.team_a), data)
    assert refused.status_code == 200
    assert "Skyvern unreachable" in page_text(refused)
    assert not Connection.objects.filter(label="Staging").exists()

    saved = admin.post(url("connection_create", world.team_a), {**data, "save_untested": "on"})

    assert saved.status_code == 302
    added = Connection.objects.get(label="Staging")
    assert added.key_untested
    text = page_text(admin.get(saved["Location"]))
    assert "Connection “Staging” added, but its key is untested" in text
    assert "Key untested" in text


# --- a key of another Skyvern organisation ------------------------------------------------


def test_a_key_of_another_organisation_needs_a_confirmation(world, admin, logs):
    for _ in range(4):
        world.add_run(status="failed")

    refused = replace_key(admin, world, KEY_B)

    assert refused.status_code == 200
    text = page_text(refused)
    assert "it sees none of the 3 newest of the 4 cached runs of “Skyvern”" in text
    assert "it belongs to another Skyvern organisation" in text
    assert "Use this key anyway: its 4 cached runs will no longer match it" in text
    assert "Save without testing" not in text
    assert_no_key(refused.content.decode(), KEY_A, KEY_B)
    assert stored_key(world) == KEY_A

    confirmed = replace_key(admin, world, KEY_B, other_org_confirmed="on")

    assert confirmed.status_code == 302
    assert stored_key(world) == KEY_B
    assert_no_key(logs.text, KEY_A, KEY_B)


def test_a_rotated_key_of_the_same_organisation_is_replaced_at_once(world, admin):
    world.add_run(status="failed")
    world.simulator.state.add_key(KEY_A, NEW_KEY)

    response = replace_key(admin, world, NEW_KEY)

    assert response.status_code == 302
    assert stored_key(world) == NEW_KEY
    assert "The API key of “Skyvern” was replaced." in page_text(admin.get(response["Location"]))


def test_without_cached_runs_any_working_key_is_taken(world, admin):
    assert replace_key(admin, world, KEY_B).status_code == 302
    assert stored_key(world) == KEY_B


def test_test_connection_warns_about_a_key_of_another_organisation(world, admin):
    world.add_run(status="failed")
    world.connection_a.set_api_key(KEY_B)
    world.connection_a.save()
    test_url = url("connection_test", world.team_a, world.connection_a.pk)

    fragment = admin.post(test_url, headers=HTMX)
    plain = admin.post(test_url, follow=True)

    output = re.search(r'class="test-result (\w+)"[^>]*>(.*?)</output>', fragment.content.decode())
    assert output and output[1] == "bad"
    assert "it belongs to another Skyvern organisation" in output[2]
    assert "OK — " not in fragment.content.decode()
    assert "it sees none of the 1 newest of the 1 cached run of “Skyvern”" in page_text(plain)
    assert "message-error" in plain.content.decode()
    for response in (fragment, plain):
        assert_no_key(response.content.decode(), KEY_A, KEY_B)
    tested = AuditEntry.objects.filter(action="connection_test").latest("id")
    assert tested.outcome == "failed"


# --- who may ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_an_admin_replaces_a_key(world, client_as, role):
    client = client_as(getattr(world, role))
    response = client.post(
        url("connection_replace_key", world.team_a, world.connection_a.pk), {"api_key": KEY_B}
    )
    assert response.status_code == 403
    assert stored_key(world) == KEY_A


def test_another_teams_connection_is_not_found(world, admin):
    for team, pk in ((world.team_a, world.connection_b.pk), (world.team_b, world.connection_b.pk)):
        response = admin.post(url("connection_replace_key", team, pk), {"api_key": KEY_A})
        assert response.status_code == 404
    assert Connection.objects.get(pk=world.connection_b.pk).api_key() == KEY_B


def test_replacing_a_key_needs_the_csrf_token(world):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(world.admin)
    target = url("connection_replace_key", world.team_a, world.connection_a.pk)

    refused = strict.post(target, {"api_key": KEY_B, "other_org_confirmed": "on"})
    assert refused.status_code == 403
    assert stored_key(world) == KEY_A

    token = strict.get(target).cookies["csrftoken"].value
    accepted = strict.post(target, {"api_key": KEY_B, "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    assert stored_key(world) == KEY_B
