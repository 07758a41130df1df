"""What every `manage.py db_worker` does beside running tasks: say that it is
alive (`console.background.workers`) and keep the console's task chains going
(`console.background.chains`).

A thread, not a task: a task can't notice that the chain it belongs to has
stopped, and the thread goes on while the worker runs a long task. It dies
with its worker, so several workers, or none for a while, are both fine.
"""

import logging
import threading
from collections.abc import Callable

from django.db import connection as db_connection

from .chains import CHAINS, chains_keep
from .workers import this_worker, worker_beat, worker_gone

log = logging.getLogger(__name__)


def check_every() -> float:
    """Seconds between two looks (at most 30, and no more than the shortest
    chain's interval); a broken chain is noticed this late at most (after its
    round's own limit)."""
    shortest = min((chain.every().total_seconds() for chain in CHAINS), default=30)
    return float(max(1, min(30, shortest)))


def _keep(stop: threading.Event, worker: str) -> None:
    while True:
        try:
            worker_beat(worker)
            chains_keep()
        except Exception:
            # The database is away (restart, failover): look again later.
            log.exception("could not check the periodic tasks; trying again")
        finally:
            db_connection.close()
        if stop.wait(check_every()):
            return


def keeper_start() -> Callable[[], None]:
    """Start keeping the chains (and beating for this worker, for health
    checks) in a daemon thread; returns what stops it: after that, this
    worker no longer counts as alive."""
    stop = threading.Event()
    worker = this_worker()
    thread = threading.Thread(target=_keep, args=(stop, worker), name="chain-keeper", daemon=True)
    thread.start()

    def keeper_stop() -> None:
        stop.set()
        # Its last beat must not land after the worker is marked gone.
        thread.join(timeout=30)
        try:
            worker_gone(worker)
        finally:
            db_connection.close()

    return keeper_stop
