"""`manage.py rotate_encryption_keys`: every stored key re-encrypted with the
newest encryption key, so that the old ones can be dropped."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from console.teams.models import Connection
from console.teams.secrets import ApiKeyUnreadable
from tests.conftest import KEY_A, KEY_B

EXTRA_KEY = "sk-live-third-org-key-5566778899-QQ77"


def rotate() -> str:
    out = StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    return out.getvalue()


def test_after_rotation_every_key_decrypts_with_the_new_key_alone(world, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CONSOLE_ENCRYPTION_KEYS = [old]
    third = Connection(team=world.team_a, label="Third", base_url="https://api.skyvern.com")
    third.set_api_key(EXTRA_KEY)
    third.save()
    for connection, key in ((world.connection_a, KEY_A), (world.connection_b, KEY_B)):
        connection.set_api_key(key)  # now under the old key
        connection.save()
    before = dict(Connection.objects.values_list("pk", "api_key_encrypted"))
    updated_at = dict(Connection.objects.values_list("pk", "updated_at"))

    settings.CONSOLE_ENCRYPTION_KEYS = [new, old]
    output = rotate()

    assert "Re-encrypted 3 API key(s)" in output
    after = dict(Connection.objects.values_list("pk", "api_key_encrypted"))
    assert all(after[pk] != before[pk] for pk in before)
    # Not an edit: the connections' "updated" times stay as they were.
    assert dict(Connection.objects.values_list("pk", "updated_at")) == updated_at

    settings.CONSOLE_ENCRYPTION_KEYS = [new]
    keys = [c.api_key() for c in Connection.objects.all()]
    assert sorted(keys) == sorted([KEY_A, KEY_B, EXTRA_KEY])
    assert Connection.objects.get(pk=world.connection_a.pk).api_key() == KEY_A

    # Without the rotation, the old key could not have been dropped.
    settings.CONSOLE_ENCRYPTION_KEYS = [old]
    with pytest.raises(ApiKeyUnreadable):
        Connection.objects.get(pk=world.connection_a.pk).api_key()


def test_rotating_twice_changes_nothing_but_the_ciphertext(world, settings):
    configured = list(settings.CONSOLE_ENCRYPTION_KEYS)
    settings.CONSOLE_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *configured]
    rotate()
    rotate()
    assert Connection.objects.get(pk=world.connection_a.pk).api_key() == KEY_A
    assert Connection.objects.get(pk=world.connection_b.pk).api_key() == KEY_B


def test_a_key_no_configured_key_can_read_stops_the_rotation_with_nothing_changed(world, settings):
    configured = list(settings.CONSOLE_ENCRYPTION_KEYS)
    settings.CONSOLE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # since lost
    world.connection_b.set_api_key(KEY_B)
    world.connection_b.save()
    settings.CONSOLE_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *configured]
    before = sorted(Connection.objects.values_list("pk", "api_key_encrypted"))

    with pytest.raises(CommandError, match=rf"connection ids {world.connection_b.pk}\b"):
        rotate()

    assert sorted(Connection.objects.values_list("pk", "api_key_encrypted")) == before


def test_rotating_with_no_connections_says_so(db):
    assert "Re-encrypted 0 API key(s)" in rotate()
