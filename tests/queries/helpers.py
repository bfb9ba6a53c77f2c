"""Small query-running helpers shared by the recorder's concurrency and generator tests."""

from __future__ import annotations

from django.db import connection

from django_dbtuning.queries.recorder import _allowed, _unit

YIELD_WARNING = r"open across a `yield`"


def queries(n: int) -> None:
    with connection.cursor() as cursor:
        for _ in range(n):
            cursor.execute("SELECT 1")


def raw_n_plus_one() -> None:
    """Four executions of one shape from one line: an N+1 without any rows."""
    with connection.cursor() as cursor:
        for i in range(4):
            cursor.execute("SELECT %s::int", [i])


def nothing_current() -> bool:
    """No unit of work and no allowance is current in this context."""
    return _unit.get() is None and _allowed.get() is None
