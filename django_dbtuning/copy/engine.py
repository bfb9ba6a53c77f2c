"""The COPY engine behind ``copy_from``: batches, binary COPY, staging upserts, ids, errors.

One load runs in ``transaction.atomic(using=alias)`` (a savepoint inside an outer
transaction), so a bad row anywhere leaves nothing behind and the outer transaction usable.
Every statement runs on the one connection of the chosen alias; COPY statements go through
Django's ``execute_wrapper`` chain and ``connection.queries`` like any other query.

Per batch:

* plain insert: ``COPY table (cols) FROM STDIN (FORMAT BINARY)`` straight into the table.
  With ``return_ids`` the ids are taken from the table's sequence first (``nextval`` over
  ``generate_series``), which is ordered, concurrency-safe and keeps the single COPY.
* upsert: ``COPY`` into one temporary staging table for the whole load, created from the
  target's own column types (so ``varchar(n)`` still refuses an over-long value: no casts
  anywhere); at the end one ``INSERT ... SELECT DISTINCT ON (keys) ... ORDER BY keys ...
  ON CONFLICT`` (see :mod:`~django_dbtuning.copy.upsert`): duplicate keys in the load
  collapse to the last one, and every load locks rows in key order, so overlapping
  concurrent upserts cannot deadlock.

Any database error, at any stage (reading the table's constraints, creating the staging
table, taking ids, a COPY, the foreign-key checks, the merge, the commit), raises a
:class:`~django_dbtuning.CopyError` that says what the load was doing (``Stage``): a
deadlock, serialization failure or lock/statement timeout is a
:class:`~django_dbtuning.CopyConcurrencyError` naming the batch and rows being written.

No statement that carries an identifier takes ``%s`` parameters: values are bound as
literals with :mod:`psycopg.sql` (see :mod:`.names`), so a ``%`` in a table name stays a
``%``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from operator import itemgetter
from typing import Any, Literal

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from psycopg import sql

from django_dbtuning.copy import dumpers
from django_dbtuning.copy.conflict import (
    Target,
    confirm,
    conflict_target,
    unique_columns,
)
from django_dbtuning.copy.connection import (
    _observed,
    _with_wrappers,
    check_backend,
    check_model,
)
from django_dbtuning.copy.errors import (
    Locator,
    Stage,
    copy_error,
    load_error,
    problem_error,
    row_error,
    unwritable,
)
from django_dbtuning.copy.names import render
from django_dbtuning.copy.options import progress_callback, validate
from django_dbtuning.copy.plan import DB_DEFAULT, Column, ModelPlan, RowProblem
from django_dbtuning.copy.redact import conversion_reason, unchained
from django_dbtuning.copy.sources import Batch, Source, gc_paused, open_source
from django_dbtuning.copy.upsert import Staging
from django_dbtuning.exceptions import CopyError

__all__ = ["CopyResult", "check_backend", "copy_from"]

# The logger name users configure in LOGGING; kept when the module moved.
logger = logging.getLogger("django_dbtuning.copying.engine")

OnConflict = Literal["ignore", "update"]
Row = Sequence[Any]


@dataclass
class CopyResult:
    """What a ``copy_from`` did: rows read, rows created and updated, and the ids."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    ids: list[Any] | None = dataclass_field(default=None)

    def __len__(self) -> int:
        return self.rows


# -- the load ------------------------------------------------------------------------


class _Load:
    def __init__(
        self,
        model: type[models.Model],
        connection: BaseDatabaseWrapper,
        *,
        on_conflict: OnConflict | None,
        unique_fields: Sequence[str] | None,
        update_fields: Sequence[str] | None,
        return_ids: bool,
    ) -> None:
        self.model = model
        self.connection = connection
        self.alias = connection.alias
        self.label = model._meta.label
        self.on_conflict = on_conflict
        self.return_ids = return_ids
        self.plan = ModelPlan(model, connection)
        self.table = self.plan.quoted_table
        # What the load is doing, for an error at any point.
        self.stage = Stage()
        self.unique_names = list(unique_fields or [])
        self.update_names = None if update_fields is None else list(update_fields)
        self.result = CopyResult(ids=[] if return_ids else None)
        self.sequence: str | None = None
        self.explicit_pk = False
        self.deferred_fks: list[str] = []
        self.staging: Staging | None = None
        self.keys: list[Column] = []
        self.order: list[Column] = []
        self.target = Target([])
        self.locator = Locator()
        self.batches = 0
        # Instances of an upsert with return_ids: their ids are known at the end.
        self.pending: list[models.Model] = []
        # Rows made from Python values may be converted again on a dumper error; CSV
        # cells were converted once already and some go to the server as text.
        self.convertible = True
        self.binary = True
        self.columns: list[Column] = []
        self.short = 0

    # -- setup -------------------------------------------------------------------

    def prepare(self, source: Source) -> None:
        plan = self.plan
        columns = source.columns
        self.columns = columns
        self.short = source.short
        self.locator = Locator(line_of=source.line_of, headers=source.headers)
        self.convertible = not source.text
        self.binary = not source.text and all(
            c.pg_type is not None and c.known for c in columns
        )
        given = len(columns) - len(source.filler_columns) if source.text else 0
        plan.prepare(columns, binary=self.binary)
        if source.text:
            # CSV cells are text the server parses; only Python-made values convert.
            for column in columns[:given]:
                column.fast = None
        source.finish()
        names = {c.name for c in columns}
        keys = [plan.column(n) for n in self.unique_names]
        for key in keys:
            if key.name not in names:
                raise ValueError(
                    f"unique_fields names {key.name!r}, which this load does not fill; "
                    "include it in the rows"
                )
        self.keys = keys
        self.order = keys or unique_columns(plan, names)
        if keys:
            self.target = conflict_target(plan, keys, names)
        if self.update_names is not None:
            updates = [plan.column(n) for n in self.update_names]
            for update in updates:
                if update.name not in names:
                    raise ValueError(
                        f"update_fields names {update.name!r}, which this load does "
                        "not fill"
                    )
                if update in keys:
                    raise ValueError(
                        f"update_fields names {update.name!r}, which is one of "
                        "unique_fields"
                    )
        else:
            updates = [
                c
                for c in columns
                if c not in keys
                and not c.field.primary_key
                and c.auto_now != "auto_now_add"
            ]
        self.updates = updates
        if self.on_conflict == "update" and not updates:
            raise ValueError(
                "on_conflict='update' has no column to update: pass update_fields or "
                "use on_conflict='ignore'"
            )

    def at(
        self,
        stage: str,
        batch: int | None = None,
        first: int | None = None,
        last: int | None = None,
    ) -> None:
        self.stage = Stage(stage, batch, first, last)

    def setup(self, cursor: CursorWrapper) -> None:
        self.at("reading the table's constraints")
        # Before any row is sent: a conflict target the table has no index for.
        confirm(self.target, self.plan, cursor)
        # Django creates foreign keys DEFERRABLE INITIALLY DEFERRED: checked at COMMIT,
        # after our savepoint, where no row can be named. Check them per batch instead.
        cursor.execute(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.conname) "
            "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE c.conrelid = %s::regclass AND c.contype = 'f' "
            "AND c.condeferrable AND c.condeferred ORDER BY 1",
            [self.table],
        )
        self.deferred_fks = [name for (name,) in cursor.fetchall()]
        if self.binary:
            dumpers.install(cursor.cursor, {c.pg_type or "" for c in self.columns})
        if self.on_conflict is not None:
            self.at("creating the staging table")
            pk = self.plan.columns.get(self.plan.pk.name)
            self.staging = Staging(
                self.connection,
                plan=self.plan,
                pk=pk if pk in self.columns else None,
                columns=self.columns,
                keys=self.keys,
                order=self.order,
                updates=self.updates,
                on_conflict=self.on_conflict,
                predicate=self.target.predicate,
                nulls_distinct=self.target.nulls_distinct,
                locator=self.locator,
            )
            self.staging.create(cursor)

    def pk_sequence(self, cursor: CursorWrapper) -> str | None:
        if self.sequence is None:
            cursor.execute(
                "SELECT pg_get_serial_sequence(%s, %s)",
                [self.table, self.plan.pk.column],
            )
            (self.sequence,) = cursor.fetchone() or (None,)
        return self.sequence or None

    def finish(self, cursor: CursorWrapper) -> None:
        if self.staging is not None:
            self.merge(cursor, self.staging)
        if self.deferred_fks:
            self.at("restoring the deferred foreign keys")
            cursor.execute(f"SET CONSTRAINTS {', '.join(self.deferred_fks)} DEFERRED")
        if self.explicit_pk and self.plan.pk_is_auto:
            # Explicit ids went in: move the sequence past them, never backwards.
            self.at("moving the id sequence past the loaded ids")
            sequence = self.pk_sequence(cursor)
            if sequence:
                statement = sql.SQL(
                    "SELECT setval(s, m) FROM (SELECT {}::regclass AS s, "
                    "(SELECT max({}) FROM {}) AS m) q "
                    "WHERE m > coalesce(pg_sequence_last_value(s), 0)"
                ).format(
                    sql.Literal(sequence),
                    sql.SQL(self.plan.columns[self.plan.pk.name].quoted),
                    sql.SQL(self.table),
                )
                cursor.execute(render(cursor, statement))

    def merge(self, cursor: CursorWrapper, staging: Staging) -> None:
        """Write the staged rows of an upsert with one INSERT ... ON CONFLICT."""
        pk = self.plan.columns[self.plan.pk.name].quoted
        self.at(
            "writing the staged rows (one INSERT ... ON CONFLICT in key order)",
            None,
            0,
            self.result.rows - 1,
        )
        if self.return_ids:
            # Rows that never conflict are inserted as new rows: their ids are taken
            # now, so they can be told apart from the rows they share a key with.
            staging.own_ids(cursor, lambda: self.pk_sequence(cursor))
        if getattr(self.connection, "pg_version", 0) >= 180000:
            returning = (
                f"RETURNING WITH (OLD AS dbtuning_old) dbtuning_old.{pk} IS NULL"
            )
        else:
            returning = "RETURNING dbtuning_t.xmax = 0"
        created, updated = staging.merge(
            cursor,
            deferred_fks=self.deferred_fks,
            sequence=lambda: self.pk_sequence(cursor),
            returning=returning,
        )
        self.result.created += created
        self.result.updated += updated
        if self.return_ids:
            self.at("reading the ids of the loaded rows")
            ids = staging.ids(cursor)
            self.result.ids = ids
            if self.pending:
                self.set_pks(self.pending, ids)
        staging.drop(cursor)

    def set_pks(self, objs: Sequence[models.Model], ids: Sequence[Any] | None) -> None:
        # As bulk_create does: an instance whose row is known is no longer "adding".
        pk_attname = self.plan.pk.attname
        for obj, pk in zip(objs, ids or [None] * len(objs), strict=True):
            if pk is not None:
                obj.__dict__[pk_attname] = pk
            if obj.__dict__.get(pk_attname) is not None:
                obj._state.adding = False
                obj._state.db = self.alias

    # -- one batch ---------------------------------------------------------------

    def load(self, cursor: CursorWrapper, batch: Batch) -> None:
        columns = self.columns
        rows = batch.rows
        number, first, last = self.batches, batch.start, batch.start + len(rows) - 1
        self.batches += 1
        pk_pos = next(
            (i for i, c in enumerate(columns) if c.field.primary_key and c.optional),
            None,
        )
        if pk_pos is not None and not self.explicit_pk:
            self.explicit_pk = any(
                len(r) > pk_pos and r[pk_pos] is not DB_DEFAULT for r in rows
            )
        if pk_pos is not None and self.return_ids and self.on_conflict is None:
            self.at(f"taking ids for batch {number}", number, first, last)
            rows = self.allocate_ids(cursor, rows, pk_pos)
        staging = self.staging
        if staging is None:
            self.at(f"copying batch {number}", number, first, last)
        else:
            self.at(f"staging batch {number}", number, first, last)
        for group_columns, group_rows, index_of, positions in self.groups(
            rows, batch.start
        ):
            if staging is None:
                self.copy_rows(
                    cursor,
                    self.table,
                    self.plan.relname,
                    group_columns,
                    group_rows,
                    index_of,
                )
            else:
                self.copy_rows(
                    cursor,
                    staging.name,
                    staging.relname,
                    group_columns,
                    group_rows,
                    index_of,
                )
                staging.add(group_columns, len(group_rows), batch.start, positions)
        self.result.rows += len(rows)
        if self.staging is not None:
            if batch.objs is not None:
                if self.return_ids:
                    self.pending.extend(batch.objs)
                else:
                    self.set_pks(batch.objs, None)
            return
        if self.deferred_fks:
            self.at(f"checking the foreign keys of batch {number}", number, first, last)
            try:
                cursor.execute(
                    f"SET CONSTRAINTS {', '.join(self.deferred_fks)} IMMEDIATE"
                )
            except Exception as exc:
                cause = exc.__cause__
                if isinstance(cause, psycopg.Error):
                    self.raise_for(cause, columns, rows, batch.start)
                raise
        self.result.created += len(rows)
        ids: list[Any] | None = None
        if self.return_ids:
            pk_at = next(
                (i for i, c in enumerate(columns) if c.field.primary_key), None
            )
            ids = [r[pk_at] for r in rows] if pk_at is not None else [None] * len(rows)
            assert self.result.ids is not None
            self.result.ids.extend(ids)
        if batch.objs is not None:
            self.set_pks(batch.objs, ids)

    def raise_for(
        self, exc: psycopg.Error, columns: list[Column], rows: Sequence[Row], start: int
    ) -> None:
        error = copy_error(
            exc,
            label=self.label,
            columns=columns,
            index_of=lambda j: start + j,
            rows=rows,
            locator=self.locator,
        )
        if error is not None:
            raise error from None

    def failed(self, exc: BaseException) -> CopyError | None:
        """The CopyError for a database error not located to a row on the way."""
        return load_error(
            exc,
            label=self.label,
            stage=self.stage,
            columns=self.columns,
            locator=self.locator,
        )

    def allocate_ids(
        self, cursor: CursorWrapper, rows: list[Row], pk_pos: int
    ) -> list[Row]:
        # The common case: every row left out only the primary key, the last column.
        simple = (
            pk_pos == len(self.columns) - 1
            and self.short == pk_pos
            and all(len(r) == pk_pos for r in rows)
        )
        if simple:
            ids = self.take_ids(cursor, len(rows))
            with gc_paused():
                return [(*r, pk) for r, pk in zip(rows, ids, strict=True)]
        rows = self.widen(rows)
        missing = sum(1 for r in rows if r[pk_pos] is DB_DEFAULT)
        if not missing:
            return rows
        fresh = iter(self.take_ids(cursor, missing))
        filled: list[Row] = []
        for r in rows:
            if r[pk_pos] is DB_DEFAULT:
                r = list(r)
                r[pk_pos] = next(fresh)
            filled.append(r)
        return filled

    def take_ids(self, cursor: CursorWrapper, count: int) -> list[Any]:
        """``count`` fresh ids from the table's sequence: ordered, concurrency-safe."""
        sequence = self.pk_sequence(cursor)
        if sequence is None:
            raise ImproperlyConfigured(
                f"{self.label}.{self.plan.pk.name} has no sequence to take ids from"
            )
        # One row back instead of `count`: without concurrent writers the ids form a
        # range; otherwise the array of what nextval() handed out comes back too.
        cursor.execute(
            "WITH ids AS (SELECT nextval(%s::regclass) AS v "
            "FROM generate_series(1, %s)) "
            "SELECT min(v), max(v), count(*), CASE WHEN max(v) - min(v) + 1 = count(*) "
            "THEN NULL ELSE array_agg(v ORDER BY v) END FROM ids",
            [sequence, count],
        )
        low, high, taken, scattered = cursor.fetchone() or (None, None, 0, None)
        if scattered is not None:
            return list(scattered)
        if taken != count or low is None or high is None:  # pragma: no cover
            raise ImproperlyConfigured(f"could not take {count} ids from {sequence}")
        return list(range(low, high + 1))

    def groups(
        self, rows: list[Row], start: int
    ) -> Iterator[
        tuple[list[Column], list[Row], Callable[[int], int], list[int] | None]
    ]:
        """Split rows by which optional columns they leave to the database.

        COPY has no per-row DEFAULT, so rows that leave a column out go in a COPY that
        omits it. Nearly always every row of a batch has the same shape: one group.
        """
        columns = self.columns
        optional = [i for i, c in enumerate(columns) if c.optional]
        if not optional:
            yield columns, rows, lambda j: start + j, None
            return
        short = self.short
        if (
            short < len(columns)
            and not any(i < short for i in optional)
            and all(len(r) == short for r in rows)
        ):
            yield columns[:short], rows, lambda j: start + j, None
            return
        rows = self.widen(rows)
        counts = {i: sum(1 for r in rows if r[i] is DB_DEFAULT) for i in optional}
        if all(n in (0, len(rows)) for n in counts.values()):
            drop = {i for i, n in counts.items() if n}
            yield (
                *self.project(columns, rows, drop),
                lambda j: start + j,
                None,
            )
            return
        shapes: dict[tuple[int, ...], list[int]] = {}
        for j, r in enumerate(rows):
            key = tuple(i for i in optional if r[i] is DB_DEFAULT)
            shapes.setdefault(key, []).append(j)
        for drop_key, positions in shapes.items():
            group_cols, group_rows = self.project(
                columns, [rows[j] for j in positions], set(drop_key)
            )
            yield (
                group_cols,
                group_rows,
                lambda j, positions=positions: start + positions[j],  # type: ignore[misc]
                positions,
            )

    def widen(self, rows: list[Row]) -> list[Row]:
        """Give fast-path rows their trailing DB_DEFAULT columns back."""
        full = len(self.columns)
        if self.short == full:
            return rows
        pad = (DB_DEFAULT,) * (full - self.short)
        return [(*r, *pad[: full - len(r)]) if len(r) < full else r for r in rows]

    @staticmethod
    def project(
        columns: list[Column], rows: list[Row], drop: set[int]
    ) -> tuple[list[Column], list[Row]]:
        if not drop:
            return columns, rows
        keep = [i for i in range(len(columns)) if i not in drop]
        kept = [columns[i] for i in keep]
        n = len(columns)
        if keep == list(range(len(keep))):
            k = len(keep)
            return kept, [r[:k] for r in rows]
        if keep == list(range(n - len(keep), n)):
            k = n - len(keep)
            return kept, [r[k:] for r in rows]
        if len(keep) == 1:
            (only,) = keep
            return kept, [(r[only],) for r in rows]
        getter = itemgetter(*keep)
        return kept, [getter(r) for r in rows]

    # -- COPY --------------------------------------------------------------------

    def copy_rows(
        self,
        cursor: CursorWrapper,
        table: str,
        relation: str,
        columns: list[Column],
        rows: list[Row],
        index_of: Callable[[int], int],
    ) -> None:
        cols = ", ".join(c.quoted for c in columns)
        statement = f"COPY {table} ({cols}) FROM STDIN"
        if self.binary:
            statement += " (FORMAT BINARY)"
        raw = cursor.cursor

        def run() -> None:
            with raw.copy(statement) as copy:
                if self.binary:
                    copy.set_types([c.pg_type or "text" for c in columns])
                self.write(raw, copy, columns, rows, index_of)

        try:
            with _observed(cursor, statement):
                _with_wrappers(cursor, statement, run)
        except psycopg.Error as exc:
            error = copy_error(
                exc,
                label=self.label,
                columns=columns,
                index_of=index_of,
                rows=rows,
                locator=self.locator,
                relation=relation,
            )
            if error is not None:
                raise error from None
            # Anything else (a timeout, a trigger) is named by copy_from with the stage.
            raise

    def write(
        self,
        raw: psycopg.Cursor[Any],
        copy: psycopg.Copy,
        columns: list[Column],
        rows: list[Row],
        index_of: Callable[[int], int],
    ) -> None:
        write = copy.write_row
        numbered = enumerate(rows)
        j = -1
        while True:
            try:
                for j, row in numbered:  # noqa: B007 - j names the failing row
                    write(row)
                return
            except Exception as exc:
                if isinstance(exc, psycopg.Error) and (
                    exc.sqlstate or isinstance(exc, psycopg.OperationalError)
                ):
                    raise
                # The fast path met a value of another type: convert this row the way
                # Django would and try again. psycopg drops the half-written row.
                if self.convertible:
                    fixed = self.convert(columns, rows[j], index_of(j))
                else:
                    fixed = list(rows[j])
                try:
                    write(fixed)
                except Exception as again:
                    if isinstance(again, psycopg.Error) and again.sqlstate:
                        raise
                    column, reason, value = unwritable(
                        raw, columns, fixed, again, binary=self.binary
                    )
                    raise row_error(
                        self.label,
                        index_of(j),
                        column,
                        reason,
                        integrity=False,
                        locator=self.locator,
                        value=value,
                        original=again,
                    ) from None

    def convert(self, columns: list[Column], row: Row, index: int) -> list[Any]:
        values = []
        for column, value in zip(columns, row, strict=True):
            try:
                values.append(None if value is None else column.slow(value))
            except Exception as exc:
                raise row_error(
                    self.label,
                    index,
                    column.name,
                    conversion_reason(exc, column.field),
                    integrity=False,
                    locator=self.locator,
                    value=value,
                    original=exc,
                ) from None
        return values


def copy_from(
    model: type[models.Model],
    rows: Any,
    *,
    using: str,
    fields: Sequence[str] | None = None,
    batch_size: int | None = None,
    on_conflict: OnConflict | None = None,
    unique_fields: Sequence[str] | None = None,
    update_fields: Sequence[str] | None = None,
    return_ids: bool = False,
    progress: Any = False,
    header: bool = True,
    mapping: dict[str, str | None] | None = None,
    delimiter: str | None = None,
    quotechar: str = '"',
    encoding: str = "utf-8",
    format: str = "csv",
    null: str | None = None,
) -> CopyResult:
    """Load ``rows`` into ``model``'s table with COPY; see :meth:`CopyQuerySet.copy_from`."""
    from django_dbtuning.conf import get_settings

    validate(
        fields=fields,
        batch_size=batch_size,
        on_conflict=on_conflict,
        unique_fields=unique_fields,
        update_fields=update_fields,
        return_ids=return_ids,
        progress=progress,
    )
    connection = connections[using]
    check_backend(connection)
    check_model(model)
    size = batch_size or get_settings().copy_batch_size
    load = _Load(
        model,
        connection,
        on_conflict=on_conflict,
        unique_fields=unique_fields,
        update_fields=update_fields,
        return_ids=return_ids,
    )
    failure: Exception | None = None
    try:
        source = open_source(
            load.plan,
            rows,
            fields=fields,
            header=header,
            mapping=mapping,
            delimiter=delimiter,
            quotechar=quotechar,
            encoding=encoding,
            format=format,
            null=null,
            alias=using,
        )
    except RowProblem as problem:
        failure = problem_error(load.label, problem)
    if failure is not None:
        raise unchained(failure)
    if source is None:
        return load.result
    bar = progress_callback(progress, source, load.label)
    try:
        load.prepare(source)
        load.at("connecting to the database")
        connection.ensure_connection()
        connection.validate_no_broken_transaction()
        with transaction.atomic(using=using), connection.cursor() as cursor:
            load.setup(cursor)
            try:
                batches = source.batches(size)
                while True:
                    # A file in PostgreSQL's formats is parsed by the server here.
                    load.at(
                        f"reading the {source.kind} file"
                        if source.kind in ("text", "binary")
                        else "reading the rows"
                    )
                    batch = next(batches, None)
                    if batch is None:
                        break
                    load.load(cursor, batch)
                    if bar is not None:
                        bar(len(batch.rows))
            except RowProblem as problem:
                # Raised: the atomic block rolls the load back.
                raise problem_error(load.label, problem, load.locator) from None
            finally:
                # Inside the transaction: a file source holds a server-side cursor.
                source.close()
            load.finish(cursor)
            load.at("committing the load")
    except CopyError as error:
        failure = error
    except (psycopg.Error, DatabaseError) as exc:
        # Any other server error: a CopyError that is also Django's class, with a
        # value-free message (a trigger's RAISE, a DETAIL or a CONTEXT may quote rows).
        failure = load.failed(exc)
        if failure is None:
            raise
    finally:
        source.close()
        if bar is not None:
            bar(None)
    if failure is not None:
        # Out of every except block, without a chain: the server's text (DETAIL,
        # CONTEXT) and the refused value stay on the error's attributes only.
        raise unchained(failure)
    logger.debug(
        "COPY into %s on %s: %d rows (%d created, %d updated)",
        load.label,
        using,
        load.result.rows,
        load.result.created,
        load.result.updated,
    )
    return load.result
