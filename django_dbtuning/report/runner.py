"""Run the report: for each alias, connect, collect the sections, gather the findings."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import connections

from django_dbtuning.conf import get_settings
from django_dbtuning.report import (
    connections as connections_section,
)
from django_dbtuning.report import explain as explain_section
from django_dbtuning.report import (
    indexes,
    noise,
    pgbouncer,
    pool,
    schema_lints,
    statements,
    tables,
)
from django_dbtuning.report import server_settings as settings_section
from django_dbtuning.report.baseline import Baseline, apply_baseline, load_baseline
from django_dbtuning.report.djangomap import ModelMap
from django_dbtuning.report.findings import (
    SECTIONS,
    DatabaseReport,
    Finding,
    Report,
    mark_unreachable,
    thresholds,
)
from django_dbtuning.report.gaps import record_gaps
from django_dbtuning.report.probe import (
    Collector,
    Probe,
    Unreachable,
    connect,
    first_line,
)
from django_dbtuning.report.snapshot import gather as snapshot_state
from django_dbtuning.report.timeouts import ReportTimeouts, configured

logger = logging.getLogger(__name__)

COLLECTORS: dict[str, Collector] = {
    "pool": pool.collect,
    "connections": connections_section.collect,
    "indexes": indexes.collect,
    "tables": tables.collect,
    "schema": schema_lints.collect,
    "statements": statements.collect,
    "settings": settings_section.collect,
}
# Sections that describe the alias (its pool), not the database behind it.
PER_ALIAS = frozenset({"pool"})
# Findings about the schema, identical on a primary and its replicas: reported once.
SCHEMA_CODES = frozenset(
    {
        "duplicate_index",
        "overlapping_index",
        "invalid_index",
        "invalid_constraint",
        "fk_without_index",
        "index_bloat",
        "sequence_near_overflow",
        "xid_wraparound",
        "inactive_replication_slot",
        "wraparound_vacuum_due",
        "table_bloat",
        "fk_type_mismatch",
        "duplicate_foreign_key",
        "missing_primary_key",
        "boolean_index",
    }
)


def postgres_aliases() -> list[str]:
    """Every ``DATABASES`` alias on PostgreSQL (any backend built on Django's)."""
    found = []
    for alias in connections:
        if connections[alias].vendor == "postgresql":
            found.append(alias)
    return found


def run_report(
    aliases: Sequence[str] | None = None,
    *,
    sections: Iterable[str] | None = None,
    top: int = 10,
    requested: Iterable[str] = (),
    baseline: str | Path | Baseline | None = None,
    explain: int | bool = False,
    snapshot: bool = False,
) -> Report:
    """Collect the report for ``aliases`` (default: every PostgreSQL alias).

    Never raises for a database problem: an unreachable alias is marked so, a check
    that could not run fully is recorded with its reason and becomes a
    ``check_incomplete`` finding, and everything else is still reported.

    Args:
        aliases: ``DATABASES`` aliases (a str is one alias).
        sections: a subset of :data:`SECTIONS` (a str may be comma-separated).
        top: rows per list in the sections (0 = all).
        requested: sections the user asked for by name (``--section``): a gap in them
            is a warning even when it is an expected one (an extension not installed).
        baseline: a baseline file or :class:`~.baseline.Baseline`: its findings are
            known (``Finding.baseline``), ``report.baseline`` the comparison.
        explain: plan the top statements (True: 20, an int: that many, False/0: none)
            with ``EXPLAIN (GENERIC_PLAN)`` on PostgreSQL 16+; needs the statements
            section.
        snapshot: read what ``--save`` stores too (``DatabaseReport.snapshot``).

    Raises:
        ValueError: an unknown alias or section, an alias that is not PostgreSQL, or a
            ``REPORT_STATEMENT_TIMEOUT``/``REPORT_LOCK_TIMEOUT`` that would leave the report
            without a timeout (0, negative, not a duration, over INT_MAX ms), a wrong
            ``UNUSED_INDEX_MIN_AGE``, an unreadable baseline (``BaselineError``).
        TypeError: an alias that is not a str, a ``snapshot`` that is not a bool.
    """
    chosen = _sections_option(sections)
    _check_top(top)
    names = _aliases_option(aliases)
    _check_snapshot(snapshot)
    timeouts = configured()
    to_plan = _explain_option(explain, chosen)
    known = _baseline_option(baseline)
    ordered = [s for s in SECTIONS if s in chosen]
    limits = thresholds(get_settings().report_thresholds)
    models = ModelMap()
    report = Report(
        generated_at=datetime.now(UTC),
        sections=tuple(ordered),
        databases={},
        findings=[],
        top=top,
    )
    seen: dict[tuple[Any, ...], str] = {}
    for alias in dict.fromkeys(names):
        result = DatabaseReport(alias=alias)
        report.databases[alias] = result
        started = time.perf_counter()
        try:
            _run_alias(
                alias,
                result,
                report.findings,
                ordered,
                seen,
                limits=limits,
                models=models,
                top=top,
                timeouts=timeouts,
                explain=to_plan,
                snapshot=snapshot,
            )
        finally:
            result.duration = time.perf_counter() - started
        if result.reachable:
            record_gaps(result, report.findings, frozenset(requested))
    _intersect_replicas(report)
    _sort_findings(report.findings)
    _mark(report, known)
    return report


def _sort_findings(findings: list[Finding]) -> None:
    """Most severe first, then by database, code and object: stable across runs."""
    order = {name: rank for rank, name in enumerate(("error", "warning", "info"))}
    findings.sort(key=lambda f: (order[f.severity], f.database, f.code, f.object))


def _baseline_option(baseline: str | Path | Baseline | None) -> Baseline | None:
    """Refuse a wrong ``UNUSED_INDEX_MIN_AGE`` or an unreadable baseline file before
    any connection is made."""
    noise.unused_index_min_age()
    return load_baseline(baseline) if isinstance(baseline, str | Path) else baseline


def _mark(report: Report, known: Baseline | None) -> None:
    """Flag third-party apps' findings; mark those ``known`` from the baseline."""
    noise.mark_third_party(report.findings)
    if known is not None:
        apply_baseline(report, known)


def _sections_option(sections: Iterable[str] | None) -> tuple[str, ...]:
    """The sections asked for (a str may be comma-separated); every one by default."""
    if isinstance(sections, str):
        sections = [part.strip() for part in sections.split(",") if part.strip()]
    chosen = tuple(sections) if sections is not None else SECTIONS
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        raise ValueError(
            f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}"
        )
    return chosen


def _check_top(top: object) -> None:
    if type(top) is not int or top < 0:
        raise ValueError(f"top must be an int >= 0, got {top!r}")


def _check_snapshot(snapshot: object) -> None:
    if not isinstance(snapshot, bool):
        raise TypeError(
            f"snapshot must be True or False, not {type(snapshot).__name__}"
        )


def _aliases_option(aliases: Sequence[str] | None) -> list[str]:
    """The aliases asked for (a str is one alias), checked; every PostgreSQL one by
    default."""
    if isinstance(aliases, str):
        aliases = [aliases]
    names = list(aliases) if aliases else postgres_aliases()
    _check_aliases(names)
    return names


def _check_aliases(names: list[str]) -> None:
    for alias in names:
        if not isinstance(alias, str):
            raise TypeError(f"database aliases must be str, not {type(alias).__name__}")
        if alias not in connections.settings:
            raise ValueError(
                f"unknown database alias {alias!r}; DATABASES has "
                f"{', '.join(connections.settings)}"
            )
        if connections[alias].vendor != "postgresql":
            raise ValueError(
                f"database alias {alias!r} is {connections[alias].vendor}, not PostgreSQL"
            )


def _run_alias(
    alias: str,
    result: DatabaseReport,
    findings: list[Finding],
    sections: list[str],
    seen: dict[tuple[Any, ...], str],
    *,
    limits: dict[str, float],
    models: ModelMap,
    top: int,
    timeouts: ReportTimeouts,
    explain: int = 0,
    snapshot: bool = False,
) -> None:
    settings_dict = connections.settings[alias]
    if pgbouncer.is_admin_console(settings_dict):
        result.kind = "pgbouncer"
        pgbouncer.collect(alias, settings_dict, result, findings, limits)
        return
    try:
        conn = connect(settings_dict)
    except Unreachable as exc:
        mark_unreachable(
            result,
            findings,
            alias,
            exc,
            what="database",
            hint="check HOST/PORT/credentials and that the server is up",
        )
        return
    with conn:
        probe = Probe(
            alias,
            conn,
            result=result,
            findings=findings,
            thresholds=limits,
            models=models,
            top=top,
            timeouts=timeouts,
            show_sql_values=get_settings().log_parameters,
            explain=explain,
        )
        if not settings_section.server_info(probe):
            _server_failed(probe, sections)
            return
        # Unqualified model tables are where this alias' search_path finds them.
        probe.models = models.resolved(probe)
        server = probe.server
        identity = (
            server.get("system_identifier"),
            server.get("database"),
            server.get("in_recovery"),
            settings_dict.get("HOST"),
            str(settings_dict.get("PORT") or ""),
        )
        if identity in seen:
            # Another alias (a bulkhead, a test mirror) reaches the same database: its
            # server-side sections would repeat the first alias' findings.
            result.same_database_as = seen[identity]
            probe.note(
                f"same database as alias {seen[identity]!r}: server-side sections are "
                "reported there"
            )
            run = [s for s in sections if s in PER_ALIAS]
        else:
            seen[identity] = alias
            run = sections
        _collect_sections(probe, run)
        if snapshot and result.same_database_as is None:
            result.snapshot = snapshot_state(probe, tuple(sections))


def _collect_sections(probe: Probe, names: Iterable[str]) -> None:
    """Run each section's collector; tag the findings it adds with the section."""
    findings = probe.findings
    for name in names:
        start = len(findings)
        try:
            COLLECTORS[name](probe)
        except Exception as exc:
            # A bug or an unexpected catalog shape must cost one section, not the
            # report.
            logger.exception("dbreport %s: section %s failed", probe.alias, name)
            reason = f"{type(exc).__name__}: {first_line(exc)}"
            probe.gap(f"{name}_section", name, "error", reason)
            probe.result.sections.setdefault(name, {})["error"] = reason
        for finding in findings[start:]:
            finding.section = name


def _explain_option(value: object, sections: Sequence[str]) -> int:
    """``explain=`` as a number of statements, refused without the statements section."""
    count = explain_section.statements_to_plan(value)
    if count and "statements" not in sections:
        raise ValueError(
            "explain plans pg_stat_statements' top statements: include the statements "
            "section"
        )
    return count


def _server_failed(probe: Probe, sections: list[str]) -> None:
    # Every section needs the server's facts: none ran, and each says so.
    for name in sections:
        probe.gap(
            f"{name}_section",
            name,
            "skipped",
            "the server facts query (check server) did not complete",
            cause="server",
        )


def _intersect_replicas(report: Report) -> None:
    """Keep an unused_index finding only if the index is unused on every alias that
    reaches the same database (primary and its replicas share a system identifier)."""
    groups: dict[tuple[Any, Any], list[DatabaseReport]] = {}
    for db in report.databases.values():
        if db.reachable and db.same_database_as is None and "indexes" in db.objects:
            group = (db.server.get("system_identifier"), db.server.get("database"))
            if group[0] is not None:
                groups.setdefault(group, []).append(db)
    for members in groups.values():
        if len(members) < 2:
            continue
        scans: dict[str, dict[str, int]] = {}
        for db in members:
            for row in db.objects["indexes"]:
                scans.setdefault(f"{row['schema']}.{row['index']}", {})[db.alias] = row[
                    "scans"
                ]
        aliases = {db.alias for db in members}
        reported: set[tuple[str, str]] = set()
        kept: list[Finding] = []
        for finding in report.findings:
            if finding.database not in aliases:
                kept.append(finding)
                continue
            if finding.code in SCHEMA_CODES:
                if (finding.code, finding.object) not in reported:
                    reported.add((finding.code, finding.object))
                    kept.append(finding)
                continue
            if finding.code != "unused_index":
                kept.append(finding)
                continue
            key = f"{finding.data.get('schema')}.{finding.data.get('index')}"
            used_on = [
                alias for alias, count in scans.get(key, {}).items() if count > 0
            ]
            if used_on:
                elsewhere = sorted(a for a in used_on if a != finding.database)
                report.databases[finding.database].notes.append(
                    f"{finding.object} is unused here but scanned on "
                    f"{', '.join(elsewhere or used_on)}: not a drop candidate"
                )
                continue
            if ("unused_index", key) in reported:
                continue  # already reported once for this database
            reported.add(("unused_index", key))
            finding.detail += f" Unused on every alias of this database ({', '.join(sorted(aliases))})."
            finding.data["checked_aliases"] = sorted(aliases)
            kept.append(finding)
        report.findings[:] = kept
