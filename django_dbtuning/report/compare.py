"""``dbreport --since``: what changed between a stored snapshot and now.

Tables and indexes by growth per day (bytes, and rows for tables); statements whose mean
time rose or whose calls per day rose, measured over the interval (the counters' deltas),
not over the statistics' whole life; findings that are new or resolved. Counters that went
back (a ``pg_stat_statements_reset()``, an entry evicted and tracked again, a
``pg_stat_reset()``) are never shown as negative deltas: the comparison says what was
reset and measures from the reset where it knows when that was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django_dbtuning.report.humanize import human_bytes
from django_dbtuning.report.intervals import statements_reset_after, window
from django_dbtuning.report.quoting import qualified
from django_dbtuning.report.snapshot import SnapshotData
from django_dbtuning.report.wrapping import printable

SLOWER_RATIO = 1.5
"""A statement is slower when its mean over the interval is this many times its mean
before the snapshot (and at least :data:`SLOWER_MIN_MS` more)."""
SLOWER_MIN_MS = 1.0
MORE_FREQUENT_RATIO = 2.0
"""More frequent: this many times the calls per day it had before the snapshot."""
MIN_CALLS = 10
"""Calls in the interval below which a statement's change is noise."""


@dataclass
class Comparison:
    """One alias compared with its snapshot; ``as_dict`` is the JSON shape."""

    alias: str
    since: datetime
    now: datetime
    snapshot_id: int | None
    tables: list[dict[str, Any]] = field(default_factory=list)
    indexes: list[dict[str, Any]] = field(default_factory=list)
    slower: list[dict[str, Any]] = field(default_factory=list)
    more_frequent: list[dict[str, Any]] = field(default_factory=list)
    new_findings: list[dict[str, Any]] = field(default_factory=list)
    resolved_findings: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    statements_compared: bool = True
    """False when a note says why statements were not compared."""

    @property
    def days(self) -> float:
        return max((self.now - self.since).total_seconds(), 1.0) / 86400

    def as_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot_id,
            "snapshot_taken_at": self.since.isoformat(),
            "now": self.now.isoformat(),
            "days": round(self.days, 6),
            "tables": self.tables,
            "indexes": self.indexes,
            "statements": {"slower": self.slower, "more_frequent": self.more_frequent},
            "findings": {"new": self.new_findings, "resolved": self.resolved_findings},
            "notes": list(self.notes),
        }


def compare(
    old: SnapshotData,
    new: SnapshotData,
    *,
    top: int = 10,
    snapshot_id: int | None = None,
) -> Comparison:
    """``new`` (now) against ``old`` (the stored snapshot); ``top`` rows per list (0 =
    all)."""
    result = Comparison(
        alias=new.alias, since=old.taken_at, now=new.taken_at, snapshot_id=snapshot_id
    )
    if old.database != new.database:
        result.notes.append(
            f"the snapshot was of database {old.database!r}, the alias now reaches "
            f"{new.database!r}: the comparison may mean little"
        )
    for kind in sorted(set(old.missing) | set(new.missing)):
        result.notes.append(f"{kind} could not be read in both: not compared")
    _objects(result, old, new, top)
    _statements(result, old, new, top)
    _findings(result, old, new)
    return result


def _rows_restarted(old: SnapshotData, new: SnapshotData) -> bool:
    return new.stats_reset is not None and new.stats_reset != old.stats_reset


def _growth(
    result: Comparison,
    old: dict[Any, dict[str, Any]],
    new: dict[Any, dict[str, Any]],
    *,
    size: str,
    rows: bool,
) -> list[dict[str, Any]]:
    days = result.days
    out = []
    own = _history_table()
    for key, now in new.items():
        if key[1] == own:
            # dbreport --save's own table grows by every --save: by design, not news.
            continue
        before = old.get(key)
        grown = (now.get(size) or 0) - ((before or {}).get(size) or 0)
        entry: dict[str, Any] = {
            **_names(key),
            "new": before is None,
            "bytes": now.get(size),
            "bytes_per_day": grown / days,
        }
        if rows:
            entry["rows"] = now.get("rows")
            entry["rows_per_day"] = (
                (now.get("rows") or 0) - ((before or {}).get("rows") or 0)
            ) / days
        if grown or (rows and entry["rows_per_day"]):
            out.append(entry)
    out.sort(key=lambda e: (-e["bytes_per_day"], -(e.get("rows_per_day") or 0)))
    return out


def _history_table() -> str:
    """The snapshot table's name (its tables and indexes are left out of growth)."""
    from django_dbtuning.models import Snapshot

    return Snapshot._meta.db_table


def _names(key: tuple[str, ...]) -> dict[str, str]:
    """An object's name for prose (quoted where PostgreSQL would need it, ``public``
    left out, as findings name objects) and its raw parts."""
    if len(key) == 2:
        return {"name": qualified(*key), "schema": key[0], "table": key[1]}
    schema, table, index = key
    return {
        "name": qualified(schema, index),
        "schema": schema,
        "table": table,
        "index": index,
        "on": qualified(schema, table),
    }


def _objects(
    result: Comparison, old: SnapshotData, new: SnapshotData, top: int
) -> None:
    limit = top or None
    restarted = _rows_restarted(old, new)
    if "tables" not in old.missing + new.missing:
        # With indexes included where both snapshots read them.
        whole = "indexes" not in old.missing + new.missing
        size = "total_bytes" if whole else "bytes"
        tables = _growth(result, old.tables, new.tables, size=size, rows=True)
        if restarted:
            for entry in tables:
                entry["rows_per_day"] = None
            result.notes.append(
                f"the table statistics were reset at {new.stats_reset:%Y-%m-%d %H:%M:%S %Z}"
                " (pg_stat_reset): row counts restarted, row growth is not shown"
            )
        result.tables = tables[:limit]
        gone = sorted(qualified(*k) for k in old.tables.keys() - new.tables.keys())
        if gone:
            result.notes.append(
                f"{len(gone)} table(s) dropped since: {', '.join(gone[:5])}"
            )
    if "indexes" not in old.missing + new.missing:
        result.indexes = _growth(
            result, old.indexes, new.indexes, size="bytes", rows=False
        )[:limit]


def _statements(
    result: Comparison, old: SnapshotData, new: SnapshotData, top: int
) -> None:
    if "statements" in old.missing + new.missing:
        result.statements_compared = False
        return
    reset = statements_reset_after(old, new)
    if reset is not None:
        result.notes.append(
            f"pg_stat_statements was reset at {reset:%Y-%m-%d %H:%M:%S %Z}, after the "
            "snapshot: statements are measured since the reset"
        )
    if (
        old.statements
        and new.statements
        and not old.statements.keys() & new.statements.keys()
    ):
        result.notes.append(_no_common_statement(old, new))
        result.statements_compared = False
        return
    restarted = 0
    slower: list[dict[str, Any]] = []
    frequent: list[dict[str, Any]] = []
    for queryid, now in new.statements.items():
        before = old.statements.get(queryid)
        if before is None:
            continue
        counted = window(old, new, now, before)
        if counted is None:
            restarted += 1
            continue
        calls, total_ms = counted.calls, counted.total_ms
        days = counted.seconds / 86400
        if calls < MIN_CALLS:
            continue
        entry = _entry(queryid, now, before, calls, total_ms, days, old)
        mean_before = entry["mean_ms_before"]
        if mean_before is not None and entry["mean_ms"] >= max(
            mean_before * SLOWER_RATIO, mean_before + SLOWER_MIN_MS
        ):
            slower.append(entry)
        rate_before = entry["calls_per_day_before"]
        if rate_before and entry["calls_per_day"] >= rate_before * MORE_FREQUENT_RATIO:
            frequent.append(entry)
    if restarted:
        result.notes.append(
            f"{restarted} statement(s) have fewer calls than in the snapshot (their "
            "pg_stat_statements entry was evicted or reset): not compared"
        )
    limit = top or None
    slower.sort(key=lambda e: -(e["mean_ms"] - (e["mean_ms_before"] or 0)) * e["calls"])
    frequent.sort(key=lambda e: -(e["calls_per_day"] - e["calls_per_day_before"]))
    result.slower = slower[:limit]
    result.more_frequent = frequent[:limit]


def _no_common_statement(old: SnapshotData, new: SnapshotData) -> str:
    """Why no statement is compared when not one queryid is in both."""
    majors = (old.server_version // 10000, new.server_version // 10000)
    why = (
        f"the snapshot is of PostgreSQL {majors[0]}, the server is {majors[1]}"
        if majors[0] != majors[1]
        else "a database restored or re-created, whose objects have new OIDs, or "
        "every entry evicted or reset"
    )
    return (
        "none of the snapshot's statements is tracked now under the same queryid "
        f"({why}): statements are not compared"
    )


def _entry(
    queryid: int,
    now: dict[str, Any],
    before: dict[str, Any],
    calls: int,
    total_ms: float,
    days: float,
    old: SnapshotData,
) -> dict[str, Any]:
    started = before.get("since") or old.statements_reset
    days_before = (
        (old.taken_at - started).total_seconds() / 86400
        if started is not None
        else None
    )
    return {
        "queryid": queryid,
        "query": now.get("query"),
        "calls": calls,
        "mean_ms": total_ms / calls,
        "mean_ms_before": before["total_ms"] / before["calls"]
        if before["calls"]
        else None,
        "calls_per_day": calls / days,
        "calls_per_day_before": (
            before["calls"] / days_before if days_before and days_before > 0 else None
        ),
    }


def _findings(result: Comparison, old: SnapshotData, new: SnapshotData) -> None:
    if set(old.sections) != set(new.sections):
        result.notes.append(
            "the snapshot covers sections "
            f"{', '.join(old.sections) or 'none'}, this run {', '.join(new.sections)}: "
            "findings are not compared (run both with the same --section)"
        )
        return
    result.new_findings = [
        new.findings[k] for k in sorted(new.findings.keys() - old.findings.keys())
    ]
    result.resolved_findings = [
        old.findings[k] for k in sorted(old.findings.keys() - new.findings.keys())
    ]


# -- text ---------------------------------------------------------------------------------


def _signed_bytes(value: float) -> str:
    return ("+" if value >= 0 else "-") + human_bytes(abs(value))


def _signed(value: float | None) -> str:
    return "?" if value is None else f"{value:+,.0f}"


def as_text(comparisons: list[Comparison]) -> str:
    """The comparisons as the text report's closing section."""
    lines: list[str] = []
    for c in comparisons:
        lines.append(
            f"{c.alias}: since the snapshot of {c.since:%Y-%m-%d %H:%M:%S %Z} "
            f"({c.days:,.1f} days ago)"
        )
        lines += _text_objects("Tables (growth per day)", c.tables, rows=True)
        lines += _text_objects("Indexes (growth per day)", c.indexes, rows=False)
        lines += _text_statements(c)
        lines += _text_findings(c)
        lines += [f"  note: {note}" for note in c.notes]
        lines.append("")
    # Names, titles and statement texts come from the catalogs and the stored snapshot:
    # a terminal escape in a table's name must not drive the terminal (as in the report).
    return "\n".join(printable(line) for line in lines)


def _text_objects(
    title: str, entries: list[dict[str, Any]], *, rows: bool
) -> list[str]:
    if not entries:
        return [f"  {title}: no change"]
    out = [f"  {title}:"]
    for e in entries:
        where = f" on {e['on']}" if "on" in e else ""
        line = f"    {e['name']}{where}: {_signed_bytes(e['bytes_per_day'])}/day"
        if rows:
            line += f", {_signed(e['rows_per_day'])} rows/day"
        line += f" (now {human_bytes(e['bytes'])}"
        count = e.get("rows")
        line += (
            f", {count:,} row{'' if count == 1 else 's'})"
            if rows and count is not None
            else ")"
        )
        out.append(line + (" new" if e["new"] else ""))
    return out


def _text_statements(c: Comparison) -> list[str]:
    if not c.statements_compared:
        return ["  Statements: not compared (see the note)"]
    out = []
    for e in c.slower:
        out.append(
            f"  Slower: queryid {e['queryid']}: {e['mean_ms_before']:,.1f} ms -> "
            f"{e['mean_ms']:,.1f} ms mean over {e['calls']:,} calls: {e['query'] or '?'}"
        )
    for e in c.more_frequent:
        out.append(
            f"  More frequent: queryid {e['queryid']}: {e['calls_per_day_before']:,.0f} -> "
            f"{e['calls_per_day']:,.0f} calls/day: {e['query'] or '?'}"
        )
    return out or ["  Statements: none slower or more frequent"]


def _text_findings(c: Comparison) -> list[str]:
    out = [
        f"  New finding: {f['severity']} {f['code']} {f['object']}: {f['title']}"
        for f in c.new_findings
    ]
    out += [
        f"  Resolved: {f['code']} {f['object']}: {f['title']}"
        for f in c.resolved_findings
    ]
    return out
