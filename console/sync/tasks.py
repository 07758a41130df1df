"""Background sync on Django's Tasks framework (the db_worker runs these).

Tasks take ids and call the sync service; nothing else happens here.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.tasks import task

from console.background.chains import Chain
from console.teams.models import Connection

from .services import connection_sync

log = logging.getLogger(__name__)

#: Every connection synced every SYNC_INTERVAL_SECONDS: one chain of rounds,
#: kept going by every db_worker; a round that shows no sign of life for
#: SYNC_ROUND_STALE_SECONDS is taken for dead and the next one is booked.
PERIODIC_SYNC = Chain(
    "periodic sync",
    every=lambda: timedelta(seconds=settings.SYNC_INTERVAL_SECONDS),
    stale_after=lambda: timedelta(seconds=settings.SYNC_ROUND_STALE_SECONDS),
)


@task
def sync_connection(connection_id: int, full: bool = False) -> str:
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None:
        return "The connection was removed."
    return connection_sync(connection=connection, full=full).summary()


@PERIODIC_SYNC.bind
@task
def sync_all_connections() -> int:
    """Sync every connection incrementally, then book the next round."""
    try:
        PERIODIC_SYNC.beat()
        for connection in Connection.objects.all():
            try:
                connection_sync(connection=connection)
            except Exception:
                log.exception("periodic sync of connection %s failed", connection.pk)
            PERIODIC_SYNC.beat()
        return Connection.objects.count()
    finally:
        PERIODIC_SYNC.book_next()
