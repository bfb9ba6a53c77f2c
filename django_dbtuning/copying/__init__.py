"""The COPY engine behind :mod:`django_dbtuning.copy`.

``plan`` (columns, types, converters), ``sources`` (input rows → batches), ``csvinput``
(CSV files: decoding, NULLs, lines), ``pgformat`` (PostgreSQL's text and binary COPY
files), ``engine`` (COPY, ids, transactions), ``upsert`` (staging and the one
key-ordered ``INSERT ... ON CONFLICT``), ``errors`` (row-precise CopyError), ``options``
(argument checks, progress), ``dumpers`` (cursor-scoped fast binary dumpers),
``export`` (``copy_to``).
"""

from __future__ import annotations
