"""Model rows read and written in plain SQL, for the busiest request paths.

The ORM compiles every query anew: on a two-core server, compiling a lookup with its related rows
costs more Python time than PostgreSQL takes to run it (booking a slot compiled seven of them).
These helpers build the SQL from the models' own metadata once per shape and keep it on the
connection, and hand back ordinary model instances with their related objects in place, converted
by the backend's own converters, so the callers' rules stay in Python on real objects:

    fetch(Slot, "t0.uuid = %s", [key], related=("schedule__institution",))

The root table is `t0`; conditions and ordering name its columns (and only its columns). A
nullable foreign key is a LEFT JOIN and gives None. `for_update` locks the root rows only
(PostgreSQL `FOR UPDATE OF t0`; SQLite's IMMEDIATE transactions already serialise writers).
`insert` writes one new instance (auto_now and defaults as `save()` sets them), optionally skipping
a unique conflict instead of raising; `update` writes named fields of a stored one. No signals are
sent: only models without receivers use these.
Tests hold each caller to the answers of its ORM version.

On PostgreSQL they run through `statement_cursor()`, whose statements the server keeps prepared
from their first run on a connection: Django binds parameters on the client, so PostgreSQL would otherwise plan the same lookup
anew on every request (planning the slot with its four relations cost ten times running it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import NotSupportedError, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

M = TypeVar("M", bound=models.Model)

_CACHE = "_yilian_row_shapes"


@dataclass(frozen=True)
class _Part:
    model: type[models.Model]
    attnames: list[str]
    start: int
    stop: int
    parent: int | None  # index of the part whose foreign key leads here
    field: models.ForeignKey | None  # that foreign key (sets the cached related object)


@dataclass(frozen=True)
class _Shape:
    sql: str
    parts: list[_Part]
    converters: list[tuple[int, list[Callable[..., Any]], Any]]
    extra: tuple[str, ...] = ()  # attribute names of the extra columns, after the models' columns


def statement_cursor(connection: BaseDatabaseWrapper | None = None) -> CursorWrapper:
    """A cursor of `connection` (by default the current one) for a statement that runs again and
    again with other values. On PostgreSQL it binds parameters on the server, so psycopg prepares
    each statement at its first run on the connection (`prepare_threshold` 0 in settings; Django's own
    cursors bind on the client and are never prepared) and PostgreSQL plans it once, not on every
    run. A rollback drops the connection's prepared statements (psycopg), so hot paths refuse without
    one where nothing was written. Statements use plain `%s` placeholders (no tuple for `IN %s`:
    `= ANY(%s)` with a list). Elsewhere it is the connection's usual cursor. Errors, logging and query
    capture are Django's."""
    connection = connection or transaction.get_connection()
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    import psycopg

    raw = psycopg.Cursor(connection.connection)
    return _LoggedStatements(raw, connection) if connection.queries_logged else _Statements(raw, connection)


# A statement of many VALUES rows is prepared only up to this many: one message's few rows repeat in
# the same shape, a batch's long list rarely does (and would push others out of the connection's cache).
PREPARED_ROWS_MAX = 8


def rows_cursor(connection: BaseDatabaseWrapper, rows: int) -> CursorWrapper:
    """`statement_cursor` for a statement of up to PREPARED_ROWS_MAX rows, else the usual cursor."""
    return statement_cursor(connection) if rows <= PREPARED_ROWS_MAX else connection.cursor()


def _stale_plan(exc: Exception) -> bool:
    """A prepared statement whose result columns changed type since (a migration ran meanwhile)."""
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) == "0A000" and "cached plan must not change result type" in str(cause)


class _Statements(CursorWrapper):
    """Runs a statement once more after a migration changed a column it returns: PostgreSQL refuses
    the old prepared statement, and psycopg would keep sending it until a rollback. Outside a
    transaction the connection's prepared statements are dropped (`DEALLOCATE ALL`, which psycopg
    follows) and the statement prepared anew; inside one, the transaction is lost anyway and its
    rollback drops them."""

    def execute(self, sql: Any, params: Any = None) -> Any:
        try:
            return super().execute(sql, params)
        except NotSupportedError as exc:
            if not _stale_plan(exc) or not self.db.get_autocommit():
                raise
        with self.db.wrap_database_errors:
            self.cursor.execute("DEALLOCATE ALL", prepare=False)
        return super().execute(sql, params)


class _LoggedStatements(CursorDebugWrapper, _Statements):
    """Logs a statement with its values in place, as Django's client-side cursors show them (a
    statement bound on the server has no such text of its own)."""

    def execute(self, sql: Any, params: Any = None) -> Any:
        with self.debug_sql(self.db.ops.compose_sql(sql, params), params):
            return _Statements.execute(self, sql, params)


def _shapes(connection: BaseDatabaseWrapper) -> dict[tuple[Any, ...], _Shape]:
    return connection.__dict__.setdefault(_CACHE, {})  # type: ignore[no-any-return]


def _paths(related: Sequence[str]) -> list[str]:
    """Every prefix of the related paths, parents first: schedule__institution brings schedule."""
    out: list[str] = []
    for path in related:
        steps = path.split("__")
        for i in range(1, len(steps) + 1):
            prefix = "__".join(steps[:i])
            if prefix not in out:
                out.append(prefix)
    return out


def _build(
    connection: BaseDatabaseWrapper,
    model: type[models.Model],
    where: str,
    related: Sequence[str],
    for_update: bool,
    tail: str,
    extra: tuple[tuple[str, str], ...],
) -> _Shape:
    quote = connection.ops.quote_name
    columns: list[str] = []
    parts: list[_Part] = []
    converters: list[tuple[int, list[Callable[..., Any]], Any]] = []
    joins: list[str] = []

    def add(part_model: type[models.Model], alias: str, parent: int | None, field: models.ForeignKey | None) -> None:
        start = len(columns)
        attnames = []
        for concrete in part_model._meta.concrete_fields:
            col = concrete.get_col(alias)
            found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            if found:
                converters.append((len(columns), found, col))
            columns.append(f"{alias}.{quote(concrete.column)}")  # type: ignore[arg-type]
            attnames.append(concrete.attname)
        parts.append(_Part(part_model, attnames, start, len(columns), parent, field))

    add(model, "t0", None, None)
    index = {"": 0}
    outer = {""}
    for path in _paths(related):
        head, _sep, name = path.rpartition("__")
        parent = parts[index[head]]
        field = parent.model._meta.get_field(name)
        if not isinstance(field, models.ForeignKey):
            raise ValueError(f"{parent.model.__name__}.{name} is not a foreign key")
        target = field.related_model
        alias = f"t{len(parts)}"
        left = field.null or head in outer
        if left:
            outer.add(path)
        parent_alias = f"t{index[head]}"
        joins.append(
            f"{'LEFT OUTER JOIN' if left else 'INNER JOIN'} {quote(target._meta.db_table)} {alias}"  # type: ignore[union-attr]
            f" ON {parent_alias}.{quote(field.column)} = {alias}.{quote(field.target_field.column)}"  # type: ignore[arg-type]
        )
        index[path] = len(parts)
        add(target, alias, index[head], field)  # type: ignore[arg-type]
    columns.extend(f"({expression})" for _name, expression in extra)
    sql = f"SELECT {', '.join(columns)} FROM {quote(model._meta.db_table)} t0"  # noqa: S608 - names from the models
    if joins:
        sql += " " + " ".join(joins)
    sql += f" WHERE {where}"
    if tail:
        sql += f" {tail}"
    if for_update and connection.features.has_select_for_update:
        sql += " FOR UPDATE" + (" OF t0" if joins and connection.features.has_select_for_update_of else "")
    return _Shape(sql, parts, converters, tuple(name for name, _expression in extra))


def fetch(
    model: type[M],
    where: str,
    params: Sequence[Any],
    *,
    related: Sequence[str] = (),
    for_update: bool = False,
    tail: str = "",
    extra: Mapping[str, str] | None = None,
    extra_params: Sequence[Any] = (),
) -> list[M]:
    """Instances of `model` whose row meets `where` (over `t0`), each with the objects of `related`
    (foreign-key paths, as for select_related) in place. `tail` follows the condition (ORDER BY,
    LIMIT), `for_update` locks the rows of `model` until the transaction ends. `extra` names SQL
    expressions over `t0` whose values land on each instance as attributes of those names, as the
    ORM's annotations do; `extra_params` are the values of their placeholders, in order (they come
    before `params` in the statement)."""
    connection = transaction.get_connection()
    extras = tuple(extra.items()) if extra else ()
    key = (model, where, tuple(related), for_update, tail, extras)
    shape = _shapes(connection).get(key)
    if shape is None:
        shape = _build(connection, model, where, related, for_update, tail, extras)
        _shapes(connection)[key] = shape
    with statement_cursor(connection) as db:
        db.execute(shape.sql, [*extra_params, *params])
        rows = db.fetchall()
    alias = connection.alias
    out: list[M] = []
    for raw in rows:
        row = list(raw)
        for position, found, col in shape.converters:
            for converter in found:
                row[position] = converter(row[position], col, connection)
        objects: list[models.Model | None] = []
        for part in shape.parts:
            parent = objects[part.parent] if part.parent is not None else None
            if part.parent is not None and parent is None:
                objects.append(None)  # below a missing (NULL) relation
                continue
            values = row[part.start : part.stop]
            obj = None if values[0] is None and part.parent is not None else part.model.from_db(alias, part.attnames, values)
            if part.field is not None:
                part.field.set_cached_value(parent, obj)  # type: ignore[arg-type]
            objects.append(obj)
        root = objects[0]
        for offset, name in enumerate(shape.extra, start=len(row) - len(shape.extra)):
            setattr(root, name, row[offset])
        out.append(root)  # type: ignore[arg-type]
    return out


def fetch_one(
    model: type[M],
    where: str,
    params: Sequence[Any],
    *,
    related: Sequence[str] = (),
    for_update: bool = False,
    extra: Mapping[str, str] | None = None,
    extra_params: Sequence[Any] = (),
) -> M | None:
    """The one instance `fetch` finds (the condition names a unique key), or None."""
    found = fetch(model, where, params, related=related, for_update=for_update, extra=extra, extra_params=extra_params)
    return found[0] if found else None


def fetch_by_uuid(
    model: type[M],
    key: Any,
    *,
    related: Sequence[str] = (),
    for_update: bool = False,
    extra: Mapping[str, str] | None = None,
) -> M | None:
    """The instance whose public `uuid` is `key`, or None (also for a key that is no UUID at all)."""
    connection = transaction.get_connection()
    try:
        value = model._meta.get_field("uuid").get_db_prep_value(key, connection, prepared=False)  # type: ignore[union-attr]
    except (ValidationError, ValueError, TypeError, AttributeError):
        return None
    return fetch_one(model, "t0.uuid = %s", [value], related=related, for_update=for_update, extra=extra)


def insert(obj: models.Model, *, skip_conflict: bool = False) -> bool:
    """INSERT one new instance (its auto primary key comes back into it). With `skip_conflict`, a
    row that would break a unique constraint or index is not written and False comes back, in one
    statement (no savepoint inside the caller's transaction); otherwise the IntegrityError rises."""
    connection = transaction.get_connection()
    meta = obj._meta
    key = ("insert", type(obj), skip_conflict)
    shapes = _shapes(connection)
    shape = shapes.get(key)
    fields = [field for field in meta.concrete_fields if not (field.primary_key and isinstance(field, models.AutoField))]
    if shape is None:
        quote = connection.ops.quote_name
        sql = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(field.column) for field in fields)})"  # noqa: S608 - names from the model
            f" VALUES ({', '.join(['%s'] * len(fields))})"
            f"{' ON CONFLICT DO NOTHING' if skip_conflict else ''} RETURNING {quote(meta.pk.column)}"
        )
        shape = _Shape(sql, [], [])
        shapes[key] = shape
    with statement_cursor(connection) as db:
        db.execute(shape.sql, [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields])
        row = db.fetchone()
    if row is None:
        return False
    obj.pk = row[0]
    obj._state.adding, obj._state.db = False, connection.alias
    return True


def update(obj: models.Model, fields: Sequence[str]) -> bool:
    """UPDATE the named fields of a stored instance (an auto_now field among them takes the time,
    as `save(update_fields=…)` does). True when the row was there."""
    connection = transaction.get_connection()
    meta = obj._meta
    chosen = [meta.get_field(name) for name in fields]
    key = ("update", type(obj), tuple(fields))
    shapes = _shapes(connection)
    shape = shapes.get(key)
    if shape is None:
        quote = connection.ops.quote_name
        assignments = ", ".join(f"{quote(field.column)} = %s" for field in chosen)  # type: ignore[union-attr]
        sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608 - names from the model
        shape = _Shape(sql, [], [])
        shapes[key] = shape
    values = [field.get_db_prep_save(field.pre_save(obj, False), connection) for field in chosen]  # type: ignore[union-attr]
    with statement_cursor(connection) as db:
        db.execute(shape.sql, [*values, obj.pk])
        return bool(db.rowcount)
