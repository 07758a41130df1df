"""The Skyvern client of a team connection, over one pooled HTTP session each."""

import threading

import requests
from django.conf import settings

from console.skyvern import SkyvernClient

from .models import Connection

_sessions: dict[int, requests.Session] = {}
_sessions_lock = threading.Lock()


def _session_for(connection_id: int) -> requests.Session:
    with _sessions_lock:
        session = _sessions.get(connection_id)
        if session is None:
            session = _sessions[connection_id] = requests.Session()
        return session


def client_for(connection: Connection) -> SkyvernClient:
    """A client that calls `connection.base_url` with its decrypted key.

    Raises ApiKeyUnreadable (before anything is sent) when the stored key
    can't be decrypted with the configured encryption keys.
    """
    return SkyvernClient(
        connection.base_url,
        connection.api_key(),
        connect_timeout=settings.SKYVERN_CONNECT_TIMEOUT,
        read_timeout=settings.SKYVERN_READ_TIMEOUT,
        session=_session_for(connection.pk),
    )


def forget_session(connection_id: int) -> None:
    """Close a connection's pooled session (its URL or key changed, or it was removed)."""
    with _sessions_lock:
        session = _sessions.pop(connection_id, None)
    if session is not None:
        session.close()
