"""Upserts: every batch is staged first, then one ``INSERT ... ON CONFLICT`` in key order.

Why one statement for the whole load: two loads that upsert overlapping keys lock the same
rows. Sorting inside each batch is not enough when a load has several batches (each batch
locks its keys and keeps them until the transaction ends, so load A can hold key 9 from
batch 1 while waiting for key 3 that load B holds from its batch 1, and B waits for 9: a
deadlock). Staging all rows and inserting them with one ``INSERT ... SELECT ... ORDER BY
key`` makes every load take its row locks in the same (key) order, so concurrent upserts
wait for each other but cannot deadlock, whatever the batch size and input order.

The staging table is a temporary table with the target's own column types (no casts, so an
over-long value still raises), ``ON COMMIT DROP``, numbered by an identity column in input
order. Duplicate keys within the load collapse to the last occurrence (``DISTINCT ON``),
which ON CONFLICT DO UPDATE requires (it cannot affect one row twice).
"""

from __future__ import annotations

import bisect
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from django_dbtuning.copying.errors import Locator, concurrency_error, copy_error
from django_dbtuning.copying.plan import Column

__all__ = ["Staging"]

_KEY = re.compile(r"Key \((?P<cols>.+?)\)=\((?P<vals>.*)\)(?: already exists| is not)")


@dataclass
class _Segment:
    """Staged rows ``first`` .. ``first + count - 1`` came from these input indexes."""

    first: int
    start: int
    count: int
    positions: list[int] | None

    def index(self, number: int) -> int:
        j = number - self.first
        return self.start + (self.positions[j] if self.positions is not None else j)


class Staging:
    """The rows of one upsert load, staged, then merged into the table at the end."""

    def __init__(
        self,
        connection: BaseDatabaseWrapper,
        *,
        label: str,
        table: str,
        pk: Column | None,
        columns: list[Column],
        keys: list[Column],
        order: list[Column],
        updates: list[Column],
        on_conflict: str,
        predicate: str,
        predicate_params: list[Any],
        locator: Locator,
    ) -> None:
        self.connection = connection
        self.qn = connection.ops.quote_name
        self.label = label
        self.table = table
        self.pk = pk
        self.columns = columns
        self.keys = keys
        self.order = order
        self.updates = updates
        self.on_conflict = on_conflict
        self.predicate = predicate
        self.predicate_params = predicate_params
        self.locator = locator
        self.name = self.qn(f"dbtuning_copy_{uuid.uuid4().hex[:16]}")
        self.count = 0
        self.given: dict[str, int] = {}
        self.segments: list[_Segment] = []
        self.firsts: list[int] = []

    # -- setup and staging -------------------------------------------------------

    def create(self, cursor: CursorWrapper) -> None:
        qn = self.qn
        cols = ", ".join(qn(c.column) for c in self.columns)
        cursor.execute(
            f"CREATE TEMPORARY TABLE {self.name} ON COMMIT DROP AS "
            f"SELECT {cols} FROM {self.table} WITH NO DATA"
        )
        alters = ["ADD COLUMN dbtuning_row int8 GENERATED ALWAYS AS IDENTITY"]
        alters += [
            f"ALTER COLUMN {qn(c.column)} SET NOT NULL"
            for c in self.columns
            if c.not_null
        ]
        # A row that leaves a db_default column out gets the table's default in the
        # staging table, so rows of every shape go in one INSERT.
        defaults = [
            c.column for c in self.columns if c.optional and not c.field.primary_key
        ]
        if defaults:
            cursor.execute(
                "SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) "
                "FROM pg_attribute a JOIN pg_attrdef d "
                "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                "WHERE a.attrelid = %s::regclass AND a.attname = ANY(%s)",
                [self.table, defaults],
            )
            for name, expression in cursor.fetchall():
                alters.append(f"ALTER COLUMN {qn(name)} SET DEFAULT {expression}")
        cursor.execute(f"ALTER TABLE {self.name} {', '.join(alters)}")

    def add(
        self,
        columns: list[Column],
        count: int,
        start: int,
        positions: list[int] | None,
    ) -> None:
        """Note that ``count`` rows of ``columns`` were just copied into the table."""
        segment = _Segment(self.count + 1, start, count, positions)
        self.segments.append(segment)
        self.firsts.append(segment.first)
        self.count += count
        for column in columns:
            self.given[column.name] = self.given.get(column.name, 0) + count

    def index_of(self, number: int) -> int:
        """The input index of staged row ``number`` (1-based, the identity column)."""
        segment = self.segments[bisect.bisect_right(self.firsts, number) - 1]
        return segment.index(number)

    # -- the merge ---------------------------------------------------------------

    def merge(
        self,
        cursor: CursorWrapper,
        *,
        deferred_fks: list[str],
        sequence: Callable[[], str | None],
        returning: str,
    ) -> tuple[int, int]:
        """INSERT every staged row in key order; (created, updated)."""
        if not self.count:
            return 0, 0
        qn = self.qn
        columns = [c for c in self.columns if c.name in self.given]
        pk = self.pk
        if pk is not None and 0 < self.given.get(pk.name, 0) < self.count:
            # Some rows brought their own id, others leave it to the sequence.
            name = sequence()
            cursor.execute(
                f"UPDATE {self.name} SET {qn(pk.column)} = nextval(%s::regclass) "
                f"WHERE {qn(pk.column)} IS NULL",
                [name],
            )
        statement, params = self.statement(columns, returning)
        try:
            with transaction.atomic(using=self.connection.alias):
                cursor.execute(statement, params or None)
                created, updated = cursor.fetchone() or (0, 0)
                if deferred_fks:
                    cursor.execute(
                        f"SET CONSTRAINTS {', '.join(deferred_fks)} IMMEDIATE"
                    )
        except Exception as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            if isinstance(cause, psycopg.Error):
                error = self.explain(cursor, cause, columns)
                if error is not None:
                    raise error from None
            raise
        return int(created), int(updated)

    def statement(self, columns: list[Column], returning: str) -> tuple[str, list[Any]]:
        qn = self.qn
        cols = ", ".join(qn(c.column) for c in columns)
        keys = [qn(k.column) for k in self.keys]
        params: list[Any] = []
        if keys:
            # Rows that can never conflict (a NULL key, outside a partial index) are all
            # kept: each gets its own DISTINCT ON group.
            alone = [f"{qn(k.column)} IS NULL" for k in self.keys if k.field.null]
            if self.predicate:
                alone.append(f"NOT coalesce(({self.predicate}), false)")
                params += self.predicate_params
            guard = (
                f"CASE WHEN {' OR '.join(alone)} THEN dbtuning_row END"
                if alone
                else "NULL::int8"
            )
            order = ", ".join(keys)
            select = (
                f"SELECT DISTINCT ON ({order}, dbtuning_alone) {cols} FROM "
                f"(SELECT *, {guard} AS dbtuning_alone FROM {self.name}) dbtuning_s "
                f"ORDER BY {order}, dbtuning_alone, dbtuning_row DESC"
            )
            target = f"({order})"
            if self.predicate:
                target += f" WHERE {self.predicate}"
                params += self.predicate_params
        else:
            # No conflict target: any unique constraint may conflict; lock in the
            # order of all of their columns.
            order = "".join(f"{qn(c.column)}, " for c in self.order)
            select = f"SELECT {cols} FROM {self.name} ORDER BY {order}dbtuning_row"
            target = ""
        present = {c.name for c in columns}
        if self.on_conflict == "update":
            sets = [
                f"{qn(c.column)} = EXCLUDED.{qn(c.column)}"
                for c in self.updates
                if c.name in present
            ]
            if not sets:
                sets = [f"{keys[0]} = EXCLUDED.{keys[0]}"]
            action = f"DO UPDATE SET {', '.join(sets)}"
        else:
            action = "DO NOTHING"
        statement = (
            f"WITH dbtuning_ins AS (INSERT INTO {self.table} AS dbtuning_t ({cols}) "
            f"{select} ON CONFLICT {target} {action} {returning} AS created) "
            "SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE NOT created)"
            " FROM dbtuning_ins"
        )
        return statement, params

    def ids(self, cursor: CursorWrapper, pk_column: str) -> list[Any]:
        """The id of every staged row's table row, in input order (None if unknown)."""
        qn = self.qn
        ids: list[Any] = [None] * self.count
        if not self.keys:
            return ids
        join = " AND ".join(f"t.{qn(k.column)} = s.{qn(k.column)}" for k in self.keys)
        where = f" WHERE {self.predicate}" if self.predicate else ""
        cursor.execute(
            f"SELECT s.dbtuning_row, t.{qn(pk_column)} FROM {self.name} s "
            f"JOIN (SELECT * FROM {self.table}{where}) t ON {join}",
            self.predicate_params or None,
        )
        for number, pk in cursor.fetchall():
            ids[self.index_of(number)] = pk
        return ids

    def drop(self, cursor: CursorWrapper) -> None:
        cursor.execute(f"DROP TABLE IF EXISTS {self.name}")

    # -- errors ------------------------------------------------------------------

    def explain(
        self, cursor: CursorWrapper, exc: psycopg.Error, columns: list[Column]
    ) -> Exception | None:
        """A CopyError for a failed merge, naming the input row where it can be found."""
        transient = concurrency_error(
            exc,
            label=self.label,
            stage="writing the staged rows (one INSERT ... ON CONFLICT in key order)",
            first_row=0,
            last_row=self.count - 1,
            batch=None,
        )
        if transient is not None:
            return transient
        number = self.locate(cursor, exc, columns)
        row = None if number is None else self.index_of(number)
        return copy_error(
            exc,
            label=self.label,
            columns=columns,
            index_of=None,
            located=row,
            locator=self.locator,
        )

    def locate(
        self, cursor: CursorWrapper, exc: psycopg.Error, columns: list[Column]
    ) -> int | None:
        """The staged row behind a constraint error, found by asking the staging table."""
        qn = self.qn
        diag = exc.diag
        by_column = {c.column: c for c in columns}
        condition: str | None = None
        params: list[Any] = []
        match = _KEY.search(diag.message_detail or "")
        if match:
            names = [n.strip().strip('"') for n in match["cols"].split(",")]
            if all(n in by_column for n in names):
                texts = [f"coalesce({qn(n)}::text, 'null')" for n in names]
                condition = f"concat_ws(', ', {', '.join(texts)}) = %s"
                params = [match["vals"]]
        elif exc.sqlstate == "23502" and diag.column_name in by_column:
            condition = f"{qn(diag.column_name or '')} IS NULL"
        elif exc.sqlstate == "23514" and diag.constraint_name:
            cursor.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND conname = %s AND contype = 'c'",
                [self.table, diag.constraint_name],
            )
            found = cursor.fetchone()
            text = found[0] if found else ""
            if text.startswith("CHECK "):
                check = text.removeprefix("CHECK ").removesuffix(" NOT VALID")
                condition = f"NOT coalesce({check}, true)"
        if condition is None:
            return None
        try:
            # Last occurrence: with duplicates in the load, the later row is the one
            # that collided. The parameter is a key value from the rows: run on the
            # driver's cursor, so Django neither logs it nor keeps it in queries.
            with transaction.atomic(using=self.connection.alias):
                raw = cursor.cursor
                raw.execute(
                    f"SELECT max(dbtuning_row) FROM {self.name} WHERE {condition}",
                    params or None,
                )
                (number,) = raw.fetchone() or (None,)
        except Exception:
            return None
        return None if number is None else int(number)
