"""Values for the columns a row does not carry: Python defaults, auto_now, the database's.

The columns a load fills itself come after the ones the rows give, calls (``default=``
callables) first, then constants, then the columns left to the database (an auto primary
key, ``db_default``), so that a row built on the fast path simply stops before those.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from django.db import models

from django_dbtuning.copy.plan import DB_DEFAULT, Column, ModelPlan, RowProblem
from django_dbtuning.copy.rowcode import RowSpec


class Defaults:
    """The columns of ``plan`` that are not in ``given``, and how each is filled."""

    def __init__(self, plan: ModelPlan, given: list[Column]) -> None:
        self.plan = plan
        self.calls: list[tuple[Column, Callable[[], Any]]] = []
        self.consts: list[tuple[Column, Any]] = []
        self.required: list[Column] = []
        for column in plan.columns.values():
            if column in given:
                continue
            kind, value = self.missing(column)
            if kind == "call":
                self.calls.append((column, value))
            elif kind == "const":
                self.consts.append((column, value))
            else:
                self.required.append(column)
        # Columns left to the database go last: dropping them from a row is a slice.
        self.consts.sort(key=lambda item: item[1] is DB_DEFAULT)
        self.filled = [c for c, _ in self.calls] + [c for c, _ in self.consts]
        self.columns = given + self.filled
        # Rows built on the fast path stop before the trailing DB_DEFAULT columns.
        self.short = len(self.columns) - sum(
            1 for _, value in self.consts if value is DB_DEFAULT
        )

    def missing(self, column: Column) -> tuple[str, Any]:
        """How to fill ``column`` when a row lacks it: ("call"|"const"|"required", v)."""
        f = column.field
        if column.auto_now:
            return "const", self.plan.now_value(column)
        if f.has_default():
            if f.default is uuid.uuid4:
                return "call", fast_uuid4()
            if callable(f.default):
                is_fk = isinstance(f, models.ForeignKey)
                return "call", f.get_default if is_fk else f.default
            return "const", f.get_default()
        if column.optional:
            return "const", DB_DEFAULT
        value = f.get_default()  # "" for string fields, None otherwise
        if value is None and not f.null:
            return "required", None
        return "const", value

    def value(self, column: Column) -> Any:
        kind, value = self.missing(column)
        if kind == "call":
            return value()
        if kind == "const":
            return value
        raise required(column)

    def tail_maker(self) -> Callable[[], tuple[Any, ...]]:
        tail = tuple(value for _, value in self.consts if value is not DB_DEFAULT)
        calls = [call for _, call in self.calls]
        if not calls:
            return lambda: tail
        if len(calls) == 1:
            (c0,) = calls
            return lambda: (c0(), *tail)
        if len(calls) == 2:
            c0, c1 = calls
            return lambda: (c0(), c1(), *tail)
        return lambda: (*(call() for call in calls), *tail)

    def spec(
        self,
        n: int,
        getter: Callable[[Any], tuple[Any, ...]] | None,
        slow: Callable[[Any], Any],
        *,
        strict: bool = True,
    ) -> RowSpec:
        """What the generated row builder needs to read ``n`` given values and fill
        the rest (see :mod:`.rowcode`)."""
        calls = [call for _, call in self.calls]
        consts = [v for _, v in self.consts if v is not DB_DEFAULT]
        return RowSpec(n, getter, slow, strict, calls, consts)


def required(column: Column, row: int | None = None) -> RowProblem:
    return RowProblem(
        f"no value for required field {column.name!r} (NOT NULL, no default)",
        column=column.name,
        integrity=True,
        row=row,
    )


_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (4 << 76)


def fast_uuid4(chunk: int = 4096) -> Callable[[], uuid.UUID]:
    """``uuid.uuid4`` for bulk loads: the same os.urandom bits, about 3x cheaper.

    ``uuid.uuid4()`` costs a system call and a validating ``UUID.__init__`` per value,
    a fifth of a whole COPY row; this draws the randomness in chunks and fills the
    UUID's slots the way ``UUID.__init__`` does (RFC 4122 variant, version 4).
    """
    new = object.__new__
    set_slot = object.__setattr__
    cls = uuid.UUID
    safe = uuid.SafeUUID.unknown
    from_bytes = int.from_bytes
    pending: Iterator[uuid.UUID] = iter(())

    def make(value: int) -> uuid.UUID:
        u = new(cls)
        set_slot(u, "int", (value & _UUID_CLEAR) | _UUID_SET)
        set_slot(u, "is_safe", safe)
        return u

    def refill() -> Iterator[uuid.UUID]:
        data = os.urandom(16 * chunk)
        return iter(
            [
                make(from_bytes(data[i : i + 16], "big"))
                for i in range(0, 16 * chunk, 16)
            ]
        )

    def uuid4() -> uuid.UUID:
        nonlocal pending
        for value in pending:
            return value
        pending = refill()
        return next(pending)

    return uuid4
