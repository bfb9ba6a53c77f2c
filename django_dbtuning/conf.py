"""The ``DBTUNING`` settings dict: one registry, one frozen snapshot.

:data:`SETTINGS` describes every key (default, types, choices, description); the system
checks (:mod:`django_dbtuning.checks`), the docs' settings table and :func:`get_settings`
all derive from it. Nothing is read at import time; the snapshot is built on first use and
dropped on ``setting_changed``, so ``override_settings`` and pytest-django's ``settings``
fixture see their values. Reading never raises: a wrong value falls back to the default
and is reported by the checks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from django.core.signals import setting_changed
from django.dispatch import receiver

__all__ = ["SETTINGS", "DbTuningSettings", "Setting", "get_settings"]

Reaction = Literal["warn", "log", "raise", "ignore"]
REACTIONS: tuple[Reaction, ...] = ("warn", "log", "raise", "ignore")


@dataclass(frozen=True)
class Setting:
    """One ``DBTUNING`` key: its default, accepted types and allowed values."""

    name: str
    default: Any
    types: tuple[type, ...]
    description: str
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    minimum: float | None = None


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        # Query counting and N+1 detection.
        Setting(
            "N_PLUS_ONE_THRESHOLD",
            3,
            (int,),
            "Executions of one SQL shape from one call site that make an N+1.",
            minimum=2,
        ),
        Setting(
            "DUPLICATE_THRESHOLD",
            3,
            (int,),
            "Executions of identical SQL and parameters that make a duplicate.",
            minimum=2,
        ),
        Setting(
            "ON_N_PLUS_ONE",
            None,
            (str,),
            'Reaction to an N+1: "warn", "log", "raise" or "ignore"; '
            'None means "warn" with DEBUG and "log" without.',
            choices=REACTIONS,
            nullable=True,
        ),
        Setting(
            "ON_DUPLICATE",
            "log",
            (str,),
            "Reaction to duplicate queries.",
            choices=REACTIONS,
        ),
        Setting(
            "QUERY_BUDGET",
            None,
            (int,),
            "Most queries one request may run; None for no budget.",
            nullable=True,
            minimum=0,
        ),
        Setting(
            "ON_QUERY_BUDGET",
            None,
            (str,),
            "Reaction to an exceeded budget; None means the same as ON_N_PLUS_ONE.",
            choices=REACTIONS,
            nullable=True,
        ),
        Setting(
            "ALLOW_N_PLUS_ONE",
            (),
            (list, tuple),
            "Allow-list entries: dicts whose keys (model, field, fingerprint, view, "
            "callsite) must all match a finding; every value is a glob.",
        ),
        Setting(
            "IGNORE_ALIASES",
            (),
            (list, tuple),
            "Database aliases whose queries are not counted.",
        ),
        Setting(
            "RESPONSE_HEADERS",
            True,
            (bool,),
            "Add X-DB-Query-Count and X-DB-Query-Time-Ms to responses.",
        ),
        Setting(
            "SERVER_TIMING",
            True,
            (bool,),
            "Add a Server-Timing db entry to responses.",
        ),
        Setting(
            "LOG_PARAMETERS",
            False,
            (bool,),
            "Include query parameters in logs and findings (never on by default).",
        ),
        Setting(
            "UNUSED_EAGER_LOADS",
            False,
            (bool, str),
            "Report select_related paths and prefetch_related lookups whose objects a "
            "unit of work never read (info findings; wraps ORM internals while on): "
            'True or "log" logs them at INFO, "warn" also emits an '
            "UnusedEagerLoadWarning per finding.",
            choices=(False, True, "log", "warn"),
        ),
        Setting(
            "EDITOR_URL",
            None,
            (str,),
            "Link the file locations in the debug-toolbar panel to your editor: a URL "
            'with {path} (absolute) and {line}, e.g. "vscode://file{path}:{line}"; '
            "None shows plain paths.",
            nullable=True,
        ),
        Setting(
            "METRICS",
            True,
            (bool,),
            "Record Prometheus metrics when prometheus_client is installed.",
        ),
        # COPY.
        Setting(
            "COPY_BATCH_SIZE",
            10_000,
            (int,),
            "Rows per COPY batch when copy_from() is given no batch_size.",
            minimum=1,
        ),
        # Pool and connection settings.
        Setting(
            "WORKER_TIMEOUT",
            30.0,
            (int, float),
            "Your app server's worker timeout in seconds (gunicorn --timeout); pool "
            "timeouts at or above it are flagged.",
            minimum=0,
        ),
        # dbreport.
        Setting(
            "REPORT_STATEMENT_TIMEOUT",
            "10s",
            (str, int),
            "statement_timeout for each dbreport query (PostgreSQL units, or ms as int).",
        ),
        Setting(
            "REPORT_LOCK_TIMEOUT",
            "1s",
            (str, int),
            "lock_timeout for each dbreport query.",
        ),
        Setting(
            "REPORT_THRESHOLDS",
            {},
            (dict,),
            "Overrides of dbreport's finding thresholds, by name (listed in docs/dbreport.md).",
        ),
        Setting(
            "REPORT_METRICS_TTL",
            60,
            (int, float),
            "Seconds the live metrics cache the server-side report between scrapes; "
            "0 serves only this process' pool gauges (no queries at scrape time).",
            minimum=0,
        ),
        Setting(
            "REPORT_METRICS_SECTIONS",
            ("pool", "connections", "indexes", "tables", "statements"),
            (list, tuple),
            "dbreport sections the live metrics collect.",
        ),
        Setting(
            "REPORT_METRICS_ALIASES",
            None,
            (list, tuple),
            "Aliases the live metrics report on; None for every PostgreSQL alias.",
            nullable=True,
        ),
        Setting(
            "HISTORY_RETENTION",
            "90d",
            (str, timedelta),
            "How long dbreport --save keeps snapshots ('90d', '12h' or a timedelta); "
            "older ones are deleted by --save. None keeps them all.",
            nullable=True,
        ),
        Setting(
            "REPORT_TOP_TABLE_METRICS",
            0,
            (int,),
            "Export a size series for each of the N largest tables in the metrics; 0 "
            "(the default) exports none, for cardinality.",
            minimum=0,
        ),
        Setting(
            "UNUSED_INDEX_MIN_AGE",
            "7d",
            (str, timedelta),
            "How long the statistics must cover before dbreport calls an index unused "
            "('7d', '12h', '0s' or a timedelta); younger ones give one stats_too_young "
            "info finding instead. Replaces REPORT_THRESHOLDS['min_stats_age_days'].",
        ),
        Setting(
            "REPORT_PER_INDEX_METRICS",
            False,
            (bool,),
            "Export one series per index (scans, size) in the metrics; off by default "
            "for cardinality.",
        ),
    ]
}


def _user_settings() -> Mapping[str, Any]:
    from django.conf import settings

    value = getattr(settings, "DBTUNING", None)
    return value if isinstance(value, Mapping) else {}


def is_valid(setting: Setting, value: Any) -> bool:
    """Whether ``value`` is acceptable for ``setting`` (used by checks and accessors)."""
    if value is None:
        return setting.nullable
    # bool is an int subclass; True is not a threshold.
    if isinstance(value, bool) and bool not in setting.types:
        return False
    if not isinstance(value, setting.types):
        return False
    if setting.choices is not None and value not in setting.choices:
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False  # NaN compares false with every minimum
    return not (
        setting.minimum is not None
        and isinstance(value, int | float)
        and value < setting.minimum
    )


@dataclass(frozen=True)
class DbTuningSettings:
    """One frozen snapshot of ``settings.DBTUNING`` merged over the defaults.

    One field per :data:`SETTINGS` entry (its name in lower case), so the registry stays
    the single description: a wrong value falls back to the default here and is reported
    by check ``dbtuning.E002``.
    """

    n_plus_one_threshold: int
    duplicate_threshold: int
    on_n_plus_one: Reaction | None
    on_duplicate: Reaction
    query_budget: int | None
    on_query_budget: Reaction | None
    allow_n_plus_one: Sequence[Any]
    ignore_aliases: Sequence[str]
    response_headers: bool
    server_timing: bool
    log_parameters: bool
    unused_eager_loads: bool | Literal["log", "warn"]
    editor_url: str | None
    metrics: bool
    copy_batch_size: int
    worker_timeout: float
    report_statement_timeout: str | int
    report_lock_timeout: str | int
    report_thresholds: Mapping[str, Any]
    report_metrics_ttl: float
    report_metrics_sections: Sequence[str]
    report_metrics_aliases: Sequence[str] | None
    report_per_index_metrics: bool
    unused_index_min_age: str | timedelta
    history_retention: str | timedelta | None
    report_top_table_metrics: int

    @property
    def n_plus_one_reaction(self) -> Reaction:
        """``ON_N_PLUS_ONE``, where None means "warn" with ``DEBUG`` and "log" without.

        ``DEBUG`` is read at call time: Django's test runner sets it without sending
        ``setting_changed``.
        """
        if self.on_n_plus_one is not None:
            return self.on_n_plus_one
        from django.conf import settings

        return "warn" if settings.DEBUG else "log"

    @property
    def query_budget_reaction(self) -> Reaction:
        """``ON_QUERY_BUDGET``; None means the same as ``ON_N_PLUS_ONE``."""
        if self.on_query_budget is not None:
            return self.on_query_budget
        return self.n_plus_one_reaction


@functools.cache
def get_settings() -> DbTuningSettings:
    """The current snapshot; rebuilt after ``setting_changed`` for ``DBTUNING``."""
    user = _user_settings()
    values: dict[str, Any] = {}
    for name, setting in SETTINGS.items():
        value = user.get(name, setting.default)
        if not is_valid(setting, value):
            value = setting.default
        if setting.types == (int, float) and value is not None:
            value = float(value)
        values[name.lower()] = value
    return DbTuningSettings(**values)


@receiver(setting_changed)
def _clear_snapshot(*, setting: str, **kwargs: Any) -> None:
    if setting == "DBTUNING":
        get_settings.cache_clear()
