"""The primary keys of a load: the sequence behind them, ids taken up front, pks set.

With ``return_ids`` a plain insert takes its ids from the table's sequence before the COPY
(``nextval`` over ``generate_series``): ordered, concurrency-safe, and the COPY stays one
statement. Explicit ids move the sequence past them at the end, never backwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.backends.utils import CursorWrapper
from psycopg import sql

from django_dbtuning.copy.names import render
from django_dbtuning.copy.plan import DB_DEFAULT, ModelPlan
from django_dbtuning.copy.sources import gc_paused
from django_dbtuning.copy.writer import widen

Row = Sequence[Any]


class Ids:
    def __init__(self, plan: ModelPlan, alias: str) -> None:
        self.plan = plan
        self.alias = alias
        self.name: str | None = None

    def sequence(self, cursor: CursorWrapper) -> str | None:
        if self.name is None:
            cursor.execute(
                "SELECT pg_get_serial_sequence(%s, %s)",
                [self.plan.quoted_table, self.plan.pk.column],
            )
            (self.name,) = cursor.fetchone() or (None,)
        return self.name or None

    def take(self, cursor: CursorWrapper, count: int) -> list[Any]:
        """``count`` fresh ids from the table's sequence: ordered, concurrency-safe."""
        sequence = self.sequence(cursor)
        if sequence is None:
            raise ImproperlyConfigured(
                f"{self.plan.model._meta.label}.{self.plan.pk.name} has no sequence to "
                "take ids from"
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

    def fill(
        self,
        cursor: CursorWrapper,
        rows: list[Row],
        pk_pos: int,
        width: int,
        short: int,
    ) -> list[Row]:
        """``rows`` with a fresh id wherever the primary key (at ``pk_pos``) is left
        to the database; rows are ``width`` columns, ``short`` on the fast path."""
        # The common case: every row left out only the primary key, the last column.
        if (
            pk_pos == width - 1
            and short == pk_pos
            and all(len(r) == pk_pos for r in rows)
        ):
            ids = self.take(cursor, len(rows))
            with gc_paused():
                return [(*r, pk) for r, pk in zip(rows, ids, strict=True)]
        rows = widen(rows, width, short)
        missing = sum(1 for r in rows if r[pk_pos] is DB_DEFAULT)
        if not missing:
            return rows
        fresh = iter(self.take(cursor, missing))
        filled: list[Row] = []
        for r in rows:
            if r[pk_pos] is DB_DEFAULT:
                r = list(r)
                r[pk_pos] = next(fresh)
            filled.append(r)
        return filled

    def set_pks(self, objs: Sequence[models.Model], ids: Sequence[Any] | None) -> None:
        # As bulk_create does: an instance whose row is known is no longer "adding".
        pk_attname = self.plan.pk.attname
        for obj, pk in zip(objs, ids or [None] * len(objs), strict=True):
            if pk is not None:
                obj.__dict__[pk_attname] = pk
            if obj.__dict__.get(pk_attname) is not None:
                obj._state.adding = False
                obj._state.db = self.alias

    def move_past_loaded(self, cursor: CursorWrapper) -> None:
        sequence = self.sequence(cursor)
        if not sequence:
            return
        plan = self.plan
        statement = sql.SQL(
            "SELECT setval(s, m) FROM (SELECT {}::regclass AS s, "
            "(SELECT max({}) FROM {}) AS m) q "
            "WHERE m > coalesce(pg_sequence_last_value(s), 0)"
        ).format(
            sql.Literal(sequence),
            sql.SQL(plan.columns[plan.pk.name].quoted),
            sql.SQL(plan.quoted_table),
        )
        cursor.execute(render(cursor, statement))
