"""Loading files in PostgreSQL's own COPY formats (``text``, ``binary``), as ``copy_to`` writes.

PostgreSQL owns these formats, so it parses them: the file is streamed into a temporary
table with the target's column types (``COPY ... FROM STDIN (FORMAT text|binary)``), and
its rows are read back in order through a server-side cursor. From there they are rows
like any other input: the same checks (``NaN`` decimals, dates Django cannot read), the
same defaults, upserts and ids, the same errors naming the row. A value's trip through
the file is lossless (``\\N`` is NULL, any text including ``\\N``, tabs and newlines is
escaped by the server), and JSON is passed on as the text the server wrote.
"""

from __future__ import annotations

import codecs
import io
import os
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any

import psycopg
from django.db import connections
from psycopg import sql
from psycopg.types.json import Jsonb

from django_dbtuning.copy.connection import _observed, _with_wrappers
from django_dbtuning.copy.errors import copy_error
from django_dbtuning.copy.names import quote
from django_dbtuning.copy.plan import Column, ModelPlan, RowProblem
from django_dbtuning.copy.sources import Source, key_columns, tuple_source

__all__ = ["pg_source"]

_CHUNK = 1 << 16
_FETCH = 5000


def open_binary(source: Any) -> tuple[Any, list[Callable[[], None]]]:
    """A binary reader over a path or a binary file object, and its closers."""
    if isinstance(source, str | os.PathLike):
        handle = open(source, "rb")  # noqa: SIM115 - closed by the closers
        return handle, [handle.close]
    if isinstance(source, io.TextIOBase) or not isinstance(source.read(0), bytes):
        raise TypeError(
            "format='text' and 'binary' read bytes: open the file in binary mode "
            "('rb') or pass its path"
        )
    return source, []


def read_header(handle: Any, delimiter: str, encoding: str) -> tuple[list[str], bytes]:
    """The column names of a text-format header line, and the bytes read after it."""
    buffered = b""
    while b"\n" not in buffered:
        chunk = handle.read(_CHUNK)
        if not chunk:
            break
        buffered += chunk
    line, newline, rest = buffered.partition(b"\n")
    if not line and not newline:
        raise ValueError("the file is empty: expected a header line")
    try:
        text = line.decode(encoding).removeprefix("\ufeff").removesuffix("\r")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"the header line cannot be decoded as {encoding}: {exc.reason}"
        ) from None
    return text.split(delimiter), rest


def file_chunks(handle: Any, first: bytes, encoding: str) -> Iterator[bytes]:
    """The file's bytes as UTF-8 (the connection's encoding), in chunks."""
    decoder = None
    if codecs.lookup(encoding).name != "utf-8":
        decoder = codecs.getincrementaldecoder(encoding)()
    data = first
    while True:
        if data:
            yield data if decoder is None else decoder.decode(data).encode()
        data = handle.read(_CHUNK)
        if not data:
            if decoder is not None:
                tail = decoder.decode(b"", final=True).encode()
                if tail:
                    yield tail
            return


# Values PostgreSQL stores but Python (and so Django) cannot read back.
_UNREADABLE = {
    "DateField": "NOT isfinite({c}) OR {c} < '0001-01-01' OR {c} >= '10000-01-01'",
    "DateTimeField": (
        "NOT isfinite({c}) OR {c} < '0001-01-01 00:00:00+00' "
        "OR {c} >= '10000-01-01 00:00:00+00'"
    ),
    "DurationField": (
        "NOT isfinite({c}) OR {c} > '999999999 days' OR {c} < '-999999999 days'"
    ),
}


def _unreadable(cursor: Any, name: str, row: str, columns: Sequence[Column]) -> None:
    for column in columns:
        field = column.field
        template = _UNREADABLE.get(field.get_internal_type()) if column.known else None
        if template is None:
            continue
        condition = template.format(c=column.quoted)
        cursor.execute(f"SELECT min({row}) FROM {name} WHERE {condition}")
        (number,) = cursor.fetchone() or (None,)
        if number is not None:
            raise RowProblem(
                "PostgreSQL accepts this value (infinity, a year outside 1-9999 or an "
                "interval over 999999999 days) but Django cannot read it back",
                column=column.name,
                row=int(number) - 1,
            )


def staged_rows(
    plan: ModelPlan,
    columns: list[Column],
    chunks: Iterator[bytes],
    *,
    format: str,
    delimiter: str,
    null: str | None,
    alias: str,
) -> Generator[tuple[Any, ...], None, None]:
    """The file's rows, parsed by the server into the target's column types."""
    connection = connections[alias]
    relname = f"dbtuning_file_{uuid.uuid4().hex[:16]}"
    name = quote(relname)
    # The rows' order: a name no column of the model has.
    number = quote(plan.helper("dbtuning_row"))
    cols = ", ".join(c.quoted for c in columns)
    options = [sql.SQL("FORMAT {}").format(sql.SQL(format.upper()))]
    if format == "text":
        options.append(sql.SQL("DELIMITER {}").format(sql.Literal(delimiter)))
        if null is not None:
            options.append(sql.SQL("NULL {}").format(sql.Literal(null)))
    json_at = [
        i
        for i, c in enumerate(columns)
        if c.known and c.field.get_internal_type() == "JSONField"
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {name} ON COMMIT DROP AS "
            f"SELECT {cols} FROM {plan.quoted_table} WITH NO DATA"
        )
        cursor.execute(
            f"ALTER TABLE {name} ADD COLUMN {number} int8 GENERATED ALWAYS AS IDENTITY"
        )
        raw = cursor.cursor
        statement = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(
            sql.SQL(name), sql.SQL(cols), sql.SQL(", ").join(options)
        )
        text = statement.as_string(raw)

        def run() -> None:
            with raw.copy(statement) as copy:
                for chunk in chunks:
                    copy.write(chunk)

        try:
            with _observed(cursor, text):
                _with_wrappers(cursor, text, run)
        except psycopg.Error as exc:
            error = copy_error(
                exc,
                label=plan.model._meta.label,
                columns=columns,
                index_of=lambda j: j,
                relation=relname,
            )
            if error is not None:
                raise error from None
            raise
        _unreadable(cursor, name, number, columns)
        with raw.connection.cursor(
            name=f"dbtuning_read_{uuid.uuid4().hex[:12]}"
        ) as read:
            read.execute(f"SELECT {cols} FROM {name} ORDER BY {number}")
            while rows := read.fetchmany(_FETCH):
                for row in rows:
                    if json_at:
                        row = _raw_json(row, json_at)
                    yield row
        cursor.execute(f"DROP TABLE IF EXISTS {name}")


def _same(text: str) -> str:
    return text


def _raw_json(row: tuple[Any, ...], positions: list[int]) -> tuple[Any, ...]:
    # Django loads jsonb as its text; pass that text on unchanged (json.loads and dumps
    # would turn 1.10 into 1.1 and large numbers into floats).
    values = list(row)
    for i in positions:
        value = values[i]
        if isinstance(value, str):
            values[i] = Jsonb(value, dumps=_same)
        elif value is not None:
            values[i] = Jsonb(value)
    return tuple(values)


# -- PostgreSQL's text and binary COPY formats ---------------------------------------


def pg_source(
    plan: ModelPlan,
    rows: Any,
    *,
    format: str,
    fields: Sequence[str] | None,
    header: bool,
    mapping: Mapping[str, str | None] | None,
    delimiter: str,
    null: str | None,
    encoding: str,
    alias: str,
) -> Source:
    if mapping is not None:
        raise ValueError(
            "mapping= is for CSV files; name the columns of a text or binary file "
            "with fields=[...]"
        )
    handle, closers = open_binary(rows)
    try:
        first = b""
        keys = list(fields) if fields is not None else None
        if format == "text" and header:
            names, first = read_header(handle, delimiter, encoding)
            keys = keys if keys is not None else names
        if keys is None:
            raise ValueError(
                f"a {format} COPY file without a header needs fields=[...] naming its "
                "columns in order"
            )
        given = key_columns(plan, keys)
        items = staged_rows(
            plan,
            given,
            file_chunks(handle, first, encoding if format == "text" else "utf-8"),
            format=format,
            delimiter=delimiter,
            null=null,
            alias=alias,
        )
        src = tuple_source(plan, items, keys, None)
    except BaseException:
        for closer in closers:
            closer()
        raise
    src.kind = format
    # Close the reader (its server-side cursor) while the load's transaction is open.
    src.closers = [items.close, *closers]
    return src
