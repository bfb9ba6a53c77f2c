"""--since's parts without a server: the option's parser, the stored document's round trip
(hostile names included), and the comparison's rules for resets and evictions."""

from __future__ import annotations

import datetime
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_dbtuning.report.compare import compare
from django_dbtuning.report.history import HistoryError, parse_since, retention
from django_dbtuning.report.snapshot import SnapshotData, from_document, to_document

NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)
UNITS = {
    "s": datetime.timedelta(seconds=1),
    "min": datetime.timedelta(minutes=1),
    "h": datetime.timedelta(hours=1),
    "d": datetime.timedelta(days=1),
}


@given(st.integers(min_value=1, max_value=10_000), st.sampled_from(sorted(UNITS)))
def test_since_durations_count_back_from_now(amount, unit):
    assert parse_since(f"{amount}{unit}", now=NOW) == NOW - amount * UNITS[unit]


@given(st.text(max_size=80))
def test_since_never_fails_otherwise_than_naming_the_option(text):
    try:
        when = parse_since(text, now=NOW)
    except HistoryError as exc:
        message = str(exc)
        assert message.startswith("--since")
        assert "\n" not in message.replace(text, "")
        assert len(message) < 300
    else:
        assert when <= NOW and when.tzinfo is not None


@given(st.dates(max_value=datetime.date(2026, 11, 29)))
def test_since_iso_dates(day):
    assert parse_since(day.isoformat(), now=NOW).date() == day


def test_since_accepts_python_values():
    assert parse_since(datetime.timedelta(days=7), now=NOW) == NOW - UNITS["d"] * 7
    assert parse_since(NOW, now=NOW) == NOW
    with pytest.raises(HistoryError, match="--since must be a str, not list"):
        parse_since(["7d"], now=NOW)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90d", datetime.timedelta(days=90)),
        ("12h", datetime.timedelta(hours=12)),
        (datetime.timedelta(days=3), datetime.timedelta(days=3)),
    ],
)
def test_retention_values(value, expected):
    assert retention(value) == expected


names = st.text(min_size=1, max_size=30)
counts = st.integers(min_value=0, max_value=2**62)


@given(
    st.dictionaries(
        st.tuples(names, names),
        st.fixed_dictionaries(
            {"bytes": counts, "total_bytes": counts | st.none(), "rows": counts}
        ),
        max_size=8,
    ),
    st.dictionaries(
        st.tuples(names, names, names),
        st.fixed_dictionaries({"bytes": counts, "scans": counts | st.none()}),
        max_size=8,
    ),
    st.dictionaries(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.fixed_dictionaries(
            {
                "calls": counts,
                "total_ms": st.floats(0, 1e12),
                "rows": counts,
                "query": st.text(max_size=40) | st.none(),
                "since": st.none(),
            }
        ),
        max_size=8,
    ),
)
def test_the_stored_document_round_trips(tables, indexes, statements):
    data = SnapshotData(
        alias="default",
        taken_at=NOW,
        database="db",
        server_version=180000,
        tables=tables,
        indexes=indexes,
        statements=statements,
        sections=("tables", "indexes"),
        missing=["statements"],
    )
    stored = json.loads(json.dumps(to_document(data)))
    back = from_document(
        stored,
        alias="default",
        taken_at=NOW,
        database="db",
        server_version=180000,
        stats_reset=None,
        statements_reset=None,
    )
    assert {
        k: {c: v[c] for c in ("bytes", "total_bytes", "rows")}
        for k, v in back.tables.items()
    } == tables
    assert {
        k: {c: v[c] for c in ("bytes", "scans")} for k, v in back.indexes.items()
    } == indexes
    assert {
        k: {c: v[c] for c in ("calls", "total_ms", "rows", "query", "since")}
        for k, v in back.statements.items()
    } == statements
    assert back.sections == data.sections and back.missing == data.missing


def snapshot(at: datetime.datetime, **statements: tuple[int, float]) -> SnapshotData:
    """A snapshot whose statements are queryid -> (calls, total ms)."""
    return SnapshotData(
        alias="default",
        taken_at=at,
        database="db",
        server_version=180000,
        statements_reset=NOW - datetime.timedelta(days=10),
        sections=("statements",),
        statements={
            int(qid[1:]): {
                "calls": c,
                "total_ms": t,
                "rows": c,
                "query": qid,
                "since": None,
            }
            for qid, (c, t) in statements.items()
        },
    )


BEFORE = NOW - datetime.timedelta(days=1)


def test_slower_and_more_frequent_over_the_interval():
    old = snapshot(BEFORE, q1=(900, 900.0), q2=(900, 900.0), q3=(900, 900.0))
    # q1: 100 more calls at 20 ms; q2: 9,000 more calls (90/day before, 9,000/day now)
    # at the same 1 ms; q3 unchanged.
    new = snapshot(NOW, q1=(1000, 2900.0), q2=(9900, 9900.0), q3=(900, 900.0))
    found = compare(old, new)
    assert [e["queryid"] for e in found.slower] == [1]
    assert found.slower[0]["mean_ms"] == pytest.approx(20)
    assert found.slower[0]["mean_ms_before"] == pytest.approx(1)
    assert [e["queryid"] for e in found.more_frequent] == [2]
    assert found.more_frequent[0]["calls_per_day"] == pytest.approx(9000)
    assert found.more_frequent[0]["calls_per_day_before"] == pytest.approx(100)
    assert found.notes == []


def test_calls_going_down_are_a_restart_not_a_negative_delta():
    old = snapshot(BEFORE, q1=(900, 900.0))
    new = snapshot(NOW, q1=(50, 5000.0))
    found = compare(old, new)
    assert found.slower == [] and found.more_frequent == []
    assert "1 statement(s) have fewer calls than in the snapshot" in found.notes[0]


def test_a_reset_measures_since_the_reset():
    old = snapshot(BEFORE, q1=(900, 900.0))
    new = snapshot(NOW, q1=(50, 1000.0))
    new.statements_reset = NOW - datetime.timedelta(hours=6)
    found = compare(old, new)
    assert "pg_stat_statements was reset at" in found.notes[0]
    assert found.slower[0]["calls"] == 50
    assert found.slower[0]["mean_ms"] == pytest.approx(20)
    assert found.more_frequent[0]["calls_per_day"] == pytest.approx(200)


def test_an_entry_restarted_on_postgresql_17_uses_its_own_start():
    old = snapshot(BEFORE, q1=(900, 900.0))
    new = snapshot(NOW, q1=(40, 800.0))
    new.statements[1]["since"] = NOW - datetime.timedelta(hours=12)
    found = compare(old, new)
    assert found.slower[0]["calls"] == 40 and found.notes == []


def test_findings_are_compared_only_over_the_same_sections():
    old = snapshot(BEFORE)
    new = snapshot(NOW)
    old.findings = {
        "a x": {"code": "a", "object": "x", "severity": "info", "title": "t"}
    }
    new.findings = {
        "b y": {"code": "b", "object": "y", "severity": "warning", "title": "u"}
    }
    found = compare(old, new)
    assert [f["code"] for f in found.new_findings] == ["b"]
    assert [f["code"] for f in found.resolved_findings] == ["a"]
    new.sections = ("statements", "tables")
    found = compare(old, new)
    assert found.new_findings == [] and "findings are not compared" in found.notes[-1]


def test_a_statistics_reset_hides_row_growth_not_size_growth():
    old = snapshot(BEFORE)
    old.tables = {("public", "t"): {"bytes": 100, "total_bytes": 100, "rows": 1000}}
    new = snapshot(NOW)
    new.tables = {("public", "t"): {"bytes": 300, "total_bytes": 300, "rows": 10}}
    new.stats_reset = NOW - datetime.timedelta(hours=1)
    found = compare(old, new)
    assert found.tables[0]["bytes_per_day"] == pytest.approx(200)
    assert found.tables[0]["rows_per_day"] is None
    assert any("row counts restarted" in note for note in found.notes)


@pytest.mark.parametrize("value", ["90", "soon", "-1d", "0d"])
def test_a_wrong_retention_is_a_system_check_error(dbtuning, value):
    from django.core.checks import run_checks

    dbtuning(HISTORY_RETENTION=value)
    messages = [m for m in run_checks(databases=[]) if m.id == "dbtuning.E057"]
    assert len(messages) == 1
    assert "DBTUNING['HISTORY_RETENTION']" in messages[0].msg


def test_a_good_retention_passes_the_checks(dbtuning):
    from django.core.checks import run_checks

    for value in ("90d", "12h", datetime.timedelta(days=1), None):
        dbtuning(HISTORY_RETENTION=value)
        assert not [m for m in run_checks(databases=[]) if m.id == "dbtuning.E057"]


def test_unreachable_and_mirror_aliases_are_left_out_with_a_reason():
    from django_dbtuning.report.findings import DatabaseReport, Report
    from django_dbtuning.report.history import take

    report = Report(
        generated_at=NOW,
        sections=("tables",),
        databases={
            "down": DatabaseReport(alias="down", reachable=False, error="refused"),
            "mirror": DatabaseReport(alias="mirror", same_database_as="default"),
            "bouncer": DatabaseReport(alias="bouncer", kind="pgbouncer"),
        },
        findings=[],
    )
    states, skipped = take(report)
    assert states == {}
    assert skipped == {
        "down": "unreachable (refused)",
        "mirror": "same database as alias 'default'",
        "bouncer": "a PgBouncer admin console holds no tables",
    }


def test_what_could_not_be_read_is_not_compared():
    old = snapshot(BEFORE, q1=(900, 900.0))
    old.tables = {("public", "t"): {"bytes": 100, "total_bytes": 150, "rows": 10}}
    new = snapshot(NOW, q1=(50, 5000.0))
    new.missing = ["statements", "indexes"]
    new.statements = {}
    new.tables = {("public", "t"): {"bytes": 300, "total_bytes": None, "rows": 10}}
    found = compare(old, new)
    assert found.slower == [] and found.indexes == []
    assert "indexes could not be read in both: not compared" in found.notes
    assert "statements could not be read in both: not compared" in found.notes
    # Without the indexes, tables compare by their own size.
    assert found.tables[0]["bytes_per_day"] == pytest.approx(200)


def test_without_the_app_installed(settings):
    from django.test.utils import modify_settings

    from django_dbtuning.report.history import storage_alias

    with (
        modify_settings(INSTALLED_APPS={"remove": ["django_dbtuning"]}),
        pytest.raises(HistoryError, match="add 'django_dbtuning' to INSTALLED_APPS"),
    ):
        storage_alias()
