"""``copy_to``: stream a queryset out with ``COPY (SELECT ...) TO STDOUT``.

The queryset's own SQL is wrapped, so its filters, ordering, joins and annotations are kept
exactly; each requested name becomes one output column in the order asked for.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Sequence
from typing import Any, Literal

import psycopg
from django.core.exceptions import EmptyResultSet
from django.db import connections, models
from django.db.models import F
from psycopg import sql

from django_dbtuning.copy.connection import (
    _observed,
    _with_wrappers,
    check_backend,
)
from django_dbtuning.copy.errors import database_error
from django_dbtuning.copy.redact import unchained

__all__ = ["copy_to"]

ExportFormat = Literal["csv", "text", "binary"]


def default_fields(queryset: models.QuerySet[Any]) -> list[str]:
    """Every concrete column (FKs by attname), then the queryset's annotations."""
    names = [f.attname for f in queryset.model._meta.concrete_fields]
    names += [n for n in queryset.query.annotation_select if n not in names]
    return names


def copy_to(
    queryset: models.QuerySet[Any],
    dest: Any = None,
    *,
    fields: Sequence[str] | None = None,
    format: ExportFormat = "csv",
    header: bool = True,
    delimiter: str | None = None,
    null: str | None = None,
    encoding: str = "utf-8",
) -> int | bytes:
    """Write the queryset's rows to ``dest``; see :meth:`CopyQuerySet.copy_to`."""
    if format not in ("csv", "text", "binary"):
        raise ValueError(f"format must be 'csv', 'text' or 'binary', not {format!r}")
    if fields is not None and (
        isinstance(fields, str) or not isinstance(fields, list | tuple)
    ):
        raise TypeError(f"fields must be a list of names, not {fields!r}")
    if format == "binary" and header:
        header = False
    given: Any = delimiter
    if given is not None and (not isinstance(given, str) or len(given) != 1):
        raise ValueError(f"delimiter must be one character, not {delimiter!r}")
    names = list(fields) if fields is not None else default_fields(queryset)
    if not names:
        raise ValueError("copy_to() needs at least one field")
    db = queryset.db
    connection = connections[db]
    check_backend(connection)
    aliases = {f"dbtuning_c{i}": F(name) for i, name in enumerate(names)}
    values = queryset.values(**aliases)
    try:
        query_sql, params = values.query.get_compiler(using=db).as_sql()
    except EmptyResultSet:
        query_sql, params = "", ()
    options = [sql.SQL("FORMAT {}").format(sql.SQL(format.upper()))]
    if format != "binary":
        delim = delimiter or ("," if format == "csv" else "\t")
        options.append(sql.SQL("DELIMITER {}").format(sql.Literal(delim)))
        if null is not None:
            options.append(sql.SQL("NULL {}").format(sql.Literal(null)))
    else:
        delim = ""
    target, close = _open(dest, encoding)
    written = 0
    failure: Exception | None = None
    try:
        if header:
            buffer = io.StringIO()
            if format == "csv":
                csv.writer(buffer, delimiter=delim, lineterminator="\n").writerow(names)
            else:
                buffer.write(delim.join(names) + "\n")
            target(buffer.getvalue().encode(encoding))
        if query_sql:
            statement = sql.SQL("COPY ({}) TO STDOUT ({})").format(
                sql.SQL(query_sql),
                sql.SQL(", ").join(options),
            )
            connection.ensure_connection()
            with connection.cursor() as cursor:
                raw = cursor.cursor
                text = statement.as_string(raw)

                def run() -> int:
                    transcode = None
                    if codecs.lookup(encoding).name != "utf-8":
                        transcode = codecs.getincrementaldecoder("utf-8")()
                    # No parameters, no placeholders: psycopg then leaves a % in a
                    # table name alone (Django's own SQL with parameters cannot).
                    with raw.copy(statement, tuple(params) or None) as copy:
                        for block in copy:
                            if transcode is None:
                                target(bytes(block))
                            else:
                                target(transcode.decode(bytes(block)).encode(encoding))
                    return max(int(raw.rowcount), 0)

                try:
                    with _observed(cursor, text):
                        written = int(_with_wrappers(cursor, text, run))
                except psycopg.Error as exc:
                    # The server's text may quote a query parameter: a value-free
                    # message, the psycopg error on .pg_error.
                    failure = database_error(
                        exc, f"COPY from {queryset.model._meta.label}"
                    )
                    if failure is None:  # pragma: no cover - exc is a psycopg error
                        raise
    finally:
        result = close()
    if failure is not None:
        # Without a chain: the psycopg error's text has the statement with the
        # parameters bound into it.
        raise unchained(failure)
    if dest is None:
        assert isinstance(result, bytes)
        return result
    return written


def _open(dest: Any, encoding: str) -> tuple[Any, Any]:
    """(write(bytes), close() -> bytes | None) for a path, a file object or None."""
    if dest is None:
        buffer = io.BytesIO()
        return buffer.write, buffer.getvalue
    if isinstance(dest, str | os.PathLike):
        handle = open(dest, "wb")  # noqa: SIM115

        def close_file() -> None:
            handle.close()

        return handle.write, close_file
    if isinstance(dest, io.TextIOBase):
        # COPY blocks may split a multi-byte character: decode incrementally.
        decoder = codecs.getincrementaldecoder(encoding)()

        def write_text(data: bytes) -> None:
            dest.write(decoder.decode(data))

        return write_text, lambda: None
    if hasattr(dest, "write"):
        return dest.write, lambda: None
    raise TypeError(
        f"dest must be None, a path or a writable file object, not {type(dest).__name__}"
    )
