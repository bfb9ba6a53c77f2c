"""One statement's page: ``statements/<queryid>/``.

Its masked text, what it did between consecutive snapshots (calls, mean and total time per
interval; a restart of its counters is a gap), its current pg_stat_statements row, and on
PostgreSQL 16+ its generic plan, planned by the report's EXPLAIN path (same timeouts,
same masking). Unmasked text is never read: snapshots hold masked text, and the live row
comes through the report's statements section, which masks it.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import BadRequest
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.safestring import SafeString

from django_dbtuning.dashboard import deltas, trends
from django_dbtuning.dashboard.access import staff_view
from django_dbtuning.dashboard.charts import line_chart
from django_dbtuning.dashboard.views import database_alias, render_page
from django_dbtuning.report.history import HistoryError
from django_dbtuning.report.humanize import human_seconds
from django_dbtuning.report.render import to_dict
from django_dbtuning.report.runner import run_report
from django_dbtuning.report.snapshot import SnapshotData

_QUERYID = re.compile(r"-?[0-9]{1,20}")
INT64 = (-(2**63), 2**63 - 1)
PLANNED = 20
"""The statement is planned when it is among this many top statements by total time
(the report plans from the top; planning every statement before it costs that much)."""


def parse_queryid(text: str) -> int:
    """A queryid from the URL: pg_stat_statements' signed 64-bit integer.

    Raises:
        BadRequest: anything else (the value is not echoed).
    """
    # A regex first: int() would accept "+1", " 1", "1_0" and non-ASCII digits.
    if _QUERYID.fullmatch(text):
        number = int(text)
        if INT64[0] <= number <= INT64[1]:
            return number
    raise BadRequest("queryid: not a signed 64-bit integer")


def _same(row: dict[str, Any], queryid: int) -> bool:
    return row.get("queryid") is not None and int(row["queryid"]) == queryid


def _live(
    alias: str, queryid: int
) -> tuple[dict[str, Any], dict[str, Any] | None, int]:
    """The alias' statements section (top by total time, up to the report's 100) and
    this statement's row in it with its rank, or None and -1."""
    document = to_dict(run_report([alias], sections=["statements"], top=0))
    db = document["databases"][alias]
    top = (db.get("statements") or {}).get("top") or []
    for rank, row in enumerate(top):
        # Another role's statement, hidden from this one, has no queryid.
        if _same(row, queryid):
            return db, row, rank
    return db, None, -1


def _plan(alias: str, queryid: int, rank: int) -> dict[str, Any]:
    """The statement's entry in the report's EXPLAIN output, or why there is none."""
    if rank >= PLANNED:
        return {
            "reason": f"not among the top {PLANNED} statements by total time; "
            f"run manage.py dbreport --explain {rank + 1} to plan it"
        }
    document = to_dict(
        run_report([alias], sections=["statements"], top=rank + 1, explain=rank + 1)
    )
    db = document["databases"][alias]
    explained = ((db.get("statements") or {}).get("explain") or {}).get("statements")
    for entry in explained or []:
        if _same(entry, queryid):
            return dict(entry)
    check = db.get("checks", {}).get("explain") or {}
    return {"reason": check.get("reason") or "not planned"}


def _history(alias: str) -> tuple[list[SnapshotData], list[str], str | None]:
    try:
        return (*trends.load(alias), None)
    except HistoryError as exc:
        return [], [], str(exc)


def _charts(intervals: list[deltas.Interval]) -> list[SafeString]:
    unit, _ = deltas.per(intervals)
    ends = [i.end for i in intervals]
    return [
        line_chart(f"Calls per {unit}", ends, [deltas.calls_rate(intervals, "calls")]),
        line_chart(
            "Mean time per call",
            ends,
            [deltas.mean(intervals, "mean")],
            unit=lambda v: f"{v:,.2f} ms",
        ),
        line_chart(
            f"Time per {unit}",
            ends,
            [deltas.time_rate(intervals, "time")],
            unit=lambda v: human_seconds(v / 1000),
        ),
    ]


def _rows(intervals: list[deltas.Interval]) -> list[dict[str, Any]]:
    """The intervals as the page's table, newest first."""
    rates = deltas.calls_rate(intervals, "calls").values
    rows = [
        {
            "start": i.start,
            "end": i.end,
            "calls": i.calls,
            "rate": rate,
            "mean_ms": i.mean_ms,
            "total_seconds": None if i.total_ms is None else i.total_ms / 1000,
            "reason": i.reason,
        }
        for i, rate in zip(intervals, rates, strict=True)
    ]
    return rows[::-1]


@staff_view
def statement(request: HttpRequest, queryid: str) -> HttpResponse:
    number = parse_queryid(queryid)
    alias, aliases = database_alias(request)
    snapshots, skipped, problem = _history(alias)
    seen = [s for s in snapshots if number in s.statements]
    db, row, rank = _live(alias, number)
    if row is None and not seen:
        raise Http404("no such statement in pg_stat_statements or the snapshots")
    intervals = deltas.statement(snapshots, number)
    text = row["query"] if row is not None else seen[-1].statements[number]["query"]
    context = {
        "title": f"Database: statement {number}",
        "queryid": number,
        "text": text,
        "row": row,
        "reachable": db.get("reachable", False),
        "plan": _plan(alias, number, rank) if row is not None else None,
        "problem": problem,
        "skipped": skipped,
        "snapshots": len(snapshots),
        "seen": len(seen),
        "intervals": _rows(intervals),
        "unit": deltas.per(intervals)[0],
        "charts": _charts(intervals) if intervals else [],
    }
    return render_page(request, "statement", context, alias, aliases)
