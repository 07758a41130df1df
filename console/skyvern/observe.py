"""Watching the client's calls from outside, without the client knowing who
watches (the console's metrics register here; the client imports no Django).

An observer gets one `Call` per request sent to Skyvern: which endpoint, how
long until the answer (or the failure), and how it ended. Never the base URL,
the key, the run id or the body. An observer that raises is ignored: watching
must never change what a call does.
"""

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    operation: str  # "retry_run", "get_run", "list_runs"
    seconds: float
    outcome: str  # "ok", or the SkyvernError subclass's name


_observers: list[Callable[[Call], None]] = []
_lock = threading.Lock()


def calls_observe(observer: Callable[[Call], None]) -> Callable[[], None]:
    """Have `observer` called after every request; returns what stops it."""
    with _lock:
        _observers.append(observer)

    def stop() -> None:
        with _lock:
            if observer in _observers:
                _observers.remove(observer)

    return stop


def call_report(call: Call) -> None:
    for observer in list(_observers):
        # A broken observer must not break a retry.
        with contextlib.suppress(Exception):
            observer(call)
