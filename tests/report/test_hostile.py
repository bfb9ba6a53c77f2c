"""Hints are safe to paste: real objects with hostile names (quotes, spaces, semicolons,
upper case, unicode, a non-public schema), each planted problem reported, and each
hint's SQL executed against the server — it must succeed and touch only its object."""

from __future__ import annotations

import ast
import json

import psycopg
import pytest
from psycopg import sql

from tests.report.test_report import admin_connection, dbreport

pytestmark = pytest.mark.django_db

SCHEMA = "Other Schema"
PARENT = 'Parent "P"; Ünï'
TABLE = 'Hostile "T"; DROP TABLE x; --'
ROW_ID = 'Row "Id"'
PARENT_ID = "ParentId"
VALUE = "Val ue"
NOTE = "Note Col"
CHECK = "Chk Val; DROP TABLE x"
FOREIGN_KEY = "Fk; DROP TABLE x"
DUPLICATE_A = 'Ïdx "Dup" 1'
DUPLICATE_B = "idx dup 2; DROP TABLE x"
INVALID = 'Invalid "Idx"; DROP TABLE x'
ROWS = 20_000

THRESHOLDS = {
    "dead_tuples_min": 10,
    "dead_tuples_ratio": 0.05,
    "vacuum_stale_days": 0,
    "analyze_stale_days": 0,
    "index_bloat_warning_bytes": 1,
    "index_bloat_min_ratio": 0.3,
    "missing_index_min_rows": 100,
    "missing_index_min_calls": 50,
    "missing_index_min_time_share": 0,
}


def q(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


T = q(SCHEMA, TABLE)


@pytest.fixture(scope="module")
def hostile(django_db_setup, django_db_blocker):
    """The hostile objects and their problems, in their own schema, plus the sentinel
    table ``x`` that a pasted ``DROP TABLE x`` would remove."""
    with django_db_blocker.unblock(), admin_connection() as conn:
        conn.execute("DROP TABLE IF EXISTS public.x")
        conn.execute("CREATE TABLE public.x (id int)")
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(q(SCHEMA)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(q(SCHEMA)))
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(q(SCHEMA, PARENT))
        )
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT g FROM generate_series(1, 100) g").format(
                q(SCHEMA, PARENT)
            )
        )
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} ({} serial PRIMARY KEY, {} int, {} int, {} text)"
                " WITH (autovacuum_enabled = false)"
            ).format(T, q(ROW_ID), q(PARENT_ID), q(VALUE), q(NOTE))
        )
        conn.execute(
            sql.SQL(
                "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {}"
            ).format(T, q(FOREIGN_KEY), q(PARENT_ID), q(SCHEMA, PARENT))
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} ({}, {}, {}) SELECT g %% 100 + 1, g %% 50, 'n' || g"
                " FROM generate_series(1, %s) g"
            ).format(T, q(PARENT_ID), q(VALUE), q(NOTE)),
            [ROWS],
        )
        for name in (DUPLICATE_A, DUPLICATE_B):
            conn.execute(
                sql.SQL("CREATE INDEX {} ON {} ({})").format(q(name), T, q(VALUE))
            )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({})").format(
                    q(INVALID), T, q(VALUE)
                )
            )
        conn.execute(
            sql.SQL(
                "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} >= 0) NOT VALID"
            ).format(T, q(CHECK), q(VALUE))
        )
        # A serial (int) column whose int sequence is 98 % through.
        conn.execute(
            "SELECT setval(pg_get_serial_sequence(%s, %s), 2100000000)",
            [T.as_string(conn), ROW_ID],
        )
        # An indexed column changes: no HOT updates, so every index (the primary key
        # too) gets a dead entry per row: bloat once ANALYZE records the pages, and
        # dead rows, and changes since that ANALYZE.
        update = sql.SQL("UPDATE {} SET {} = {}").format(T, q(VALUE), q(VALUE))
        conn.execute(update)
        conn.execute(update)
        conn.execute(sql.SQL("ANALYZE {}").format(T))
        conn.execute(update)
        conn.execute("SELECT pg_stat_statements_reset()")
        lookup = sql.SQL("SELECT {} FROM {} WHERE {} = %s").format(
            q(SCHEMA, TABLE, ROW_ID), T, q(SCHEMA, TABLE, NOTE)
        )
        for i in range(60):
            conn.execute(lookup, [f"n{i}"])
        conn.execute("SELECT pg_stat_force_next_flush()")
        yield conn
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(q(SCHEMA)))
        conn.execute("DROP TABLE IF EXISTS public.x")


@pytest.fixture(scope="module")
def reported(hostile, django_db_blocker):
    from django.test import override_settings

    with (
        django_db_blocker.unblock(),
        override_settings(
            DBTUNING={"REPORT_THRESHOLDS": THRESHOLDS, "UNUSED_INDEX_MIN_AGE": "0s"}
        ),
    ):
        args = ("--database", "default", "--section", "indexes,tables,statements")
        out, err, code = dbreport("--format", "json", "--top", "0", *args)
        assert code == 0, err
        text, err, code = dbreport("--top", "0", *args)
        assert code == 0, err
    document = json.loads(out)
    mine = [
        f
        for f in document["findings"]
        if SCHEMA in f["object"] or SCHEMA in json.dumps(f["data"])
    ]
    return mine, text


def by_code(found: list[dict], code: str) -> list[dict]:
    return [f for f in found if f["code"] == code]


def sentinels_intact(conn: psycopg.Connection) -> None:
    (present,) = conn.execute(
        "SELECT to_regclass('public.x') IS NOT NULL"
        " AND to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
        [T.as_string(conn), q(SCHEMA, PARENT).as_string(conn)],
    ).fetchone()
    assert present, "a hint removed a table it does not name"


def indexes(conn: psycopg.Connection) -> dict[str, str]:
    rows = conn.execute(
        "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(%s)",
        [T.as_string(conn)],
    ).fetchall()
    return dict(rows)


def index_columns(conn: psycopg.Connection) -> list[list[str]]:
    rows = conn.execute(
        "SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) k(n)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n)"
        " FROM pg_index i WHERE i.indrelid = to_regclass(%s)",
        [T.as_string(conn)],
    ).fetchall()
    return [r[0] for r in rows]


def in_rollback(
    conn: psycopg.Connection, statement: str, check, *, before: sql.Composable = None
) -> None:
    """Run ``statement`` in a transaction, check its effect, roll it back."""
    conn.autocommit = False
    try:
        if before is not None:
            conn.execute(before)
        conn.execute(statement)
        check()
        sentinels_intact(conn)
    finally:
        conn.rollback()
        conn.autocommit = True


def test_every_planted_problem_is_reported(reported):
    found, _ = reported
    codes = {f["code"] for f in found}
    assert {
        "invalid_index",
        "duplicate_index",
        "unused_index",
        "fk_without_index",
        "sequence_near_overflow",
        "invalid_constraint",
        "dead_tuples",
        "vacuum_stale",
        "analyze_stale",
        "index_bloat",
        "missing_index",
    } <= codes


def test_sql_appears_verbatim_in_hints_and_text(reported):
    found, text = reported
    snippets = 0
    for finding in found:
        for statement in finding["data"].get("sql", []):
            assert statement in finding["hint"]
            assert statement in text, statement  # never wrapped inside
            snippets += 1
        if "migration" in finding["data"]:
            assert finding["data"]["migration"] in finding["hint"]
            assert finding["data"]["migration"] in text
    assert snippets >= 10


def test_validate_constraint_validates_only_it(reported, hostile):
    (finding,) = by_code(reported[0], "invalid_constraint")
    (statement,) = finding["data"]["sql"]
    assert statement == (
        'ALTER TABLE "Other Schema"."Hostile ""T""; DROP TABLE x; --" '
        'VALIDATE CONSTRAINT "Chk Val; DROP TABLE x"'
    )

    def validated():
        (ok,) = hostile.execute(
            "SELECT convalidated FROM pg_constraint WHERE conname = %s", [CHECK]
        ).fetchone()
        assert ok

    in_rollback(hostile, statement, validated)


def test_alter_column_widens_the_column_and_its_sequence(reported, hostile):
    (finding,) = by_code(reported[0], "sequence_near_overflow")
    assert finding["severity"] == "error"
    alter_column, alter_sequence = finding["data"]["sql"]
    assert alter_column.endswith('ALTER COLUMN "Row ""Id""" TYPE bigint')

    def widened():
        (column_type,) = hostile.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = to_regclass(%s) AND attname = %s",
            [T.as_string(hostile), ROW_ID],
        ).fetchone()
        assert column_type == "bigint"
        hostile.execute(alter_sequence)
        (sequence_type,) = hostile.execute(
            "SELECT data_type::text FROM pg_sequences"
            " WHERE schemaname = %s AND sequencename LIKE 'Hostile%%'",
            [SCHEMA],
        ).fetchone()
        assert sequence_type == "bigint"

    # The rewrite rebuilds every index: the planted invalid unique one would fail it
    # (as it would in production: drop it first, as its own finding says).
    drop_invalid = sql.SQL("DROP INDEX IF EXISTS {}").format(q(SCHEMA, INVALID))
    in_rollback(hostile, alter_column, widened, before=drop_invalid)


def test_table_maintenance_hints(reported, hostile):
    (dead,) = by_code(reported[0], "dead_tuples")
    vacuum, tune = dead["data"]["sql"]

    def tuned():
        (options,) = hostile.execute(
            "SELECT reloptions FROM pg_class WHERE oid = to_regclass(%s)",
            [T.as_string(hostile)],
        ).fetchone()
        assert "autovacuum_vacuum_scale_factor=0.02" in options

    in_rollback(hostile, tune, tuned)
    statements = [
        vacuum,
        *by_code(reported[0], "vacuum_stale")[0]["data"]["sql"],
        *by_code(reported[0], "analyze_stale")[0]["data"]["sql"],
    ]
    for statement in statements:
        assert '"Other Schema"."Hostile ""T""; DROP TABLE x; --"' in statement
        hostile.execute(statement)  # VACUUM cannot run in a transaction
        sentinels_intact(hostile)


def test_create_index_hints_index_the_named_columns(reported, hostile):
    (fk,) = by_code(reported[0], "fk_without_index")
    (missing,) = by_code(reported[0], "missing_index")
    assert missing["data"]["columns"] == [NOTE]
    for finding, columns in ((fk, [PARENT_ID]), (missing, [NOTE])):
        (statement,) = finding["data"]["sql"]
        before = indexes(hostile)
        hostile.execute(statement)
        try:
            sentinels_intact(hostile)
            (new,) = set(indexes(hostile)) - set(before)
            assert columns in index_columns(hostile)
        finally:
            hostile.execute(sql.SQL("DROP INDEX {}").format(q(SCHEMA, new)))


def test_migration_hints_compile_and_drop_exactly_their_index(reported, hostile):
    hints = [
        f
        for f in by_code(reported[0], "duplicate_index")
        + by_code(reported[0], "unused_index")
        if f["data"].get("migration")
    ]
    dropped = {f["data"].get("index") or f["object"] for f in hints}
    assert len(hints) >= 3 and dropped
    for finding in hints:
        call = ast.parse(finding["data"]["migration"], mode="eval").body
        assert isinstance(call, ast.Call)
        assert ast.unparse(call.func) == "migrations.RunSQL"
        forward = ast.literal_eval(call.args[0])
        (reverse,) = [ast.literal_eval(k.value) for k in call.keywords]
        assert forward == finding["data"]["sql"][0]
        before = indexes(hostile)
        hostile.execute(forward)
        after = indexes(hostile)
        sentinels_intact(hostile)
        (gone,) = set(before) - set(after)
        assert gone in (DUPLICATE_A, DUPLICATE_B)
        hostile.execute(reverse)
        assert indexes(hostile) == before  # back, with the same definition


def test_reindex_and_drop_invalid_index(reported, hostile):
    for finding in by_code(reported[0], "index_bloat"):
        (statement,) = finding["data"]["sql"]
        before = indexes(hostile)
        hostile.execute(statement)
        assert indexes(hostile) == before
        sentinels_intact(hostile)
    (invalid,) = by_code(reported[0], "invalid_index")
    (statement,) = invalid["data"]["sql"]
    before = indexes(hostile)
    hostile.execute(statement)
    assert set(before) - set(indexes(hostile)) == {INVALID}
    sentinels_intact(hostile)
