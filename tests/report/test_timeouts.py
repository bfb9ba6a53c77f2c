"""dbreport never runs without a statement_timeout and a lock_timeout.

PostgreSQL reads 0 as "off" and rounded "0.0001ms" to 0, so both ran the report with no
timeout at all (a full report, exit 0). A fraction of a millisecond now rounds up to 1 ms;
0, negative, non-durations and values over INT_MAX ms are refused by the system check
(dbtuning.E051, or E002 for a value of the wrong type) and, at run time, in one line, exit 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from django.core.checks import ERROR
from django.test import override_settings
from hypothesis import event, given, settings
from hypothesis import strategies as st

from django_dbtuning.checks import check_dbtuning_settings
from django_dbtuning.report import run_report
from django_dbtuning.report.checks import check_dbreport_settings
from django_dbtuning.report.djangomap import ModelMap
from django_dbtuning.report.findings import DatabaseReport, thresholds
from django_dbtuning.report.probe import Probe, connect
from django_dbtuning.report.timeouts import NAMES, ReportTimeouts, configured
from django_dbtuning.validation import INT_MAX, millisecond_value
from tests.report.test_output import manage
from tests.report.test_report import admin_connection, dbreport, report_json

pytestmark = pytest.mark.django_db


def errors_naming(name: str) -> list[str]:
    """Ids of the system check errors about ``DBTUNING[name]``."""
    messages = [*check_dbtuning_settings(), *check_dbreport_settings()]
    return [m.id for m in messages if m.level >= ERROR and f"[{name!r}]" in m.msg]


# -- a fraction of a millisecond is 1 ms, never "off" ---------------------------------------


@pytest.fixture
def locked_volume() -> Iterator[psycopg.Connection]:
    """A migration's ACCESS EXCLUSIVE lock on reportapp_volume: index_inventory waits on
    it until one of the report's timeouts ends the wait (with no timeout, forever)."""
    with admin_connection() as conn:
        conn.autocommit = False
        conn.execute("LOCK TABLE reportapp_volume IN ACCESS EXCLUSIVE MODE")
        try:
            yield conn
        finally:
            conn.rollback()


def timed_out(document: dict) -> list[str]:
    checks = document["databases"]["default"]["checks"].values()
    return [c["reason"] for c in checks if c["status"] == "timeout"]


@pytest.mark.parametrize("value", ["0.0001ms", "0.4ms", "1us"])
def test_a_sub_millisecond_lock_timeout_is_1ms(locked_volume, dbtuning, value):
    dbtuning(REPORT_LOCK_TIMEOUT=value)
    document = report_json("--database", "default", "--section", "indexes")
    # With lock_timeout off, the wait would end at statement_timeout (10s) instead.
    reasons = timed_out(document)
    assert reasons and all(r.startswith("lock_timeout 1ms (") for r in reasons)


@pytest.mark.parametrize("value", ["0.0001ms", "0.4ms", "1us"])
def test_a_sub_millisecond_statement_timeout_is_1ms(locked_volume, dbtuning, value):
    # The lock wait is long, so only a statement_timeout that is on ends it. The first
    # query (the server facts) may already time out: any timeout must be this one.
    dbtuning(REPORT_STATEMENT_TIMEOUT=value, REPORT_LOCK_TIMEOUT="10s")
    document = report_json("--database", "default", "--section", "indexes")
    assert timed_out(document) and set(timed_out(document)) == {"statement_timeout 1ms"}


def test_a_sub_millisecond_timeout_fails_ci_from_the_command_line(
    locked_volume, tmp_path
):
    # The hostile pass' case: "0.0001ms" gave a full report and exit 0 under --fail-on.
    result = manage(
        "--format",
        "json",
        "--database",
        "default",
        "--section",
        "indexes",
        "--fail-on",
        "error",
        tmp_path=tmp_path,
        dbtuning={"REPORT_STATEMENT_TIMEOUT": "0.0001ms", "REPORT_LOCK_TIMEOUT": "10s"},
    )
    assert result.returncode == 1, result.stderr
    assert set(timed_out(json.loads(result.stdout))) == {"statement_timeout 1ms"}
    (line,) = result.stderr.strip().splitlines()
    assert "check(s) incomplete" in line


# -- refused: by the check, and at run time in one line --------------------------------------

REFUSED = [
    ("REPORT_STATEMENT_TIMEOUT", 0, "dbtuning.E051", "reads as no timeout at all"),
    ("REPORT_STATEMENT_TIMEOUT", "0", "dbtuning.E051", "reads as no timeout at all"),
    ("REPORT_LOCK_TIMEOUT", "0ms", "dbtuning.E051", "reads as no timeout at all"),
    ("REPORT_LOCK_TIMEOUT", " 0.0 s", "dbtuning.E051", "reads as no timeout at all"),
    ("REPORT_STATEMENT_TIMEOUT", -1, "dbtuning.E051", "a negative timeout"),
    ("REPORT_LOCK_TIMEOUT", "-5s", "dbtuning.E051", "a negative timeout"),
    ("REPORT_STATEMENT_TIMEOUT", "abc", "dbtuning.E051", "which is not a duration"),
    ("REPORT_STATEMENT_TIMEOUT", "inf", "dbtuning.E051", "which is not a duration"),
    ("REPORT_LOCK_TIMEOUT", "10 seconds", "dbtuning.E051", "which is not a duration"),
    ("REPORT_STATEMENT_TIMEOUT", "25d", "dbtuning.E051", "over PostgreSQL's limit"),
    ("REPORT_LOCK_TIMEOUT", INT_MAX + 1, "dbtuning.E051", "over PostgreSQL's limit"),
    ("REPORT_STATEMENT_TIMEOUT", 0.5, "dbtuning.E002", "use a duration such as"),
    ("REPORT_STATEMENT_TIMEOUT", float("inf"), "dbtuning.E002", "use a duration"),
    ("REPORT_LOCK_TIMEOUT", float("nan"), "dbtuning.E002", "use a duration"),
    ("REPORT_LOCK_TIMEOUT", None, "dbtuning.E002", "use a duration"),
    ("REPORT_STATEMENT_TIMEOUT", True, "dbtuning.E002", "use a duration"),
]


@pytest.mark.parametrize(("name", "value", "check_id", "words"), REFUSED)
def test_a_refused_timeout_is_a_check_error_and_exit_1(
    dbtuning, name, value, check_id, words
):
    dbtuning(**{name: value})
    assert errors_naming(name) == [check_id]
    out, error, code = dbreport("--database", "default")
    assert code == 1
    assert out == ""
    assert error.startswith(f"DBTUNING[{name!r}] is {value!r}")
    assert words in error
    assert "\n" not in error
    assert "report it if it persists" not in error  # a setting, not a server error


def test_a_zero_timeout_from_the_command_line(tmp_path):
    result = manage(tmp_path=tmp_path, dbtuning={"REPORT_STATEMENT_TIMEOUT": 0})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "CommandError: DBTUNING['REPORT_STATEMENT_TIMEOUT'] is 0, which PostgreSQL "
        "reads as no timeout at all, and dbreport never runs without one; use a duration "
        "such as '500ms', '10s' or '1min', or an int of milliseconds (at least 1ms)"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0001ms", 1),
        ("1us", 1),
        ("1.2ms", 2),
        ("10s", 10_000),
        ("1min", 60_000),
        ("24d", 2_073_600_000),
        (" 5 ms ", 5),
        (INT_MAX, INT_MAX),
        ("2147483646.5ms", INT_MAX),
    ],
)
def test_accepted_timeouts(dbtuning, value, expected):
    dbtuning(REPORT_STATEMENT_TIMEOUT=value, REPORT_LOCK_TIMEOUT=value)
    assert errors_naming("REPORT_STATEMENT_TIMEOUT") == []
    assert configured() == ReportTimeouts(statement_ms=expected, lock_ms=expected)


# -- the property: what the setting accepts is sent as 1..INT_MAX ms; what it refuses, the
# -- check reports -------------------------------------------------------------------------

_SPACE = st.sampled_from(["", " ", "\t", "\n "])
_NUMBER = st.one_of(
    st.integers(min_value=0, max_value=10**12).map(str),
    st.decimals(min_value=0, max_value=10**10, allow_nan=False, places=6).map(
        lambda d: format(d, "f")
    ),
    st.sampled_from(
        [
            "0",
            "0.0001",
            "0.000001",
            ".5",
            "5.",
            "2147483647",
            "2147483648",
            "2147483647.5",
        ]
    ),
)


def _duration_text(signs: list[str]) -> st.SearchStrategy[str]:
    return st.builds(
        "".join,
        st.tuples(
            _SPACE,
            st.sampled_from(signs),
            _NUMBER,
            _SPACE,
            st.sampled_from(["", "us", "ms", "s", "min", "h", "d", "sec", "MS"]),
            _SPACE,
        ),
    )


VALUES = st.one_of(
    _duration_text(["", "+", "-"]),
    _duration_text(["", "+"]),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.integers(min_value=-1, max_value=10**6),
    st.sampled_from([0, 1, INT_MAX, INT_MAX + 1, -1]),
    st.text(max_size=12),
    st.one_of(st.floats(), st.none(), st.booleans()),
)


@pytest.fixture(scope="module")
def report_connection(
    django_db_setup, django_db_blocker
) -> Iterator[psycopg.Connection]:
    from django.db import connections

    with django_db_blocker.unblock(), connect(connections.settings["default"]) as conn:
        yield conn


def sent(conn: psycopg.Connection, timeouts: ReportTimeouts) -> tuple[str, object]:
    """What the server holds inside one of the report's checks: its ms, or the timeout."""
    probe = Probe(
        "default",
        conn,
        result=DatabaseReport(alias="default"),
        findings=[],
        thresholds=thresholds({}),
        models=ModelMap(),
        top=1,
        timeouts=timeouts,
    )
    rows = probe.query(
        "observe",
        "server",
        "SELECT setting::bigint AS ms, name FROM pg_settings"
        " WHERE name IN ('statement_timeout', 'lock_timeout')",
    )
    (check,) = probe.result.checks
    if rows is None:
        return check.status, check.reason
    return "ok", {row["name"]: row["ms"] for row in rows}


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(NAMES), value=VALUES)
def test_every_accepted_timeout_is_sent_as_1_to_int_max_ms(
    report_connection, name, value
):
    with override_settings(DBTUNING={name: value}):
        reported = errors_naming(name)
        try:
            timeouts = configured()
        except ValueError as exc:
            # Refused at run time: the check reports it (E002 for a wrong type), and
            # the report stops before connecting, naming the setting.
            event("refused")
            assert len(reported) == 1, (value, reported)
            assert str(exc).startswith(f"DBTUNING[{name!r}] is ")
            with pytest.raises(ValueError, match=r"^DBTUNING\["):
                run_report(["default"])
            return
    assert reported == []
    ms = (
        timeouts.statement_ms
        if name == "REPORT_STATEMENT_TIMEOUT"
        else timeouts.lock_ms
    )
    assert 1 <= ms <= INT_MAX
    amount = Decimal(value) if isinstance(value, int) else millisecond_value(value)
    assert amount is not None and ms - 1 < amount <= ms  # rounded up, never down
    status, seen = sent(report_connection, timeouts)
    event(f"accepted, check {status}")
    if status == "ok":
        # The server's own reading of what the report set, in ms.
        assert seen == {
            "statement_timeout": timeouts.statement_ms,
            "lock_timeout": timeouts.lock_ms,
        }
    else:
        # A 1 ms statement_timeout may stop even this query: proof that it was on.
        assert status == "timeout" and timeouts.statement_ms < 100, (status, seen)
