"""Bulk loading and export through PostgreSQL COPY: :class:`CopyManager` and its errors.

Where things are: ``manager`` (the API), ``options`` (argument checks, progress),
``engine`` (one load's stages in one transaction), ``sources`` (input rows → batches:
dicts, tuples, instances) with ``defaults`` (values the rows leave out) and ``rowcode``
(the compiled per-row builder), ``files`` / ``csvinput`` / ``pgformat`` (input files),
``plan`` and ``converters`` (columns, types, Django's value semantics), ``writer`` and
``ids`` (a batch's COPY and its primary keys), ``conflict`` and ``upsert`` (the staging
table and the one key-ordered ``INSERT ... ON CONFLICT``), ``errors`` and ``redact``
(row-precise, value-free errors), ``names`` and ``connection`` (quoted SQL names, COPY run
as Django runs queries), ``export`` (``copy_to``), ``checks`` (E040-E049).
"""

from __future__ import annotations

from django_dbtuning.copy.engine import CopyResult
from django_dbtuning.copy.manager import CopyManager, CopyQuerySet
from django_dbtuning.exceptions import (
    CopyConcurrencyError,
    CopyDatabaseError,
    CopyDataError,
    CopyError,
    CopyIntegrityError,
    CopyInterfaceError,
    CopyInternalError,
    CopyNotSupportedError,
    CopyOperationalError,
    CopyProgrammingError,
)

__all__ = [
    "CopyConcurrencyError",
    "CopyDataError",
    "CopyDatabaseError",
    "CopyError",
    "CopyIntegrityError",
    "CopyInterfaceError",
    "CopyInternalError",
    "CopyManager",
    "CopyNotSupportedError",
    "CopyOperationalError",
    "CopyProgrammingError",
    "CopyQuerySet",
    "CopyResult",
]
