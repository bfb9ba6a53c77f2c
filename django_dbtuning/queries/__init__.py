"""Query counting and N+1 detection.

``fingerprint`` (SQL shapes), ``recorder`` (the execute wrapper, units of work, the public
``track_queries`` / ``query_budget`` / ``allow_n_plus_one``), ``scopes`` (decorators and
context managers over sync, async and generator code), ``findings`` (N+1s, duplicates, call
sites and template lines), ``middleware``, ``metrics``, ``pytest_plugin``, ``checks``.
"""

from __future__ import annotations
