"""Query counting and N+1 detection.

Capture: ``recorder`` (the execute wrapper), ``units`` (units of work and their
``QueryReport``), ``scopes`` and ``wrappers`` (entries over sync, async and generator code),
``api`` (``track_queries`` / ``query_budget`` / ``allow_n_plus_one``), ``policy`` (the one
``enforce()`` that raises, warns or logs), ``middleware``, ``metrics``, ``pytest_plugin``,
``signals`` (``n_plus_one_detected``), ``snapshots`` and ``snapshot_plugin`` (query
snapshots in tests), ``eager`` and ``eager_reads`` (unused eager loads, opt-in), ``checks``.
Analysis: ``fingerprint`` (SQL shapes), ``callsite``, ``attribution`` and ``findings``
(N+1s, duplicates, hints), ``eager_findings`` (unused eager loads).

The API is loaded on first use: the pytest plugin's module is imported at pytest's start,
in projects that may never track a query.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django_dbtuning.queries.api import (
        allow_n_plus_one,
        query_budget,
        track_queries,
    )
    from django_dbtuning.queries.eager_findings import UnusedEagerLoad
    from django_dbtuning.queries.findings import QueryFinding
    from django_dbtuning.queries.middleware import request_report
    from django_dbtuning.queries.policy import Policy, enforce
    from django_dbtuning.queries.signals import n_plus_one_detected
    from django_dbtuning.queries.snapshots import snapshot_queries
    from django_dbtuning.queries.units import CapturedQuery, QueryReport

__all__ = [
    "CapturedQuery",
    "Policy",
    "QueryFinding",
    "QueryReport",
    "UnusedEagerLoad",
    "allow_n_plus_one",
    "enforce",
    "n_plus_one_detected",
    "query_budget",
    "request_report",
    "snapshot_queries",
    "track_queries",
]

_LAZY = {
    "CapturedQuery": "django_dbtuning.queries.units",
    "Policy": "django_dbtuning.queries.policy",
    "QueryFinding": "django_dbtuning.queries.findings",
    "QueryReport": "django_dbtuning.queries.units",
    "UnusedEagerLoad": "django_dbtuning.queries.eager_findings",
    "allow_n_plus_one": "django_dbtuning.queries.api",
    "enforce": "django_dbtuning.queries.policy",
    "n_plus_one_detected": "django_dbtuning.queries.signals",
    "query_budget": "django_dbtuning.queries.api",
    "request_report": "django_dbtuning.queries.middleware",
    "snapshot_queries": "django_dbtuning.queries.snapshots",
    "track_queries": "django_dbtuning.queries.api",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(
            f"module 'django_dbtuning.queries' has no attribute {name!r}"
        )
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
