"""Renderers: JSON v1 and readable text (Prometheus lives in :mod:`.exposition`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django_dbtuning.report import baseline, noise
from django_dbtuning.report.findings import Finding, Report
from django_dbtuning.report.humanize import human_bytes, human_seconds
from django_dbtuning.report.wrapping import printable, snippets, wrap

JSON_VERSION = 1


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            str(k): _plain(v) for k, v in value.items() if not str(k).startswith("_")
        }
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return _json_value(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, set):
        return list(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def _document(report: Report, plain: Callable[[Any], Any]) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "generated_at": report.generated_at.isoformat(),
        "sections": list(report.sections),
        "databases": {
            alias: plain(db.as_dict()) for alias, db in report.databases.items()
        },
        "findings": [plain(f.as_dict()) for f in report.findings],
        **({"baseline": report.baseline.as_dict()} if report.baseline else {}),
    }


def to_dict(report: Report) -> dict[str, Any]:
    """The report as the JSON v1 document (plain types only)."""
    return _document(report, _plain)


def as_json(report: Report) -> str:
    """The report as JSON v1 text."""
    # The same text as dumping to_dict(), without first copying the whole document:
    # json asks _json_value for the few values it cannot write (a third of the time).
    document = _document(report, lambda value: value)
    return json.dumps(document, indent=2, default=_json_value) + "\n"


# -- text ----------------------------------------------------------------------------------

Paint = Callable[[str], str]


def _identity(text: str) -> str:
    return text


class _Style:
    """The colours of Django's ``self.style``, or none (files, pipes, --no-color)."""

    def __init__(self, style: Any | None) -> None:
        def pick(name: str) -> Paint:
            painter = getattr(style, name, None) if style is not None else None
            return painter if callable(painter) else _identity

        self.error = pick("ERROR")
        self.warning = pick("WARNING")
        self.notice = pick("NOTICE")
        self.heading = pick("MIGRATE_HEADING")
        self.label = pick("MIGRATE_LABEL")
        self.success = pick("SUCCESS")

    def severity(self, severity: str) -> Paint:
        return {"error": self.error, "warning": self.warning}.get(severity, self.notice)


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = min(max(widths[i], len(cell)), 60)

    def line(cells: list[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            text = cell if len(cell) <= 60 else cell[:59] + "…"
            out.append(
                text.rjust(widths[i]) if _numeric(cell) else text.ljust(widths[i])
            )
        return printable("  " + "  ".join(out).rstrip())

    return [line(header), "  " + "  ".join("-" * w for w in widths), *map(line, rows)]


def _numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[0] == "-") and " " not in cell[:3]


def as_text(
    report: Report, *, style: Any | None = None, everything: bool = False
) -> str:
    """A readable report: per alias, each section's numbers, then the findings.

    Findings known from a baseline are left out (one summary line counts them), and
    third-party apps' findings are one line per code, unless ``everything``."""
    paint = _Style(style)
    out: list[str] = []
    for alias, db in report.databases.items():
        server = db.server
        title = f"{alias}"
        if db.kind == "pgbouncer":
            title += " (PgBouncer admin console)"
        elif db.reachable and server:
            title += (
                f": PostgreSQL {server.get('version')}, database {server.get('database')}"
                f" as {server.get('user')}"
                + (" (replica)" if server.get("in_recovery") else "")
            )
        out.append(paint.heading(f"== {title} "))
        if not db.reachable:
            out.append(paint.error(f"  unreachable: {db.error}"))
            out.append("")
            continue
        if db.same_database_as:
            out.append(
                f"  same database as {db.same_database_as!r}: only its pool is shown"
            )
        for name in report.sections:
            data = db.sections.get(name)
            if data:
                out.extend(_SECTION_RENDERERS[name](data, report.top, paint))
        if "pgbouncer" in db.sections:
            out.extend(_pgbouncer(db.sections["pgbouncer"], paint))
        skipped = [c for c in db.checks if c.status != "ok"]
        if skipped or db.notes:
            out.append(paint.label("  Notes"))
            for check in skipped:
                out.append(
                    printable(
                        f"  - check {check.name}: {check.status} ({check.reason})"
                    )
                )
            for note in db.notes:
                out.append(printable(f"  - {note}"))
        out.append("")
    out.extend(_findings(report, paint, everything=everything))
    return "\n".join(out).rstrip() + "\n"


def _pool(data: dict[str, Any], top: int, paint: _Style) -> list[str]:
    config = data.get("configuration") or {}
    lines = [paint.label("  Pool")]
    if config.get("pooled"):
        lines.append(
            f"  psycopg pool: min_size {config.get('min_size')}, max_size "
            f"{config.get('max_size')}, timeout {config.get('timeout')} s, max_idle "
            f"{config.get('max_idle')} s, max_lifetime {config.get('max_lifetime')} s"
        )
    else:
        age = config.get("conn_max_age")
        lines.append(
            "  no pool: "
            + (
                "a new connection per request (CONN_MAX_AGE=0)"
                if age == 0
                else f"persistent connections (CONN_MAX_AGE={age}, health checks "
                f"{'on' if config.get('health_checks') else 'off'})"
            )
        )
    if data.get("server_max_connections"):
        lines.append(
            f"  server: max_connections {data['server_max_connections']}, "
            f"{data.get('server_reserved_connections', 0)} reserved"
        )
    if data.get("deployment_max_connections") is not None:
        lines.append(
            f"  deployment at peak: {data['deployment_max_connections']} of "
            f"{data.get('server_usable_connections')} usable connections"
        )
    arithmetic = data.get("arithmetic")
    if arithmetic:
        lines.extend(f"    {line}" for line in str(arithmetic).splitlines())
    workers = data.get("workers")
    if workers:
        lines.append(
            f"  workers (PROMETHEUS_MULTIPROC_DIR): {workers.get('processes', 0):.0f} "
            f"processes, {workers.get('open', 0):.0f} open, {workers.get('in_use', 0):.0f} "
            f"in use, {workers.get('waiting', 0):.0f} waiting; "
            f"{workers.get('requests', 0):.0f} requests, {workers.get('queued', 0):.0f} "
            f"queued ({workers.get('wait_seconds', 0):.2f} s waited), "
            f"{workers.get('errors', 0):.0f} errors"
        )
    live = data.get("live")
    if live:
        if not live.get("open"):
            lines.append("  this process: pool not open")
        else:
            size = live.get("pool_size", 0)
            idle = live.get("pool_available", 0)
            lines.append(
                f"  this process: {size} open, {size - idle} in use, {idle} idle, "
                f"{live.get('requests_waiting', 0)} waiting; {live.get('requests_num', 0)} "
                f"requests, {live.get('requests_queued', 0)} queued "
                f"({live.get('requests_wait_ms', 0) / 1000:.2f} s waited), "
                f"{live.get('requests_errors', 0)} errors"
            )
    return lines


def _connections(data: dict[str, Any], top: int, paint: _Style) -> list[str]:
    states = ", ".join(f"{n} {s}" for s, n in (data.get("by_state") or {}).items() if n)
    lines = [
        paint.label("  Connections"),
        f"  {data.get('total')} of max_connections {data.get('max_connections')} "
        f"({data.get('usage_ratio', 0):.0%} of usable): {states}",
        f"  waiting on locks {data.get('waiting', 0)}, blocked {data.get('blocked', 0)},"
        f" longest query {human_seconds(data.get('longest_query_seconds'))}, longest "
        f"transaction {human_seconds(data.get('longest_transaction_seconds'))}",
    ]
    apps = data.get("by_application") or {}
    if apps:
        lines.append(
            "  this database by application_name: "
            + ", ".join(f"{app} {n}" for app, n in apps.items())
        )
    return lines


def _indexes(data: dict[str, Any], top: int, paint: _Style) -> list[str]:
    lines = [
        paint.label("  Indexes"),
        f"  {data.get('count', 0)} indexes, {human_bytes(data.get('size_bytes'))}; "
        f"unused {data.get('unused_count', 0)} ({human_bytes(data.get('unused_size_bytes'))}),"
        f" redundant {data.get('duplicate_count', 0)}, invalid "
        f"{data.get('invalid_count', 0)}, foreign keys without index "
        f"{data.get('fk_without_index_count', 0)}; statistics since "
        f"{data.get('stats_since') or '?'}",
    ]
    rows = [
        [
            str(item["index"]),
            str(item.get("model") or item["table"]),
            human_bytes(item["size_bytes"]),
            f"{item['scans']:,}" if item.get("scans") is not None else "-",
            "pk" if item["primary"] else "unique" if item["unique"] else "",
        ]
        for item in data.get("largest") or []
    ]
    if rows:
        lines.extend(
            _table(rows, ["largest indexes", "model/table", "size", "scans", ""])
        )
    return lines


def _tables(data: dict[str, Any], top: int, paint: _Style) -> list[str]:
    ratios = data.get("cache_hit_ratio") or {}

    def pct(value: float | None) -> str:
        return f"{value:.2%}" if value is not None else "n/a"

    lines = [
        paint.label("  Tables"),
        f"  {data.get('count', 0)} tables, {human_bytes(data.get('size_bytes'))} "
        f"(database {human_bytes(data.get('database_size_bytes'))}); cache hit "
        f"{pct(ratios.get('table'))} tables, {pct(ratios.get('index'))} indexes; dead rows "
        f"{data.get('dead_tuples', 0):,}; fullest sequence "
        f"{data.get('sequence_usage_max_ratio', 0):.1%}; xid age "
        f"{data.get('database_xid_age', 0):,}",
        *_wraparound(data.get("wraparound") or {}),
    ]
    rows = [
        [
            str(item["table"]),
            str(item.get("model") or ""),
            f"{item['rows'] or 0:,}",
            human_bytes(item.get("total_bytes") or item.get("size_bytes")),
            f"{item['seq_scans'] or 0:,}",
            f"{item['index_scans'] or 0:,}",
        ]
        for item in data.get("largest") or []
    ]
    if rows:
        lines.extend(
            _table(
                rows,
                ["largest tables", "model", "rows", "size", "seq scans", "idx scans"],
            )
        )
    return lines


def _wraparound(data: dict[str, Any]) -> list[str]:
    closest = (data.get("closest") or [None])[0]
    if closest is None:
        return []
    return [
        f"  nearest forced anti-wraparound vacuum: {closest['table']} at "
        f"{closest['freeze_share']:.1%} of {closest['freeze_limit']:,}"
    ]


def _schema(data: dict[str, Any], top: int, paint: _Style) -> list[str]:
    counts = [
        f"{data.get(code, 0)} {label}"
        for code, label in (
            ("fk_type_mismatch", "foreign keys of another type than their key"),
            ("duplicate_foreign_key", "duplicate foreign keys"),
            ("missing_primary_key", "tables without a primary key"),
            ("boolean_index", "boolean-only indexes"),
        )
        if code in data
    ]
    return [paint.label("  Schema"), f"  {', '.join(counts)}"]


def _statements(data: dict[str, Any], top: int, paint: _Style) -> list[str]:
    if not data.get("installed"):
        return [paint.label("  Statements"), "  pg_stat_statements is not installed"]
    lines = [
        paint.label("  Statements"),
        f"  {data.get('tracked', 0)} statements, {data.get('calls', 0):,} calls, "
        f"{human_seconds(data.get('total_seconds'))} total (pg_stat_statements "
        f"{data.get('extension_version')})",
    ]
    rows = [
        [
            f"{(item.get('time_share') or 0):.0%}",
            human_seconds(item["total_seconds"]),
            f"{item['calls']:,}",
            f"{item['mean_ms']:.2f} ms" if item.get("mean_ms") is not None else "-",
            str(item["query"]).replace("\n", " "),
        ]
        for item in data.get("top") or []
    ]
    if rows:
        lines.extend(_table(rows, ["share", "total", "calls", "mean", "query"]))
    return lines


# Always shown in text; the others only when changed from PostgreSQL's default.
# fmt: off
KEY_SETTINGS = frozenset((
    "max_connections", "shared_buffers", "effective_cache_size", "work_mem",
    "random_page_cost", "statement_timeout", "lock_timeout",
    "idle_in_transaction_session_timeout",
))
# fmt: on


def _settings(data: dict[str, Any], top: int, paint: _Style) -> list[str]:
    data = {
        name: item
        for name, item in data.items()
        if isinstance(item, dict)
        and (name in KEY_SETTINGS or not item.get("default"))
        and name != "block_size"
    }
    rows = [
        [
            name,
            str(item.get("value")),
            "" if item.get("default") else str(item.get("source")),
        ]
        for name, item in data.items()
    ]
    return [
        paint.label("  Settings (key ones and those changed; all with --format json)"),
        *_table(rows, ["setting", "value", "set by"]),
    ]


BOUNCER_COLUMNS = ("database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "pool_mode")  # fmt: skip


def _pgbouncer(data: dict[str, Any], paint: _Style) -> list[str]:
    rows = [[str(p.get(c)) for c in BOUNCER_COLUMNS] for p in data.get("pools") or []]
    header = [*BOUNCER_COLUMNS[:-1], "mode"]
    return [paint.label("  PgBouncer pools"), *_table(rows, header)]


_SECTION_RENDERERS: dict[str, Callable[[dict[str, Any], int, _Style], list[str]]] = {
    "pool": _pool,
    "connections": _connections,
    "indexes": _indexes,
    "tables": _tables,
    "schema": _schema,
    "statements": _statements,
    "settings": _settings,
}


def _findings(report: Report, paint: _Style, *, everything: bool) -> list[str]:
    out = [printable(line) for line in baseline.text_lines(report)]
    items = noise.visible(report, everything=everything)
    if not items:
        # Only reached when every check ran: a gap is a check_incomplete finding.
        return [*out, paint.success("No new findings." if out else "No findings.")]
    listed = [f for f in report.findings if everything or not f.baseline]
    counts = {
        s: sum(1 for f in listed if f.severity == s)
        for s in ("error", "warning", "info")
    }
    out += [
        paint.heading(
            f"== Findings: {counts['error']} errors, {counts['warning']} warnings, "
            f"{counts['info']} info "
        )
    ]
    shown: dict[tuple[str, str], int] = {}
    hidden: dict[tuple[str, str], int] = {}
    for finding in items:
        key = (finding.database, finding.code)
        if (
            finding.severity == "info"
            and report.top
            and shown.get(key, 0) >= report.top
        ):
            hidden[key] = hidden.get(key, 0) + 1
            continue
        shown[key] = shown.get(key, 0) + 1
        if isinstance(finding, noise.Group):
            mark = paint.severity(finding.severity)(f"[{finding.severity.upper()}]")
            out.append(f"{mark} {printable(finding.line())}")
            continue
        out.extend(_finding(finding, paint))
    for (alias, code), count in hidden.items():
        out.append(
            f"  … {count} more {code} on {alias} (--top 0 or --format json for all)"
        )
    return out


def _finding(finding: Finding, paint: _Style) -> list[str]:
    mark = paint.severity(finding.severity)(f"[{finding.severity.upper()}]")
    model = f" ({finding.model})" if finding.model else ""
    model += " (known: in the baseline)" if finding.baseline else ""
    title = printable(finding.title)
    return [
        f"{mark} {finding.code} · {finding.database} · {title}{model}",
        wrap(finding.detail, "    "),
        wrap(finding.hint, "    fix: ", "         ", keep=snippets(finding)),
    ]
