"""``manage.py dbreport``'s engine: collectors per section -> findings -> renderers.

from django_dbtuning.report import run_report, as_json
report = run_report(["default"], sections=["indexes"])
for finding in report.findings: ...
"""

from __future__ import annotations

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
from django_dbtuning.report.render import as_json, as_text, to_dict
from django_dbtuning.report.runner import postgres_aliases, run_report

__all__ = [
    "DEFAULT_THRESHOLDS",
    "SECTIONS",
    "SEVERITIES",
    "CheckOutcome",
    "DatabaseReport",
    "Finding",
    "Report",
    "Severity",
    "as_json",
    "as_prometheus",
    "as_text",
    "postgres_aliases",
    "run_report",
    "to_dict",
]


def as_prometheus(report: Report, *, per_index: bool = False) -> str:
    """The report in the Prometheus text format (needs prometheus_client)."""
    from django_dbtuning.report.exposition import as_prometheus as render

    return render(report, per_index=per_index)
