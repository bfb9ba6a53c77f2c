"""Adversarial pass over ``--explain``: a statement text that is not exactly one
plannable statement is never executed, whatever it hides (a second statement behind
``;`` in literals, comments or dollar quotes, a COMMIT that would end the read-only
transaction, DO blocks, COPY, CALL, side-effecting functions); the transaction is rolled
back on error paths too.

Texts are planted as pg_stat_statements rows would hand them to the planner (the
statements section's ``ranked`` rows), so every hostile shape reaches the code that
decides what is sent, whether or not pg_stat_statements itself would keep it.
"""

from __future__ import annotations

import pytest
from django.db import connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtuning.conf import get_settings
from django_dbtuning.report import explain
from django_dbtuning.report.djangomap import ModelMap
from django_dbtuning.report.findings import DatabaseReport, thresholds
from django_dbtuning.report.probe import Probe, connect
from django_dbtuning.report.server_settings import server_info
from django_dbtuning.report.timeouts import configured
from tests.report.test_explain import needs_16, server_version
from tests.report.test_report import admin_connection

pytestmark = pytest.mark.django_db

WRITE = "INSERT INTO attack_log VALUES ({n})"

HOSTILE = [
    "SELECT attack_write()",  # volatile: planned, never called
    "SELECT * FROM attack_log WHERE id = attack_write()",
    "WITH d AS (INSERT INTO attack_log VALUES (1) RETURNING id) SELECT * FROM d",
    "SELECT * INTO attack_created FROM attack_log",
    "SELECT 1; " + WRITE.format(n=2),
    "SELECT 1; COMMIT; " + WRITE.format(n=3),
    "SELECT ';'; " + WRITE.format(n=4),
    "SELECT $$;$$; " + WRITE.format(n=5),
    "SELECT $t$ $$ ; $t$; " + WRITE.format(n=6),
    "SELECT 1 /* ; /* nested */ ; */; " + WRITE.format(n=7),
    "SELECT 1 -- ;\n; " + WRITE.format(n=8),
    "SELECT E'\\''; " + WRITE.format(n=9) + "; --'",
    "SELECT 'a''; " + WRITE.format(n=10) + "; --'",
    "SELECT U&'\\0027'; " + WRITE.format(n=11),
    "VALUES (1); " + WRITE.format(n=12),
    "TABLE attack_log; " + WRITE.format(n=13),
    "(SELECT 1); " + WRITE.format(n=14),
    "DO $$BEGIN " + WRITE.format(n=15) + "; END$$",
    "COPY attack_log FROM PROGRAM 'echo 16'",
    "CALL attack_proc()",
    "INSERT INTO attack_log VALUES (17)",
    "UPDATE attack_log SET id = 18",
    "DELETE FROM attack_log",
    "MERGE INTO attack_log t USING (VALUES (19)) v(id) ON false "
    "WHEN NOT MATCHED THEN INSERT VALUES (v.id)",
    "SELECT 'x\\' , '; COMMIT; " + WRITE.format(n=20) + "; --'",
    "SELECT 1 ; ; " + WRITE.format(n=21),
    "/* ; */ SELECT 1;\n" + WRITE.format(n=22),
]

# Texts PostgreSQL reads as one statement (planned, still never run); every other text
# in HOSTILE is more than one, or no data query, and must be skipped.
ONE_STATEMENT = {
    HOSTILE[0],
    HOSTILE[1],
    HOSTILE[2],
    HOSTILE[3],
    "SELECT 'a''; " + WRITE.format(n=10) + "; --'",
    # Two strings as the lexer reads them, and as the server is made to read them
    # whatever standard_conforming_strings says (off: a COMMIT and an INSERT).
    "SELECT 'x\\' , '; COMMIT; " + WRITE.format(n=20) + "; --'",
    *(
        text
        for text in HOSTILE
        if text.startswith(("INSERT", "UPDATE", "DELETE", "MERGE"))
    ),
}


@pytest.fixture(scope="module")
def planted(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), admin_connection() as conn:
        conn.execute("DROP TABLE IF EXISTS attack_log, attack_created")
        conn.execute("CREATE TABLE attack_log (id int)")
        conn.execute("INSERT INTO attack_log VALUES (0)")
        conn.execute(
            "CREATE OR REPLACE FUNCTION attack_write() RETURNS int VOLATILE "
            "LANGUAGE plpgsql AS $$BEGIN INSERT INTO attack_log VALUES (99); "
            "RETURN 1; END$$"
        )
        conn.execute(
            "CREATE OR REPLACE PROCEDURE attack_proc() LANGUAGE sql "
            "AS $$INSERT INTO attack_log VALUES (98)$$"
        )
        # Called while a statement is planned (IMMUTABLE, no arguments: the planner
        # folds it): says which relations this session holds locks on.
        conn.execute(
            "CREATE OR REPLACE FUNCTION attack_locks() RETURNS int IMMUTABLE "
            "LANGUAGE plpgsql AS $$BEGIN RAISE NOTICE 'locks: %', (SELECT "
            "string_agg(relation::regclass::text, ',' ORDER BY 1) FROM pg_locks WHERE "
            "pid = pg_backend_pid() AND locktype = 'relation' AND relation = "
            "'attack_log'::regclass); RETURN 1; END$$"
        )
        try:
            yield conn
        finally:
            conn.execute("DROP FUNCTION IF EXISTS attack_locks()")
            conn.execute("DROP TABLE IF EXISTS attack_log, attack_created")
            conn.execute("DROP FUNCTION IF EXISTS attack_write()")
            conn.execute("DROP PROCEDURE IF EXISTS attack_proc()")


@pytest.fixture(autouse=True)
def fresh(planted):
    planted.execute("DELETE FROM attack_log")
    planted.execute("INSERT INTO attack_log VALUES (0)")
    planted.execute("DROP TABLE IF EXISTS attack_created")


def rows(conn) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM attack_log ORDER BY id")]


def plan(
    texts: list[str], *, session: str = "", notices: list[str] | None = None
) -> list[explain.Explained]:
    """Run the EXPLAIN step on ``texts`` as the top statements (``session``: SQL run in
    the report's session first, as a database or role setting would)."""
    conn = connect(connections.settings["default"])
    if notices is not None:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    with conn:
        if session:
            conn.execute(session)
            conn.commit()
        probe = Probe(
            "default",
            conn,
            result=DatabaseReport(alias="default"),
            findings=[],
            thresholds=thresholds(get_settings().report_thresholds),
            models=ModelMap(),
            top=0,
            timeouts=configured(),
        )
        assert server_info(probe)
        ranked = [
            {"queryid": n, "query": text, "calls": 10, "total_ms": 10.0, "rows": 1}
            for n, text in enumerate(texts)
        ]
        explain.collect(probe, ranked, 100.0, len(ranked))
        statements = probe.section("statements")["explain"]["statements"]
        assert not conn.info.transaction_status  # nothing left open
    return statements


def assert_untouched(conn) -> None:
    assert rows(conn) == [0]
    (created,) = conn.execute("SELECT to_regclass('attack_created')").fetchone()
    assert created is None


@needs_16
@pytest.mark.parametrize(
    "session",
    ["", "SET standard_conforming_strings = off"],
    ids=["default", "standard_conforming_strings_off"],
)
def test_hostile_texts_are_never_executed(planted, session):
    outcomes = plan(HOSTILE, session=session)
    assert_untouched(planted)
    by_text = {o["queryid"]: o for o in outcomes}
    # What is planned is one statement, the rest skipped with a reason.
    for n, text in enumerate(HOSTILE):
        if text not in ONE_STATEMENT:
            assert by_text[n]["status"] in ("skipped", "error"), text


@needs_16
def test_a_failing_statement_between_hostile_ones_rolls_everything_back(planted):
    texts = [
        "SELECT * FROM attack_missing_table",
        "SELECT attack_write()",
        "SELECT 1/0",
        "INSERT INTO attack_log SELECT attack_write()",
    ]
    outcomes = plan(texts)
    assert_untouched(planted)
    assert [o["status"] for o in outcomes][:2] == ["stale", "planned"]


LITERAL_PIECES = st.sampled_from(
    ["'", "''", "E'", "\\", "$$", "$t$", "--", "/*", "*/", "\n", ";", '"', "U&'", " "]
)


@pytest.fixture
def pg16(planted):
    # A string skipif is evaluated in the globals of the test function, which for a
    # hypothesis test are hypothesis' own.
    if server_version() < 160000:
        pytest.skip("EXPLAIN (GENERIC_PLAN) needs PostgreSQL 16+")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(LITERAL_PIECES, min_size=1, max_size=8))
def test_generated_texts_never_write(planted, pg16, pieces):
    body = "".join(pieces)
    texts = [
        f"SELECT {body}; " + WRITE.format(n=1),
        f"SELECT '{body}'; COMMIT; " + WRITE.format(n=2),
        f"SELECT 1 {body} ; " + WRITE.format(n=3) + f" {body}",
    ]
    plan(texts, session="SET standard_conforming_strings = off")
    plan(texts)
    assert_untouched(planted)


@needs_16
def test_locks_are_let_go_after_each_statement(planted):
    """Each statement's savepoint is rolled back, not released: a table planned first is
    no longer locked while the next statements are planned (a migration waiting for an
    ACCESS EXCLUSIVE lock on it, and everything queued behind that, would otherwise wait
    for the whole run)."""
    notices: list[str] = []
    outcomes = plan(
        [
            "UPDATE attack_log SET id = $1 WHERE id = $2",
            "SELECT * FROM attack_log WHERE id = $1",
            "SELECT attack_locks()",
        ],
        notices=notices,
    )
    assert [o["status"] for o in outcomes] == ["planned"] * 3
    assert notices == ["locks: <NULL>"]
    assert_untouched(planted)
