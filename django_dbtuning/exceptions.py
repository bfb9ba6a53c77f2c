"""Exceptions and warnings raised by django-dbtuning.

Every error derives from :class:`DbTuningError`; where a Django database error applies, the
error also derives from it, so existing ``except IntegrityError`` blocks keep working.
"""

from __future__ import annotations

from typing import Any

from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
)

__all__ = [
    "CopyConcurrencyError",
    "CopyDataError",
    "CopyDatabaseError",
    "CopyError",
    "CopyIntegrityError",
    "CopyInterfaceError",
    "CopyInternalError",
    "CopyNotSupportedError",
    "CopyOperationalError",
    "CopyProgrammingError",
    "DbTuningError",
    "DuplicateQueriesError",
    "DuplicateQueriesWarning",
    "EmbeddedPostgresError",
    "InvalidDatabaseURL",
    "NPlusOneError",
    "NPlusOneWarning",
    "QueryBudgetExceeded",
    "QueryBudgetWarning",
    "QueryProblemError",
    "QueryProblemWarning",
    "QuerySnapshotMismatch",
    "UnusedEagerLoadWarning",
]


class DbTuningError(Exception):
    """Base class of every django-dbtuning error."""

    __module__ = "django_dbtuning"


class QueryProblemError(DbTuningError):
    """Base of the errors a unit of work raises for what it found (reaction ``"raise"``).

    :class:`NPlusOneError`, :class:`DuplicateQueriesError` and
    :class:`QueryBudgetExceeded`; catch this one for all three. ``findings`` lists the
    findings behind the error (none for a budget).
    """

    __module__ = "django_dbtuning"

    def __init__(self, message: str, findings: list[Any] | None = None) -> None:
        super().__init__(message)
        self.findings: list[Any] = list(findings or [])


class NPlusOneError(QueryProblemError):
    """An N+1 query pattern was detected where it is not allowed."""

    __module__ = "django_dbtuning"


class DuplicateQueriesError(QueryProblemError):
    """Identical queries (same SQL, same parameters) ran repeatedly.

    Not an :class:`NPlusOneError`: a repeated lookup is fixed by reusing its result, not by
    eager loading. Catch :class:`QueryProblemError` for both.
    """

    __module__ = "django_dbtuning"


class QueryBudgetExceeded(QueryProblemError):
    """A unit of work ran more queries than its budget allows."""

    __module__ = "django_dbtuning"

    def __init__(self, message: str, *, count: int = 0, budget: int = 0) -> None:
        super().__init__(message)
        self.count = count
        self.budget = budget


class QuerySnapshotMismatch(DbTuningError, AssertionError):
    """A block's queries differ from its recorded query snapshot, or it has none in CI.

    An ``AssertionError``, so test runners report it as a failed test. ``diff`` holds the
    unified diff of the recorded and the new entries.
    """

    __module__ = "django_dbtuning"

    def __init__(self, message: str, *, diff: str = "") -> None:
        super().__init__(message)
        self.diff = diff


class QueryProblemWarning(UserWarning):
    """Base of the warnings a unit of work emits for what it found (reaction ``"warn"``)."""

    __module__ = "django_dbtuning"


class NPlusOneWarning(QueryProblemWarning):
    """An N+1 query pattern was detected (``ON_N_PLUS_ONE = "warn"``)."""

    __module__ = "django_dbtuning"


class DuplicateQueriesWarning(QueryProblemWarning):
    """Identical queries ran repeatedly (``ON_DUPLICATE = "warn"``)."""

    __module__ = "django_dbtuning"


class QueryBudgetWarning(QueryProblemWarning):
    """A unit of work ran more queries than its budget (``ON_QUERY_BUDGET = "warn"``)."""

    __module__ = "django_dbtuning"


class UnusedEagerLoadWarning(QueryProblemWarning):
    """A ``select_related`` / ``prefetch_related`` load nothing read
    (``UNUSED_EAGER_LOADS = "warn"``); ``finding`` is the
    :class:`~django_dbtuning.queries.UnusedEagerLoad`."""

    __module__ = "django_dbtuning"

    def __init__(self, message: str, finding: Any = None) -> None:
        super().__init__(message)
        self.finding = finding


class CopyError(DbTuningError):
    """A COPY load failed; ``row`` and ``column`` locate the bad value in the input.

    Raised as :class:`CopyDataError`, :class:`CopyIntegrityError`,
    :class:`CopyConcurrencyError` or, for any other database error of a load, one of the
    classes in :mod:`django_dbtuning.copy` (``CopyProgrammingError``...), so that it is
    also the matching Django database error; catch ``CopyError`` for all of them.

    The message (``str()``, ``repr()``, ``args``) never contains a value from the rows:
    it names the model, the input row (and CSV line and header), the field, the
    constraint and the condition ("invalid input syntax for type integer", "duplicate
    key value violates unique constraint ...", "value too long for type character
    varying(20)"). The error is raised ``from None``, so a traceback does not print the
    driver's error either. What the server and the field said, which may quote the
    value, stays on attributes for your own code, never in the message:

    * ``pg_message``: the server's primary message (``invalid input syntax for type
      integer: "12a"``); ``detail``: its DETAIL (``Key (email)=(a@b.c) already
      exists.``, ``Failing row contains (...)``); ``pg_error``: the psycopg error itself
      (CONTEXT, HINT, every ``diag`` field). None for an error found in Python.
    * ``value``: the value a field's conversion refused, for errors found in Python
      (None otherwise); ``original``: the exception that conversion raised (a
      ``ValidationError``, ``ValueError``...), or the psycopg error.
    * ``sqlstate``, ``constraint``: value-free codes and names.
    """

    __module__ = "django_dbtuning"

    def __init__(
        self,
        message: str,
        *,
        row: int | None = None,
        column: str | None = None,
        pg_message: str | None = None,
        sqlstate: str | None = None,
        detail: str | None = None,
        constraint: str | None = None,
        value: Any = None,
        original: BaseException | None = None,
        pg_error: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.row = row
        self.column = column
        self.pg_message = pg_message
        self.sqlstate = sqlstate
        self.detail = detail
        self.constraint = constraint
        self.value = value
        self.pg_error = pg_error
        self.original = original if original is not None else pg_error


class CopyDataError(CopyError, DataError):
    """A value could not be stored: wrong type, too long, out of range."""

    __module__ = "django_dbtuning"


class CopyIntegrityError(CopyError, IntegrityError):
    """A row broke a constraint: NOT NULL, unique, foreign key, check."""

    __module__ = "django_dbtuning"


class CopyConcurrencyError(CopyError, OperationalError):
    """Another transaction stopped the load: deadlock, serialization failure, lock or
    statement timeout. The load was rolled back and wrote nothing; retrying may succeed.

    ``first_row`` and ``last_row`` (0-based input indexes) bound the rows being written
    when it happened, ``batch`` is the 0-based batch (None for the final upsert
    statement, which writes every row of the load at once).
    """

    __module__ = "django_dbtuning"

    def __init__(
        self,
        message: str,
        *,
        first_row: int | None = None,
        last_row: int | None = None,
        batch: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.first_row = first_row
        self.last_row = last_row
        self.batch = batch


# Any other database error of a load, each also Django's class of the same name. Public
# at django_dbtuning.copy, next to the API that raises them.


class CopyOperationalError(CopyError, OperationalError):
    """A server or connection failure during a load that is not about the rows."""

    __module__ = "django_dbtuning.copy"


class CopyProgrammingError(CopyError, ProgrammingError):
    """The server refused a statement of the load (permission denied, a trigger...)."""

    __module__ = "django_dbtuning.copy"


class CopyInternalError(CopyError, InternalError):
    """The server's internal error during a load."""

    __module__ = "django_dbtuning.copy"


class CopyNotSupportedError(CopyError, NotSupportedError):
    """The server does not support what the load asked for."""

    __module__ = "django_dbtuning.copy"


class CopyDatabaseError(CopyError, DatabaseError):
    """Any other database error during a load."""

    __module__ = "django_dbtuning.copy"


class CopyInterfaceError(CopyError, InterfaceError):
    """The driver's own error during a load (a connection closed under it)."""

    __module__ = "django_dbtuning.copy"


class InvalidDatabaseURL(DbTuningError, ValueError):
    """A database URL could not be turned into a ``DATABASES`` entry."""

    __module__ = "django_dbtuning"


class EmbeddedPostgresError(DbTuningError):
    """The throwaway PostgreSQL server for tests and demos could not be started."""

    __module__ = "django_dbtuning"
