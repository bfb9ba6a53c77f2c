"""Statements on the load's connection: the backend COPY needs, COPY run as Django runs a
query, and the numbered temporary tables that staging and file loads write into.

A COPY is not a ``cursor.execute``: :func:`run_copy` gives it what Django gives a query
(``execute_wrapper`` hooks, the DEBUG log and ``connection.queries``), so tools that watch
queries see the COPY statements too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from psycopg import sql


def check_backend(connection: BaseDatabaseWrapper) -> None:
    if connection.vendor != "postgresql":
        raise ImproperlyConfigured(
            f"COPY needs PostgreSQL; database {connection.alias!r} uses "
            f"{connection.vendor}"
        )
    driver = getattr(getattr(connection, "Database", None), "__name__", "")
    if driver != "psycopg":
        raise ImproperlyConfigured(
            f"COPY needs psycopg 3; database {connection.alias!r} uses {driver}. "
            "Install 'psycopg[binary]' (Django prefers it over psycopg2 when both are "
            "installed)."
        )


def run_copy(
    cursor: CursorWrapper,
    statement: str | sql.Composable,
    body: Callable[[psycopg.Copy], None],
    params: Sequence[Any] | None = None,
) -> None:
    """Run a COPY statement, ``body`` reading or writing its data, as Django runs a query.

    ``cursor.cursor.rowcount`` holds the rows the COPY moved once it returns.
    """
    raw = cursor.cursor
    text = statement if isinstance(statement, str) else statement.as_string(raw)

    def run(*_: Any) -> None:
        with raw.copy(statement, params) as copy:
            body(copy)

    debug = getattr(cursor, "debug_sql", None)
    with debug(text) if debug is not None else nullcontext():
        wrapped = getattr(cursor, "_execute_with_wrappers", None)
        if wrapped is None or not cursor.db.execute_wrappers:
            run()
        else:
            wrapped(text, None, False, run)


def create_numbered_table(
    cursor: CursorWrapper,
    name: str,
    *,
    like: str,
    columns: str,
    number: str,
    alters: Sequence[str] = (),
) -> None:
    """A temporary table ``name`` with ``like``'s types for ``columns`` (quoted, comma
    separated), dropped at commit, whose identity column ``number`` counts rows in the
    order they are copied in."""
    cursor.execute(
        f"CREATE TEMPORARY TABLE {name} ON COMMIT DROP AS "
        f"SELECT {columns} FROM {like} WITH NO DATA"
    )
    changes = [f"ADD COLUMN {number} int8 GENERATED ALWAYS AS IDENTITY", *alters]
    cursor.execute(f"ALTER TABLE {name} {', '.join(changes)}")
