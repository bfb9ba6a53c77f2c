"""One COPY of rows into a table, and the rows psycopg cannot write.

The fast path hands values to psycopg as they are (see :mod:`.plan`); when a dumper refuses
one, psycopg drops the half-written row, the row is converted the way Django would and
written again, and only a value that still cannot be written fails the load, named by its
row and column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from django.db.backends.utils import CursorWrapper
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq import Format

from django_dbtuning.copy.connection import run_copy
from django_dbtuning.copy.errors import Locator, copy_error, problem_error
from django_dbtuning.copy.plan import Column, RowProblem
from django_dbtuning.copy.redact import conversion_reason, dumper_reason

__all__ = ["RowWriter", "unwritable"]

Row = Sequence[Any]


class RowWriter:
    """Copies rows of one load: binary (typed) or text, with errors naming the row.

    ``convertible``: rows made from Python values may be converted again on a dumper
    error; CSV cells were converted once already and some go to the server as text.
    """

    def __init__(
        self, label: str, locator: Locator, *, binary: bool, convertible: bool
    ) -> None:
        self.label = label
        self.locator = locator
        self.binary = binary
        self.convertible = convertible

    def copy(
        self,
        cursor: CursorWrapper,
        table: str,
        relation: str,
        columns: list[Column],
        rows: list[Row],
        index_of: Callable[[int], int],
    ) -> None:
        """COPY ``rows`` into ``table`` (``relation``: its bare name, as the server
        prints it); ``index_of`` maps a row's position to its input index."""
        cols = ", ".join(c.quoted for c in columns)
        statement = f"COPY {table} ({cols}) FROM STDIN"
        if self.binary:
            statement += " (FORMAT BINARY)"
        raw = cursor.cursor

        def write(copy: psycopg.Copy) -> None:
            if self.binary:
                copy.set_types([c.pg_type or "text" for c in columns])
            self._write(raw, copy, columns, rows, index_of)

        try:
            run_copy(cursor, statement, write)
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

    def _write(
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
                    fixed = self._convert(columns, rows[j], index_of(j))
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
                    raise self._error(
                        index_of(j), column, reason, value, again
                    ) from None

    def _convert(self, columns: list[Column], row: Row, index: int) -> list[Any]:
        values = []
        for column, value in zip(columns, row, strict=True):
            try:
                values.append(None if value is None else column.slow(value))
            except Exception as exc:
                reason = conversion_reason(exc, column.field)
                raise self._error(index, column.name, reason, value, exc) from None
        return values

    def _error(
        self,
        row: int,
        column: str | None,
        reason: str,
        value: Any,
        original: BaseException,
    ) -> Exception:
        problem = RowProblem(
            reason, column=column, row=row, value=value, original=original
        )
        return problem_error(self.label, problem, self.locator)


def unwritable(
    raw: psycopg.Cursor[Any],
    columns: Sequence[Column],
    values: Sequence[Any],
    exc: Exception,
    *,
    binary: bool,
) -> tuple[str | None, str, Any]:
    """The column whose value psycopg cannot write, why (value-free), and the value."""
    registry = raw.adapters.types
    for column, value in zip(columns, values, strict=True):
        if value is None:
            continue
        tx = Transformer(raw)
        try:
            if binary and column.pg_type:
                oid = registry.get_oid(column.pg_type)
                tx.set_dumper_types([oid], Format.BINARY)
                tx.dump_sequence([value], [PyFormat.BINARY])
            else:
                tx.get_dumper(value, PyFormat.TEXT).dump(value)
        except Exception as inner:
            reason = dumper_reason(inner)
            return (
                column.name,
                f"cannot store a {type(value).__name__}: {reason}",
                value,
            )
    return None, f"cannot write the row: {dumper_reason(exc)}", None
