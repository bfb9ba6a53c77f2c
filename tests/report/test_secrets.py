"""Passwords never appear in a report: utility statements (CREATE/ALTER ROLE ... PASSWORD,
DO blocks) stay masked even when DBTUNING["LOG_PARAMETERS"] opts in to query values, and
the statements section leaves them out whatever comments precede them."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

from django_dbtuning.report.sqltext import APPLICATION, leading_keyword
from tests.report.test_report import admin_connection, dbreport

pytestmark = pytest.mark.django_db

OPEN = {
    "idle_in_transaction_seconds": 0,
    "blocked_query_seconds": 0,
    "long_running_query_seconds": 0,
}


@pytest.fixture
def sessions():
    """A holds a row lock and a role's tuple (its last statement sets a password) and
    sits idle in transaction; B waits to set that role's password, C to update the row."""
    with admin_connection() as setup:
        setup.execute("DROP ROLE IF EXISTS dbreport_pw_holder")
        setup.execute("CREATE ROLE dbreport_pw_holder")
        setup.execute("DROP TABLE IF EXISTS dbreport_secret_t")
        setup.execute("CREATE TABLE dbreport_secret_t (id int PRIMARY KEY, v text)")
        setup.execute("INSERT INTO dbreport_secret_t VALUES (1, 'a')")
        holder, role_waiter, row_waiter = (admin_connection() for _ in range(3))
        holder.autocommit = False
        holder.execute("UPDATE dbreport_secret_t SET v = 'held' WHERE id = 1")
        holder.execute("ALTER ROLE dbreport_pw_holder PASSWORD 'pw-secret-A'")
        threads = [
            threading.Thread(
                target=role_waiter.execute,
                args=("ALTER ROLE dbreport_pw_holder PASSWORD 'pw-secret-B'",),
            ),
            threading.Thread(
                target=row_waiter.execute,
                args=(
                    "/* user=commentsecret-E */ UPDATE dbreport_secret_t "
                    "SET v = 'visible-value-C' WHERE id = 1 -- trace=commentsecret-F",
                ),
            ),
        ]
        for thread in threads:
            thread.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                (waiting,) = setup.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                ).fetchone()
                if waiting >= 2:
                    break
                time.sleep(0.05)
            yield
        finally:
            holder.rollback()
            for thread in threads:
                thread.join(timeout=10)
            for conn in (holder, role_waiter, row_waiter):
                conn.close()
            setup.execute("DROP TABLE dbreport_secret_t")
            setup.execute("DROP ROLE dbreport_pw_holder")


def test_log_parameters_shows_data_values_but_never_passwords(sessions, dbtuning):
    dbtuning(REPORT_THRESHOLDS=OPEN, LOG_PARAMETERS=True)
    args = ("--database", "default", "--section", "connections")
    out, err, code = dbreport("--format", "json", *args)
    text, _, _ = dbreport(*args)
    assert code == 0, err
    document = json.loads(out)
    codes = {f["code"] for f in document["findings"]}
    assert {"blocked_query", "idle_in_transaction"} <= codes
    for output in (out, text):
        assert "pw-secret" not in output
        # Values are opted in, comments are not.
        assert "commentsecret" not in output
    # The opt-in works for data queries: the blocked UPDATE shows its value.
    assert "visible-value-C" in out
    assert "ALTER ROLE dbreport_pw_holder PASSWORD ?" in out


def test_values_are_masked_by_default(sessions, dbtuning):
    dbtuning(REPORT_THRESHOLDS=OPEN)
    out, err, code = dbreport(
        "--format", "json", "--database", "default", "--section", "connections"
    )
    assert code == 0, err
    assert "pw-secret" not in out
    assert "visible-value-C" not in out
    assert "commentsecret" not in out
    assert "SET v = ? WHERE id = ?" in out


def test_statements_section_leaves_utility_statements_out(dbtuning):
    with admin_connection() as conn:
        try:
            conn.execute("SELECT pg_stat_statements_reset()")
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test role may not reset pg_stat_statements")
        conn.execute("DROP ROLE IF EXISTS dbreport_pss_role")
        try:
            conn.execute("/* c */ CREATE ROLE dbreport_pss_role PASSWORD 'pw-pss-1'")
            # A nested comment hides the real first word from a regular expression.
            conn.execute(
                "/* /* */ select */ ALTER ROLE dbreport_pss_role PASSWORD 'pw-pss-2'"
            )
            conn.execute("DO $$BEGIN PERFORM 'pw-pss-3'; END$$")
            conn.execute("-- a note\nSELECT count(*) FROM pg_sleep(0)")
        finally:
            conn.execute("DROP ROLE IF EXISTS dbreport_pss_role")
    args = ("--database", "default", "--section", "statements", "--top", "0")
    out, err, code = dbreport("--format", "json", *args)
    text, _, _ = dbreport(*args)
    assert code == 0, err
    assert "pw-pss" not in out + text
    top = json.loads(out)["databases"]["default"]["statements"]["top"]
    assert top, "the SELECT is reported"
    for row in top:
        assert leading_keyword(row["query"]) in APPLICATION, row["query"]


@pytest.mark.parametrize(
    "text",
    [
        "SELECT 1; ALTER ROLE dbreport_pw_multi PASSWORD 'pw-secret-D'",
        "(SELECT 1); ALTER ROLE dbreport_pw_multi PASSWORD 'pw-secret-D'",
        "WITH x AS (SELECT 1) SELECT * FROM x; ALTER ROLE dbreport_pw_multi PASSWORD 'pw-secret-D'",
    ],
)
def test_a_data_query_followed_by_another_statement_stays_masked(text, dbtuning):
    # pg_stat_activity keeps a simple-query string whole: a first word of SELECT does not
    # make the rest of it a data query.
    dbtuning(REPORT_THRESHOLDS=OPEN, LOG_PARAMETERS=True)
    with admin_connection() as setup:
        setup.execute("DROP ROLE IF EXISTS dbreport_pw_multi")
        setup.execute("CREATE ROLE dbreport_pw_multi")
    holder = admin_connection()
    try:
        holder.autocommit = False
        holder.execute(text)  # no parameters: sent as one simple query
        out, err, code = dbreport(
            "--format", "json", "--database", "default", "--section", "connections"
        )
        assert code == 0, err
        idle = [
            f for f in json.loads(out)["findings"] if f["code"] == "idle_in_transaction"
        ]
        assert any("dbreport_pw_multi PASSWORD ?" in json.dumps(f) for f in idle)
        assert "pw-secret" not in out
    finally:
        holder.rollback()
        holder.close()
        with admin_connection() as setup:
            setup.execute("DROP ROLE dbreport_pw_multi")
