"""What ``dbreport --save`` records, and what ``--since`` compares with it.

A snapshot holds one alias' tables, indexes and pg_stat_statements totals (every object,
not the report's top N) and the alias' findings from the report that just ran. When the
report is run for a snapshot (``run_report(snapshot=True)``, as ``dbreport --save`` and
``--since`` do), :func:`gather` takes the tables and indexes the sections already read
and queries only what they did not, on the report's own read-only, time-boxed connection;
:func:`collect` reads everything over a connection of its own, for a report run without
it. Both give the same snapshot. :class:`SnapshotData` is
that state in memory; :func:`to_document` / :func:`from_document` turn it into the compact
JSON the :class:`~django_dbtuning.models.Snapshot` row stores: a column list and rows of
values per kind, so a key name is stored once per kind, not once per object.

Statement texts are stored masked (:func:`~.sqltext.strip_literals`) and short: a
snapshot never holds a literal, whatever the server's pg_stat_statements kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from django_dbtuning.report import identity
from django_dbtuning.report.djangomap import ModelMap
from django_dbtuning.report.findings import DatabaseReport, Finding, Report
from django_dbtuning.report.probe import MARKER, Probe, Row, Unreachable, connect
from django_dbtuning.report.quoting import ident
from django_dbtuning.report.server_settings import server_info
from django_dbtuning.report.sqltext import APPLICATION, leading_keyword, strip_literals
from django_dbtuning.report.statements import (
    APPLICATION_PATTERN,
    CATALOG,
    EXTENSION,
    INFO,
    total_time_sql,
)
from django_dbtuning.report.timeouts import ReportTimeouts, configured

FORMAT = 1
"""The document's layout version (``data["format"]``)."""
TEXT_LIMIT = 120
"""Characters of masked statement text kept per statement."""

TABLES = """
SELECT s.schemaname AS schema, s.relname AS "table", {size} AS bytes,
       s.n_live_tup AS rows
  FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
 WHERE s.schemaname !~ '^pg_(toast_)?temp'
"""

INDEXES = """
SELECT s.schemaname AS schema, s.relname AS "table", s.indexrelname AS index,
       {size} AS bytes, s.idx_scan AS scans
  FROM pg_stat_user_indexes s JOIN pg_class c ON c.oid = s.indexrelid
 WHERE s.schemaname !~ '^pg_(toast_)?temp'
"""

# Other sessions' temporary tables come and go: never part of a snapshot.
TEMPORARY = re.compile(r"pg_(toast_)?temp")
# The relation kinds pg_stat_user_indexes lists indexes of (no partitioned tables).
INDEXED_KINDS = frozenset({"r", "m"})

STATEMENTS = """
SELECT queryid, sum(calls)::bigint AS calls, sum({total})::float8 AS total_ms,
       sum(rows)::bigint AS rows, min(query) AS query, {since} AS since
  FROM {relation}
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   {toplevel}
   AND queryid IS NOT NULL
   AND query NOT LIKE %(marker)s
   AND (query ~* %(application)s OR query = '<insufficient privilege>')
   AND query !~ %(catalog)s
 GROUP BY queryid
"""

# One tuple per kind: the document's column names, in order.
TABLE_COLUMNS = ("schema", "table", "bytes", "total_bytes", "rows")
INDEX_COLUMNS = ("schema", "table", "index", "bytes", "scans")
STATEMENT_COLUMNS = ("queryid", "calls", "total_ms", "rows", "query", "since")
FINDING_COLUMNS = ("code", "object", "severity", "title")


def key_of(code: str, object: str) -> str:
    """A finding's identity as one string, the document's key."""
    return f"{code} {object}"


@dataclass
class SnapshotData:
    """One alias' state at ``taken_at``: objects by identity, rows of numbers."""

    alias: str
    taken_at: datetime
    database: str
    server_version: int
    stats_reset: datetime | None = None
    statements_reset: datetime | None = None
    sections: tuple[str, ...] = ()
    missing: list[str] = field(default_factory=list)
    """Kinds that could not be read (a timeout, no pg_stat_statements): not compared."""
    tables: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    indexes: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    statements: dict[int, dict[str, Any]] = field(default_factory=dict)
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)
    id: int | None = None
    """The stored row's primary key (None until saved)."""


class SnapshotUnavailable(Exception):
    """The alias could not be read for a snapshot; the message is one safe line."""


def collect(
    alias: str, report: Report, settings_dict: Mapping[str, Any]
) -> SnapshotData:
    """The alias' state now over a connection of its own: its objects from the server,
    its findings from ``report`` (for a report run without ``snapshot=True``).

    Raises:
        SnapshotUnavailable: the server cannot be reached, or not even its facts read.
    """
    try:
        conn = connect(settings_dict)
    except Unreachable as exc:
        raise SnapshotUnavailable(str(exc)) from None
    with conn:
        probe = _probe(alias, conn, {}, ModelMap(), configured())
        if not server_info(probe):
            reason = next((c.reason for c in probe.result.checks if not c.complete), "")
            raise SnapshotUnavailable(
                f"cannot read the server's facts on alias {alias!r}: {reason}"
            )
        data = _read(probe, report.sections, {})
    data.findings = _findings(report.findings, alias)
    return data


def gather(probe: Probe, sections: tuple[str, ...]) -> SnapshotData:
    """The alias' state at the end of its report run, on the report's connection: the
    tables and indexes its sections read (``result.objects``), the rest queried. Its
    findings are added by :func:`with_findings` once the report is complete.

    The queries run under a probe of their own: a snapshot query that times out makes
    the kind ``missing`` in the snapshot, not a gap in the report.
    """
    own = _probe(probe.alias, probe.conn, probe.server, probe.models, probe.timeouts)
    own.columns = probe.columns
    return _read(own, sections, probe.result.objects)


def with_findings(data: SnapshotData, report: Report) -> SnapshotData:
    """``data`` (from :func:`gather`) with its alias' findings from ``report``."""
    data.findings = _findings(report.findings, data.alias)
    return data


def _probe(
    alias: str,
    conn: psycopg.Connection[Row],
    server: Mapping[str, Any],
    models: ModelMap,
    timeouts: ReportTimeouts,
) -> Probe:
    return Probe(
        alias,
        conn,
        result=DatabaseReport(alias=alias, server=dict(server)),
        findings=[],
        thresholds={},
        models=models,
        top=0,
        timeouts=timeouts,
    )


def _read(
    probe: Probe, sections: tuple[str, ...], objects: Mapping[str, list[dict[str, Any]]]
) -> SnapshotData:
    server = probe.server
    data = SnapshotData(
        alias=probe.alias,
        taken_at=server["now"],
        database=str(server["database"]),
        server_version=int(server["version_num"]),
        stats_reset=_parse_time(server.get("stats_reset")),
        sections=sections,
    )
    if "indexes" in objects:
        data.indexes = _read_indexes(objects["indexes"])
    else:
        _indexes(probe, data)
    if "tables" in objects:
        _set_tables(data, objects["tables"])
    else:
        _tables(probe, data)
    _statements(probe, data)
    return data


def _findings(findings: Iterable[Finding], alias: str) -> dict[str, dict[str, Any]]:
    """The alias' findings by the identity baselines use (:func:`.identity.key`): code
    and object, never numbers; findings about a moment (a long query, a check that could
    not run) have none and are not kept."""
    kept = {}
    for finding in findings:
        found = identity.key(finding) if finding.database == alias else None
        if found is not None:
            kept[key_of(found.code, found.object)] = {
                "code": found.code,
                "object": found.object,
                "severity": finding.severity,
                "title": finding.title,
            }
    return kept


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _sizes(
    probe: Probe, sql: str, check: str, size: str
) -> list[dict[str, Any]] | None:
    # Sizes take a lock a migration's ACCESS EXCLUSIVE blocks: under lock_timeout the
    # catalog's page counts stand in, as in the report's own sections.
    return probe.query_or_estimate(
        check,
        "history",
        sql.format(size=size),
        sql.format(size="c.relpages::bigint * current_setting('block_size')::bigint"),
        "snapshot sizes are estimates from pg_class.relpages",
    )


def _indexes(probe: Probe, data: SnapshotData) -> None:
    rows = _sizes(probe, INDEXES, "snapshot_indexes", "pg_relation_size(c.oid)")
    if rows is None:
        data.missing.append("indexes")
        return
    data.indexes = {
        (r["schema"], r["table"], r["index"]): {
            "bytes": r["bytes"],
            "scans": r["scans"],
        }
        for r in rows
    }


def _read_indexes(
    rows: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The index section's inventory as pg_stat_user_indexes would list it."""
    return {
        (r["schema"], r["table"], r["index"]): {
            "bytes": r["size_bytes"],
            "scans": r["scans"],
        }
        for r in rows
        if r["table_kind"] in INDEXED_KINDS and not TEMPORARY.match(r["schema"])
    }


def _tables(probe: Probe, data: SnapshotData) -> None:
    rows = _sizes(probe, TABLES, "snapshot_tables", "pg_table_size(c.oid)")
    if rows is None:
        data.missing.append("tables")
        return
    _set_tables(data, rows)


def _set_tables(data: SnapshotData, rows: Iterable[Mapping[str, Any]]) -> None:
    """Tables with TOAST (pg_table_size); the total adds their indexes' sizes, summed
    here rather than by pg_total_relation_size, which would open every index again."""
    indexed: dict[tuple[str, str], int] = {}
    for (schema, table, _), values in data.indexes.items():
        indexed[(schema, table)] = indexed.get((schema, table), 0) + (
            values["bytes"] or 0
        )
    known = "indexes" not in data.missing
    data.tables = {
        (r["schema"], r["table"]): {
            "bytes": r["bytes"],
            "total_bytes": (
                (r["bytes"] or 0) + indexed.get((r["schema"], r["table"]), 0)
                if known
                else None
            ),
            "rows": r["rows"],
        }
        for r in rows
        if not TEMPORARY.match(r["schema"])
    }


def _statements(probe: Probe, data: SnapshotData) -> None:
    ext = probe.query("snapshot_extension", "history", EXTENSION)
    if not ext:
        data.missing.append("statements")
        return
    schema = str(ext[0]["schema"])
    relation = ident(schema, "pg_stat_statements")
    probe.probe_columns(relation, check="snapshot_columns", section="history")
    has = probe.columns.get("pg_stat_statements", set())
    total = total_time_sql(set(has))
    sql = STATEMENTS.format(
        total=total,
        relation=relation,
        toplevel="AND toplevel" if "toplevel" in has else "",
        # PostgreSQL 17+: when each entry started counting (an evicted one restarts).
        # The oldest of the statement's entries (one per role): a role that runs it for
        # the first time adds an entry, which restarts nothing.
        since="min(stats_since)" if "stats_since" in has else "NULL::timestamptz",
    )
    params = {
        "marker": f"{MARKER}%",
        "application": APPLICATION_PATTERN,
        "catalog": CATALOG,
    }
    rows = probe.query("snapshot_statements", "history", sql, params)
    if rows is None:
        data.missing.append("statements")
        return
    info = probe.query(
        "snapshot_statements_info",
        "history",
        INFO.format(relation=ident(schema, "pg_stat_statements_info")),
    )
    if info:
        data.statements_reset = info[0]["stats_reset"]
    data.statements = {
        int(r["queryid"]): {
            "calls": int(r["calls"] or 0),
            "total_ms": round(float(r["total_ms"] or 0), 3),
            "rows": int(r["rows"] or 0),
            "query": _masked(r["query"]),
            "since": r["since"],
        }
        for r in rows
        if _masked(r["query"]) is not None or (r["query"] or "").startswith("<insuff")
    }


def _masked(query: str | None) -> str | None:
    """The statement's text without literals, short; None for another role's (hidden)
    text or a statement that is not the application's."""
    text = query or ""
    if text.startswith("<insuff") or leading_keyword(text) not in APPLICATION:
        return None
    return strip_literals(text, limit=TEXT_LIMIT)


# -- the stored document ----------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _rows(
    columns: tuple[str, ...], items: Iterable[tuple[tuple[Any, ...], dict[str, Any]]]
) -> dict[str, Any]:
    """``items`` (identity, values) as one column list and rows: the identity's parts
    first, then the values in ``columns`` order."""
    out = []
    for key, values in items:
        out.append([*key, *(values.get(c) for c in columns[len(key) :])])
    return {"columns": list(columns), "rows": out}


def to_document(data: SnapshotData) -> dict[str, Any]:
    """The JSON stored in ``Snapshot.data``."""
    statements = {
        (qid,): {**v, "since": _iso(v.get("since"))}
        for qid, v in data.statements.items()
    }
    return {
        "format": FORMAT,
        "sections": list(data.sections),
        "missing": list(data.missing),
        "tables": _rows(TABLE_COLUMNS, sorted(data.tables.items())),
        "indexes": _rows(INDEX_COLUMNS, sorted(data.indexes.items())),
        "statements": _rows(STATEMENT_COLUMNS, sorted(statements.items())),
        "findings": _rows(
            FINDING_COLUMNS,
            (((v["code"], v["object"]), v) for _, v in sorted(data.findings.items())),
        ),
    }


def from_document(
    document: Mapping[str, Any],
    *,
    alias: str,
    taken_at: datetime,
    database: str,
    server_version: int,
    stats_reset: datetime | None,
    statements_reset: datetime | None,
    id: int | None = None,
) -> SnapshotData:
    """A stored snapshot back in memory (the row's columns as keywords)."""
    data = SnapshotData(
        alias=alias,
        taken_at=taken_at,
        database=database,
        server_version=server_version,
        stats_reset=stats_reset,
        statements_reset=statements_reset,
        sections=tuple(document.get("sections") or ()),
        missing=list(document.get("missing") or ()),
        id=id,
    )
    for row in _by_name(document, "tables"):
        data.tables[(row["schema"], row["table"])] = row
    for row in _by_name(document, "indexes"):
        data.indexes[(row["schema"], row["table"], row["index"])] = row
    for row in _by_name(document, "statements"):
        row["since"] = _parse_time(row.get("since"))
        data.statements[int(row["queryid"])] = row
    for row in _by_name(document, "findings"):
        data.findings[key_of(row["code"], row["object"])] = row
    return data


def _by_name(document: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    part = document.get(kind) or {}
    columns = list(part.get("columns") or [])
    return [dict(zip(columns, row, strict=False)) for row in part.get("rows") or []]
