"""What every `manage.py db_worker` does beside running tasks: keep the
console's task chains going (`console.worker.chains`).

A thread, not a task: a task can't notice that the chain it belongs to has
stopped, and the thread goes on while the worker runs a long task. It dies
with its worker, so several workers, or none for a while, are both fine.
"""

import logging
import threading

from django.conf import settings
from django.db import connection as db_connection

log = logging.getLogger(__name__)


def check_every() -> float:
    """Seconds between two looks; a broken chain is noticed this late at most
    (after its round's own limit)."""
    return float(max(1, min(30, settings.SYNC_INTERVAL_SECONDS)))


def chains_keep() -> dict[str, str]:
    """One look at every chain, booking what is missing; what each one was."""
    from console.bulk.tasks import bulk_watchdog_ensure
    from console.sync.tasks import periodic_sync_ensure

    return {
        "periodic sync": periodic_sync_ensure(),
        "bulk retry watchdog": bulk_watchdog_ensure(),
    }


def _keep(stop: threading.Event) -> None:
    while True:
        try:
            chains_keep()
        except Exception:
            # The database is away (restart, failover): look again later.
            log.exception("could not check the periodic tasks; trying again")
        finally:
            db_connection.close()
        if stop.wait(check_every()):
            return


def keeper_start() -> threading.Event:
    """Start keeping the chains in a daemon thread; set the event to stop it."""
    stop = threading.Event()
    threading.Thread(target=_keep, args=(stop,), name="chain-keeper", daemon=True).start()
    return stop
