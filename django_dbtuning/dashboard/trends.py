"""The history page's numbers: one point per saved snapshot (``dbreport --save``).

Read from the :class:`~django_dbtuning.models.Snapshot` rows of one alias on the storage
alias (:func:`~django_dbtuning.report.history.storage_alias`), oldest first, the newest
:data:`LIMIT` of them. Statement texts in snapshots are already masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DatabaseError
from django.utils.safestring import SafeString

from django_dbtuning.dashboard import deltas
from django_dbtuning.dashboard.charts import Series, line_chart
from django_dbtuning.report.history import (
    HistoryError,
    from_row,
    storage_alias,
    storage_error,
)
from django_dbtuning.report.humanize import human_bytes, human_seconds
from django_dbtuning.report.quoting import qualified
from django_dbtuning.report.snapshot import SnapshotData

LIMIT = 60
"""Snapshots drawn per chart (the newest ones)."""
LINES = 5
"""Objects drawn per chart besides the total: the largest in the newest snapshot."""
STATEMENTS = 20
"""Statements listed (with links to their pages) under the charts."""


@dataclass
class Trends:
    """The charts of one alias, or why there are none."""

    snapshots: int = 0
    charts: list[SafeString] = field(default_factory=list)
    growth: list[dict[str, Any]] = field(default_factory=list)
    """Tables by growth between the oldest and newest snapshot drawn."""
    problem: str | None = None
    skipped: list[str] = field(default_factory=list)
    """One note per unreadable snapshot row left out of the charts."""
    statements: list[dict[str, Any]] = field(default_factory=list)
    """The newest snapshot's statements by total time (cumulative)."""


def load(alias: str) -> tuple[list[SnapshotData], list[str]]:
    """The alias' newest readable :data:`LIMIT` snapshots, oldest first, and one note
    per row among them that cannot be read (left out, so one bad row keeps the charts).

    Raises:
        HistoryError: the table cannot be read (not migrated, no privilege).
    """
    from django_dbtuning.models import Snapshot

    using = storage_alias()
    try:
        rows = list(
            Snapshot.objects.using(using)
            .filter(alias=alias)
            .order_by("-taken_at")[:LIMIT]
        )
    except DatabaseError as exc:
        raise storage_error("cannot read snapshots", using, exc) from None
    snapshots: list[SnapshotData] = []
    skipped: list[str] = []
    for row in reversed(rows):
        try:
            snapshots.append(from_row(row))
        except HistoryError as exc:
            skipped.append(_skipped(exc))
    return snapshots, skipped


def _skipped(exc: HistoryError) -> str:
    # from_row's message ends with advice for --since; the page leaves the row out instead.
    reason = str(exc).split("; delete that row", 1)[0]
    return f"{reason}; left out of the charts"


def _largest(snapshots: list[SnapshotData], kind: str, name: Any) -> list[Series]:
    """The :data:`LINES` largest objects of ``kind`` (in the newest snapshot), bytes per
    snapshot; the totals have a chart of their own, on a scale these would vanish in."""
    newest: dict[Any, dict[str, Any]] = getattr(snapshots[-1], kind)
    largest = sorted(newest, key=lambda k: -(newest[k].get("bytes") or 0))[:LINES]
    return [
        Series(
            name(key),
            [_number(getattr(s, kind).get(key, {}).get("bytes")) for s in snapshots],
        )
        for key in largest
    ]


def _total(snapshots: list[SnapshotData], kind: str, column: str, label: str) -> Series:
    """The sum of ``column`` over every object of ``kind``, per snapshot (None where the
    snapshot could not read that kind)."""
    return Series(
        label,
        [
            float(sum(v.get(column) or 0 for v in getattr(s, kind).values()))
            if kind not in s.missing
            else None
            for s in snapshots
        ],
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _growth(snapshots: list[SnapshotData]) -> list[dict[str, Any]]:
    old, new = snapshots[0].tables, snapshots[-1].tables
    rows: list[tuple[int, str, dict[str, Any]]] = []
    for key, now in new.items():
        before = old.get(key, {})
        grown: int = (now.get("bytes") or 0) - (before.get("bytes") or 0)
        name = qualified(*key)
        rows.append(
            (
                -grown,
                name,
                {
                    "table": name,
                    "bytes": now.get("bytes"),
                    "grown_bytes": grown,
                    "rows": now.get("rows"),
                    "grown_rows": (now.get("rows") or 0) - (before.get("rows") or 0),
                },
            )
        )
    rows.sort(key=lambda r: r[:2])
    return [row for _, _, row in rows[:20]]


def trends(alias: str) -> Trends:
    """The history page of ``alias``: charts when at least one snapshot exists."""
    try:
        snapshots, skipped = load(alias)
    except HistoryError as exc:
        return Trends(problem=str(exc))
    if not snapshots:
        return Trends(
            problem=f"no snapshot of {alias!r} yet: run manage.py dbreport --save "
            "(daily, from cron) to draw its history",
            skipped=skipped,
        )
    return Trends(
        snapshots=len(snapshots),
        skipped=skipped,
        charts=_charts(snapshots),
        growth=_growth(snapshots),
        statements=_statements(snapshots),
    )


def _charts(snapshots: list[SnapshotData]) -> list[SafeString]:
    times: list[datetime] = [s.taken_at for s in snapshots]
    return [
        line_chart(
            "Database size: tables and indexes",
            times,
            [
                _total(snapshots, "tables", "bytes", "tables"),
                _total(snapshots, "indexes", "bytes", "indexes"),
            ],
            unit=human_bytes,
        ),
        line_chart(
            "Largest tables",
            times,
            _largest(snapshots, "tables", lambda k: qualified(*k)),
            unit=human_bytes,
        ),
        line_chart(
            "Largest indexes",
            times,
            _largest(
                snapshots, "indexes", lambda k: f"{k[2]} on {qualified(k[0], k[1])}"
            ),
            unit=human_bytes,
        ),
        *_statement_charts(snapshots),
    ]


def _statement_charts(snapshots: list[SnapshotData]) -> list[SafeString]:
    """Statement time and calls per interval between snapshots (a reset: a gap)."""
    intervals = deltas.totals(snapshots)
    unit, _ = deltas.per(intervals)
    ends = [i.end for i in intervals]
    return [
        line_chart(
            f"Statement time per {unit} (pg_stat_statements, between snapshots)",
            ends,
            [deltas.time_rate(intervals, "all statements")],
            unit=lambda v: human_seconds(v / 1000),
        ),
        line_chart(
            f"Statement calls per {unit} (pg_stat_statements, between snapshots)",
            ends,
            [deltas.calls_rate(intervals, "all statements")],
        ),
    ]


def _statements(snapshots: list[SnapshotData]) -> list[dict[str, Any]]:
    """The newest snapshot's statements by total time, for links to their pages."""
    newest = snapshots[-1].statements
    ranked = sorted(newest.items(), key=lambda item: -(item[1].get("total_ms") or 0))
    return [
        {
            "queryid": queryid,
            "query": entry.get("query"),
            "calls": entry.get("calls"),
            "total_seconds": (entry.get("total_ms") or 0) / 1000,
        }
        for queryid, entry in ranked[:STATEMENTS]
    ]
