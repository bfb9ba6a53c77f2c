"""The report's data model: findings, how each check went, per-database results,
thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from django_dbtuning.validation import number_or_none

if TYPE_CHECKING:
    from django_dbtuning.report.baseline import Comparison
    from django_dbtuning.report.snapshot import SnapshotData

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error")
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}

SECTIONS: tuple[str, ...] = ("pool", "connections", "indexes", "tables", "schema", "statements", "settings")  # fmt: skip

CheckStatus = Literal["ok", "partial", "skipped", "timeout", "error"]
"""``partial``: the check ran but the role could not see everything (other roles'
sessions, unreadable sequences); ``skipped``: it could not run (permission, a missing
extension, catalog object or column, or a check it depends on failed)."""

INCOMPLETE = "check_incomplete"
"""The finding code of a check that could not run, or ran only in part."""

# Every threshold a finding depends on; DBTUNING["REPORT_THRESHOLDS"] overrides any of
# them. The README's dbreport section lists each with its reasoning.
DEFAULT_THRESHOLDS: dict[str, float] = {
    # indexes
    "unused_index_max_scans": 0,
    "unused_index_warning_bytes": 1024 * 1024,
    "unused_index_last_scan_days": 30,
    "fk_without_index_warning_rows": 10_000,
    "index_bloat_warning_bytes": 100 * 1024 * 1024,
    "index_bloat_min_ratio": 0.5,
    # tables
    "seq_scan_min_rows": 10_000,
    "seq_scan_min_scans": 100,
    "seq_scan_max_index_share": 0.95,
    "cache_hit_ratio_min": 0.99,
    "cache_min_blocks": 10_000,
    "dead_tuples_min": 10_000,
    "dead_tuples_ratio": 0.2,
    "vacuum_stale_days": 7,
    "analyze_stale_days": 1,
    "sequence_warning_ratio": 0.75,
    "sequence_error_ratio": 0.9,
    "sequence_info_ratio": 0.5,
    "xid_age_warning": 1_000_000_000,
    "xid_age_error": 1_500_000_000,
    "freeze_age_info_ratio": 0.9,
    "freeze_age_warning_ratio": 1.2,
    "table_bloat_warning_bytes": 100 * 1024 * 1024,
    "table_bloat_min_ratio": 0.5,
    "table_bloat_exact_tables": 20,
    # connections
    "connections_warning_ratio": 0.8,
    "connections_error_ratio": 0.95,
    "long_running_query_seconds": 60,
    "idle_in_transaction_seconds": 60,
    "blocked_query_seconds": 5,
    "replication_lag_seconds": 5,
    # statements
    "slow_query_mean_ms": 20,
    "slow_query_min_calls": 100,
    "n_plus_one_min_calls": 1000,
    "n_plus_one_max_mean_ms": 1,
    "n_plus_one_max_rows_per_call": 1.5,
    "n_plus_one_min_time_share": 0.01,
    "missing_index_min_calls": 50,
    "missing_index_min_time_share": 0.01,
    "missing_index_min_rows": 10_000,
    # plans of the top statements (dbreport --explain)
    "plan_min_calls": 50,
    "plan_seq_scan_min_rows": 10_000,
    "plan_seq_scan_min_bytes": 64 * 1024 * 1024,
    "plan_seq_scan_max_share": 0.1,
    "plan_spill_min_ratio": 1.0,
    "plan_nested_loop_min_rows": 1_000_000,
}


def thresholds(overrides: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The defaults with valid numeric ``overrides`` applied (unknown keys ignored)."""
    merged = dict(DEFAULT_THRESHOLDS)
    for key, value in (overrides or {}).items():
        number = number_or_none(value)
        if key in merged and number is not None:
            merged[key] = number
    return merged


@dataclass
class Finding:
    """One concrete problem (or observation) about one object of one database."""

    database: str
    severity: Severity
    code: str
    title: str
    detail: str
    hint: str
    object: str
    model: str | None = None
    """``app_label.Model`` when the object belongs to a Django model."""
    data: dict[str, Any] = field(default_factory=dict)
    """The numbers behind the finding (sizes in bytes, durations in seconds)."""
    section: str | None = None
    """The report section whose checks found it (None: the alias itself, PgBouncer)."""
    third_party: bool = False
    """On a table of Django's contrib apps or an installed package (report.ownership)."""
    baseline: bool = False
    """Known: already in the ``--baseline`` file the report was compared with."""

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))  # every field, in order


@dataclass
class CheckOutcome:
    """How one of the report's checks (a catalog query, or a part of the data it could
    not see) went: ok, or why it ran in part, was skipped, timed out or failed.

    Not a Django system check: these are the ``checks`` of the JSON document and of
    ``check_incomplete`` findings."""

    name: str
    section: str
    status: CheckStatus = "ok"
    reason: str = ""
    duration: float = 0.0
    expected: bool = False
    """A gap the deployment explains (an optional extension not installed, rows another
    role owns): reported as info unless its section was asked for by name."""
    cause: str | None = None
    """The check whose failure kept this one from running (its finding names this)."""
    fix: str = ""
    """What would let the check run fully (a GRANT, an extension to install)."""

    @property
    def complete(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "status": self.status,
            "reason": self.reason,
            "duration_seconds": round(self.duration, 6),
        }


@dataclass
class DatabaseReport:
    """Everything collected for one ``DATABASES`` alias."""

    alias: str
    reachable: bool = True
    error: str | None = None
    kind: Literal["postgresql", "pgbouncer"] = "postgresql"
    server: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    same_database_as: str | None = None
    duration: float = 0.0
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per-object rows (every index...) for opt-in metrics; not part of the JSON."""
    snapshot: SnapshotData | None = None
    """What ``dbreport --save`` stores, read in the same run (``run_report(snapshot=
    True)``); its findings are added when saved. Not part of the JSON."""

    @property
    def complete(self) -> bool:
        """Reached, and every check ran fully: a clean result means something."""
        return self.reachable and all(check.complete for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reachable": self.reachable,
            "error": self.error,
            # "_settings": the raw pg_settings rows other sections read.
            "server": {k: v for k, v in self.server.items() if not k.startswith("_")},
            "same_database_as": self.same_database_as,
            "complete": self.complete,
            "duration_seconds": round(self.duration, 6),
            "checks": {check.name: check.as_dict() for check in self.checks},
            "notes": list(self.notes),
            **self.sections,
        }


def mark_unreachable(
    result: DatabaseReport,
    findings: list[Finding],
    alias: str,
    error: Exception,
    *,
    what: str,
    hint: str,
) -> None:
    """Record that ``alias`` could not be reached: the report goes on with the others."""
    result.reachable = False
    result.error = str(error)
    findings.append(
        Finding(
            database=alias,
            severity="error",
            code="database_unreachable",
            title=f"{alias}: {what} unreachable",
            detail=str(error),
            hint=hint,
            object=f"alias:{alias}",
        )
    )


@dataclass
class Report:
    """The whole report: one :class:`DatabaseReport` per alias and all findings."""

    generated_at: datetime
    sections: tuple[str, ...]
    databases: dict[str, DatabaseReport]
    findings: list[Finding]
    top: int = 10
    baseline: Comparison | None = None
    """The comparison with a ``--baseline`` file, when one was given."""

    def worst_severity(self) -> Severity | None:
        ranks = [SEVERITY_RANK[f.severity] for f in self.findings]
        return SEVERITIES[max(ranks)] if ranks else None

    def at_least(self, severity: Severity) -> list[Finding]:
        """Findings of ``severity`` or worse."""
        floor = SEVERITY_RANK[severity]
        return [f for f in self.findings if SEVERITY_RANK[f.severity] >= floor]

    def incomplete(self) -> list[Finding]:
        """The ``check_incomplete`` findings: what the report could not look at."""
        return [f for f in self.findings if f.code == INCOMPLETE]

    def failures(
        self, severity: Severity, *, allow_partial: bool = False
    ) -> tuple[list[Finding], list[Finding]]:
        """What makes ``--fail-on severity`` fail: the findings of ``severity`` or worse
        (gaps and findings known from a baseline aside), and the gaps of warning level
        or worse, whatever ``severity`` is
        (unless ``allow_partial``): a report that could not look proves nothing."""
        # Known findings (in the baseline) never fail a run; gaps always can.
        found = [
            f
            for f in self.at_least(severity)
            if f.code != INCOMPLETE and not f.baseline
        ]
        gaps = (
            []
            if allow_partial
            else [f for f in self.incomplete() if SEVERITY_RANK[f.severity] >= 1]
        )
        return found, gaps

    def unreachable(self) -> list[DatabaseReport]:
        return [db for db in self.databases.values() if not db.reachable]
