"""Indexed substring search over runs, one answer per database.

PostgreSQL: `search_text LIKE '%term%'` served by a pg_trgm GIN index (the
planner picks it for rare terms and walks the newest-first index, filtering,
for common ones).
SQLite: an FTS5 table with the trigram tokenizer mirrors `search_text`
(kept in step by triggers); GLOB (or LIKE without ESCAPE) on it uses the
trigram index.
Both are created by migration 0002 (which names FTS_TABLE itself).

SQLite's planner can't weigh the FTS table against the newest-first index,
so `search_filter` asks the FTS index first how many runs (in any team)
match, counting a trigram phrase up to SUBQUERY_LIMIT, and picks one of
three forms:
- a rare term (at most PROBE_LIMIT, fetched by GLOB, which is exact)
  becomes `id IN (those ids)`: the page and its count then touch only
  those rows;
- a term of middling frequency (at most SUBQUERY_LIMIT) becomes
  `id IN (SELECT rowid FROM the FTS table WHERE ...)`: SQLite collects the
  matches once and looks each up by id, where a scan would make the capped
  count walk the team's whole history when the team holds few of them;
- a common term becomes `search_text LIKE '%term%'` on the runs table: the
  page walks the (team[, status], created_at, id) index newest first and
  stops after one page of matches, instead of collecting and sorting every
  match as a join on the FTS table or the subquery would.
docs/performance.md (changes 1, 2 and 13) has the measurements behind each
form. All forms select exactly the same runs. The probe runs when the filter is
built, so a run stored in the instant between probe and query may be
missed by that one request.
"""

from django.db import DatabaseError, connections
from django.db.models import Q
from django.db.models.expressions import RawSQL

FTS_TABLE = "runs_run_search"


def glob_pattern(text: str) -> str:
    """`*text*` for GLOB, with GLOB's special characters matched literally.

    GLOB, not LIKE ... ESCAPE: FTS5's trigram index serves LIKE only without
    an ESCAPE clause; with one, SQLite scans the whole FTS table on every
    search (docs/performance.md, change 1). GLOB is case-sensitive; both
    sides are lowercase.
    """
    escaped = "".join(f"[{c}]" if c in "*?[" else c for c in text.lower())
    return f"*{escaped}*"


# Up to PROBE_LIMIT FTS matches SQLite searches by the ids, up to SUBQUERY_LIMIT
# by the FTS table as a subquery, above it by scanning newest first.
PROBE_LIMIT = 1000
SUBQUERY_LIMIT = 3000
# The trigram index can't serve shorter terms.
MIN_INDEXED_LENGTH = 3


def search_filter(db_alias: str, text: str) -> Q:
    text = text.strip()
    if not text:
        return Q()
    term = text.lower()
    if "\x00" in term:
        # No run's search text holds a NUL (forms and webhooks refuse one, and
        # PostgreSQL can't store one), and SQLite's LIKE would stop reading the
        # pattern at it and match every run.
        return Q(pk__in=[])
    connection = connections[db_alias]
    if connection.vendor == "sqlite" and len(term) >= MIN_INDEXED_LENGTH:
        matching = f"SELECT rowid FROM {FTS_TABLE} WHERE search_text GLOB %s"
        pattern = glob_pattern(term)
        about = _fts_phrase_count(connection, term, SUBQUERY_LIMIT + 1)
        if about is None or about <= PROBE_LIMIT:
            with connection.cursor() as cursor:
                cursor.execute(f"{matching} LIMIT %s", [pattern, PROBE_LIMIT + 1])
                ids = [row[0] for row in cursor.fetchall()]
            if len(ids) <= PROBE_LIMIT:
                return Q(id__in=ids)
        if about is not None and about <= SUBQUERY_LIMIT:
            return Q(id__in=RawSQL(matching, [pattern]))
    # Django escapes % and _ for `contains`; search_text is stored lowercased.
    return Q(search_text__contains=term)


def _fts_phrase_count(connection, term: str, limit: int) -> int | None:
    """About how many runs hold `term`, counted up to `limit`, to choose how
    to search (never what is found). A trigram phrase MATCH reads the index
    alone, where GLOB rechecks each candidate's text, so counting this far
    costs less than the GLOB probe (docs/performance.md, change 13)."""
    phrase = '"' + term.replace('"', '""') + '"'
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {FTS_TABLE} "
                f"WHERE {FTS_TABLE} MATCH %s LIMIT %s)",
                [phrase, limit],
            )
            return cursor.fetchone()[0]
    except DatabaseError:
        return None  # a phrase FTS5 can't parse: choose by the GLOB probe alone
