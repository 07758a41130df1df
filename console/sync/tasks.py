"""Background sync on Django's Tasks framework (the db_worker runs these).

Tasks take ids and call the sync service; nothing else happens here.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.tasks import task
from django.utils import timezone

from console.teams.models import Connection

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
    """Sync every connection incrementally, then book the next round."""
    try:
        for connection in Connection.objects.all():
            try:
                connection_sync(connection=connection)
            except Exception:
                log.exception("periodic sync of connection %s failed", connection.pk)
        return Connection.objects.count()
    finally:
        schedule_periodic_sync(delay=timedelta(seconds=settings.SYNC_INTERVAL_SECONDS))


def schedule_periodic_sync(*, delay: timedelta = timedelta(0)) -> bool:
    """Make sure exactly one periodic sync is waiting; True when one was booked."""
    from django_tasks_db.models import DBTaskResult

    with transaction.atomic():
        # The round that is running books its successor itself, in its `finally`.
        if DBTaskResult.objects.filter(
            task_path=sync_all_connections.module_path, status="READY"
        ).exists():
            return False
        sync_all_connections.using(run_after=timezone.now() + delay).enqueue()
    return True
