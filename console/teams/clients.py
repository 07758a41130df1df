"""The Skyvern client of a team connection, over one pooled HTTP session each.

Every new TCP connection a session opens goes through `GuardedAdapter`: the
host is resolved, every address it resolves to is checked against the rules
of hosts.py, and the socket connects to one of exactly those checked
addresses. A host that resolves to a private or metadata address (for
instance after its DNS was changed: "DNS rebinding") is refused before a byte
is sent, with HostNotAllowed.

Limits: a connection already pooled to a host is reused without a new lookup
(as any HTTP client would; it stays bound to the address that was checked);
and when an egress proxy is configured through HTTPS_PROXY/HTTP_PROXY, the
proxy, not the console, resolves the host, so the proxy must refuse private
destinations itself. Redirects are never followed (SkyvernClient), so the key
goes only to the connection's own host.
"""

import socket
import threading

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from console.skyvern import SkyvernClient

from .hosts import vetted_addresses
from .models import Connection


class _GuardedConnectionMixin:
    """urllib3's `_new_conn`, connecting only to addresses hosts.py allows."""

    def _new_conn(self) -> socket.socket:
        try:
            infos = vetted_addresses(
                self._dns_host, self.port, urllib3_connection.allowed_gai_family()
            )
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from error
        last_error: OSError | None = None
        for *_, sockaddr in infos:
            try:
                # An address literal: create_connection does no second lookup.
                return urllib3_connection.create_connection(
                    (sockaddr[0], self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as error:
                raise ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
                ) from error
            except OSError as error:
                last_error = error
        raise NewConnectionError(
            self, f"Failed to establish a new connection: {last_error}"
        ) from last_error


class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """A requests transport whose connections pass the hosts.py address check."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool,
            "https": GuardedHTTPSConnectionPool,
        }


def guarded_session() -> requests.Session:
    session = requests.Session()
    session.mount("http://", GuardedAdapter())
    session.mount("https://", GuardedAdapter())
    return session


_sessions: dict[int, requests.Session] = {}
_sessions_lock = threading.Lock()


def _session_for(connection_id: int) -> requests.Session:
    with _sessions_lock:
        session = _sessions.get(connection_id)
        if session is None:
            session = _sessions[connection_id] = guarded_session()
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
