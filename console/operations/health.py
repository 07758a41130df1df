"""How a deployment stands, read from the database: what `/readyz`, the
metrics and `manage.py doctor` all report.

Ready means: the database answers, and a `manage.py db_worker` showed a sign
of life within READY_WORKER_SECONDS (0: no worker needed). Stale syncs are
reported but do not make the console unready: taking every web process out
of its load balancer because Skyvern is down would hide the cached runs that
support staff need most then.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from console.background.workers import worker_last_seen, workers_seen_since
from console.sync.models import ConnectionSync
from console.teams.models import Connection

DEFAULT_READY_WORKER_SECONDS = 120


def ready_worker_seconds() -> int:
    return int(getattr(settings, "READY_WORKER_SECONDS", DEFAULT_READY_WORKER_SECONDS))


def database_reachable() -> bool:
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        return False
    return True


def age_seconds(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else max(0.0, (now - at).total_seconds())


@dataclass(frozen=True)
class ConnectionHealth:
    """One connection, as operators (not support staff) see it."""

    team_slug: str
    label: str
    last_sync_age: float | None  # seconds since the last successful sync; None: never
    last_sync_failed: bool  # the newest sync ended in an error
    key_untested: bool


def connections_health(now: datetime | None = None) -> list[ConnectionHealth]:
    now = now or timezone.now()
    syncs = {
        sync.connection_id: sync
        for sync in ConnectionSync.objects.only("connection_id", "last_success_at", "last_error_at")
    }
    found = []
    for conn in Connection.objects.select_related("team").order_by("pk"):
        sync = syncs.get(conn.pk)
        success = sync.last_success_at if sync else None
        error = sync.last_error_at if sync else None
        found.append(
            ConnectionHealth(
                team_slug=conn.team.slug,
                label=conn.label,
                last_sync_age=age_seconds(success, now),
                last_sync_failed=error is not None and (success is None or error > success),
                key_untested=conn.key_untested,
            )
        )
    return found


def sync_stale_seconds() -> int:
    """A connection whose last good sync is older than this is behind: three
    periodic rounds missed."""
    return 3 * settings.SYNC_INTERVAL_SECONDS


@dataclass(frozen=True)
class Readiness:
    database: bool
    worker_required_within: int
    worker_last_seen_age: float | None
    workers_alive: int
    connections: list[ConnectionHealth]

    @property
    def worker_ok(self) -> bool:
        if not self.worker_required_within:
            return True
        age = self.worker_last_seen_age
        return age is not None and age <= self.worker_required_within

    @property
    def ready(self) -> bool:
        return self.database and self.worker_ok

    def public(self) -> dict:
        """What anyone may read: states, counts and ages, nothing that names a
        team, a connection, a host or a person (connections are numbered)."""
        stale = sync_stale_seconds()
        return {
            "ready": self.ready,
            "database": "ok" if self.database else "unreachable",
            "worker": {
                "ok": self.worker_ok,
                "required_within_seconds": self.worker_required_within,
                "last_seen_seconds_ago": _rounded(self.worker_last_seen_age),
                "alive": self.workers_alive,
            },
            "connections": [
                {
                    "connection": number,
                    "last_sync_seconds_ago": _rounded(health.last_sync_age),
                    "last_sync_failed": health.last_sync_failed,
                    "behind": health.last_sync_age is None or health.last_sync_age > stale,
                }
                for number, health in enumerate(self.connections, start=1)
            ],
        }


def _rounded(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds)


def readiness() -> Readiness:
    """The deployment's readiness; never raises for a database that is away."""
    required = ready_worker_seconds()
    if not database_reachable():
        return Readiness(False, required, None, 0, [])
    try:
        now = timezone.now()
        alive_window = required or DEFAULT_READY_WORKER_SECONDS
        return Readiness(
            database=True,
            worker_required_within=required,
            worker_last_seen_age=age_seconds(worker_last_seen(), now),
            workers_alive=workers_seen_since(now - timedelta(seconds=alive_window)),
            connections=connections_health(now),
        )
    except DatabaseError:
        return Readiness(False, required, None, 0, [])
