"""django-dbtuning: make Django on PostgreSQL fast and keep it fast.

Importable from ``settings.py``: nothing here touches Django's settings or the database.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from django_dbtuning.exceptions import (
    CopyConcurrencyError,
    CopyDataError,
    CopyError,
    CopyIntegrityError,
    DbTuningError,
    DuplicateQueriesError,
    DuplicateQueriesWarning,
    EmbeddedPostgresError,
    InvalidDatabaseURL,
    NPlusOneError,
    NPlusOneWarning,
    QueryBudgetExceeded,
    QueryBudgetWarning,
    QueryProblemError,
    QueryProblemWarning,
    QuerySnapshotMismatch,
    UnusedEagerLoadWarning,
)
from django_dbtuning.pool import PoolSizing, database, pool_size

_LAZY = {
    "allow_n_plus_one": "django_dbtuning.queries",
    "n_plus_one_detected": "django_dbtuning.queries",
    "snapshot_queries": "django_dbtuning.queries",
    "query_budget": "django_dbtuning.queries",
    "track_queries": "django_dbtuning.queries",
}


def __getattr__(name: str) -> object:
    # The query-tracking API imports django.db; load it on first use so that this
    # package stays importable from settings.py.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'django_dbtuning' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


try:
    __version__ = version("django-dbtuning")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "CopyConcurrencyError",
    "CopyDataError",
    "CopyError",
    "CopyIntegrityError",
    "DbTuningError",
    "DuplicateQueriesError",
    "DuplicateQueriesWarning",
    "EmbeddedPostgresError",
    "InvalidDatabaseURL",
    "NPlusOneError",
    "NPlusOneWarning",
    "PoolSizing",
    "QueryBudgetExceeded",
    "QueryBudgetWarning",
    "QueryProblemError",
    "QueryProblemWarning",
    "QuerySnapshotMismatch",
    "UnusedEagerLoadWarning",
    "__version__",
    "allow_n_plus_one",
    "database",
    "n_plus_one_detected",
    "pool_size",
    "query_budget",
    "snapshot_queries",
    "track_queries",
]
