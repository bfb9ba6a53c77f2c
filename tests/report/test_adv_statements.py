"""Adversarial pass (session 20) on the statements behind slow_query, n_plus_one_suspect,
--explain and baselines: one statement, several roles."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import psycopg
import pytest
from django.db import connections
from hypothesis import given
from hypothesis import strategies as st

from django_dbtuning.models import Snapshot
from django_dbtuning.report import Finding
from django_dbtuning.report.compare import as_text as as_since_text
from django_dbtuning.report.compare import compare
from django_dbtuning.report.history import from_row
from django_dbtuning.report.identity import key, statement
from django_dbtuning.report.intervals import window
from django_dbtuning.report.probe import connection_kwargs
from django_dbtuning.report.quoting import quote_ident
from django_dbtuning.report.snapshot import SnapshotData
from tests.report.test_report import (
    admin_connection,
    dbreport,
    extra_alias,
    findings,
    fresh_statements,  # noqa: F401 - a fixture
    report_json,
)

pytestmark = pytest.mark.django_db

OTHER = "dbreport_adv_worker"
OTHER_PASSWORD = "adv-Worker-pw-7"
WRITER = "SELECT name FROM reportapp_writer WHERE id = %s"


@pytest.fixture
def worker_role(fresh_statements):  # noqa: F811 - the fixture imported above
    """A second login role (a Celery worker's, say) that runs the web role's queries."""
    with admin_connection() as conn:
        conn.execute(f"DROP ROLE IF EXISTS {OTHER}")
        conn.execute(
            f"CREATE ROLE {OTHER} LOGIN PASSWORD '{OTHER_PASSWORD}' "
            "IN ROLE pg_read_all_data"
        )
    kwargs = {
        **connection_kwargs(connections.settings["default"]),
        "user": OTHER,
        "password": OTHER_PASSWORD,
    }
    try:
        with psycopg.connect(**kwargs, autocommit=True) as other:
            yield other
    finally:
        with admin_connection() as conn:
            conn.execute(f"DROP OWNED BY {OTHER}")
            conn.execute(f"DROP ROLE {OTHER}")


def test_a_statement_run_by_two_roles_is_one_statement(worker_role, dbtuning):
    # 200 calls from each role: 400 together, over the 300 the threshold asks for.
    dbtuning(
        REPORT_THRESHOLDS={"n_plus_one_min_calls": 300, "n_plus_one_min_time_share": 0}
    )
    with admin_connection() as conn:
        for pk in range(200):
            conn.execute(WRITER, [pk])
    for pk in range(200):
        worker_role.execute(WRITER, [pk])
    document = report_json(
        "--database", "default", "--section", "statements", "--top", "0"
    )
    top = document["databases"]["default"]["statements"]["top"]
    rows = [r for r in top if "reportapp_writer" in r["query"]]
    # Before: two rows of 200 calls with the same queryid, and no finding.
    assert [r["calls"] for r in rows] == [400]
    assert len({r["queryid"] for r in top}) == len(top)
    suspects = [
        f
        for f in findings(document, "n_plus_one_suspect")
        if f["model"] == "reportapp.Writer"
    ]
    assert [f["data"]["calls"] for f in suspects] == [400]


SLOW = "SELECT count(*) FROM reportapp_ticket, adv_pause(0.02)"


def _run_slow_statement(fresh: bool) -> None:
    with admin_connection() as conn:
        if fresh:
            # A dump restored elsewhere, a database migrated afresh in CI, a function
            # dropped and re-created by a migration: the same statement, new OIDs.
            conn.execute("DROP FUNCTION IF EXISTS adv_pause(float8)")
            conn.execute(
                "CREATE FUNCTION adv_pause(float8) RETURNS void LANGUAGE sql "
                "AS 'SELECT pg_sleep($1)'"
            )
            conn.execute("SELECT pg_stat_statements_reset()")
        for _ in range(3):
            conn.execute(SLOW)


def test_a_baseline_knows_a_statement_on_a_copy_of_the_database(
    fresh_statements,  # noqa: F811
    dbtuning,
    tmp_path,
):
    dbtuning(REPORT_THRESHOLDS={"slow_query_min_calls": 3, "slow_query_mean_ms": 15})
    baseline = str(tmp_path / "baseline.json")
    only = ("--database", "default", "--section", "statements")
    try:
        _run_slow_statement(fresh=True)
        out, err, code = dbreport(*only, "--write-baseline", baseline)
        assert code == 0, err
        written = json.loads(Path(baseline).read_text())["findings"]
        slow = [e for e in written if e["code"] == "slow_query"]
        assert len(slow) == 1
        # pg_stat_statements' queryid hashes the OIDs of what a statement uses: it is
        # not in the file, and the statement is known again once the OIDs changed.
        assert "queryid" not in slow[0]["object"]
        _run_slow_statement(fresh=True)
        out, err, code = dbreport(*only, "--baseline", baseline, "--fail-on", "warning")
        assert code == 0, err + out
        assert "1 known finding" in out
    finally:
        with admin_connection() as conn:
            conn.execute("DROP FUNCTION IF EXISTS adv_pause(float8)")


@given(
    # A backslash in '…' makes the rest of the text ambiguous to the lexer (it would end
    # elsewhere under standard_conforming_strings = off), so masking stops there.
    value=st.text(alphabet=st.characters(blacklist_characters="\\"), max_size=30),
    number=st.integers(),
    comment=st.text(alphabet=st.characters(blacklist_characters="*/"), max_size=30),
    spaces=st.sampled_from([" ", "  ", "\n", "\t "]),
)
def test_a_statement_identity_ignores_values_comments_and_spacing(
    value, number, comment, spaces
):
    quoted = value.replace("'", "''")
    one = statement("SELECT a FROM t WHERE b = $1 AND c = 'x' AND d = 1")
    other = statement(
        f"/* {comment} */ SELECT{spaces}a FROM t WHERE b = $1 AND c = '{quoted}' "
        f"AND d = {abs(number)}"
    )
    assert one == other
    assert one is not None and one.startswith("statement:")
    assert statement("<insufficient privilege>") is None


@pytest.mark.parametrize("code", ["plan_seq_scan", "plan_spill", "plan_nested_loop"])
def test_a_plan_finding_is_not_resolved_by_a_run_without_explain(
    fresh_statements,  # noqa: F811
    tmp_path,
    code,
):
    path = tmp_path / "baseline.json"
    entry = {"code": code, "object": "statement:0123456789abcdef", "label": "x"}
    path.write_text(
        json.dumps({"version": 1, "findings": [{**entry, "section": "statements"}]})
    )
    document = report_json(
        "--database", "default", "--section", "statements", "--baseline", str(path)
    )
    comparison = document["baseline"]
    # The plans were not looked at: not checked, never resolved.
    assert comparison["resolved"] == []
    assert [e["code"] for e in comparison["not_checked"]] == [code]
    document = report_json(
        "--database",
        "default",
        "--section",
        "statements",
        "--explain",
        "--baseline",
        str(path),
    )
    planned = document["databases"]["default"]["checks"]["explain"]["status"] == "ok"
    # Planned (PostgreSQL 16+), the statements' plans hold no such finding: resolved.
    assert [e["code"] for e in document["baseline"]["resolved"]] == (
        [code] if planned else []
    )


def _saved() -> SnapshotData:
    out, err, code = dbreport(
        "--save", "--database", "default", "--section", "statements"
    )
    assert code == 0, err
    return from_row(Snapshot.objects.filter(alias="default").latest("pk"))


def _queryid(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT queryid FROM pg_stat_statements WHERE query LIKE %s LIMIT 1",
        ["SELECT name FROM reportapp_writer WHERE id = %"],
    ).fetchone()
    return int(row[0])


def test_a_new_role_running_a_statement_is_no_restart_of_it(worker_role):
    with admin_connection() as conn:
        if conn.info.server_version < 170000:
            pytest.skip("pg_stat_statements has stats_since on PostgreSQL 17+")
        for pk in range(50):
            conn.execute(WRITER, [pk])
        queryid = _queryid(conn)
    old = _saved()
    # A role that never ran it before (a new worker, someone in psql): a new entry,
    # whose stats_since is after the snapshot; the web role's entry runs on.
    for pk in range(20):
        worker_role.execute(WRITER, [pk])
    new = _saved()
    counted = window(old, new, new.statements[queryid], old.statements[queryid])
    # Before: "restarted" at the new entry's start, counting all 70 calls since then
    # (a calls-per-day rate many times the real one, a false "more frequent").
    assert counted is not None
    assert (counted.calls, counted.restarted) == (20, False)


def _distinct(conn: psycopg.Connection, a: int, b: int) -> None:
    conn.execute(f"ALTER TABLE adv_pair ALTER COLUMN a SET (n_distinct = {a})")
    conn.execute(f"ALTER TABLE adv_pair ALTER COLUMN b SET (n_distinct = {b})")
    conn.execute("ANALYZE adv_pair")


def test_a_missing_index_is_known_whichever_column_the_statistics_put_first(
    fresh_statements,  # noqa: F811
    dbtuning,
    tmp_path,
):
    dbtuning(
        REPORT_THRESHOLDS={
            "missing_index_min_rows": 100,
            "missing_index_min_calls": 50,
            "missing_index_min_time_share": 0,
        }
    )
    baseline = str(tmp_path / "baseline.json")
    only = ("--database", "default", "--section", "statements")
    with admin_connection() as conn:
        conn.execute("DROP TABLE IF EXISTS adv_pair")
        conn.execute("CREATE TABLE adv_pair (id int, a int, b int)")
        conn.execute(
            "INSERT INTO adv_pair SELECT g, g % 100, g % 50 FROM generate_series(1, 20000) g"
        )
        try:
            for n in range(60):
                conn.execute(
                    'SELECT "adv_pair"."id" FROM "adv_pair" '
                    'WHERE "adv_pair"."a" = %s AND "adv_pair"."b" = %s',
                    [n, n],
                )
            _distinct(conn, 100, 50)
            out, err, code = dbreport(*only, "--write-baseline", baseline)
            assert code == 0, err
            first = report_json(*only)
            assert [f["data"]["columns"] for f in findings(first, "missing_index")] == [
                ["a", "b"]
            ]
            # Another machine's data, or tomorrow's ANALYZE: b is now the more selective.
            _distinct(conn, 50, 100)
            then = report_json(*only)
            assert [f["data"]["columns"] for f in findings(then, "missing_index")] == [
                ["b", "a"]
            ]
            out, err, code = dbreport(
                *only, "--baseline", baseline, "--fail-on", "warning"
            )
            assert code == 0, err + out
        finally:
            conn.execute("DROP TABLE IF EXISTS adv_pair")


def test_statements_that_share_no_queryid_with_the_snapshot_are_said_so():
    # After a major upgrade (or, before PostgreSQL 18, a restore) every queryid is new:
    # "none slower or more frequent" would claim what was never compared.
    old = _statements_at(BEFORE, 170000, {1: (900, 900.0)})
    new = _statements_at(NOW, 180000, {2: (90_000, 900_000.0)})
    found = compare(old, new)
    assert found.slower == [] and found.more_frequent == []
    assert any(
        "none of the snapshot's statements" in note and "PostgreSQL 17" in note
        for note in found.notes
    ), found.notes
    # One statement in common: compared as usual, no such note.
    same = _statements_at(NOW, 170000, {1: (1000, 1000.0), 2: (5, 5.0)})
    assert not any("none of the snapshot" in n for n in compare(old, same).notes)


NOW = datetime.datetime(2026, 11, 30, 12, tzinfo=datetime.UTC)
BEFORE = NOW - datetime.timedelta(days=1)


def _statements_at(
    at: datetime.datetime, version: int, rows: dict[int, tuple[int, float]]
) -> SnapshotData:
    return SnapshotData(
        alias="default",
        taken_at=at,
        database="db",
        server_version=version,
        sections=("statements",),
        statements={
            qid: {
                "calls": c,
                "total_ms": t,
                "rows": c,
                "query": "SELECT ?",
                "since": None,
            }
            for qid, (c, t) in rows.items()
        },
    )


@pytest.mark.parametrize(
    ("code", "data"),
    [
        ("missing_index", lambda cols: {"columns": cols}),
        ("plan_seq_scan", lambda cols: {"columns": ["z"], "index_columns": [cols]}),
        ("plan_seq_scan", lambda cols: {"columns": cols, "index_columns": []}),
    ],
)
def test_an_index_suggestion_is_one_identity_in_any_column_order(code, data):
    def finding(columns: list[str]) -> Finding:
        shown = ",".join(quote_ident(c) for c in columns)
        return Finding(
            database="default",
            severity="warning",
            code=code,
            title="",
            detail="",
            hint="",
            object=f'"Odd (x)"."T(a)"({shown})',
            data=data(columns),
        )

    one, other = finding(["a", 'B "b"']), finding(['B "b"', "a"])
    assert key(one) == key(other)
    assert key(one).object == '"Odd (x)"."T(a)"("B ""b""",a)'


LIMITED = "dbreport_adv_limited"
LIMITED_PASSWORD = "adv-Limited-pw-5"


def test_the_hidden_statements_are_counted(worker_role):
    # Three statements of another role, hidden from a role without pg_read_all_stats.
    for number in range(3):
        worker_role.execute(f"SELECT {number} AS adv_hidden_{number}")
    with admin_connection() as conn:
        conn.execute(f"DROP ROLE IF EXISTS {LIMITED}")
        conn.execute(f"CREATE ROLE {LIMITED} LOGIN PASSWORD '{LIMITED_PASSWORD}'")
    try:
        with extra_alias("adv_limited", USER=LIMITED, PASSWORD=LIMITED_PASSWORD):
            document = report_json(
                "--database", "adv_limited", "--section", "statements"
            )
            kwargs = {
                **connection_kwargs(connections.settings["default"]),
                "user": LIMITED,
                "password": LIMITED_PASSWORD,
            }
            with psycopg.connect(**kwargs, autocommit=True) as limited:
                hidden = limited.execute(
                    "SELECT count(*) FROM pg_stat_statements WHERE queryid IS NULL "
                    "AND dbid = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database()) "
                    "AND query = '<insufficient privilege>' AND toplevel"
                ).fetchone()[0]
    finally:
        with admin_connection() as conn:
            conn.execute(f"DROP OWNED BY {LIMITED}")
            conn.execute(f"DROP ROLE {LIMITED}")
    assert hidden >= 3
    reason = document["databases"]["adv_limited"]["checks"]["statement_texts"]["reason"]
    # Before: every hidden row had the queryid None, one key: "1 statement text(s)".
    assert reason.startswith(f"{hidden} statement text(s) of other roles are hidden")


def test_the_text_never_says_none_slower_of_statements_not_compared():
    old = _statements_at(BEFORE, 170000, {1: (900, 900.0)})
    new = _statements_at(NOW, 180000, {2: (90_000, 900_000.0)})
    text = as_since_text([compare(old, new)])
    assert "none slower" not in text
    assert "Statements: not compared (see the note)" in text
    missing = _statements_at(NOW, 170000, {})
    missing.missing = ["statements"]
    text = as_since_text([compare(old, missing)])
    assert "none slower" not in text and "statements could not be read" in text
    same = _statements_at(NOW, 170000, {1: (901, 901.0)})
    assert "none slower or more frequent" in as_since_text([compare(old, same)])


def test_a_table_called_database_is_not_the_database():
    def wraparound(name: str) -> Finding:
        return Finding(
            database="default",
            severity="warning",
            code="xid_wraparound",
            title="",
            detail="",
            hint="",
            object=name,
        )

    # public.database, named as findings name tables (quote_ident leaves it bare), and
    # the database's own age: a baseline knowing one must not hide the other.
    table, database = wraparound("database"), wraparound("database:shop")
    assert key(table) != key(database)
    assert key(database) == key(wraparound("database:shop_copy"))
    assert key(wraparound('"Other"."database"')).object == '"Other"."database"'
