"""pg_stat_statements per interval: what ran between two consecutive snapshots.

The view's counters are cumulative since its last reset, so a chart of them mostly shows
the time since ``pg_stat_statements_reset()``. These are the differences between
consecutive snapshots instead; an interval in which the counters restarted (the view was
reset, an entry was evicted and tracked again, PostgreSQL 17+'s ``stats_since`` moved) is
a gap, never a negative value. What a restart is, is decided by
:func:`~django_dbtuning.report.intervals.window`, the same as ``dbreport --since``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django_dbtuning.dashboard.charts import Series
from django_dbtuning.report.intervals import statements_reset_after, window
from django_dbtuning.report.snapshot import SnapshotData

DAY = 86400.0


@dataclass(frozen=True)
class Interval:
    """What ran between two consecutive snapshots; ``calls`` None: a gap (a restart, or
    the statement was not in both snapshots)."""

    start: datetime
    end: datetime
    calls: int | None = None
    total_ms: float | None = None
    reason: str = ""
    """Why there is no value (empty when there is one)."""

    @property
    def seconds(self) -> float:
        return max((self.end - self.start).total_seconds(), 1.0)

    @property
    def mean_ms(self) -> float | None:
        if self.calls is None or self.total_ms is None or not self.calls:
            return None
        return self.total_ms / self.calls


def statement(snapshots: Sequence[SnapshotData], queryid: int) -> list[Interval]:
    """One statement's calls and time per interval, oldest first."""
    return [
        _between(old, new, queryid)
        for old, new in zip(snapshots, snapshots[1:], strict=False)
    ]


def _between(old: SnapshotData, new: SnapshotData, queryid: int) -> Interval:
    gap = _unreadable(old, new)
    if gap is not None:
        return Interval(old.taken_at, new.taken_at, reason=gap)
    before, now = old.statements.get(queryid), new.statements.get(queryid)
    if before is None or now is None:
        return Interval(old.taken_at, new.taken_at, reason="not in both snapshots")
    counted = window(old, new, now, before)
    if counted is None or counted.restarted:
        return Interval(old.taken_at, new.taken_at, reason="its counters restarted")
    return Interval(old.taken_at, new.taken_at, counted.calls, counted.total_ms)


def totals(snapshots: Sequence[SnapshotData]) -> list[Interval]:
    """All statements' calls and time per interval (those in both snapshots whose
    counters did not restart); a reset of the whole view is a gap."""
    out = []
    for old, new in zip(snapshots, snapshots[1:], strict=False):
        gap = _unreadable(old, new)
        if gap is None and statements_reset_after(old, new) is not None:
            gap = "pg_stat_statements was reset"
        if gap is not None:
            out.append(Interval(old.taken_at, new.taken_at, reason=gap))
            continue
        calls, total_ms = 0, 0.0
        for queryid, now in new.statements.items():
            before = old.statements.get(queryid)
            counted = window(old, new, now, before) if before is not None else None
            if counted is not None and not counted.restarted:
                calls += counted.calls
                total_ms += counted.total_ms
        out.append(Interval(old.taken_at, new.taken_at, calls, total_ms))
    return out


def _unreadable(old: SnapshotData, new: SnapshotData) -> str | None:
    if "statements" in old.missing or "statements" in new.missing:
        return "pg_stat_statements could not be read"
    return None


def per(intervals: Sequence[Interval]) -> tuple[str, float]:
    """The rate's unit for these intervals: per day when they are a day or longer
    (daily snapshots from cron), else per hour; and its length in seconds."""
    lengths = sorted(i.seconds for i in intervals)
    if lengths and lengths[len(lengths) // 2] >= DAY:
        return "day", DAY
    return "hour", 3600.0


def calls_rate(intervals: Sequence[Interval], label: str) -> Series:
    """Calls per :func:`per` unit in each interval (None: a gap)."""
    _, unit = per(intervals)
    return Series(
        label,
        [None if i.calls is None else i.calls * unit / i.seconds for i in intervals],
    )


def time_rate(intervals: Sequence[Interval], label: str) -> Series:
    """Milliseconds of statement time per :func:`per` unit in each interval."""
    _, unit = per(intervals)
    return Series(
        label,
        [
            None if i.total_ms is None else i.total_ms * unit / i.seconds
            for i in intervals
        ],
    )


def mean(intervals: Sequence[Interval], label: str) -> Series:
    """Mean milliseconds per call in each interval (None: a gap or no call)."""
    return Series(label, [i.mean_ms for i in intervals])
