"""The COPY of one batch: rows grouped by shape, written with fast dumpers, a refused row
converted again.

COPY has no per-row DEFAULT, so rows that leave a column out (an auto primary key, a
``db_default``) go in a COPY that omits it (:func:`groups`); nearly always every row of a
batch has the same shape: one group, and no row is copied.

The fast path hands values to psycopg as they are (see :mod:`.plan`); when a dumper refuses
one, psycopg drops the half-written row, the row is converted the way Django would and
written again, and only a value that still cannot be written fails the load, named by its
row and column.

psycopg's generic list dumper works out dimensions, element types and a dumper per element
for every array, about 1.2 µs for ``["new", "sale"]``: a load of one ``ArrayField`` of text
spends more time there than in the COPY itself. For the common shape, a flat list of
``str``, the binary array format is short enough to write directly (PostgreSQL's
``array_recv``: ndim, has-null flag, element oid, then size and lower bound, then each
element as length + bytes); anything else (``None`` elements, nesting, other types) goes
to psycopg's own dumper. These dumpers are registered on the load's cursor only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

import psycopg
from django.db.backends.utils import CursorWrapper
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq import Format

from django_dbtuning.copy.connection import run_copy
from django_dbtuning.copy.errors import Locator, copy_error, problem_error
from django_dbtuning.copy.plan import DB_DEFAULT, Column, RowProblem
from django_dbtuning.copy.redact import conversion_reason, dumper_reason

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


# -- rows by shape ------------------------------------------------------------------


class Group(NamedTuple):
    """Rows of one shape: their columns, and where each came from in the input.

    ``index_of`` maps a 0-based position in ``rows`` to the input index; ``positions``
    are the rows' positions in their batch (None: all of the batch, in order).
    """

    columns: list[Column]
    rows: list[Row]
    index_of: Callable[[int], int]
    positions: list[int] | None


def widen(rows: list[Row], full: int, short: int) -> list[Row]:
    """Give fast-path rows (``short`` long) their trailing DB_DEFAULT columns back."""
    if short == full:
        return rows
    pad = (DB_DEFAULT,) * (full - short)
    return [(*r, *pad[: full - len(r)]) if len(r) < full else r for r in rows]


def groups(
    columns: list[Column], short: int, rows: list[Row], start: int
) -> Iterator[Group]:
    optional = [i for i, c in enumerate(columns) if c.optional]
    if not optional:
        yield Group(columns, rows, lambda j: start + j, None)
        return
    if (
        short < len(columns)
        and not any(i < short for i in optional)
        and all(len(r) == short for r in rows)
    ):
        yield Group(columns[:short], rows, lambda j: start + j, None)
        return
    rows = widen(rows, len(columns), short)
    counts = {i: sum(1 for r in rows if r[i] is DB_DEFAULT) for i in optional}
    if all(n in (0, len(rows)) for n in counts.values()):
        drop = {i for i, n in counts.items() if n}
        yield Group(*_project(columns, rows, drop), lambda j: start + j, None)
        return
    shapes: dict[tuple[int, ...], list[int]] = {}
    for j, r in enumerate(rows):
        key = tuple(i for i in optional if r[i] is DB_DEFAULT)
        shapes.setdefault(key, []).append(j)
    for drop_key, positions in shapes.items():
        group_cols, group_rows = _project(
            columns, [rows[j] for j in positions], set(drop_key)
        )
        yield Group(
            group_cols,
            group_rows,
            lambda j, positions=positions: start + positions[j],  # type: ignore[misc]
            positions,
        )


def _project(
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


# -- fast binary dumpers --------------------------------------------------------------


_HEADER = struct.Struct("!iiIii").pack
_LENGTH = struct.Struct("!i").pack
_TEXT_ARRAYS = ("text", "varchar", "bpchar")


def _text_array_dumper(base: Any, array_oid: int, element_oid: int) -> Any:
    class TextArrayBinaryDumper(base):  # type: ignore[misc]
        oid = array_oid

        def dump(self, obj: Any) -> Any:
            if type(obj) is list and obj:
                parts: list[bytes] = [b""]
                append = parts.append
                for item in obj:
                    if type(item) is not str:
                        break
                    data = item.encode()
                    append(_LENGTH(len(data)))
                    append(data)
                else:
                    parts[0] = _HEADER(1, 0, element_oid, len(obj), 1)
                    return b"".join(parts)
            return super().dump(obj)

    return TextArrayBinaryDumper


def install_dumpers(cursor: psycopg.Cursor[Any], pg_types: set[str]) -> None:
    if cursor.connection.info.encoding != "utf-8":
        return
    registry = cursor.adapters.types
    for name in _TEXT_ARRAYS:
        if f"{name}[]" not in pg_types:
            continue
        info = registry.get(name)
        if info is None or not info.array_oid:
            continue
        try:
            base = cursor.adapters.get_dumper_by_oid(info.array_oid, Format.BINARY)
        except psycopg.ProgrammingError:
            continue
        cursor.adapters.register_dumper(
            None, _text_array_dumper(base, info.array_oid, info.oid)
        )
