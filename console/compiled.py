"""Small queries of one shape that pages ask on every request, compiled once.

Django builds and compiles a query anew each time it is run; for the few tiny
queries every page asks (the person's teams, the sync line, the bulk-retry
notice, the two-factor device check) that work cost several times the
database's answer (docs/performance.md, session 6). A `CompiledQuery` is
still written with the ORM, from stand-in values in place of the ones that
change per request; Django compiles it once per database connection, and each
request runs the kept SQL with its own values, through Django's own
converters. On PostgreSQL the database keeps it planned too: each is
prepared once per connection (`prepared_cursor`, docs/performance.md,
session 8).

Stand-ins (ints, strings, aware datetimes) must be values the query has
nowhere else; a query whose parameters don't carry each of them is refused
when first compiled.
"""

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import QuerySet


class CompiledQuery:
    """`build(*stand_ins)` gives the query (a `values_list()` for `rows()`, a
    plain model query without `select_related()` for `instances()`); `rows()`
    and `instances()` run it with real values in place of the stand-ins."""

    def __init__(self, build: Callable[..., QuerySet], *stand_ins):
        self.build = build
        self.stand_ins = stand_ins

    def rows(self, *values, using: str = DEFAULT_DB_ALIAS) -> list[tuple]:
        connection = connections[using]
        sql, params, converters, compiler = self._compiled(connection)
        with prepared_cursor(connection) as cursor:
            cursor.execute(sql, self._params(params, values, connection))
            rows = cursor.fetchall()
        if converters:
            rows = [tuple(row) for row in compiler.apply_converters(rows, converters)]
        return rows

    def instances(self, *values, using: str = DEFAULT_DB_ALIAS) -> list:
        """Model instances, with any annotation as an attribute: the rows, in
        the columns Django selects for a model (its fields, then the
        annotations), made into instances as Django makes them."""
        rows = self.rows(*values, using=using)
        compiler = self._compiled(connections[using])[3]
        model = compiler.query.model
        selected = [
            alias if alias else column.target.attname for column, _sql, alias in compiler.select
        ]
        fields = len(model._meta.concrete_fields)
        if selected[:fields] != [f.attname for f in model._meta.concrete_fields]:
            raise ImproperlyConfigured(f"{self.build.__qualname__}: not a query of whole models")
        annotations = selected[fields:]
        found = []
        for row in rows:
            instance = model.from_db(using, selected[:fields], row[:fields])
            for name, value in zip(annotations, row[fields:], strict=True):
                setattr(instance, name, value)
            found.append(instance)
        return found

    @staticmethod
    def _params(params: Sequence, values: Sequence, connection) -> list:
        return [
            param.value(values[param.index], connection) if isinstance(param, _Slot) else param
            for param in params
        ]

    def _compiled(self, connection):
        kept = connection.__dict__.setdefault("_console_compiled_queries", {})
        if self not in kept:
            queryset = self.build(*self.stand_ins)
            compiler = queryset.query.get_compiler(connection=connection)
            sql, params = compiler.as_sql()
            slots = [_Slot(index, stand_in) for index, stand_in in enumerate(self.stand_ins)]
            params = [self._slot(param, slots, connection) for param in params]
            found = {param.index for param in params if isinstance(param, _Slot)}
            if found != set(range(len(self.stand_ins))):
                raise ImproperlyConfigured(
                    f"{self.build.__qualname__}: each stand-in must be one of the query's "
                    f"parameters (found {sorted(found)} of {len(self.stand_ins)})"
                )
            converters = compiler.get_converters([column for column, _, _ in compiler.select])
            kept[self] = (sql, params, converters, compiler)
        return kept[self]

    @staticmethod
    def _slot(param, slots, connection):
        for slot in slots:
            stand_in = slot.value(slot.stand_in, connection)
            if type(param) is type(stand_in) and param == stand_in:
                return slot
        return param


class _Slot:
    """Where a value given per request goes among a query's parameters."""

    __slots__ = ("index", "stand_in")

    def __init__(self, index: int, stand_in):
        self.index = index
        self.stand_in = stand_in

    def value(self, value, connection):
        """`value` as Django passes it to the database driver."""
        if isinstance(self.stand_in, datetime):
            return connection.ops.adapt_datetimefield_value(value)
        return value


def prepared_cursor(connection):
    """A cursor for a query asked again and again on this connection: on
    PostgreSQL, its parameters are bound by the server and the statement is
    prepared once per connection (parsed and planned once: planning a page's
    query took longer than running it; docs/performance.md, session 8).
    Elsewhere, or with prepared statements off (DATABASE_PREPARED, for a
    connection pooler that can't keep them), the usual cursor."""
    if connection.vendor != "postgresql" or not settings.DATABASE_PREPARED:
        return connection.cursor()
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        # Django turns preparing off for its own cursors (client-bound: they
        # can't prepare anyway). Only these prepare, each when asked to.
        raw.prepare_threshold = _NEVER_BY_COUNT
    # Wrapped as Django wraps its own, so that query logging sees it.
    connection.validate_thread_sharing()
    cursor = _preparing_cursor_class()(raw)
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


_NEVER_BY_COUNT = 2**31


@cache
def _preparing_cursor_class():
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparingCursor(ServerBindingCursor):
        """Django's server-bound cursor, preparing every statement it runs."""

        def execute(self, query, params=None, *, prepare=True, binary=None):
            return super().execute(query, params, prepare=prepare, binary=binary)

    return PreparingCursor
