"""The ``DBTUNING`` settings dict, read lazily through one typed object.

Nothing is read at import time, so ``override_settings`` and pytest-django's ``settings``
fixture work without any cache. Properties never raise: a wrong value falls back to the
default here and is reported by the system checks in :mod:`django_dbtuning.checks`, whose
type rules come from :data:`SETTINGS` below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

__all__ = ["SETTINGS", "Setting", "conf"]

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
            "Allow-list entries: dicts with any of model, field, fingerprint (glob), "
            "view, callsite (glob).",
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
            "Overrides of dbreport's finding thresholds, by name (see the README).",
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
    return not (
        setting.minimum is not None
        and isinstance(value, int | float)
        and value < setting.minimum
    )


class Settings:
    """Typed, lazy view of ``settings.DBTUNING`` merged over the defaults."""

    def get(self, name: str) -> Any:
        setting = SETTINGS[name]
        value = _user_settings().get(name, setting.default)
        return value if is_valid(setting, value) else setting.default

    @property
    def N_PLUS_ONE_THRESHOLD(self) -> int:
        return cast(int, self.get("N_PLUS_ONE_THRESHOLD"))

    @property
    def DUPLICATE_THRESHOLD(self) -> int:
        return cast(int, self.get("DUPLICATE_THRESHOLD"))

    @property
    def ON_N_PLUS_ONE(self) -> Reaction:
        value = self.get("ON_N_PLUS_ONE")
        if value is None:
            from django.conf import settings

            return "warn" if settings.DEBUG else "log"
        return cast(Reaction, value)

    @property
    def ON_DUPLICATE(self) -> Reaction:
        return cast(Reaction, self.get("ON_DUPLICATE"))

    @property
    def QUERY_BUDGET(self) -> int | None:
        return cast("int | None", self.get("QUERY_BUDGET"))

    @property
    def ON_QUERY_BUDGET(self) -> Reaction:
        value = self.get("ON_QUERY_BUDGET")
        return self.ON_N_PLUS_ONE if value is None else cast(Reaction, value)

    @property
    def ALLOW_N_PLUS_ONE(self) -> Sequence[Any]:
        return cast("Sequence[Any]", self.get("ALLOW_N_PLUS_ONE"))

    @property
    def IGNORE_ALIASES(self) -> Sequence[str]:
        return cast("Sequence[str]", self.get("IGNORE_ALIASES"))

    @property
    def RESPONSE_HEADERS(self) -> bool:
        return cast(bool, self.get("RESPONSE_HEADERS"))

    @property
    def SERVER_TIMING(self) -> bool:
        return cast(bool, self.get("SERVER_TIMING"))

    @property
    def LOG_PARAMETERS(self) -> bool:
        return cast(bool, self.get("LOG_PARAMETERS"))

    @property
    def METRICS(self) -> bool:
        return cast(bool, self.get("METRICS"))

    @property
    def COPY_BATCH_SIZE(self) -> int:
        return cast(int, self.get("COPY_BATCH_SIZE"))

    @property
    def WORKER_TIMEOUT(self) -> float:
        return float(self.get("WORKER_TIMEOUT"))

    @property
    def REPORT_STATEMENT_TIMEOUT(self) -> str | int:
        return cast("str | int", self.get("REPORT_STATEMENT_TIMEOUT"))

    @property
    def REPORT_LOCK_TIMEOUT(self) -> str | int:
        return cast("str | int", self.get("REPORT_LOCK_TIMEOUT"))

    @property
    def REPORT_THRESHOLDS(self) -> Mapping[str, Any]:
        return cast("Mapping[str, Any]", self.get("REPORT_THRESHOLDS"))

    @property
    def REPORT_METRICS_TTL(self) -> float:
        return float(self.get("REPORT_METRICS_TTL"))

    @property
    def REPORT_METRICS_SECTIONS(self) -> Sequence[str]:
        return cast("Sequence[str]", self.get("REPORT_METRICS_SECTIONS"))

    @property
    def REPORT_METRICS_ALIASES(self) -> Sequence[str] | None:
        return cast("Sequence[str] | None", self.get("REPORT_METRICS_ALIASES"))

    @property
    def REPORT_PER_INDEX_METRICS(self) -> bool:
        return cast(bool, self.get("REPORT_PER_INDEX_METRICS"))


conf = Settings()
