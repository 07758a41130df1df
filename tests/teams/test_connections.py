"""A team admin manages the team's Skyvern connections; the API key never shows.

Covers adding, editing, replacing the key, removing, "Test connection" (htmx
fragment and plain form), encryption at rest with key rotation, and the
validation of base URLs and labels.
"""

import re
import socket

import pytest
from cryptography.fernet import Fernet
from django.db import connection as db_connection
from django.urls import reverse

from console.runs.models import Run
from console.teams.forms import validate_base_url
from console.teams.models import Connection
from console.teams.secrets import (
    ApiKeyUnreadable,
    decrypt_api_key,
    encrypt_api_key,
    reencrypt_api_key,
)
from tests.conftest import KEY_A, KEY_B

NEW_KEY = "sk-live-new-key-9f8e7d6c5b4a-QW12"
WRONG_KEY = "sk-wrong-key-not-an-org-0000-ZZZZ"
HTMX = {"HX-Request": "true"}


def team_url(name, team, *args):
    return reverse(f"teams:{name}", args=[team.slug, *args])


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_no_key(html: str, *keys: str) -> None:
    """Neither the key nor any 10-character piece of it is on the page."""
    for key in keys:
        assert key not in html, "the API key is on the page"
        for start in range(len(key) - 9):
            piece = key[start : start + 10]
            assert piece not in html, f"a piece of the API key ({piece!r}) is on the page"


def text_of(response) -> str:
    return response.content.decode()


@pytest.fixture
def admin(world, client_as):
    return client_as(world.admin)


# No real DNS: a key test against https://api.skyvern.com then finds Skyvern
# unreachable, here and in CI alike, and never reaches the real one.
pytestmark = pytest.mark.usefixtures("no_dns")


# Where Skyvern can't be reached, a key is saved only when the admin says so.
UNTESTED = {"save_untested": "on"}


# --- the pages ---------------------------------------------------------------


def test_admin_adds_a_connection(world, admin):
    page = admin.get(team_url("connection_create", world.team_a))
    assert page.status_code == 200
    assert 'type="password"' in text_of(page)

    world.simulator.state.add_org(NEW_KEY, name="Acme staging")
    response = admin.post(
        team_url("connection_create", world.team_a),
        {"label": "Staging", "base_url": world.simulator.url + "/", "api_key": NEW_KEY},
    )

    assert response.status_code == 302
    assert response["Location"] == team_url("connection_list", world.team_a)
    added = Connection.objects.get(team=world.team_a, label="Staging")
    assert added.base_url == world.simulator.url
    assert not added.key_untested
    assert added.api_key() == NEW_KEY
    assert added.masked_key == "••••QW12"
    listing = admin.get(response["Location"])
    html = text_of(listing)
    assert "Connection “Staging” added." in html
    assert "••••QW12" in html
    assert_no_key(html, NEW_KEY, KEY_A)


def test_admin_renames_and_moves_a_connection_without_touching_the_key(world, admin):
    connection = world.connection_a
    token_before = connection.api_key_encrypted
    page = admin.get(team_url("connection_edit", world.team_a, connection.pk))
    assert page.status_code == 200
    assert 'name="api_key"' not in text_of(page), "the edit form must not ask for the key"
    assert "••••A1B2" in text_of(page)

    response = admin.post(
        team_url("connection_edit", world.team_a, connection.pk),
        {"label": "Skyvern EU", "base_url": "https://eu.skyvern.example"},
    )

    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.label == "Skyvern EU"
    assert connection.base_url == "https://eu.skyvern.example"
    assert connection.api_key_encrypted == token_before
    assert connection.api_key() == KEY_A
    html = text_of(admin.get(response["Location"]))
    assert "Connection “Skyvern EU” saved." in html
    assert_no_key(html, KEY_A)


def test_a_rejected_edit_still_shows_the_saved_label(world, admin):
    response = admin.post(
        team_url("connection_edit", world.team_a, world.connection_a.pk),
        {"label": "Not saved", "base_url": "http://api.skyvern.com"},
    )
    assert response.status_code == 200
    html = text_of(response)
    assert "Edit “Skyvern”" in html
    assert 'value="Not saved"' in html, "what was typed stays in the field"
    world.connection_a.refresh_from_db()
    assert world.connection_a.label == "Skyvern"


def test_admin_replaces_the_key(world, admin):
    connection = world.connection_a
    token_before = connection.api_key_encrypted
    page = admin.get(team_url("connection_replace_key", world.team_a, connection.pk))
    assert page.status_code == 200
    assert "••••A1B2" in text_of(page)
    assert_no_key(text_of(page), KEY_A)
    world.simulator.state.add_org(NEW_KEY, name="Acme, new key")

    response = admin.post(
        team_url("connection_replace_key", world.team_a, connection.pk), {"api_key": NEW_KEY}
    )

    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.api_key() == NEW_KEY
    assert connection.api_key_last4 == "QW12"
    assert connection.api_key_encrypted != token_before
    html = text_of(admin.get(response["Location"]))
    assert "The API key of “Skyvern” was replaced." in html
    assert "••••QW12" in html
    assert_no_key(html, NEW_KEY, KEY_A)
    # The new key is the one used from now on.
    result = admin.post(team_url("connection_test", world.team_a, connection.pk), headers=HTMX)
    assert "OK" in text_of(result)


def test_admin_removes_a_connection_after_confirming(world, admin):
    connection = world.connection_a
    run_id = world.add_run(status="failed")
    confirm = admin.get(team_url("connection_delete", world.team_a, connection.pk))
    assert confirm.status_code == 200
    html = text_of(confirm)
    assert "Remove “Skyvern”?" in html
    assert "1 cached run " in html
    assert '<form method="post"' in html
    assert Connection.objects.filter(pk=connection.pk).exists(), "GET must not remove anything"

    response = admin.post(team_url("connection_delete", world.team_a, connection.pk))

    assert response.status_code == 302
    assert not Connection.objects.filter(pk=connection.pk).exists()
    assert not Run.objects.filter(run_id=run_id).exists()
    assert Connection.objects.filter(pk=world.connection_b.pk).exists()
    html = text_of(admin.get(response["Location"]))
    assert "Connection “Skyvern” and its cached runs were removed." in html
    assert "No connection yet" in html


# --- Test connection ---------------------------------------------------------


def break_key(world, settings):
    world.connection_a.set_api_key(WRONG_KEY)
    world.connection_a.save()


def break_url(world, settings):
    world.connection_a.base_url = f"http://127.0.0.1:{closed_port()}"
    world.connection_a.save()


def lose_encryption_key(world, settings):
    settings.CONSOLE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]


SCENARIOS = {
    "ok": (None, "OK", True),
    "key-rejected": (break_key, "Key rejected", False),
    "unreachable": (break_url, "Skyvern unreachable", False),
    "key-unreadable": (lose_encryption_key, "replace the key", False),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_test_connection_as_htmx_fragment(world, admin, settings, scenario):
    setup, words, ok = SCENARIOS[scenario]
    if setup:
        setup(world, settings)
    pk = world.connection_a.pk

    response = admin.post(team_url("connection_test", world.team_a, pk), headers=HTMX)

    assert response.status_code == 200
    html = text_of(response)
    assert "<html" not in html, "htmx gets the result fragment only"
    output = re.search(
        r'<output id="test-result-(\d+)" class="test-result (\w+)"[^>]*>(.*?)</output>', html, re.S
    )
    assert output, html
    assert output[1] == str(pk)
    assert output[2] == ("ok" if ok else "bad")
    assert words in output[3]
    assert_no_key(html, KEY_A, WRONG_KEY)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_test_connection_as_plain_form(world, admin, settings, scenario):
    setup, words, ok = SCENARIOS[scenario]
    if setup:
        setup(world, settings)

    response = admin.post(team_url("connection_test", world.team_a, world.connection_a.pk))

    assert response.status_code == 302
    assert response["Location"] == team_url("connection_list", world.team_a)
    page = admin.get(response["Location"])
    assert page.status_code == 200
    html = text_of(page)
    kind = "message-success" if ok else "message-error"
    message = re.search(rf'<p class="message {kind}">(.*?)</p>', html, re.S)
    assert message, html
    assert message[1].startswith("Skyvern: ")
    assert words in message[1]
    assert_no_key(html, KEY_A, WRONG_KEY)


def test_test_connection_does_not_leak_to_another_teams_org(world, admin):
    """Team A's key sees team A's organisation only (sanity check of the setup)."""
    response = admin.post(
        team_url("connection_test", world.team_a, world.connection_a.pk), headers=HTMX
    )
    assert "OK" in text_of(response)
    assert_no_key(text_of(response), KEY_A, KEY_B)


# --- the key at rest and on the pages ------------------------------------------


def test_api_key_is_encrypted_at_rest(world):
    table = Connection._meta.db_table
    with db_connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [world.connection_a.pk])  # noqa: S608
        row = cursor.fetchone()
        columns = [column[0] for column in cursor.description]
    stored = dict(zip(columns, row, strict=True))
    for name, value in stored.items():
        assert KEY_A not in str(value), f"the plain key is in column {name}"
        assert KEY_A[:-4] not in str(value), f"most of the key is in column {name}"
    assert stored["api_key_last4"] == "A1B2"
    assert stored["api_key_encrypted"].startswith("gAAAA"), "a Fernet token"
    assert decrypt_api_key(stored["api_key_encrypted"]) == KEY_A


def test_the_same_key_encrypts_differently_each_time(world):
    assert encrypt_api_key(KEY_A) != encrypt_api_key(KEY_A)


def test_repr_and_str_of_a_connection_never_show_the_key(world):
    connection = Connection.objects.get(pk=world.connection_a.pk)
    for text in (repr(connection), str(connection), connection.masked_key):
        assert_no_key(text, KEY_A)
    assert "••••A1B2" in repr(connection)
    assert connection.masked_key == "••••A1B2"


def test_no_connection_page_ever_shows_a_saved_key(world, admin):
    world.simulator.state.add_org(NEW_KEY, name="Acme staging")
    admin.post(
        team_url("connection_create", world.team_a),
        {"label": "Staging", "base_url": world.simulator.url, "api_key": NEW_KEY},
    )
    added = Connection.objects.get(label="Staging")
    pages = {
        "list": admin.get(team_url("connection_list", world.team_a)),
        "create": admin.get(team_url("connection_create", world.team_a)),
        "edit": admin.get(team_url("connection_edit", world.team_a, added.pk)),
        "key": admin.get(team_url("connection_replace_key", world.team_a, added.pk)),
        "delete": admin.get(team_url("connection_delete", world.team_a, added.pk)),
        "test (htmx)": admin.post(
            team_url("connection_test", world.team_a, added.pk), headers=HTMX
        ),
        "test (form)": admin.post(team_url("connection_test", world.team_a, added.pk), follow=True),
        "runs": admin.get(reverse("runs:run_list", args=[world.team_a.slug])),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        assert_no_key(text_of(response), NEW_KEY, KEY_A)
    for name in ("list", "edit", "key"):
        assert "••••QW12" in text_of(pages[name]), name
    assert "OK" in text_of(pages["test (htmx)"])
    assert "OK" in text_of(pages["test (form)"])


def password_input(html: str) -> str:
    match = re.search(r'<input type="password" name="api_key"[^>]*>', html)
    assert match, "the API key field is a password input"
    return match[0]


def test_a_rejected_form_does_not_echo_the_key(world, admin):
    response = admin.post(
        team_url("connection_create", world.team_a),
        {"label": "Staging", "base_url": "http://api.skyvern.com", "api_key": NEW_KEY},
    )
    assert response.status_code == 200
    html = text_of(response)
    assert "Skyvern must be reached over https://." in html
    assert "value=" not in password_input(html)
    assert_no_key(html, NEW_KEY)
    assert not Connection.objects.filter(label="Staging").exists()


def test_a_rejected_replacement_key_is_not_echoed(world, admin):
    bad_key = "sk-live has spaces-0123456789"
    response = admin.post(
        team_url("connection_replace_key", world.team_a, world.connection_a.pk),
        {"api_key": bad_key},
    )
    assert response.status_code == 200
    html = text_of(response)
    assert "That doesn&#x27;t look like a Skyvern API key." in html
    assert "value=" not in password_input(html)
    assert_no_key(html, bad_key, KEY_A)
    world.connection_a.refresh_from_db()
    assert world.connection_a.api_key() == KEY_A


def test_a_key_pasted_into_the_url_is_not_echoed_back(world, admin):
    response = admin.post(
        team_url("connection_create", world.team_a),
        {
            "label": "Staging",
            "base_url": f"https://support:{NEW_KEY}@api.skyvern.com",
            "api_key": NEW_KEY,
        },
    )
    assert response.status_code == 200
    html = text_of(response)
    assert "Put the API key in its own field, not in the URL." in html
    assert_no_key(html, NEW_KEY)
    assert not Connection.objects.filter(label="Staging").exists()


# --- base URL and label validation ---------------------------------------------

ALWAYS_OK = [
    "https://api.skyvern.com",
    "https://skyvern.example.com:8443/api",
    "https://API.Skyvern.com/",
]
NEVER_OK = [
    "http://api.skyvern.com",
    "http://10.0.0.5:8000",
    "http://192.168.1.20",
    "http://localhost.example.com",
    "http://127.0.0.1.nip.io",
    "ftp://api.skyvern.com",
    "https://user:secret@api.skyvern.com",
    "https://user@api.skyvern.com",
    "https://:secret@api.skyvern.com",
    "https://@api.skyvern.com",
    "http://user:secret@127.0.0.1:8000",
    "https://api.skyvern.com/?key=1",
    "https://",
]
LOOPBACK = [
    "http://127.0.0.1:8000",
    "http://localhost:8000",
    "http://LOCALHOST",
    "http://127.0.0.2:9000",
    "http://[::1]:8000",
]


@pytest.mark.parametrize("allow_loopback", [True, False])
@pytest.mark.parametrize("url", ALWAYS_OK)
def test_https_base_urls_are_accepted(settings, url, allow_loopback):
    settings.SKYVERN_ALLOW_LOOPBACK = allow_loopback
    assert validate_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize("allow_loopback", [True, False])
@pytest.mark.parametrize("url", NEVER_OK)
def test_bad_base_urls_are_rejected(settings, url, allow_loopback):
    from django.forms import ValidationError

    settings.SKYVERN_ALLOW_LOOPBACK = allow_loopback
    with pytest.raises(ValidationError):
        validate_base_url(url)


@pytest.mark.parametrize("url", LOOPBACK)
def test_http_to_loopback_only_while_allowed(settings, url):
    from django.forms import ValidationError

    settings.SKYVERN_ALLOW_LOOPBACK = True
    assert validate_base_url(url) == url
    settings.SKYVERN_ALLOW_LOOPBACK = False
    with pytest.raises(ValidationError, match="https://"):
        validate_base_url(url)


@pytest.mark.parametrize(
    ("allow_loopback", "url", "saved", "error"),
    [
        (True, "https://api.skyvern.com", True, None),
        (False, "https://api.skyvern.com", True, None),
        (True, "http://127.0.0.1:8000", True, None),
        (True, "http://localhost:8000", True, None),
        (False, "http://127.0.0.1:8000", False, "Skyvern must be reached over https://."),
        (False, "http://localhost:8000", False, "Skyvern must be reached over https://."),
        (True, "http://api.skyvern.com", False, "Skyvern must be reached over https://."),
        (True, "https://me:pw@api.skyvern.com", False, "Put the API key in its own field"),
    ],
)
def test_the_form_applies_the_base_url_rules(
    world, admin, settings, allow_loopback, url, saved, error
):
    settings.SKYVERN_ALLOW_LOOPBACK = allow_loopback
    response = admin.post(
        team_url("connection_create", world.team_a),
        {"label": "Other", "base_url": url, "api_key": NEW_KEY, **UNTESTED},
    )
    assert Connection.objects.filter(label="Other").exists() == saved
    if saved:
        assert response.status_code == 302
    else:
        assert response.status_code == 200
        assert error in text_of(response)
    # Editing applies the same rules.
    response = admin.post(
        team_url("connection_edit", world.team_a, world.connection_a.pk),
        {"label": "Skyvern", "base_url": url},
    )
    world.connection_a.refresh_from_db()
    assert (world.connection_a.base_url == url.rstrip("/")) == saved
    assert response.status_code == (302 if saved else 200)


@pytest.mark.parametrize("label", ["Skyvern", "skyvern", "  SKYVERN  "])
def test_a_duplicate_label_in_the_team_is_rejected(world, admin, label):
    response = admin.post(
        team_url("connection_create", world.team_a),
        {"label": label, "base_url": "https://api.skyvern.com", "api_key": NEW_KEY},
    )
    assert response.status_code == 200
    html = text_of(response)
    assert "This team already has a connection with that label." in html
    assert_no_key(html, NEW_KEY)
    assert Connection.objects.filter(team=world.team_a).count() == 1


def test_a_label_taken_at_the_same_moment_is_an_error_not_a_crash(world, admin, monkeypatch):
    """Two admins save the same label at once: both pass the check, the
    database's unique constraint stops the second; it gets the form error."""
    from console.teams.forms import ConnectionForm

    monkeypatch.setattr(ConnectionForm, "clean_label", lambda form: form.cleaned_data["label"])
    other = Connection(team=world.team_a, label="Billing", base_url="https://api.skyvern.com")
    other.set_api_key(NEW_KEY)
    other.save()

    created = admin.post(
        team_url("connection_create", world.team_a),
        {"label": "Skyvern", "base_url": "https://api.skyvern.com", "api_key": NEW_KEY, **UNTESTED},
    )
    renamed = admin.post(
        team_url("connection_edit", world.team_a, other.pk),
        {"label": "Skyvern", "base_url": "https://api.skyvern.com"},
    )

    for response in (created, renamed):
        assert response.status_code == 200
        assert "This team already has a connection with that label." in text_of(response)
        assert_no_key(text_of(response), NEW_KEY)
    assert Connection.objects.filter(team=world.team_a).count() == 2
    other.refresh_from_db()
    assert other.label == "Billing"


def test_renaming_onto_another_connections_label_is_rejected(world, admin):
    other = Connection(team=world.team_a, label="Billing", base_url="https://api.skyvern.com")
    other.set_api_key(NEW_KEY)
    other.save()
    response = admin.post(
        team_url("connection_edit", world.team_a, other.pk),
        {"label": "SKYVERN", "base_url": "https://api.skyvern.com"},
    )
    assert response.status_code == 200
    assert "This team already has a connection with that label." in text_of(response)
    other.refresh_from_db()
    assert other.label == "Billing"
    # Keeping its own label (in another case) is fine.
    response = admin.post(
        team_url("connection_edit", world.team_a, other.pk),
        {"label": "BILLING", "base_url": "https://api.skyvern.com"},
    )
    assert response.status_code == 302


def test_the_same_label_in_another_team_is_fine(world, admin):
    elsewhere = Connection(team=world.team_b, label="Billing", base_url="https://api.skyvern.com")
    elsewhere.set_api_key(KEY_B)
    elsewhere.save()
    response = admin.post(
        team_url("connection_create", world.team_a),
        {"label": "Billing", "base_url": "https://api.skyvern.com", "api_key": NEW_KEY, **UNTESTED},
    )
    assert response.status_code == 302
    assert Connection.objects.filter(label="Billing").count() == 2


# --- rotating the encryption keys --------------------------------------------------


def test_a_key_encrypted_under_an_old_key_survives_rotation(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CONSOLE_ENCRYPTION_KEYS = [old]
    token = encrypt_api_key(KEY_A)

    settings.CONSOLE_ENCRYPTION_KEYS = [new, old]
    assert decrypt_api_key(token) == KEY_A
    rotated = reencrypt_api_key(token)
    fresh = encrypt_api_key(KEY_B)

    settings.CONSOLE_ENCRYPTION_KEYS = [new]
    assert decrypt_api_key(rotated) == KEY_A
    assert decrypt_api_key(fresh) == KEY_B, "new encryptions use the first (newest) key"
    assert Fernet(new.encode()).decrypt(rotated.encode()).decode() == KEY_A
    with pytest.raises(ApiKeyUnreadable):
        decrypt_api_key(token)


def test_a_stored_connection_keeps_working_through_a_rotation(world, admin, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CONSOLE_ENCRYPTION_KEYS = [old]
    world.connection_a.set_api_key(KEY_A)
    world.connection_a.save()
    test_url = team_url("connection_test", world.team_a, world.connection_a.pk)

    settings.CONSOLE_ENCRYPTION_KEYS = [new, old]
    assert "OK" in text_of(admin.post(test_url, headers=HTMX))
    Connection.objects.filter(pk=world.connection_a.pk).update(
        api_key_encrypted=reencrypt_api_key(world.connection_a.api_key_encrypted)
    )

    settings.CONSOLE_ENCRYPTION_KEYS = [new]
    assert "OK" in text_of(admin.post(test_url, headers=HTMX))


def test_an_undecryptable_key_still_lets_the_pages_render(world, admin, settings):
    settings.CONSOLE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ApiKeyUnreadable):
        Connection.objects.get(pk=world.connection_a.pk).api_key()
    for name, args in [
        ("connection_list", []),
        ("connection_edit", [world.connection_a.pk]),
        ("connection_replace_key", [world.connection_a.pk]),
        ("connection_delete", [world.connection_a.pk]),
    ]:
        response = admin.get(team_url(name, world.team_a, *args))
        assert response.status_code == 200, name
    # Replacing the key is the way out.
    response = admin.post(
        team_url("connection_replace_key", world.team_a, world.connection_a.pk),
        {"api_key": KEY_A},
    )
    assert response.status_code == 302
    result = admin.post(
        team_url("connection_test", world.team_a, world.connection_a.pk), headers=HTMX
    )
    assert "OK" in text_of(result)


# --- Test connection when Skyvern misbehaves --------------------------------------

FAULTS = {
    "hangs": ({"hang_seconds": 3}, "No answer from Skyvern in time"),
    "http-500": ({"error_rates": {500: 1.0}}, "Skyvern had an internal error (HTTP 500)"),
    "rate-limited": ({"rate_limit_per_second": 1, "rate_limit_retry_after": 7}, "7 s"),
    "truncated-body": ({"truncate_body": 1.0}, "Skyvern"),
    "malformed-json": ({"malformed_json": 1.0}, "not as expected"),
    "drops-connection": ({"drop_connection": 1.0}, "Skyvern"),
    "redirects": ({"redirect_to": "https://elsewhere.example/"}, "redirect"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_test_connection_says_what_went_wrong_without_failing(world, admin, settings, fault):
    knobs, words = FAULTS[fault]
    settings.SKYVERN_READ_TIMEOUT = 0.5
    url = team_url("connection_test", world.team_a, world.connection_a.pk)
    world.simulator.state.configure(**knobs)
    if "rate_limit_per_second" in knobs:
        admin.post(url, headers=HTMX)  # uses up this second's allowance

    fragment = admin.post(url, headers=HTMX)
    plain = admin.post(url, follow=True)

    assert fragment.status_code == 200
    assert plain.status_code == 200
    for response in (fragment, plain):
        html = text_of(response)
        assert words in html, html
        assert "OK — " not in html
        # A key check is a read: nothing at Skyvern can have changed.
        assert "may or may not have acted" not in html
        assert_no_key(html, KEY_A)
    assert 'class="test-result bad"' in text_of(fragment)
    assert "message-error" in text_of(plain)
