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

import uuid
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import psycopg
from django.db import connections
from psycopg import sql
from psycopg.types.json import Jsonb

from django_dbtuning.copy.connection import create_numbered_table, run_copy
from django_dbtuning.copy.errors import copy_error
from django_dbtuning.copy.files import file_chunks, open_binary, read_header
from django_dbtuning.copy.names import quote
from django_dbtuning.copy.options import CopyOptions
from django_dbtuning.copy.plan import Column, ModelPlan, RowProblem
from django_dbtuning.copy.sources import Source, key_columns, tuple_source

_FETCH = 5000


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
    options: CopyOptions,
    alias: str,
) -> Generator[tuple[Any, ...], None, None]:
    """The file's rows, parsed by the server into the target's column types."""
    relname = f"dbtuning_file_{uuid.uuid4().hex[:16]}"
    name = quote(relname)
    # The rows' order: a name no column of the model has.
    number = quote(plan.helper("dbtuning_row"))
    cols = ", ".join(c.quoted for c in columns)
    options_sql = [sql.SQL("FORMAT {}").format(sql.SQL(options.format.upper()))]
    if options.format == "text":
        delimiter = "\t" if options.delimiter is None else options.delimiter
        options_sql.append(sql.SQL("DELIMITER {}").format(sql.Literal(delimiter)))
        if options.null is not None:
            options_sql.append(sql.SQL("NULL {}").format(sql.Literal(options.null)))
    json_at = [
        i
        for i, c in enumerate(columns)
        if c.known and c.field.get_internal_type() == "JSONField"
    ]
    with connections[alias].cursor() as cursor:
        create_numbered_table(
            cursor, name, like=plan.quoted_table, columns=cols, number=number
        )
        statement = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(
            sql.SQL(name), sql.SQL(cols), sql.SQL(", ").join(options_sql)
        )

        def write(copy: psycopg.Copy) -> None:
            for chunk in chunks:
                copy.write(chunk)

        try:
            run_copy(cursor, statement, write)
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
        with cursor.cursor.connection.cursor(
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


def pg_source(plan: ModelPlan, rows: Any, options: CopyOptions, alias: str) -> Source:
    if options.mapping is not None:
        raise ValueError(
            "mapping= is for CSV files; name the columns of a text or binary file "
            "with fields=[...]"
        )
    format = options.format
    handle, closers = open_binary(rows)
    try:
        first = b""
        keys = list(options.fields) if options.fields is not None else None
        if format == "text" and options.header:
            delimiter = "\t" if options.delimiter is None else options.delimiter
            names, first = read_header(handle, delimiter, options.encoding)
            keys = keys if keys is not None else names
        if keys is None:
            raise ValueError(
                f"a {format} COPY file without a header needs fields=[...] naming its "
                "columns in order"
            )
        given = key_columns(plan, keys)
        encoding = options.encoding if format == "text" else "utf-8"
        items = staged_rows(
            plan,
            given,
            file_chunks(handle, first, encoding),
            options=options,
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
