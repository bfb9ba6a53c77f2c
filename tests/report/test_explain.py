"""dbreport --explain on a real PostgreSQL: planted bad plans, failing statements,
privileges, hostile names, masking; the "needs 16+" outcome on older servers."""

from __future__ import annotations

import json
import re

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from psycopg import sql

from django_dbtuning.report import as_json, as_prometheus, as_text, run_report
from tests.report.test_report import admin_connection, dbreport, extra_alias

pytestmark = pytest.mark.django_db

SECRET = "SECRET-LITERAL-4242"
READER_PASSWORD = "explain-Reader-pw-17"
SCHEMA = "Plan Schema"
TABLE = 'Plan "T"; DROP TABLE x; --'
COLUMN = 'Cust "Id"'
THRESHOLDS = {"plan_min_calls": 3}

LOOKUP = (
    'SELECT "explain_orders"."id" FROM "explain_orders" '
    'WHERE "explain_orders"."note" = %s'
)
SORT = "SELECT id, note, pad FROM explain_events WHERE kind <> %s ORDER BY pad"
LOOP = (
    "SELECT count(*) FROM explain_orders o JOIN explain_ranges r "
    "ON o.customer BETWEEN r.lo AND r.hi WHERE r.kind = %s"
)
UPDATE = "UPDATE explain_orders SET note = note WHERE customer = %s AND id < 0"
RARE = "SELECT id FROM explain_orders WHERE status = %s"
WRITER = "SELECT w.id, w.code FROM reportapp_writer w WHERE w.name = %s"
HASHED = (
    "SELECT o.id, e.pad FROM explain_orders o JOIN explain_events e ON e.note = o.note "
    "WHERE o.customer > %s"
)
# An alias, as a hand-written or joined query has: the pg_stats heuristic (missing_index)
# reads Django's "table"."column" filters only, the plan reads every shape.
FILTERED = (
    "SELECT o.id, o.note FROM explain_orders o WHERE o.customer = %s AND o.status = %s"
)
VIEW = "SELECT id FROM explain_secret_view WHERE customer = %s"


def server_version() -> int:
    with admin_connection() as conn:
        return conn.info.server_version


needs_16 = pytest.mark.skipif(
    "server_version() < 160000",
    reason="EXPLAIN (GENERIC_PLAN) needs PostgreSQL 16+",
)


def q(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


def _tables(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS public.x")
    conn.execute("CREATE TABLE public.x (id int)")
    conn.execute(
        "DROP VIEW IF EXISTS explain_secret_view;"
        "DROP TABLE IF EXISTS explain_orders, explain_events, explain_ranges, "
        "explain_gone, explain_private"
    )
    conn.execute(
        "CREATE TABLE explain_orders (id serial PRIMARY KEY, customer int, status text,"
        " note text)"
    )
    conn.execute(
        "INSERT INTO explain_orders (customer, status, note) SELECT g % 5000, "
        "'s' || g % 3, 'n' || g FROM generate_series(1, 50000) g"
    )
    conn.execute(
        "CREATE TABLE explain_events (id serial PRIMARY KEY, kind int, note text, pad text)"
    )
    conn.execute(
        "INSERT INTO explain_events (kind, note, pad) SELECT g % 7, 'e' || g, "
        "md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 5000) g"
    )
    conn.execute("CREATE TABLE explain_ranges (id int, kind int, lo int, hi int)")
    conn.execute(
        "INSERT INTO explain_ranges SELECT g, g % 2, g * 100, g * 100 + 50 "
        "FROM generate_series(1, 60) g"
    )
    conn.execute("CREATE TABLE explain_gone (id int)")
    conn.execute(
        "CREATE OR REPLACE FUNCTION explain_double(int) RETURNS int LANGUAGE sql "
        "IMMUTABLE AS 'SELECT $1 * 2'"
    )
    conn.execute("CREATE TABLE explain_private (id int, owner int)")
    # A literal in a view's definition reaches the plan's Filter whatever
    # pg_stat_statements normalises.
    conn.execute(
        "CREATE VIEW explain_secret_view AS SELECT * FROM explain_orders "
        f"WHERE status <> '{SECRET}'"
    )
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(q(SCHEMA)))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(q(SCHEMA)))
    conn.execute(
        sql.SQL("CREATE TABLE {} (id int, {} int)").format(q(SCHEMA, TABLE), q(COLUMN))
    )
    conn.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, g % 1000 FROM generate_series(1, 30000) g"
        ).format(q(SCHEMA, TABLE))
    )
    # A model's table: the hint is the model's Meta.indexes line.
    conn.execute(
        "INSERT INTO reportapp_writer (name, code) SELECT 'writer ' || g, 1000000 + g "
        "FROM generate_series(1, 20000) g"
    )
    conn.execute("ANALYZE")


def _statements(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_stat_statements_reset()")
    for i in range(60):
        conn.execute(LOOKUP, [f"n{i}"])
        conn.execute(FILTERED, [i, "s1"])
        conn.execute(WRITER, [f"writer {i}"])
        conn.execute(
            sql.SQL("SELECT t.id FROM {} t WHERE t.{} = %s").format(
                q(SCHEMA, TABLE), q(COLUMN)
            ),
            [i],
        )
    for i in range(4):
        conn.execute(SORT, [i]).fetchall()
        conn.execute(LOOP, [i % 2])
        conn.execute(UPDATE, [i])
        conn.execute(HASHED, [i]).fetchall()
        conn.execute(VIEW, [i])
        conn.execute("SELECT id FROM explain_gone WHERE id = %s", [i])
        conn.execute("SELECT explain_double(id) FROM explain_ranges WHERE id = %s", [i])
        conn.execute("SELECT id FROM explain_private WHERE owner = %s", [i])
        # pg_stat_statements keeps it as "SELECT $1 + $2": no types left to plan with.
        conn.execute("SELECT 1 + 1")
        conn.execute(
            f"SELECT id FROM explain_orders WHERE note = '{SECRET}' AND customer = %s",
            [i],
        )
    conn.execute(RARE, ["s1"])
    conn.execute("DROP TABLE explain_gone")
    conn.execute("DROP FUNCTION explain_double(int)")
    conn.execute("SELECT pg_stat_force_next_flush()")


@pytest.fixture(scope="module")
def planted(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), admin_connection() as conn:
        _tables(conn)
        _statements(conn)
        database = conn.info.dbname
        # A small work_mem for the report's sessions: the sort above spills.
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET work_mem = '64kB'").format(q(database))
        )
        try:
            yield conn
        finally:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RESET work_mem").format(q(database))
            )
            conn.execute("DELETE FROM reportapp_writer WHERE code > 1000000")
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(q(SCHEMA)))
            conn.execute(
                "DROP VIEW IF EXISTS explain_secret_view;"
                "DROP TABLE IF EXISTS explain_orders, explain_events, explain_ranges, "
                "explain_private, public.x"
            )


@pytest.fixture(scope="module")
def reported(planted, django_db_blocker):
    with (
        django_db_blocker.unblock(),
        override_settings(DBTUNING={"REPORT_THRESHOLDS": THRESHOLDS}),
    ):
        args = ("--database", "default", "--section", "statements", "--explain")
        out, err, code = dbreport("--format", "json", "--top", "0", *args)
        assert code == 0, err
        text, err, code = dbreport("--top", "0", *args)
        assert code == 0, err
        report = run_report("default", sections="statements", explain=True)
    return json.loads(out), text, report


def by_code(document: dict, code: str) -> list[dict]:
    return [f for f in document["findings"] if f["code"] == code]


def planned(document: dict) -> dict[str, dict]:
    explain = document["databases"]["default"]["statements"]["explain"]
    return {entry["query"]: entry for entry in explain["statements"]}


def entry_for(document: dict, fragment: str) -> dict:
    found = [e for q, e in planned(document).items() if fragment in q]
    assert found, f"{fragment!r} not among {list(planned(document))}"
    return found[0]


# -- the planted problems ---------------------------------------------------------------


@needs_16
def test_frequent_sequential_scan_of_a_large_table(reported):
    document, text, _ = reported
    (finding,) = [
        f
        for f in by_code(document, "plan_seq_scan")
        if f["object"] == "explain_orders(customer)"
    ]
    assert finding["severity"] == "warning"
    data = finding["data"]
    assert data["table"] == "explain_orders" and data["schema"] == "public"
    assert data["rows"] >= 49_000
    # status cuts customer's ~10 rows per value too little to earn a place (pg_stats).
    assert data["columns"] == ["customer", "status"]
    assert data["index_columns"] == [["customer"]]
    assert data["sql"] == [
        'CREATE INDEX CONCURRENTLY ON "public"."explain_orders" ("customer")'
    ]
    statement = next(s for s in data["statements"] if s["calls"] == 60)
    assert statement["query"].startswith("SELECT o.id, o.note FROM explain_orders o")
    assert isinstance(statement["queryid"], int)
    assert statement["plan"]["Node Type"] == "Seq Scan"
    assert statement["node"]["Filter"] == "((o.customer = $1) AND (o.status = $2))"
    # The view's statement needs the same index: one finding names both.
    assert any("explain_secret_view" in s["query"] for s in data["statements"])
    assert "Plan: Seq Scan on explain_orders o" in " ".join(text.split())


@needs_16
def test_a_model_table_gets_the_meta_indexes_line(reported):
    document, _, _ = reported
    (finding,) = [
        f
        for f in by_code(document, "plan_seq_scan")
        if f["data"]["table"] == "reportapp_writer"
    ]
    assert finding["model"] == "reportapp.Writer"
    assert finding["object"] == "reportapp_writer(name)"
    assert finding["hint"].startswith(
        "add models.Index(fields=['name'], name=...) to reportapp.Writer.Meta.indexes"
    )
    assert "sql" not in finding["data"]  # the migration is the way, not SQL
    (statement,) = finding["data"]["statements"]
    assert statement["node"]["Filter"] == "((w.name)::text = $1)"


@needs_16
def test_rare_statement_is_planned_but_not_judged(reported):
    document, _, _ = reported
    rare = entry_for(document, "WHERE status = $1")
    assert rare["status"] == "planned" and rare["calls"] == 1
    assert not any(
        f["data"]["columns"] == ["status"] for f in by_code(document, "plan_seq_scan")
    )


@needs_16
def test_sort_over_work_mem_spills(reported):
    document, _, _ = reported
    (finding,) = [
        f for f in by_code(document, "plan_spill") if "ORDER BY pad" in f["detail"]
    ]
    data = finding["data"]
    assert data["kind"] == "sort"
    assert data["work_mem_bytes"] == 64 * 1024
    assert data["estimated_bytes"] > data["work_mem_bytes"]
    assert data["sql"] == [
        'CREATE INDEX CONCURRENTLY ON "public"."explain_events" ("pad")'
    ]
    assert "work_mem" in finding["hint"]
    assert data["statements"][0]["node"]["Node Type"] == "Sort"


@needs_16
def test_hash_over_hash_mem_spills(reported):
    document, _, _ = reported
    (finding,) = [
        f
        for f in by_code(document, "plan_spill")
        if "JOIN explain_events e" in f["detail"]
    ]
    data = finding["data"]
    assert data["kind"] == "hash"
    # A hash may use work_mem × hash_mem_multiplier (2.0 by default).
    assert data["memory_bytes"] == 2 * 64 * 1024
    assert data["estimated_bytes"] > data["memory_bytes"]
    assert data["statements"][0]["node"]["Node Type"] == "Hash"
    assert "sql" not in data  # no index removes a hash: work_mem does
    assert "work_mem" in finding["hint"]


@needs_16
def test_nested_loop_without_an_index(reported):
    document, _, _ = reported
    (finding,) = by_code(document, "plan_nested_loop")
    assert finding["data"]["outer_rows"] * finding["data"]["inner_rows"] >= 1_000_000
    assert "explain_ranges" in finding["detail"]
    # The index goes on the larger side's join column: 60 ranges probe 50,000 orders.
    assert finding["data"]["sql"] == [
        'CREATE INDEX CONCURRENTLY ON "public"."explain_orders" ("customer")'
    ]
    assert finding["data"]["statements"][0]["plan"]["Node Type"] in (
        "Aggregate",
        "Nested Loop",
    )


@needs_16
def test_missing_index_says_which_statements_it_serves(reported):
    document, _, _ = reported
    (missing,) = [
        f
        for f in by_code(document, "missing_index")
        if f["object"] == "explain_orders(note)"
    ]
    lookup = entry_for(document, 'WHERE "explain_orders"."note" = $1')
    assert lookup["queryid"] in [s["queryid"] for s in missing["data"]["serves"]]
    assert "it would serve queryid" in missing["detail"]
    # The plan agrees: no second finding for the same index.
    assert not [
        f
        for f in by_code(document, "plan_seq_scan")
        if f["data"]["index_columns"] == [["note"]]
    ]


@needs_16
def test_update_is_planned_not_run(reported, planted):
    document, _, _ = reported
    update = entry_for(document, "UPDATE explain_orders")
    assert update["status"] == "planned"
    assert update["plan"]["Node Type"] == "ModifyTable"
    # Never executed: the report's EXPLAINs add no statement to pg_stat_statements'
    # top-level application statements.
    (calls,) = planted.execute(
        "SELECT sum(calls) FROM pg_stat_statements WHERE query LIKE 'UPDATE explain_orders%%'"
        " AND toplevel"
    ).fetchone()
    assert calls == 4


# -- statements that cannot be planned ---------------------------------------------------


@needs_16
def test_unplannable_statements_are_reported_one_by_one(reported):
    document, text, _ = reported
    gone = entry_for(document, "explain_gone")
    assert gone["status"] == "stale"
    assert gone["reason"] == 'relation "explain_gone" does not exist'
    dropped = entry_for(document, "explain_double")
    assert dropped["status"] == "stale"
    assert dropped["reason"] == "function explain_double(integer) does not exist"
    untyped = entry_for(document, "SELECT $1 + $2")
    assert untyped["status"] == "skipped"
    assert "parameters' types" in untyped["reason"]
    # Everything else was planned all the same.
    assert entry_for(document, "ORDER BY pad")["status"] == "planned"
    check = document["databases"]["default"]["checks"]["explain"]
    assert check["status"] == "ok"  # stale and untyped texts are no gap
    # The text says how it went in one note.
    assert re.search(
        r"- --explain planned \d+ of the top \d+ statements with EXPLAIN \(GENERIC_PLAN\) "
        r"\(2 stale, 1 skipped; JSON statements.explain has each reason\)",
        text,
    )


@pytest.fixture
def reader(planted):
    planted.execute("DROP ROLE IF EXISTS dbreport_explain_reader")
    planted.execute(
        f"CREATE ROLE dbreport_explain_reader LOGIN PASSWORD '{READER_PASSWORD}'"
    )
    planted.execute("GRANT pg_read_all_stats TO dbreport_explain_reader")
    planted.execute("GRANT SELECT ON explain_orders TO dbreport_explain_reader")
    yield
    planted.execute("DROP OWNED BY dbreport_explain_reader")
    planted.execute("DROP ROLE dbreport_explain_reader")


@needs_16
def test_table_the_role_cannot_read_is_a_skip_naming_it(reader):
    with (
        extra_alias("reader", USER="dbreport_explain_reader", PASSWORD=READER_PASSWORD),
        override_settings(DBTUNING={"REPORT_THRESHOLDS": THRESHOLDS}),
    ):
        out, err, code = dbreport(
            "--format",
            "json",
            "--database",
            "reader",
            "--section",
            "statements",
            "--explain",
            "40",
        )
    assert code == 0, err
    document = json.loads(out)
    db = document["databases"]["reader"]
    entries = {e["query"]: e for e in db["statements"]["explain"]["statements"]}
    private = next(e for q, e in entries.items() if "explain_private" in q)
    assert private["status"] == "skipped"
    assert private["reason"] == "permission denied for table explain_private"
    lookup = next(e for q, e in entries.items() if '"explain_orders"."note"' in q)
    assert lookup["status"] == "planned"
    check = db["checks"]["explain"]
    assert check["status"] == "partial"
    assert "statements could not be planned (queryid" in check["reason"]
    (gap,) = [
        f
        for f in document["findings"]
        if f["code"] == "check_incomplete" and f["data"]["check"] == "explain"
    ]
    assert "explain_private" in gap["hint"]
    assert '"Plan Schema"' in gap["hint"]  # names quoted where PostgreSQL would
    assert gap["severity"] == "warning"  # --section statements: asked for by name
    assert READER_PASSWORD not in out


# -- safe output ---------------------------------------------------------------------------


@needs_16
def test_a_planted_literal_never_appears(reported):
    document, text, report = reported
    view = entry_for(document, "explain_secret_view")
    assert view["status"] == "planned"
    # The view's literal is in the plan's Filter, masked.
    assert "?::text" in json.dumps(view["plan"])
    prometheus = as_prometheus(report)
    for output in (json.dumps(document), text, as_text(report), prometheus):
        assert SECRET not in output


@needs_16
def test_prometheus_stays_aggregate(reported):
    _, _, report = reported
    prometheus = as_prometheus(report)
    assert 'code="plan_seq_scan"' in prometheus
    assert "queryid" not in prometheus
    assert "Seq Scan" not in prometheus


@needs_16
def test_hostile_names_in_the_suggested_index(reported, planted):
    document, text, _ = reported
    (finding,) = [
        f for f in by_code(document, "plan_seq_scan") if f["data"]["schema"] == SCHEMA
    ]
    assert finding["data"]["table"] == TABLE
    assert finding["data"]["columns"] == [COLUMN]
    (create,) = finding["data"]["sql"]
    assert create == (
        'CREATE INDEX CONCURRENTLY ON "Plan Schema"."Plan ""T""; DROP TABLE x; --" '
        '("Cust ""Id""")'
    )
    assert create in text  # never wrapped inside the statement
    planted.execute(create)
    try:
        (definition,) = planted.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
            [sql.Identifier(SCHEMA, TABLE).as_string(planted)],
        ).fetchone()
        assert '("Cust ""Id""")' in definition
        assert (
            planted.execute("SELECT to_regclass('public.x')").fetchone()[0] is not None
        )
    finally:
        planted.execute(
            "SELECT format('DROP INDEX %%I.%%I', n.nspname, c.relname) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE i.indrelid = %s::regclass",
            [sql.Identifier(SCHEMA, TABLE).as_string(planted)],
        )


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, "5", 2.0, [1]])
def test_wrong_explain_values_are_refused(value):
    with pytest.raises(ValueError, match="explain must be True, False or"):
        run_report("default", sections="statements", explain=value)


def test_explain_needs_the_statements_section():
    with pytest.raises(ValueError, match="include the statements section"):
        run_report("default", sections="indexes", explain=True)


def test_command_refuses_a_bad_count():
    with pytest.raises(CommandError, match="invalid int value"):
        call_command("dbreport", "--explain", "many")
    out, error, code = dbreport("--explain", "-1", "--section", "statements")
    assert code == 1 and "explain must be" in error


@needs_16
def test_explain_alone_plans_the_top_20(reported):
    document, _, _ = reported
    assert document["databases"]["default"]["statements"]["explain"]["limit"] == 20


def test_help_describes_explain():
    from django.core.management import load_command_class

    parser = load_command_class("django_dbtuning", "dbreport").create_parser(
        "manage.py", "dbreport"
    )
    text = parser.format_help()
    assert "--explain [N]" in text
    assert "GENERIC_PLAN" in text


@needs_16
def test_explain_n_plans_that_many(planted):
    with override_settings(DBTUNING={"REPORT_THRESHOLDS": THRESHOLDS}):
        report = run_report("default", sections="statements", explain=2)
    explain = report.databases["default"].sections["statements"]["explain"]
    assert explain["limit"] == 2
    assert len(explain["statements"]) == 2


@pytest.mark.skipif(
    "server_version() >= 160000", reason="the server has EXPLAIN (GENERIC_PLAN)"
)
def test_explain_needs_postgresql_16(planted):
    report = run_report("default", sections="statements", explain=True)
    db = report.databases["default"]
    (check,) = [c for c in db.checks if c.name == "explain"]
    assert check.status == "skipped"
    assert check.reason.startswith(
        "EXPLAIN (GENERIC_PLAN) needs PostgreSQL 16+, this server is 15."
        if server_version() // 10000 == 15
        else "EXPLAIN (GENERIC_PLAN) needs PostgreSQL 16+, this server is "
    )
    (gap,) = [
        f
        for f in report.findings
        if f.code == "check_incomplete" and f.data["check"] == "explain"
    ]
    assert gap.severity == "info"
    assert not [f for f in report.findings if f.code.startswith("plan_")]


@needs_16
def test_a_locked_table_times_out_its_statement_only(planted, django_db_blocker):
    with admin_connection() as locker, django_db_blocker.unblock():
        locker.autocommit = False
        locker.execute("LOCK TABLE explain_events IN ACCESS EXCLUSIVE MODE")
        try:
            with override_settings(
                DBTUNING={
                    "REPORT_THRESHOLDS": THRESHOLDS,
                    "REPORT_LOCK_TIMEOUT": "50ms",
                }
            ):
                report = run_report("default", sections="statements", explain=True)
        finally:
            locker.rollback()
    document = json.loads(as_json(report))
    sort = entry_for(document, "ORDER BY pad")
    assert sort["status"] == "timeout"
    assert sort["reason"] == "lock_timeout 50ms"
    assert entry_for(document, "SELECT o.id, o.note")["status"] == "planned"
    check = document["databases"]["default"]["checks"]["explain"]
    assert check["status"] == "partial"
    (gap,) = [
        f
        for f in document["findings"]
        if f["code"] == "check_incomplete" and f["data"]["check"] == "explain"
    ]
    assert gap["severity"] == "warning"  # a timeout is no deployment's choice


def test_unreachable_database_with_explain_exits_2(planted):
    with extra_alias("down", HOST="127.0.0.1", PORT="1", PASSWORD="explain-secret-pw"):
        out, error, code = dbreport("--database", "down", "--explain")
    assert code == 2
    assert error.startswith("down: cannot connect to 127.0.0.1:1/")
    assert "explain-secret-pw" not in out + error
