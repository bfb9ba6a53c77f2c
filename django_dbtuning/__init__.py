"""django-dbtuning: make Django on PostgreSQL fast and keep it fast.

Importable from ``settings.py``: nothing here touches Django's settings or the database.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from django_dbtuning.exceptions import (
    CopyDataError,
    CopyError,
    CopyIntegrityError,
    DbTuningError,
    EmbeddedPostgresError,
    InvalidDatabaseURL,
    NPlusOneError,
    NPlusOneWarning,
    QueryBudgetExceeded,
)

try:
    __version__ = version("django-dbtuning")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "CopyDataError",
    "CopyError",
    "CopyIntegrityError",
    "DbTuningError",
    "EmbeddedPostgresError",
    "InvalidDatabaseURL",
    "NPlusOneError",
    "NPlusOneWarning",
    "QueryBudgetExceeded",
    "__version__",
]
