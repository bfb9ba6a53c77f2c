"""``copy_to``: stream a queryset out with ``COPY (SELECT ...) TO STDOUT``.

The queryset's own SQL is wrapped, so its filters, ordering, joins and annotations are kept
exactly; each requested name becomes one output column in the order asked for.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from django.core.exceptions import EmptyResultSet
from django.db import connections, models
from django.db.backends.utils import CursorWrapper
from django.db.models import F
from psycopg import sql

from django_dbtuning.copy.connection import check_backend, run_copy
from django_dbtuning.copy.errors import database_error
from django_dbtuning.copy.options import FileFormat, check_format
from django_dbtuning.copy.redact import unchained


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
    format: FileFormat = "csv",
    header: bool = True,
    delimiter: str | None = None,
    null: str | None = None,
    encoding: str = "utf-8",
) -> int | bytes:
    """Export ``queryset`` with ``COPY (SELECT ...) TO STDOUT``.

    Keeps filters, ordering and annotations. ``fields`` may name fields, attnames,
    lookups (``customer__name``) and annotations; the default is every column plus
    the annotations. ``dest``: a path, a text or binary file object, or None to get
    the bytes back. Returns the number of rows written (bytes when ``dest`` is None).
    """
    check_format(format)
    if fields is not None and (
        isinstance(fields, str) or not isinstance(fields, list | tuple)
    ):
        raise TypeError(f"fields must be a list of names, not {fields!r}")
    given: Any = delimiter
    if given is not None and (not isinstance(given, str) or len(given) != 1):
        raise ValueError(f"delimiter must be one character, not {delimiter!r}")
    names = list(fields) if fields is not None else default_fields(queryset)
    if not names:
        raise ValueError("copy_to() needs at least one field")
    connection = connections[queryset.db]
    check_backend(connection)
    delim = (
        "" if format == "binary" else delimiter or ("," if format == "csv" else "\t")
    )
    statement = _statement(queryset, names, format, delim, null)
    target, close = _open(dest, encoding)
    written = 0
    failure: Exception | None = None
    try:
        if header and format != "binary":
            target(_header(names, format, delim).encode(encoding))
        if statement is not None:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                try:
                    written = _stream(cursor, *statement, target, encoding)
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


def _statement(
    queryset: models.QuerySet[Any],
    names: list[str],
    format: str,
    delimiter: str,
    null: str | None,
) -> tuple[sql.Composable, tuple[Any, ...]] | None:
    """``COPY (the queryset's SELECT) TO STDOUT`` and its parameters; None when the
    queryset can match no row."""
    aliases = {f"dbtuning_c{i}": F(name) for i, name in enumerate(names)}
    values = queryset.values(**aliases)
    try:
        query_sql, params = values.query.get_compiler(using=queryset.db).as_sql()
    except EmptyResultSet:
        return None
    if not query_sql:
        return None
    options = [sql.SQL("FORMAT {}").format(sql.SQL(format.upper()))]
    if format != "binary":
        options.append(sql.SQL("DELIMITER {}").format(sql.Literal(delimiter)))
        if null is not None:
            options.append(sql.SQL("NULL {}").format(sql.Literal(null)))
    statement = sql.SQL("COPY ({}) TO STDOUT ({})").format(
        sql.SQL(query_sql), sql.SQL(", ").join(options)
    )
    return statement, tuple(params)


def _header(names: list[str], format: str, delimiter: str) -> str:
    if format != "csv":
        return delimiter.join(names) + "\n"
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerow(names)
    return buffer.getvalue()


def _stream(
    cursor: CursorWrapper,
    statement: sql.Composable,
    params: tuple[Any, ...],
    target: Callable[[bytes], Any],
    encoding: str,
) -> int:
    transcode = None
    if codecs.lookup(encoding).name != "utf-8":
        transcode = codecs.getincrementaldecoder("utf-8")()

    def read(copy: psycopg.Copy) -> None:
        for block in copy:
            if transcode is None:
                target(bytes(block))
            else:
                target(transcode.decode(bytes(block)).encode(encoding))

    # No parameters, no placeholders: psycopg then leaves a % in a table name alone
    # (Django's own SQL with parameters cannot).
    run_copy(cursor, statement, read, params or None)
    return max(int(cursor.cursor.rowcount), 0)


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
