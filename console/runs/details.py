"""What the run detail page shows, and how it is read without loading it whole.

The page must stay fast whatever Skyvern stored: `raw` and `output` can be
megabytes of JSON, so neither is loaded. The database hands over only the
few parts of `raw` the page shows (one pass over it) and the size and start
of `output`.
"""

import json
from datetime import datetime
from urllib.parse import unquote, urlsplit

from django.db import connection
from django.db.models import F, Func, JSONField, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from .models import ActionKind, Retry, RetryState, Run, RunAction
from .templatetags.run_detail import safe_http_url

DETAIL_DEFERRED = ("raw", "output", "search_text")
# Of a run linked to another (the run it retried, the run a retry made) and of
# the people who asked, the page shows only these: a linked run's row carries
# Skyvern's JSON, which can be megabytes.
LINKED_RUN_FIELDS = ("run_id", "status", "app_url", "failure_reason", "finished_at")
PERSON_FIELDS = ("username",)
# The parts of Skyvern's JSON (Run.raw) the page shows, in this order.
RAW_PARTS = (
    ("errors",),
    ("downloaded_files",),
    ("step_count",),
    ("recording_archived",),
    ("run_request", "parameters"),
)
# Output up to this many characters of JSON is parsed and pretty-printed;
# beyond it only its start is read, and re-indented as it is.
OUTPUT_PARSED_UP_TO = 100_000
# At most this much pretty-printed output is put on the page.
OUTPUT_SHOWN = 20_000
# Longer output is folded in a <details>.
OUTPUT_FOLD_LINES = 25
OUTPUT_FOLD_CHARS = 2_000
VALUE_CHARS = 200  # a parameter or error field value, shortened
ITEMS_SHOWN = 50  # errors, screenshots, files, parameters: at most this many
CHAIN_SHOWN = 25  # runs up the retry chain


class _RawParts(Func):
    """Several parts of a JSON column as one JSON array, in one pass over it
    (one JSON_EXTRACT per part would parse a multi-megabyte `raw` each time).
    `without` names a big top-level key none of the parts is in (PostgreSQL
    then detoasts the column once and drops that key before looking inside)."""

    output_field = JSONField()

    def __init__(self, field: str, paths, *, without: str):
        super().__init__(F(field))
        self.paths = paths
        self.without = without

    def as_sql(self, compiler, connection, **extra):
        # SQLite and MySQL: JSON_EXTRACT with several paths answers an array.
        sql, params = compiler.compile(self.get_source_expressions()[0])
        paths = ["$" + "".join(f'."{key}"' for key in path) for path in self.paths]
        placeholders = ", ".join(["%s"] * len(paths))
        return f"JSON_EXTRACT({sql}, {placeholders})", (*params, *paths)

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.get_source_expressions()[0])
        parts = ", ".join(["s.r #> %s::text[]"] * len(self.paths))
        # OFFSET 0 keeps the subquery from being inlined, so `r` is computed once.
        # Made of the ORM's own SQL and constants; every value is a parameter.
        query = f"(SELECT jsonb_build_array({parts}) FROM (SELECT ({sql}) - %s AS r OFFSET 0) s)"  # noqa: S608
        return query, (*(list(path) for path in self.paths), *params, self.without)


def _output_size_and_head(run: Run) -> tuple[int | None, str | None]:
    """How many characters the run's output has as JSON, and the first
    OUTPUT_PARSED_UP_TO of them; (None, None) when it has none.

    The output is turned into text once, in the database (PostgreSQL would
    serialise a jsonb twice for LENGTH and SUBSTR of the same expression; the
    OFFSET 0 keeps it from inlining the subquery), and never sent whole.
    """
    inner = Run.objects.filter(pk=run.pk).annotate(text=Cast("output", TextField()))
    inner_sql, params = inner.order_by().values("text").query.sql_with_params()
    fence = " OFFSET 0" if connection.vendor == "postgresql" else ""
    # Made of the ORM's own SQL and constants; every value is a parameter.
    sql = f"SELECT LENGTH(o.text), SUBSTR(o.text, 1, %s) FROM ({inner_sql}{fence}) o"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, (OUTPUT_PARSED_UP_TO, *params))
        row = cursor.fetchone()
    return (row[0], row[1]) if row else (None, None)


def all_fields_and(model, **related) -> list[str]:
    """Every field of `model` plus only the named fields of related objects,
    for only(): `related` maps a relation to the fields to load of it."""
    fields = [field.name for field in model._meta.concrete_fields]
    return fields + [f"{rel}__{name}" for rel, names in related.items() for name in names]


def detail_queryset(user, team, run_id):
    return (
        Run.objects.restrict(user)
        .filter(team=team, run_id=run_id)
        .select_related("connection", "retried_by", "retried_from")
        .only(*all_fields_and(Run, retried_by=PERSON_FIELDS, retried_from=LINKED_RUN_FIELDS))
        .defer(*DETAIL_DEFERRED)
        .annotate(raw_parts=_RawParts("raw", RAW_PARTS, without="output"))
    )


def detail_context(team, run: Run) -> dict:
    """What the detail page shows of a run loaded with `detail_queryset`."""
    parts = run.raw_parts if isinstance(run.raw_parts, list) else []
    errors, files, step_count, archived, parameters = [*parts, *[None] * len(RAW_PARTS)][:5]
    return {
        "timeline": _timeline(run),
        "total": (run.finished_at - run.created_at) if run.finished_at else None,
        "step_count": step_count if type(step_count) is int else None,
        "errors": _errors(errors),
        "output": _output(*_output_size_and_head(run)),
        "screenshots": [_link(url) for url in (run.screenshot_urls or [])[:ITEMS_SHOWN]],
        "screenshots_more": max(0, len(run.screenshot_urls or []) - ITEMS_SHOWN),
        "files": _files(files),
        "recording": _recording(run.recording_url, archived is True),
        "app": _link(run.app_url),
        "parameters": _parameters(parameters),
        "attempts": _attempts(run),
        **_lineage(team, run),
    }


def _when(value):
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _attempts(run: Run) -> list[dict]:
    """Skyvern's own attempts at the run, oldest first, when it made more
    than one or means to make another (one attempt is the run itself)."""
    rows = run.attempts if isinstance(run.attempts, list) else []
    if len(rows) < 2 and not run.skyvern_retries:
        return []
    return [
        {
            "number": row.get("number"),
            "status": row.get("status") or "",
            "error_codes": [_short(code, 80) for code in row.get("error_codes") or []],
            "failure_reason": _short(row.get("failure_reason") or ""),
            "retry_decision": row.get("retry_decision") or "",
            "decision_reason": _short(row.get("decision_reason") or ""),
            "started_at": _when(row.get("started_at")),
            "finished_at": _when(row.get("finished_at")),
            "next_attempt_at": _when(row.get("next_attempt_at")),
        }
        for row in rows[:ITEMS_SHOWN]
        if isinstance(row, dict)
    ]


def _short(value, limit: int = VALUE_CHARS) -> str:
    """Any JSON value as a short line of text (the template escapes it)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(url) -> dict:
    """A URL from Skyvern: `href` only when it is safe to link; `text` always."""
    text = url if isinstance(url, str) else ""
    return {"href": safe_http_url(text), "text": _short(text, 300)}


def _timeline(run: Run) -> list[dict]:
    steps = [
        ("Created", run.created_at),
        ("Queued", run.queued_at),
        ("Started", run.started_at),
        ("Finished", run.finished_at),
    ]
    rows, previous = [], None
    for label, at in steps:
        row = {"label": label, "at": at, "gap": None, "since": None}
        if at is not None and previous is not None:
            row["gap"], row["since"] = at - previous[1], previous[0].lower()
        rows.append(row)
        if at is not None:
            previous = (label, at)
    if not run.is_terminal and previous is not None:
        gap = timezone.now() - previous[1]
        rows.append({"label": "Now", "at": None, "gap": gap, "since": previous[0].lower()})
    return rows


def _errors(value) -> dict:
    errors = [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []
    rows = []
    for error in errors[:ITEMS_SHOWN]:
        message_key = "message" if error.get("message") not in (None, "") else "reasoning"
        message = error.get(message_key)
        rows.append(
            {
                "code": _short(error.get("error_code") or ""),
                "message": "" if message is None else _short(message, 5_000),
                "more": [
                    (str(key)[:80], _short(value))
                    for key, value in error.items()
                    if key not in ("error_code", message_key)
                ],
            }
        )
    return {"rows": rows, "more": max(0, len(errors) - ITEMS_SHOWN)}


def _output(chars: int | None, head: str | None) -> dict | None:
    """The output as pretty JSON, cut to OUTPUT_SHOWN; None when there is none."""
    if chars is None or head is None:
        return None
    text = None
    if chars <= OUTPUT_PARSED_UP_TO:
        try:
            text = json.dumps(json.loads(head), indent=2, ensure_ascii=False)
        except ValueError:
            text = None
    if text is None:
        text = _reindent(head[: OUTPUT_SHOWN * 2], stop_after=OUTPUT_SHOWN)
    truncated = chars > OUTPUT_PARSED_UP_TO or len(text) > OUTPUT_SHOWN
    if truncated:
        text = text[:OUTPUT_SHOWN]
        text = text[: text.rfind("\n")] if "\n" in text else text
    lines = text.count("\n") + 1
    return {
        "text": text,
        "size": chars,
        "lines": lines,
        "truncated": truncated,
        "folded": truncated or lines > OUTPUT_FOLD_LINES or len(text) > OUTPUT_FOLD_CHARS,
    }


def _reindent(text: str, *, stop_after: int, indent: str = "  ") -> str:
    """Compact JSON (possibly cut off anywhere) laid out like json.dumps(indent=2)."""
    out: list[str] = []
    size, depth, in_string, escaped, previous = 0, 0, False, False, ""
    for char in text:
        if in_string:
            piece = char
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char in " \t\r\n":
            continue
        elif char == '"':
            piece, in_string = char, True
        elif char in "{[":
            depth += 1
            piece = char + "\n" + indent * depth
        elif char in "}]":
            depth = max(0, depth - 1)
            if previous in ("{", "["):  # empty: "{}" rather than an empty line
                out[-1] = previous
                size -= len(indent) * (depth + 1) + 1
                piece = char
            else:
                piece = "\n" + indent * depth + char
        elif char == ",":
            piece = ",\n" + indent * depth
        elif char == ":":
            piece = ": "
        else:
            piece = char
        if not in_string or char == '"':
            previous = char
        out.append(piece)
        size += len(piece)
        if size > stop_after:
            break
    return "".join(out)


def _files(value) -> dict:
    files = [f for f in value if isinstance(f, dict)] if isinstance(value, list) else []
    rows = []
    for item in files[:ITEMS_SHOWN]:
        link = _link(item.get("url"))
        name = item.get("filename")
        if not isinstance(name, str) or not name:
            path = urlsplit(link["text"]).path if link["text"] else ""
            name = unquote(path.rsplit("/", 1)[-1]) or "(unnamed file)"
        size = item.get("file_size")
        rows.append(
            {
                "name": _short(name, 120),
                "size": size if isinstance(size, int) and not isinstance(size, bool) else None,
                "link": link,
            }
        )
    return {"rows": rows, "more": max(0, len(files) - ITEMS_SHOWN)}


def _recording(url: str, archived: bool) -> dict:
    link = _link(url)
    path = urlsplit(link["href"]).path.lower() if link["href"] else ""
    if path.endswith((".mp4", ".webm")):
        player = "video"
    elif path.endswith(".gif"):
        player = "gif"
    else:
        player = None
    return {**link, "player": None if archived else player, "archived": archived}


def _parameters(value) -> dict | None:
    if not isinstance(value, dict):
        return None
    items = list(value.items())
    return {
        "rows": [(_short(str(key), 80), _short(item)) for key, item in items[:ITEMS_SHOWN]],
        "more": max(0, len(items) - ITEMS_SHOWN),
    }


def _lineage(team, run: Run) -> dict:
    """Where the run came from (up the retry chain) and what came of retrying it."""
    chain, seen, parent_id = [], {run.pk}, run.retried_from_id
    while parent_id and parent_id not in seen and len(chain) < CHAIN_SHOWN:
        parent = (
            Run.objects.filter(team=team, pk=parent_id)
            .only("run_id", "status", "retried_from_id")
            .first()
        )
        if parent is None:
            break
        chain.append(parent)
        seen.add(parent_id)
        parent_id = parent.retried_from_id
    chain.reverse()  # the original first
    # A long chain is shown as its original, an ellipsis and its last few runs.
    crumbs = chain if len(chain) <= 5 else [chain[0], None, *chain[-3:]]
    # The page names only the retry's number.
    made_by = (
        Retry.objects.filter(new_run=run).only("number").first() if run.retried_from_id else None
    )
    retries = (
        Retry.objects.filter(run=run)
        .select_related("requested_by", "new_run")
        .only(*all_fields_and(Retry, requested_by=PERSON_FIELDS, new_run=LINKED_RUN_FIELDS))
        .order_by("number", "id")
    )
    retries = list(retries)
    replays = []
    if run.webhook_failure_reason:
        replays = list(
            RunAction.objects.filter(run=run, kind=ActionKind.REPLAY_WEBHOOK)
            .select_related("requested_by")
            .order_by("number", "id")
        )
    return {
        "chain": crumbs,
        "webhook_replays": replays,
        "chain_cut": bool(parent_id) and parent_id not in seen,
        "made_by": made_by,
        "lineage_retries": retries,
        # The details refresh themselves while Skyvern may still change them.
        "keep_refreshing": not run.is_terminal
        or any(retry.state == RetryState.SENDING for retry in retries),
    }
