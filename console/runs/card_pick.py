"""A run card's checkbox for a bulk retry.

It belongs to the bulk app, whose selection names its form and field: the
bulk app registers how to draw it (from its AppConfig.ready), so that the
runs app draws it without importing the app above it. With nothing
registered, cards have no checkbox. This module imports nothing, so an
AppConfig can import it before the apps are ready.
"""

from collections.abc import Callable

_drawer: Callable[[int, str], str] | None = None


def card_pick_register(draw: Callable[[int, str], str]) -> None:
    """`draw(pk, run_id)` returns safe markup (it escapes the run id itself)."""
    global _drawer
    _drawer = draw


def card_pick(pk: int, run_id: str) -> str:
    return _drawer(pk, run_id) if _drawer else ""
