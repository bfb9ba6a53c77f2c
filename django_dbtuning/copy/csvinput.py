"""Reading CSV input for ``copy_from``: rows, NULLs and errors that name a line.

Only the ``csv`` module decides what a row is; the file is opened by :mod:`.files`.

NULL and the empty string follow PostgreSQL's own CSV format, which ``copy_to`` writes: an
unquoted empty cell is NULL and a quoted one (``""``) is the empty string. Python's ``csv``
returns ``""`` for both (before 3.12), so for rows with an empty cell in a column where the
difference matters (nullable text), the raw text of the record is kept and its quoting read
by :func:`quoted_fields`, which is checked against the ``csv`` module's own fields.
"""

from __future__ import annotations

import csv
import sys
import threading
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any

from django_dbtuning.copy.files import open_text, undecodable
from django_dbtuning.copy.options import CopyOptions
from django_dbtuning.copy.plan import (
    TEXT_INTERNAL_TYPES,
    Column,
    ModelPlan,
    RowProblem,
)
from django_dbtuning.copy.sources import Source, key_columns, tuple_source

# -- the csv module's field size limit ------------------------------------------------

_limit_lock = threading.Lock()
_limit_users = 0
_limit_saved = 0


def _largest_limit() -> int:
    # The limit is a C long: sys.maxsize does not fit where long is 32 bits (Windows).
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return limit
        except OverflowError:
            limit //= 2


def lifted_field_limit() -> Callable[[], None]:
    """Lift ``csv.field_size_limit`` (process-global) for one load; call the result after.

    Loads in several threads share one lift: the first sets the largest limit, the last
    one out puts the previous value back, so a cell over 128 KiB loads while any load
    runs and other csv users get their limit back afterwards.
    """
    global _limit_users, _limit_saved
    with _limit_lock:
        if _limit_users == 0:
            _limit_saved = csv.field_size_limit()
            _largest_limit()
        _limit_users += 1
    released = False

    def release() -> None:
        global _limit_users
        nonlocal released
        if released:
            return
        released = True
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                csv.field_size_limit(_limit_saved)

    return release


def quoted_fields(raw: str, delimiter: str, quotechar: str) -> list[bool]:
    """For each field of one CSV record, whether it was quoted.

    Mirrors the ``csv`` module's default reading (``doublequote=True``, no escape
    character, not strict): a field is quoted when it starts with ``quotechar``; inside
    it a doubled quote is a quote; text after the closing quote joins the field.
    """
    flags: list[bool] = []
    i = 0
    n = len(raw)
    ends = (delimiter, "\r", "\n")
    while True:
        if i < n and raw[i] == quotechar:
            flags.append(True)
            i += 1
            while i < n:
                if raw[i] == quotechar:
                    if i + 1 < n and raw[i + 1] == quotechar:
                        i += 2
                        continue
                    i += 1
                    break
                i += 1
        else:
            flags.append(False)
        while i < n and raw[i] not in ends:
            i += 1
        if i < n and raw[i] == delimiter:
            i += 1
            continue
        return flags


# -- rows -----------------------------------------------------------------------------


class CsvReader:
    """``csv.reader`` rows that know their line, their decoding and their NULLs.

    ``next()`` returns a list of cells; with :meth:`nulls_in` set, an unquoted empty cell
    in those positions comes back as None. Errors raise :class:`RowProblem` with the
    0-based data row (the header excluded) and the 1-based line of the file.
    """

    def __init__(
        self, handle: Any, *, delimiter: str, quotechar: str, encoding: str
    ) -> None:
        self.delimiter = delimiter
        self.quotechar = quotechar
        self.encoding = encoding
        self.lines_read = 0
        self.records = 0
        self.header_rows = 0
        self.width = 0
        self.names: list[str] = []
        self.raw: list[str] = []
        self.capture = False
        self.nullable: tuple[int, ...] = ()
        self.marker: str | None = None
        self.bad: tuple[int, int, str] | None = None
        self.record_line = 1
        # The first line of each data row of the current batch, to name it in errors.
        self.lines = array("q")
        self.lines_base = 0
        self.reader = csv.reader(
            self._lines(handle), delimiter=delimiter, quotechar=quotechar
        )

    def nulls_in(self, positions: Sequence[int], marker: str | None = None) -> None:
        """Read NULLs: an unquoted empty cell in ``positions`` (quoted ``""`` is the
        empty string), or, with ``marker``, an unquoted cell equal to it anywhere."""
        self.nullable = tuple(positions)
        self.marker = marker
        self.capture = bool(self.nullable) or marker is not None

    def _lines(self, handle: Any) -> Iterator[str]:
        lines = iter(handle)
        first = True
        while True:
            try:
                line = next(lines)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                # A text stream of the caller's that decodes strictly and ahead of
                # the rows: the byte is somewhere at or after this line.
                byte = exc.object[exc.start : exc.start + 1].hex()
                raise RowProblem(
                    f"byte 0x{byte} at or after line {self.lines_read + 1} cannot be "
                    f"decoded as {exc.encoding} ({exc.reason})"
                ) from None
            self.lines_read += 1
            if first:
                first = False
                line = line.removeprefix("\ufeff")  # a BOM is never data
            if self.bad is None:
                at = undecodable(line)
                if at >= 0:
                    self.bad = (self.lines_read, at, line[at])
            if self.capture:
                self.raw.append(line)
            yield line

    def problem(self, message: str, *, column: str | None = None) -> RowProblem:
        row = self.records - self.header_rows
        if row < 0:
            return RowProblem(f"CSV header: {message}", column=column)
        return RowProblem(message, column=column, row=row)

    def __iter__(self) -> CsvReader:
        return self

    def __next__(self) -> list[Any]:
        if self.capture:
            self.raw.clear()
        start = self.lines_read + 1
        try:
            row: list[Any] = next(self.reader)
        except csv.Error as exc:
            raise self.problem(f"line {self.lines_read}: {exc}") from None
        self.record_line = start
        if not row and self.width == 1:
            row = [""]  # one column: a blank line is an empty cell (NULL unless quoted)
        if self.bad is not None:
            self.undecodable(row)
        self.records += 1
        if self.records > self.header_rows:
            self.lines.append(start)
        if self.capture:
            self.mark_nulls(row)
        return row

    def mark(self, start: int) -> None:
        """A batch starting at data row ``start`` is being read: forget older lines."""
        del self.lines[:]
        self.lines_base = start

    def line_of(self, row: int) -> int | None:
        position = row - self.lines_base
        if 0 <= position < len(self.lines):
            return self.lines[position]
        return None

    def undecodable(self, row: list[Any]) -> None:
        line, at, char = self.bad or (0, 0, "")
        code = ord(char)
        byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else "a byte"
        column = None
        for i, cell in enumerate(row):
            if undecodable(cell) >= 0:
                column = self.names[i] if i < len(self.names) else None
                break
        raise self.problem(
            f"line {line}, character {at + 1}: {byte} cannot be decoded as "
            f"{self.encoding} (pass encoding=... or fix the file)",
            column=column,
        )

    def mark_nulls(self, row: list[Any]) -> None:
        if self.marker is None:
            empty = [p for p in self.nullable if p < len(row) and row[p] == ""]
        else:
            marker = self.marker
            empty = [p for p, cell in enumerate(row) if cell == marker]
        if not empty:
            return
        raw = "".join(self.raw)
        flags = quoted_fields(raw, self.delimiter, self.quotechar)
        if len(flags) != len(row):  # pragma: no cover - quoted_fields mirrors csv
            raise self.problem(
                f"line {self.record_line}: cannot tell a quoted empty cell from an "
                "unquoted one"
            )
        for p in empty:
            if not flags[p]:
                row[p] = None


# Cells the server parses itself: PostgreSQL's own text forms (JSON, array literals, bytea
# as written by COPY TO), which Django has no parser for.
_SERVER_PARSED = {"JSONField", "ArrayField", "BinaryField"}


def _csv_cell(column: Column) -> Callable[[Any], Any] | None:
    """How one CSV cell becomes a value: None where the text goes to the server as is.

    Text stays text; an empty cell is NULL except in a NOT NULL text column (the empty
    string, as Django stores it) and except when quoted (``""``, see csvinput). Other
    cells go through the field's own Django conversion, so a CSV is held to what
    ``save()`` accepts: ``NaN`` into a DecimalField, ``yes`` into a BooleanField or a date
    in year 10000 are refused, naive datetimes warn and are made aware.
    """
    f = column.field
    internal = f.get_internal_type() if column.known else None
    if internal in TEXT_INTERNAL_TYPES:
        return None
    if internal in _SERVER_PARSED:
        return _empty_to_none

    def convert(value: Any) -> Any:
        if value is None or value == "":
            return None
        try:
            return column.slow(value)
        except RowProblem:
            raise
        except Exception as exc:
            raise RowProblem.refused(exc, column, value) from None

    return convert


def csv_source(plan: ModelPlan, source: Any, options: CopyOptions) -> Source:
    delimiter = "," if options.delimiter is None else options.delimiter
    quotechar = options.quotechar
    checked: tuple[tuple[str, Any], ...] = (
        ("delimiter", delimiter),
        ("quotechar", quotechar),
    )
    for name, value in checked:
        if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
            raise ValueError(f"{name} must be one character, not {value!r}")
    if delimiter == quotechar:
        raise ValueError("delimiter and quotechar must differ")
    release = lifted_field_limit()
    closers: list[Callable[[], None]] = []
    try:
        handle, closers, encoding = open_text(source, options.encoding)
        reader = CsvReader(
            handle, delimiter=delimiter, quotechar=quotechar, encoding=encoding
        )
        src = _csv_columns(plan, reader, options)
    except BaseException:
        for closer in closers:
            closer()
        release()
        raise
    src.closers = [*closers, release]
    return src


def _read_header(
    reader: CsvReader,
    fields: Sequence[str] | None,
    mapping: Mapping[str, str | None] | None,
) -> tuple[list[str], set[int], dict[str, str]]:
    """The fields the header names, the positions to skip, each field's header."""
    reader.header_rows = 1
    try:
        names = [str(n) for n in next(reader)]
    except StopIteration:
        names = []
    if not names:
        raise ValueError("the CSV file is empty: expected a header row")
    reader.names = names
    keys: list[str] = []
    skip: set[int] = set()
    headers: dict[str, str] = {}
    for position, name in enumerate(names):
        target = mapping.get(name, name) if mapping is not None else name
        if target is None or (fields is not None and target not in fields):
            skip.add(position)
            continue
        keys.append(target)
        headers[target] = name
    if mapping:
        unknown = set(mapping) - set(names)
        if unknown:
            raise ValueError(
                f"mapping names CSV column(s) {sorted(unknown)} that the header "
                f"lacks; the header has {names}"
            )
    return keys, skip, headers


def _csv_columns(plan: ModelPlan, reader: CsvReader, options: CopyOptions) -> Source:
    fields, header = options.fields, options.header
    if header:
        keys, skip, headers = _read_header(reader, fields, options.mapping)
    else:
        if fields is None:
            raise ValueError("a CSV file without a header needs fields=[...]")
        keys, skip, headers = list(fields), set(), {}
    width = len(keys) + len(skip)
    reader.width = width
    keep = [i for i in range(width) if i not in skip]
    given = key_columns(plan, keys)
    # Where an unquoted empty cell (NULL) and a quoted one ("") differ: nullable text.
    reader.nulls_in(
        [
            position
            for position, column in zip(keep, given, strict=True)
            if column.field.null
            and column.known
            and column.field.get_internal_type() in TEXT_INTERNAL_TYPES
        ],
        marker=options.null,
    )
    shape = (
        f"cells like the header ({', '.join(reader.names)})"
        if header
        else "cells (fields=)"
    )
    rows: Iterator[Any] = reader
    if skip:
        picker = itemgetter(*keep) if len(keep) > 1 else None

        def pick(row: list[Any]) -> Any:
            if len(row) != width:
                raise RowProblem(
                    f"expected {width} {shape}, got {len(row)}",
                    row=reader.records - reader.header_rows - 1,
                )
            return picker(row) if picker else (row[keep[0]],)

        rows = map(pick, reader)
    src = tuple_source(
        plan, rows, keys, None, text=True, cell=_csv_cell, shape=shape, width=width
    )
    src.kind = "csv"
    src.mark = reader.mark
    src.line_of = reader.line_of
    src.headers = {plan.column(k).name: h for k, h in headers.items()}
    return src


def _empty_to_none(value: Any) -> Any:
    return None if value == "" else value
