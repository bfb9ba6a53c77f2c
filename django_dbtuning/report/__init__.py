"""``manage.py dbreport``'s engine: collectors per section -> findings -> renderers.

from django_dbtuning.report import run_report, as_json
report = run_report(["default"], sections=["indexes"])
for finding in report.findings: ...
"""

from __future__ import annotations

from django_dbtuning.report.baseline import (
    Baseline,
    BaselineError,
    apply_baseline,
    load_baseline,
    write_baseline,
)
from django_dbtuning.report.compare import Comparison
from django_dbtuning.report.findings import (
    DEFAULT_THRESHOLDS,
    SECTIONS,
    SEVERITIES,
    CheckOutcome,
    DatabaseReport,
    Finding,
    Report,
    Severity,
)
from django_dbtuning.report.history import (
    HistoryError,
    SaveResult,
    compare_since,
    save_snapshot,
)
from django_dbtuning.report.render import as_json, as_text, to_dict
from django_dbtuning.report.runner import postgres_aliases, run_report

__all__ = [
    "DEFAULT_THRESHOLDS",
    "SECTIONS",
    "SEVERITIES",
    "Baseline",
    "BaselineError",
    "CheckOutcome",
    "Comparison",
    "DatabaseReport",
    "Finding",
    "HistoryError",
    "Report",
    "SaveResult",
    "Severity",
    "apply_baseline",
    "as_json",
    "as_prometheus",
    "as_text",
    "compare_since",
    "load_baseline",
    "postgres_aliases",
    "run_report",
    "save_snapshot",
    "to_dict",
    "write_baseline",
]


def as_prometheus(report: Report, *, per_index: bool = False) -> str:
    """The report in the Prometheus text format (needs prometheus_client)."""
    from django_dbtuning.report.exposition import as_prometheus as render

    return render(report, per_index=per_index)
