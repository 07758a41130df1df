"""Whether a retry can re-use its run's browser session.

A retry copies the run's `browser_session_id`; once that session has closed
(or timed out), Skyvern starts a fresh browser instead, without the
session's cookies and logins. Asked of Skyvern only where a person is about
to decide on a retry (its confirmation step, a bulk preview, a failed run's
page once drawn, in its refresh), with a short wait; never while a card is
drawn on the runs page, and a retry never waits for it. Advice: when
Skyvern can't say, the retry says so and may still be sent.
"""

import logging
import time
from dataclasses import dataclass

from console.skyvern import BrowserSessionNotFound, SkyvernError
from console.teams.clients import client_for
from console.teams.models import Connection
from console.teams.secrets import ApiKeyUnreadable

log = logging.getLogger(__name__)

#: How long a person waits for Skyvern's answer about one session.
SESSION_CHECK_SECONDS = 3.0
#: A bulk preview asks about at most this many sessions, for at most this long.
PREVIEW_SESSIONS_CHECKED = 20
PREVIEW_SESSIONS_SECONDS = 6.0

OPEN, CLOSED, GONE, UNKNOWN = "open", "closed", "gone", "unknown"


def browser_session_state(connection, browser_session_id: str) -> str:
    """OPEN, CLOSED, GONE (Skyvern no longer has it) or UNKNOWN (couldn't ask)."""
    try:
        session = client_for(connection).get_browser_session(
            browser_session_id, read_timeout=SESSION_CHECK_SECONDS
        )
    except BrowserSessionNotFound:
        return GONE
    except (SkyvernError, ApiKeyUnreadable) as error:
        log.info(
            "browser session of connection %s unknown: %s", connection.pk, type(error).__name__
        )
        return UNKNOWN
    return CLOSED if session.closed else OPEN


def session_sentence(browser_session_id: str, state: str) -> str:
    """What a retry does with the run's browser session, in a support person's words."""
    if state == CLOSED:
        return (
            f"It re-uses browser session {browser_session_id}, which has closed: "
            "a fresh browser will be used."
        )
    if state == GONE:
        return (
            f"It re-uses browser session {browser_session_id}, which Skyvern no longer has: "
            "a fresh browser will be used."
        )
    if state == OPEN:
        return f"It re-uses browser session {browser_session_id}, which is still open."
    if state == UNKNOWN:
        return (
            f"It re-uses browser session {browser_session_id}; "
            "couldn't check the browser session with Skyvern just now."
        )
    return f"It re-uses browser session {browser_session_id}."


@dataclass(frozen=True)
class SessionCounts:
    """Of the runs to send that re-use a browser session: how many sessions
    have closed (a fresh browser will be used) and how many weren't checked."""

    closed: int = 0
    unchecked: int = 0


def browser_sessions_counted(rows) -> SessionCounts:
    """Of `rows` (each with `connection_id` and `browser_session_id`), how
    many re-use a session that has closed or is gone, and how many couldn't
    be checked (Skyvern failing, or past the preview's few questions)."""
    using = [row for row in rows if row.browser_session_id]
    if not using:
        return SessionCounts()
    connections = {
        c.pk: c for c in Connection.objects.filter(pk__in={r.connection_id for r in using})
    }
    states: dict[tuple[int, str], str] = {}
    deadline = time.monotonic() + PREVIEW_SESSIONS_SECONDS
    for row in using:
        key = (row.connection_id, row.browser_session_id)
        if key in states:
            continue
        if len(states) >= PREVIEW_SESSIONS_CHECKED or time.monotonic() > deadline:
            states[key] = UNKNOWN
            continue
        states[key] = browser_session_state(connections[row.connection_id], key[1])
    closed = unchecked = 0
    for row in using:
        state = states[(row.connection_id, row.browser_session_id)]
        closed += state in (CLOSED, GONE)
        unchecked += state == UNKNOWN
    return SessionCounts(closed=closed, unchecked=unchecked)
