"""A statement's counters between two snapshots, and when they restarted in between.

``dbreport --since`` (:mod:`~django_dbtuning.report.compare`) and the dashboard's
per-interval charts both read pg_stat_statements' cumulative counters from two
:class:`~django_dbtuning.report.snapshot.SnapshotData`; a restart between them (a
``pg_stat_statements_reset()``, an entry evicted and tracked again) must never show as a
negative delta. This is the one place that decides what a restart is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django_dbtuning.report.snapshot import SnapshotData


@dataclass(frozen=True)
class Window:
    """What one statement did between two snapshots."""

    calls: int
    total_ms: float
    seconds: float
    """The interval's length (from the restart when ``restarted``), at least 1 s."""
    restarted: bool = False
    """Counted from a restart inside the interval, not from the older snapshot."""


def statements_reset_after(old: SnapshotData, new: SnapshotData) -> datetime | None:
    """When pg_stat_statements was reset after ``old`` was taken (PostgreSQL 14+'s
    ``pg_stat_statements_info.stats_reset``), else None."""
    reset = new.statements_reset
    if reset is not None and reset != old.statements_reset and reset > old.taken_at:
        return reset
    return None


def window(
    old: SnapshotData,
    new: SnapshotData,
    now: dict[str, Any],
    before: dict[str, Any],
) -> Window | None:
    """One statement's calls and milliseconds between ``old`` and ``new`` (``before`` and
    ``now`` are its entries in them); None when its counters went back and when they
    restarted is unknown.

    After a reset of the whole view, or (PostgreSQL 17+) when the statement's
    ``stats_since`` (its oldest entry's, of one per role) moved past ``old``, the counts
    are those since the restart (``restarted``).
    """
    restarted_at = statements_reset_after(old, new)
    since = now.get("since")
    if (
        restarted_at is None
        and since is not None
        and since != before.get("since")
        # The start of its oldest entry: every entry began after ``old`` was taken.
        # An earlier one means the oldest entry went (evicted, or reset alone) while
        # others ran on: the delta below, or None when the counters went back.
        and since > old.taken_at
    ):
        restarted_at = since
    if restarted_at is not None:
        seconds = (new.taken_at - restarted_at).total_seconds()
        return Window(now["calls"], now["total_ms"], max(seconds, 1.0), restarted=True)
    calls = now["calls"] - before["calls"]
    total_ms = now["total_ms"] - before["total_ms"]
    if calls < 0 or total_ms < 0:
        return None
    seconds = (new.taken_at - old.taken_at).total_seconds()
    return Window(calls, total_ms, max(seconds, 1.0))
