"""Bulk loading and export through PostgreSQL COPY: :class:`CopyManager` and its engine.

``plan`` (columns, types, converters), ``sources`` (input rows → batches), ``csvinput``
(CSV files: decoding, NULLs, lines), ``pgformat`` (PostgreSQL's text and binary COPY
files), ``manager`` (``CopyManager``, ``CopyQuerySet``), ``engine`` (COPY, ids, transactions), ``upsert`` (staging and the one
key-ordered ``INSERT ... ON CONFLICT``), ``errors`` (row-precise CopyError), ``options``
(argument checks, progress), ``dumpers`` (cursor-scoped fast binary dumpers),
``export`` (``copy_to``).
"""

from __future__ import annotations

from django_dbtuning.copy.manager import CopyManager, CopyQuerySet, CopyResult

__all__ = ["CopyManager", "CopyQuerySet", "CopyResult"]
