"""What the report could not look at becomes a finding of its own: ``check_incomplete``.

A report that timed out, lacked a privilege or an extension, or hit a bug in one check
must not read as "No findings.": every check that did not run fully (and every section
a failure kept from running) is a ``check_incomplete`` finding, and ``--fail-on`` fails on
it unless ``--allow-partial`` is given.

Severity, the rule a CI job can rely on:

- **warning** — the check could not run or saw only part of the data for a reason the
  deployment does not explain: a timeout (statement or lock), an error, a permission
  denied on a whole view, a failed check it depends on.
- **info** — an *expected* gap: an optional extension is not installed (no
  ``pg_stat_statements``), or the role may not see rows other roles own (their sessions,
  statement texts, sequences). The finding says what is hidden and how to see it.
- Any gap in a section the user asked for by name (``--section statements``) is a
  **warning**: asking for it and getting nothing must not pass.
"""

from __future__ import annotations

from collections.abc import Collection

from django_dbtuning.report.findings import (
    INCOMPLETE,
    SECTIONS,
    CheckOutcome,
    DatabaseReport,
    Finding,
    Severity,
)

STATUS_WORDS = {
    "partial": "saw only part of the data",
    "skipped": "could not run",
    "timeout": "timed out",
    "error": "failed",
}


def _hint(check: CheckOutcome) -> str:
    if check.status == "timeout":
        if check.reason.startswith("lock_timeout"):
            fix = (
                "re-run when the lock is released (a migration or a long transaction "
                "held it), or raise DBTUNING['REPORT_LOCK_TIMEOUT']"
            )
        else:
            fix = (
                "raise DBTUNING['REPORT_STATEMENT_TIMEOUT'] or run the report when the "
                "server is less busy"
            )
    elif check.status == "error":
        fix = (
            "the django_dbtuning.report log has the details; re-run, and report it if "
            "it persists"
        )
    else:
        fix = check.fix or "see the reason in the detail"
    return f"{fix}; --allow-partial lets --fail-on accept a partial report"


def record_gaps(
    result: DatabaseReport, findings: list[Finding], requested: Collection[str]
) -> None:
    """Add a ``check_incomplete`` finding for each check of ``result`` that did not run
    fully (checks skipped because another failed are named in that one's finding)."""
    by_cause: dict[str, list[CheckOutcome]] = {}
    for check in result.checks:
        if check.cause is not None:
            by_cause.setdefault(check.cause, []).append(check)
    for check in result.checks:
        if check.complete or check.cause is not None:
            continue
        dependents = by_cause.get(check.name, [])
        affected = {check.section, *(c.section for c in dependents)}
        sections = [s for s in (*SECTIONS, "pgbouncer") if s in affected]
        asked = any(s in requested for s in sections)
        severity: Severity = "info" if check.expected and not asked else "warning"
        status = STATUS_WORDS[check.status]
        detail = f"Check {check.name} {status}: {check.reason}."
        if dependents:
            detail += (
                " It is needed by "
                + ", ".join(c.name for c in dependents)
                + ", which did not run either."
            )
        detail += (
            " Findings it would have produced may be missing: a clean result for "
            + (f"section(s) {', '.join(sections)}" if sections else "this database")
            + " proves nothing."
        )
        findings.append(
            Finding(
                database=result.alias,
                severity=severity,
                code=INCOMPLETE,
                title=(
                    f"Check {check.name} ({', '.join(sections or [check.section])}) "
                    f"{status}"
                ),
                detail=detail,
                hint=_hint(check),
                object=f"check:{check.name}",
                data={
                    "check": check.name,
                    "section": check.section,
                    "status": check.status,
                    "reason": check.reason,
                    "sections": sections,
                    "expected": check.expected,
                },
            )
        )
