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
order. Duplicate keys within the load collapse to one row (``DISTINCT ON``), which ON
CONFLICT DO UPDATE requires (it cannot affect one row twice): ``"update"`` keeps the last
occurrence (what saving the rows one by one would leave), ``"ignore"`` the first (what
``ON CONFLICT DO NOTHING`` and ``bulk_create(ignore_conflicts=True)`` keep).

Rows that can never conflict (a NULL in a nullable key, or outside a partial unique index)
each stay a row of their own, are inserted, and with ``return_ids`` get their own new id,
taken from the sequence before the merge (:meth:`Staging.own_ids`).
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import transaction
from django.db.backends.utils import CursorWrapper
from psycopg import sql

from django_dbtuning.copy.conflict import Conflict
from django_dbtuning.copy.connection import create_numbered_table
from django_dbtuning.copy.errors import Locator, copy_error, key_detail
from django_dbtuning.copy.names import quote, render
from django_dbtuning.copy.plan import Column, ModelPlan


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
        *,
        plan: ModelPlan,
        columns: list[Column],
        conflict: Conflict,
        on_conflict: str,
        locator: Locator,
    ) -> None:
        self.connection = plan.connection
        self.plan = plan
        self.label = plan.model._meta.label
        self.table = plan.quoted_table
        pk = plan.columns.get(plan.pk.name)
        self.pk = pk if pk in columns else None
        self.columns = columns
        self.keys, self.order, self.updates, target = conflict
        self.on_conflict = on_conflict
        # SQL with its values bound (no %s): see conflict.Target.
        self.predicate = target.predicate
        self.nulls_distinct = target.nulls_distinct
        self.locator = locator
        self.relname = f"dbtuning_copy_{uuid.uuid4().hex[:16]}"
        self.name = quote(self.relname)
        # The staged row's number and the "never conflicts" group: names that no
        # column of the model has.
        self.row = quote(plan.helper("dbtuning_row"))
        self.alone_group = quote(plan.helper("dbtuning_alone"))
        self.count = 0
        self.given: dict[str, int] = {}
        self.segments: list[_Segment] = []
        self.firsts: list[int] = []

    # -- setup and staging -------------------------------------------------------

    def create(self, cursor: CursorWrapper) -> None:
        alters = [
            f"ALTER COLUMN {c.quoted} SET NOT NULL" for c in self.columns if c.not_null
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
                column = sql.Identifier(name).as_string()
                alters.append(f"ALTER COLUMN {column} SET DEFAULT {expression}")
        create_numbered_table(
            cursor,
            self.name,
            like=self.table,
            columns=", ".join(c.quoted for c in self.columns),
            number=self.row,
            alters=alters,
        )

    def add(
        self,
        columns: list[Column],
        count: int,
        start: int,
        positions: list[int] | None,
    ) -> None:
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

    def alone(self) -> str:
        """SQL over a staged row: true when it can never conflict, so it is inserted.

        A NULL in a nullable key (unless the constraint says NULLS NOT DISTINCT), or a
        row outside the partial unique index the keys name.
        """
        parts = [
            f"{k.quoted} IS NULL"
            for k in self.keys
            if k.field.null and self.nulls_distinct
        ]
        if self.predicate:
            parts.append(f"NOT coalesce(({self.predicate}), false)")
        return " OR ".join(parts)

    # -- the merge ---------------------------------------------------------------

    def own_ids(
        self, cursor: CursorWrapper, sequence: Callable[[], str | None]
    ) -> None:
        """Give every row that never conflicts its id before the merge.

        Such a row is inserted, but it shares its key values with other rows (an
        inactive slot with the code of the active one): joining on the key would give it
        the other row's id. With its id taken from the sequence now, :meth:`ids` reads it
        from the staging table.
        """
        pk = self.pk
        condition = self.alone()
        if pk is None or not condition or self.given.get(pk.name, 0) == self.count:
            return
        name = sequence()
        if name is None:
            return
        taken = self._number(cursor, pk, name, f" AND ({condition})")
        if taken:
            self.given[pk.name] = self.given.get(pk.name, 0) + taken

    def _number(
        self, cursor: CursorWrapper, pk: Column, sequence: str | None, where: str = ""
    ) -> int:
        """Give staged rows without an id one from ``sequence``; how many got one."""
        statement = sql.SQL(
            "UPDATE {table} SET {pk} = nextval({seq}::regclass) WHERE {pk} IS NULL"
        ).format(
            table=sql.SQL(self.name), pk=sql.SQL(pk.quoted), seq=sql.Literal(sequence)
        )
        cursor.execute(render(cursor, statement + sql.SQL(where)))
        return max(int(cursor.rowcount), 0)

    def merge(
        self,
        cursor: CursorWrapper,
        *,
        deferred_fks: list[str],
        sequence: Callable[[], str | None],
    ) -> tuple[int, int]:
        """INSERT every staged row in key order; (created, updated)."""
        if not self.count:
            return 0, 0
        pk = self.pk
        if pk is not None and 0 < self.given.get(pk.name, 0) < self.count:
            # Some rows brought their own id, others leave it to the sequence.
            self._number(cursor, pk, sequence())
        columns = [c for c in self.columns if c.name in self.given]
        try:
            with transaction.atomic(using=self.connection.alias):
                cursor.execute(self.statement(columns))
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

    def statement(self, columns: list[Column]) -> str:
        cols = ", ".join(c.quoted for c in columns)
        keys = [k.quoted for k in self.keys]
        row, group = self.row, self.alone_group
        if keys:
            # Rows that can never conflict are all kept: each is a group of its own.
            alone = self.alone()
            guard = f"CASE WHEN {alone} THEN {row} END" if alone else "NULL::int8"
            order = ", ".join(keys)
            # "update" keeps a key's last row, "ignore" its first (see the module).
            direction = "DESC" if self.on_conflict == "update" else "ASC"
            select = (
                f"SELECT DISTINCT ON ({order}, {group}) {cols} FROM "
                f"(SELECT *, {guard} AS {group} FROM {self.name}) dbtuning_s "
                f"ORDER BY {order}, {group}, {row} {direction}"
            )
            target = f"({order})"
            if self.predicate:
                target += f" WHERE {self.predicate}"
        else:
            # No conflict target: any unique constraint may conflict; lock in the
            # order of all of their columns, earlier rows first.
            order = "".join(f"{c.quoted}, " for c in self.order)
            select = f"SELECT {cols} FROM {self.name} ORDER BY {order}{row}"
            target = ""
        present = {c.name for c in columns}
        if self.on_conflict == "update":
            sets = [
                f"{c.quoted} = EXCLUDED.{c.quoted}"
                for c in self.updates
                if c.name in present
            ]
            if not sets:
                sets = [f"{keys[0]} = EXCLUDED.{keys[0]}"]
            action = f"DO UPDATE SET {', '.join(sets)}"
        else:
            action = "DO NOTHING"
        # Whether each written row was created (rather than updated).
        if getattr(self.connection, "pg_version", 0) >= 180000:
            pk = self.plan.columns[self.plan.pk.name].quoted
            returning = (
                f"RETURNING WITH (OLD AS dbtuning_old) dbtuning_old.{pk} IS NULL"
            )
        else:
            returning = "RETURNING dbtuning_t.xmax = 0"
        return (
            f"WITH dbtuning_ins AS (INSERT INTO {self.table} AS dbtuning_t ({cols}) "
            f"{select} ON CONFLICT {target} {action} {returning} AS created) "
            "SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE NOT created)"
            " FROM dbtuning_ins"
        )

    def ids(self, cursor: CursorWrapper) -> list[Any]:
        """The id of every staged row's table row, in input order (None if unknown).

        A row that can conflict has the id of the table row with its key (inside the
        partial index, for a partial one); a row that never conflicts has its own.
        """
        ids: list[Any] = [None] * self.count
        if not self.keys:
            return ids
        pk = self.plan.columns[self.plan.pk.name].quoted
        row = self.row
        # With NULLS NOT DISTINCT a NULL key matches a NULL key.
        join = " AND ".join(
            f"t.{k.quoted} IS NOT DISTINCT FROM s.{k.quoted}"
            if k.field.null and not self.nulls_distinct
            else f"t.{k.quoted} = s.{k.quoted}"
            for k in self.keys
        )
        where = f" WHERE {self.predicate}" if self.predicate else ""
        alone = self.alone()
        staged = self.name
        if alone:
            staged = f"(SELECT * FROM {self.name} WHERE NOT ({alone}))"
        query = (
            f"SELECT s.{row}, t.{pk} FROM {staged} s "
            f"JOIN (SELECT * FROM {self.table}{where}) t ON {join}"
        )
        if alone and self.pk is not None:
            query += f" UNION ALL SELECT {row}, {pk} FROM {self.name} WHERE {alone}"
        cursor.execute(query)
        for number, value in cursor.fetchall():
            ids[self.index_of(number)] = value
        return ids

    def drop(self, cursor: CursorWrapper) -> None:
        cursor.execute(f"DROP TABLE IF EXISTS {self.name}")

    # -- errors ------------------------------------------------------------------

    def explain(
        self, cursor: CursorWrapper, exc: psycopg.Error, columns: list[Column]
    ) -> Exception | None:
        """A CopyError for a data or constraint error of the merge, naming its row.

        Anything else (a deadlock, a timeout) is named by the engine with its stage.
        """
        if not (exc.sqlstate or "").startswith(("22", "23")):
            return None
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
        diag = exc.diag
        by_column = {c.column: c for c in columns}
        condition: sql.Composable | None = None
        key = key_detail(diag.message_detail)
        if key is not None:
            names, values = key
            if all(n in by_column for n in names):
                texts = ", ".join(
                    f"coalesce({by_column[n].quoted}::text, 'null')" for n in names
                )
                condition = sql.SQL("concat_ws(', ', {}) = {}").format(
                    sql.SQL(texts), sql.Literal(values)
                )
        elif exc.sqlstate == "23502" and diag.column_name in by_column:
            column = by_column[diag.column_name or ""]
            condition = sql.SQL(f"{column.quoted} IS NULL")
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
                condition = sql.SQL(f"NOT coalesce({check}, true)")
        if condition is None:
            return None
        try:
            # Last occurrence: with duplicates in the load, the later row is the one
            # that collided. The key value is bound into the text: run on the driver's
            # cursor, so Django neither logs it nor keeps it in queries.
            with transaction.atomic(using=self.connection.alias):
                raw = cursor.cursor
                statement = sql.SQL("SELECT max({}) FROM {} WHERE {}").format(
                    sql.SQL(self.row), sql.SQL(self.name), condition
                )
                raw.execute(render(raw, statement))
                (number,) = raw.fetchone() or (None,)
        except Exception:
            return None
        return None if number is None else int(number)
