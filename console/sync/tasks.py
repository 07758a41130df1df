"""Background sync on Django's Tasks framework (the db_worker runs these).

Tasks take ids and call the sync service; nothing else happens here.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.tasks import task

from console.teams.models import Connection
from console.worker.chains import chain_beat, chain_book, chain_ensure

from .services import connection_sync

log = logging.getLogger(__name__)


@task
def sync_connection(connection_id: int, full: bool = False) -> str:
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None:
        return "The connection was removed."
    return connection_sync(connection=connection, full=full).summary()


@task
def sync_all_connections() -> int:
    """Sync every connection incrementally, then book the next round.

    One chain of these runs, kept going by every db_worker
    (`console.worker.chains`): a round that shows no sign of life for
    SYNC_ROUND_STALE_SECONDS is taken for dead and the next one is booked.
    """
    try:
        chain_beat(sync_all_connections)
        for connection in Connection.objects.all():
            try:
                connection_sync(connection=connection)
            except Exception:
                log.exception("periodic sync of connection %s failed", connection.pk)
            chain_beat(sync_all_connections)
        return Connection.objects.count()
    finally:
        schedule_periodic_sync(delay=timedelta(seconds=settings.SYNC_INTERVAL_SECONDS))


def schedule_periodic_sync(*, delay: timedelta = timedelta(0)) -> bool:
    """Book the next periodic sync round unless one is waiting; True when booked.
    Two callers at once book one round."""
    return chain_book(sync_all_connections, delay=delay)


def periodic_sync_ensure() -> str:
    """Start the periodic sync if it isn't going, or replace a round whose
    worker died (what every db_worker does); see `chain_ensure`."""
    return chain_ensure(
        sync_all_connections, stale_after=timedelta(seconds=settings.SYNC_ROUND_STALE_SECONDS)
    )
