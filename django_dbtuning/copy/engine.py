"""The COPY engine behind ``copy_from``: the stages of one load, in one transaction.

One load runs in ``transaction.atomic(using=alias)`` (a savepoint inside an outer
transaction), so a bad row anywhere leaves nothing behind and the outer transaction usable.
Every statement runs on the one connection of the chosen alias; COPY statements go through
Django's ``execute_wrapper`` chain and ``connection.queries`` like any other query.

Per batch:

* plain insert: ``COPY table (cols) FROM STDIN (FORMAT BINARY)`` straight into the table
  (:mod:`.writer`), ids taken first with ``return_ids`` (:mod:`.ids`).
* upsert: ``COPY`` into one temporary staging table for the whole load, merged at the end
  by one key-ordered ``INSERT ... ON CONFLICT`` (:mod:`.upsert`).

Any database error, at any stage (reading the table's constraints, creating the staging
table, taking ids, a COPY, the foreign-key checks, the merge, the commit), raises a
:class:`~django_dbtuning.CopyError` that says what the load was doing (``Stage``): a
deadlock, serialization failure or lock/statement timeout is a
:class:`~django_dbtuning.CopyConcurrencyError` naming the batch and rows being written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import psycopg
from django.db import DatabaseError, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from django_dbtuning.copy.conflict import confirm, resolve
from django_dbtuning.copy.connection import check_backend
from django_dbtuning.copy.errors import (
    Locator,
    Stage,
    copy_error,
    load_error,
    problem_error,
)
from django_dbtuning.copy.ids import Ids
from django_dbtuning.copy.options import CopyOptions, progress_callback
from django_dbtuning.copy.plan import DB_DEFAULT, ModelPlan, RowProblem
from django_dbtuning.copy.redact import unchained
from django_dbtuning.copy.sources import Batch, Source, open_source
from django_dbtuning.copy.upsert import Staging
from django_dbtuning.copy.writer import RowWriter, groups, install_dumpers
from django_dbtuning.exceptions import CopyError

# One logger for the capability (was django_dbtuning.copying.engine, a module that moved).
logger = logging.getLogger("django_dbtuning.copy")


@dataclass
class CopyResult:
    """What a ``copy_from`` did: rows read, rows created and updated, and the ids."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    ids: list[Any] | None = dataclass_field(default=None)

    def __len__(self) -> int:
        return self.rows


class _Load:
    def __init__(
        self,
        model: type[models.Model],
        connection: BaseDatabaseWrapper,
        options: CopyOptions,
    ) -> None:
        self.connection = connection
        self.label = model._meta.label
        self.options = options
        self.return_ids = options.return_ids
        self.plan = ModelPlan(model, connection)
        self.ids = Ids(self.plan, connection.alias)
        # What the load is doing, for an error at any point.
        self.stage = Stage()
        self.result = CopyResult(ids=[] if options.return_ids else None)
        self.explicit_pk = False
        self.deferred_fks: list[str] = []
        self.staging: Staging | None = None
        self.locator = Locator()
        self.batches = 0
        # Instances of an upsert with return_ids: their ids are known at the end.
        self.pending: list[models.Model] = []
        self.columns: list[Any] = []

    def prepare(self, source: Source) -> None:
        columns = self.columns = source.columns
        self.short = source.short
        self.locator = Locator(line_of=source.line_of, headers=source.headers)
        binary = not source.text and all(
            c.pg_type is not None and c.known for c in columns
        )
        self.writer = RowWriter(
            self.label, self.locator, binary=binary, convertible=not source.text
        )
        self.plan.prepare(columns, binary=binary)
        if source.text:
            # CSV cells are text the server parses; only Python-made values convert.
            for column in columns[: source.given]:
                column.fast = None
        source.finish()
        self.conflict = resolve(
            self.plan,
            columns,
            on_conflict=self.options.on_conflict,
            unique_fields=self.options.unique_fields,
            update_fields=self.options.update_fields,
        )

    def setup(self, cursor: CursorWrapper) -> None:
        self.stage = Stage("reading the table's constraints")
        # Before any row is sent: a conflict target the table has no index for.
        confirm(self.conflict.target, self.plan, cursor)
        # Django creates foreign keys DEFERRABLE INITIALLY DEFERRED: checked at COMMIT,
        # after our savepoint, where no row can be named. Check them per batch instead.
        cursor.execute(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.conname) "
            "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE c.conrelid = %s::regclass AND c.contype = 'f' "
            "AND c.condeferrable AND c.condeferred ORDER BY 1",
            [self.plan.quoted_table],
        )
        self.deferred_fks = [name for (name,) in cursor.fetchall()]
        if self.writer.binary:
            install_dumpers(cursor.cursor, {c.pg_type or "" for c in self.columns})
        on_conflict = self.options.on_conflict
        if on_conflict is not None:
            self.stage = Stage("creating the staging table")
            self.staging = Staging(
                plan=self.plan,
                columns=self.columns,
                conflict=self.conflict,
                on_conflict=on_conflict,
                locator=self.locator,
            )
            self.staging.create(cursor)

    def finish(self, cursor: CursorWrapper) -> None:
        if self.staging is not None:
            self.merge(cursor, self.staging)
        if self.deferred_fks:
            self.stage = Stage("restoring the deferred foreign keys")
            cursor.execute(f"SET CONSTRAINTS {', '.join(self.deferred_fks)} DEFERRED")
        if self.explicit_pk and self.plan.pk_is_auto:
            self.stage = Stage("moving the id sequence past the loaded ids")
            self.ids.move_past_loaded(cursor)

    def merge(self, cursor: CursorWrapper, staging: Staging) -> None:
        self.stage = Stage(
            "writing the staged rows (one INSERT ... ON CONFLICT in key order)",
            None,
            0,
            self.result.rows - 1,
        )
        if self.return_ids:
            # Rows that never conflict are inserted as new rows: their ids are taken
            # now, so they can be told apart from the rows they share a key with.
            staging.own_ids(cursor, lambda: self.ids.sequence(cursor))
        created, updated = staging.merge(
            cursor,
            deferred_fks=self.deferred_fks,
            sequence=lambda: self.ids.sequence(cursor),
        )
        self.result.created += created
        self.result.updated += updated
        if self.return_ids:
            self.stage = Stage("reading the ids of the loaded rows")
            ids = staging.ids(cursor)
            self.result.ids = ids
            if self.pending:
                self.ids.set_pks(self.pending, ids)
        staging.drop(cursor)

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
        staging = self.staging
        if pk_pos is not None and self.return_ids and staging is None:
            self.stage = Stage(f"taking ids for batch {number}", number, first, last)
            rows = self.ids.fill(cursor, rows, pk_pos, len(columns), self.short)
        verb = "copying" if staging is None else "staging"
        self.stage = Stage(f"{verb} batch {number}", number, first, last)
        for group in groups(columns, self.short, rows, batch.start):
            if staging is None:
                table, relation = self.plan.quoted_table, self.plan.relname
            else:
                table, relation = staging.name, staging.relname
            self.writer.copy(
                cursor, table, relation, group.columns, group.rows, group.index_of
            )
            if staging is not None:
                staging.add(
                    group.columns, len(group.rows), batch.start, group.positions
                )
        self.result.rows += len(rows)
        if staging is not None:
            if batch.objs is not None:
                if self.return_ids:
                    self.pending.extend(batch.objs)
                else:
                    self.ids.set_pks(batch.objs, None)
            return
        if self.deferred_fks:
            self.stage = Stage(
                f"checking the foreign keys of batch {number}", number, first, last
            )
            self.check_foreign_keys(cursor, rows, batch.start)
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
            self.ids.set_pks(batch.objs, ids)

    def check_foreign_keys(
        self, cursor: CursorWrapper, rows: Sequence[Sequence[Any]], start: int
    ) -> None:
        try:
            cursor.execute(f"SET CONSTRAINTS {', '.join(self.deferred_fks)} IMMEDIATE")
        except Exception as exc:
            cause = exc.__cause__
            if isinstance(cause, psycopg.Error):
                error = copy_error(
                    cause,
                    label=self.label,
                    columns=self.columns,
                    index_of=lambda j: start + j,
                    rows=rows,
                    locator=self.locator,
                )
                if error is not None:
                    raise error from None
            raise

    def run(self, source: Source, size: int) -> None:
        bar = progress_callback(self.options.progress, source.total, self.label)
        try:
            self.prepare(source)
            self.stage = Stage("connecting to the database")
            self.connection.ensure_connection()
            self.connection.validate_no_broken_transaction()
            alias = self.connection.alias
            with transaction.atomic(using=alias), self.connection.cursor() as cursor:
                self.setup(cursor)
                try:
                    self.load_batches(cursor, source, size, bar)
                finally:
                    # Inside the transaction: a file source holds a server-side cursor.
                    source.close()
                self.finish(cursor)
                self.stage = Stage("committing the load")
        finally:
            source.close()
            if bar is not None:
                bar(None)

    def load_batches(
        self, cursor: CursorWrapper, source: Source, size: int, bar: Any
    ) -> None:
        batches = source.batches(size)
        # A file in PostgreSQL's formats is parsed by the server while it is read.
        reading = (
            f"reading the {source.kind} file"
            if source.kind in ("text", "binary")
            else "reading the rows"
        )
        try:
            while True:
                self.stage = Stage(reading)
                batch = next(batches, None)
                if batch is None:
                    break
                self.load(cursor, batch)
                if bar is not None:
                    bar(len(batch.rows))
        except RowProblem as problem:
            # Raised: the atomic block rolls the load back.
            raise problem_error(self.label, problem, self.locator) from None


def copy_from(
    model: type[models.Model], rows: Any, *, using: str, options: CopyOptions
) -> CopyResult:
    """Load ``rows`` into ``model``'s table with COPY; see :meth:`CopyQuerySet.copy_from`."""
    from django_dbtuning.conf import get_settings

    connection = connections[using]
    check_backend(connection)
    load = _Load(model, connection, options)
    failure: Exception | None = None
    source: Source | None = None
    try:
        source = open_source(load.plan, rows, options, using)
        if source is not None:
            load.run(source, options.batch_size or get_settings().copy_batch_size)
    except RowProblem as problem:
        failure = problem_error(load.label, problem)
    except CopyError as error:
        failure = error
    except (psycopg.Error, DatabaseError) as exc:
        # Any other server error: a CopyError that is also Django's class, with a
        # value-free message (a trigger's RAISE, a DETAIL or a CONTEXT may quote rows).
        failure = load_error(
            exc,
            label=load.label,
            stage=load.stage,
            columns=load.columns,
            locator=load.locator,
        )
        if failure is None:
            raise
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
