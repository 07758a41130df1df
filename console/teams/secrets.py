"""Encryption of the teams' Skyvern API keys at rest.

MultiFernet over CONSOLE_ENCRYPTION_KEYS: the first key encrypts, every key
decrypts, so a new key can be put first and the old ones dropped once every
stored key has been re-encrypted.
"""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class ApiKeyUnreadable(Exception):
    """The stored key was encrypted with a key this console no longer has."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.CONSOLE_ENCRYPTION_KEYS))


def encrypt_api_key(api_key: str) -> str:
    return fernet().encrypt(api_key.encode()).decode()


def decrypt_api_key(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ApiKeyUnreadable(
            "The stored API key cannot be decrypted with the configured encryption keys."
        ) from None


def reencrypt_api_key(token: str) -> str:
    return fernet().rotate(token.encode()).decode()
