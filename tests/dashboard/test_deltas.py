"""Per-interval statement numbers without a server (hypothesis): whatever sequence of
snapshots and resets, no plotted value is negative, an interval without a restart is the
counters' difference, and one with a restart is a gap."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st

from django_dbtuning.dashboard import deltas
from django_dbtuning.dashboard.charts import line_chart
from django_dbtuning.report.snapshot import SnapshotData

START = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
QUERYIDS = (-(2**63), -7, 0, 42, 2**63 - 1)

# Per interval and statement: ran (calls, microseconds), or was evicted and counted again.
EVENT = st.tuples(
    st.sampled_from(["run", "run", "evicted"]),
    st.integers(0, 10**6),
    st.integers(0, 10**9),
)
STEP = st.tuples(
    st.integers(60, 3 * 86400),  # seconds to the next snapshot
    st.booleans(),  # pg_stat_statements_reset() in the interval
    st.booleans(),  # pg_stat_statements could not be read in the newer snapshot
    st.lists(EVENT, min_size=len(QUERYIDS), max_size=len(QUERYIDS)),
)


def _sequence(steps, *, pg17):
    """The snapshots, and per interval the statements whose counters restarted in it."""
    at, reset_at = START, START - datetime.timedelta(days=30)
    counters = {q: {"calls": 0, "total_ms": 0.0, "since": reset_at} for q in QUERYIDS}
    snapshots = [_snapshot(at, reset_at, counters, missing=False, pg17=pg17)]
    restarts = []
    for seconds, reset, missing, events in steps:
        previous, at = at, at + datetime.timedelta(seconds=seconds)
        if reset:
            reset_at = previous + datetime.timedelta(seconds=seconds / 2)
            for entry in counters.values():
                entry.update(calls=0, total_ms=0.0, since=reset_at)
        restarted = set(QUERYIDS) if reset else set()
        for queryid, (kind, calls, micros) in zip(QUERYIDS, events, strict=True):
            entry = counters[queryid]
            if kind == "evicted" and (pg17 or entry["calls"] > 0):
                # Before PostgreSQL 17 only counters that went down show an eviction
                # (counted again to as much as before looks like activity, anywhere).
                if not pg17:
                    calls = min(calls, entry["calls"] - 1)
                entry.update(calls=0, total_ms=0.0, since=at)
                restarted.add(queryid)
            entry["calls"] += calls
            entry["total_ms"] += micros / 1000
        snapshots.append(_snapshot(at, reset_at, counters, missing=missing, pg17=pg17))
        restarts.append(restarted)
    return snapshots, restarts


def _snapshot(at, reset_at, counters, *, missing, pg17):
    return SnapshotData(
        alias="default",
        taken_at=at,
        database="db",
        server_version=170000 if pg17 else 160000,
        statements_reset=reset_at,
        missing=["statements"] if missing else [],
        statements={}
        if missing
        else {
            q: {
                "calls": v["calls"],
                "total_ms": v["total_ms"],
                "since": v["since"] if pg17 else None,
                "query": "SELECT ?",
            }
            for q, v in counters.items()
        },
    )


@given(st.lists(STEP, min_size=1, max_size=8), st.booleans())
def test_no_delta_is_negative_and_each_is_the_counters_difference(steps, pg17):
    snapshots, restarts = _sequence(steps, pg17=pg17)
    pairs = list(zip(snapshots, snapshots[1:], strict=False))
    for queryid in QUERYIDS:
        intervals = deltas.statement(snapshots, queryid)
        assert len(intervals) == len(steps)
        for interval, (old, new), restarted in zip(
            intervals, pairs, restarts, strict=True
        ):
            for value in (interval.calls, interval.total_ms, interval.mean_ms):
                assert value is None or value >= 0
            if old.missing or new.missing or queryid in restarted:
                assert interval.calls is None and interval.reason
            else:
                before, now = old.statements[queryid], new.statements[queryid]
                assert interval.calls == now["calls"] - before["calls"]
                assert interval.total_ms == now["total_ms"] - before["total_ms"]
        for series in (
            deltas.calls_rate(intervals, "c"),
            deltas.time_rate(intervals, "t"),
            deltas.mean(intervals, "m"),
        ):
            assert all(v is None or v >= 0 for v in series.values)
    for interval, (old, new), step in zip(
        deltas.totals(snapshots), pairs, steps, strict=True
    ):
        assert interval.calls is None or interval.calls >= 0
        assert interval.total_ms is None or interval.total_ms >= 0
        if step[1] or old.missing or new.missing:  # a reset of the whole view: a gap
            assert interval.calls is None


def test_a_gap_breaks_the_line():
    times = [START + datetime.timedelta(hours=h) for h in range(5)]
    svg = line_chart("calls", times, [deltas.Series("c", [1.0, 2.0, None, 3.0, 4.0])])
    assert svg.count("<polyline") == 2
    assert svg.count('class="dbtuning-point"') == 4


def test_daily_snapshots_are_drawn_per_day():
    day = datetime.timedelta(days=1)
    intervals = [deltas.Interval(START, START + day, 48, 96.0)]
    assert deltas.per(intervals) == ("day", 86400.0)
    assert deltas.calls_rate(intervals, "c").values == [48.0]
    hourly = [deltas.Interval(START, START + datetime.timedelta(hours=2), 48, 96.0)]
    assert deltas.calls_rate(hourly, "c").values == [24.0]
    assert deltas.mean(hourly, "m").values == [2.0]
