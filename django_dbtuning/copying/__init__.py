"""The COPY engine behind :mod:`django_dbtuning.copy`.

``plan`` (columns, types, converters), ``sources`` (input rows → batches), ``engine``
(COPY, staging upserts, ids, transactions), ``errors`` (row-precise CopyError),
``dumpers`` (cursor-scoped fast binary dumpers), ``export`` (``copy_to``).
"""

from __future__ import annotations
