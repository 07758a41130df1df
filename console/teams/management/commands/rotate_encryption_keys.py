"""Re-encrypt every stored API key with the newest CONSOLE_ENCRYPTION_KEYS key.

Put a new key first in CONSOLE_ENCRYPTION_KEYS (keeping the old ones after
it), run this, then drop the old keys: every stored key then decrypts with
the new key alone. Running it twice changes nothing but the ciphertexts.
"""

from cryptography.fernet import InvalidToken
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from console.teams.models import Connection
from console.teams.secrets import reencrypt_api_key


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored Skyvern API key with the first key of "
        "CONSOLE_ENCRYPTION_KEYS, so that the older keys can be removed."
    )

    def handle(self, *args, **options):
        with transaction.atomic():
            # Locked: a key replaced meanwhile would be overwritten with the old one.
            connections = list(
                Connection.objects.select_for_update()
                .order_by("pk")
                .only("pk", "api_key_encrypted")
            )
            unreadable = []
            for connection in connections:
                try:
                    connection.api_key_encrypted = reencrypt_api_key(connection.api_key_encrypted)
                except InvalidToken:
                    unreadable.append(connection.pk)
            if unreadable:
                # Nothing is written: the keys that can't be read need the old
                # encryption key back in CONSOLE_ENCRYPTION_KEYS first.
                raise CommandError(
                    f"{len(unreadable)} stored API key(s) can't be decrypted with any key in "
                    "CONSOLE_ENCRYPTION_KEYS (connection ids "
                    f"{', '.join(map(str, unreadable))}); nothing was changed. Put the key "
                    "they were encrypted with back in CONSOLE_ENCRYPTION_KEYS and run again."
                )
            Connection.objects.bulk_update(connections, ["api_key_encrypted"], batch_size=500)
        self.stdout.write(
            self.style.SUCCESS(
                f"Re-encrypted {len(connections)} API key(s) with the newest encryption key. "
                "The older keys can now be removed from CONSOLE_ENCRYPTION_KEYS."
            )
        )
