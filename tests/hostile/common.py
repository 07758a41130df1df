"""What the hostile-input properties share: the Hypothesis settings, the
strategies of nasty text, and the "nothing changed" snapshot.

Every property runs many examples against one `world` (built once per test
function); each example runs inside a savepoint that is rolled back, so an
example that legitimately changes rows (a valid form, a signed run) leaves
nothing for the next one. What an example must not change is compared with
a snapshot of every row the console keeps, plus the simulator's retry counts.
"""

import os
import string
from contextlib import contextmanager

from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from console.bulk.models import BulkRetryItem, BulkRetryJob
from console.runs.models import Retry, Run
from console.sync.models import ConnectionSync
from console.teams.models import Connection, Membership, Team

# Sized so that the whole hostile set runs in well under a minute; no example
# database is written into the work tree (.hypothesis/), and a slow first
# request (template compilation) is not a failure.
HOSTILE = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# HOSTILE_SCALE=10 tries ten times as many examples (a deeper search, minutes).
SCALE = max(1, int(os.environ.get("HOSTILE_SCALE", "1")))


def examples(n: int):
    return settings(HOSTILE, max_examples=n * SCALE)


# --- nasty text -----------------------------------------------------------------------

# What SQL LIKE, SQLite GLOB and FTS5 queries, shells and HTML treat specially.
METACHARACTERS = list("%_*?[]^-!\"'\\\x00;:()<>&|{}~`$#@/.,=+ \t\n\r") + [
    "\u0000",
    "\u00a0",
    "\u200b",
    "\u202e",
    "\ufeff",
]
TRICKS = [
    "",
    " ",
    "%",
    "_",
    "%%",
    "%_%",
    "*",
    "?",
    "[",
    "]",
    "[]",
    "[a-z]",
    "[^a]",
    "[!a]",
    "\\",
    "\\%",
    "\\_",
    '"',
    "'",
    "''",
    "\x00",
    "a\x00b",
    "' OR 1=1 --",
    "'; DROP TABLE runs_run; --",
    '" OR ""="',
    "NEAR(a b)",
    "a AND b",
    "a OR b",
    "NOT a",
    "search_text:a",
    "^a",
    "a*",
    "*a*",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "{{ team }}",
    "{% debug %}",
    "İ",
    "ß",
    "ǅ",
    "\u212a",  # KELVIN SIGN: lowercases to ASCII k
    "ﬃ",
    "😀",
    "e\u0301",
    "\ud7ff",
    "wr_",
    "WR_",
]
nasty_text = st.one_of(
    st.sampled_from(TRICKS),
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(METACHARACTERS + list("abcAB1")), max_size=20),
    st.builds(
        lambda s, n: s * n, st.sampled_from(["a", "%", "é", "[", "\\"]), st.integers(200, 6000)
    ),
)
# Text that can travel in a URL query or form field (a lone surrogate can't be
# encoded as UTF-8 by any client).
URL_SAFE_ALPHABET = string.ascii_letters + string.digits + "_-"


# --- nothing changed --------------------------------------------------------------------


def rows() -> dict:
    """Every row the console keeps, every column."""
    models = (Team, Membership, Connection, ConnectionSync, Run, Retry, BulkRetryJob, BulkRetryItem)
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in models}


def snapshot(world) -> tuple:
    return rows(), world.simulator.state.retry_counts()


@contextmanager
def rolled_back():
    """One example's database changes, undone when it ends (pass or fail)."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def assert_not_server_error(response, what: str = ""):
    assert response.status_code < 500, f"{what}: HTTP {response.status_code}"
