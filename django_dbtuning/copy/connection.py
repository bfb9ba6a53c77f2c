"""The load's connection: the backend COPY needs, and statements run as Django runs them.

A COPY is not a ``cursor.execute``: :func:`_observed` and :func:`_with_wrappers` give it
what Django gives a query (``execute_wrapper`` hooks, the DEBUG log and
``connection.queries``), so tools that watch queries see the COPY statements too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

__all__ = ["check_backend", "check_model"]


def check_backend(connection: BaseDatabaseWrapper) -> None:
    """Refuse anything but PostgreSQL through psycopg 3, in one actionable sentence."""
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


def check_model(model: type[models.Model]) -> None:
    """Refuse models whose rows span several tables, as ``bulk_create`` does."""
    opts = model._meta
    if opts.abstract or opts.swapped:
        raise TypeError(f"cannot COPY into abstract or swapped model {opts.label}")
    concrete = opts.concrete_model or model
    parents = [p for p in concrete._meta.get_parent_list() if p is not concrete]
    if parents:
        names = ", ".join(p._meta.label for p in parents)
        raise TypeError(
            f"cannot COPY into {opts.label}: it inherits from {names} (multi-table "
            "inheritance stores one row in several tables); load the parent and child "
            "models separately or use bulk_create on the parent"
        )


# -- statements through Django's wrappers ----------------------------------------------


@contextmanager
def _observed(cursor: CursorWrapper, statement: str) -> Iterator[None]:
    """Run a COPY as Django runs a query: execute_wrappers, DEBUG logging."""
    debug = getattr(cursor, "debug_sql", None)
    if debug is not None:
        with debug(statement):
            yield
    else:
        yield


def _with_wrappers(cursor: CursorWrapper, statement: str, fn: Callable[[], Any]) -> Any:
    run = getattr(cursor, "_execute_with_wrappers", None)
    if run is None or not cursor.db.execute_wrappers:
        return fn()

    def executor(sql: str, params: Any, many: bool, context: Any) -> Any:
        return fn()

    return run(statement, None, False, executor)
