"""Per-table transaction-ID and multixact wraparound on the embedded PostgreSQL.

The planted tables carry a low per-table ``autovacuum_freeze_max_age`` (heap, or TOAST
only), so after a few dozen transactions they are far closer to a forced vacuum than any
other table, whatever the test session did before: deterministic without burning a
hundred million transaction IDs.
"""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg import sql

from django_dbtuning.report.wraparound import table_age
from tests.report.test_report import admin_connection, findings, report_json
from tests.report.test_report import dbreport as dbreport_text

pytestmark = pytest.mark.django_db

SCHEMA = "Other Schema"
HEAP = 'Wrap "Heap"; DROP TABLE x; Ünï'
TOAST = "wrap toast"
LOW_LIMIT = 100_000  # the lowest autovacuum_freeze_max_age PostgreSQL accepts
BURNED = 50
# Planted tables are at >= BURNED / LOW_LIMIT of their limit; a table under the server's
# default limit (200 million) would need 100,000 transactions of age to get there.
RATIO = BURNED / LOW_LIMIT


def burn(conn: psycopg.Connection, count: int) -> None:
    for _ in range(count):
        conn.execute("SELECT pg_current_xact_id()")


@pytest.fixture(scope="module")
def old_tables(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), admin_connection() as conn:
        conn.execute("DROP TABLE IF EXISTS public.x")
        conn.execute("CREATE TABLE public.x (id int)")
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA))
        )
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id int) WITH (autovacuum_enabled = false, "
                "autovacuum_freeze_max_age = {})"
            ).format(sql.Identifier(SCHEMA, HEAP), sql.Literal(LOW_LIMIT))
        )
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id int, body text) WITH (autovacuum_enabled = false, "
                "toast.autovacuum_enabled = false, toast.autovacuum_freeze_max_age = {})"
            ).format(sql.Identifier(TOAST), sql.Literal(LOW_LIMIT))
        )
        burn(conn, BURNED)
        yield conn
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(SCHEMA, HEAP))
        )
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(TOAST)))
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.execute("DROP TABLE IF EXISTS public.x")


HEAP_NAME = '"Other Schema"."Wrap ""Heap""; DROP TABLE x; Ünï"'
TOAST_NAME = '"wrap toast"'


def test_tables_closest_to_a_forced_vacuum(old_tables, dbtuning):
    dbtuning(
        REPORT_THRESHOLDS={
            "freeze_age_info_ratio": RATIO,
            "freeze_age_warning_ratio": 1,
        }
    )
    document = report_json("--database", "default", "--section", "tables")
    due = {f["object"]: f for f in findings(document, "wraparound_vacuum_due")}
    heap = due[HEAP_NAME]
    assert heap["severity"] == "info"
    assert heap["data"]["freeze_limit"] == LOW_LIMIT
    assert heap["data"]["xid_age"] >= BURNED
    assert heap["data"]["freeze_share"] >= RATIO
    assert "The oldest unfrozen transaction ID of" in heap["detail"]
    sql_text = (
        'VACUUM (FREEZE, VERBOSE) "Other Schema"."Wrap ""Heap""; DROP TABLE x; Ünï"'
    )
    assert heap["data"]["sql"] == [sql_text]
    assert heap["hint"].startswith(sql_text + " off-peak")
    assert "replication slot" in heap["hint"] and "prepared transaction" in heap["hint"]
    # Only the TOAST table has the low limit: the finding says so.
    toast = due[TOAST_NAME]
    assert toast["data"]["freeze_limit"] == LOW_LIMIT
    assert "The oldest unfrozen transaction ID (TOAST) of" in toast["detail"]
    # The section lists them first, with the server's limits.
    wrap = document["databases"]["default"]["tables"]["wraparound"]
    assert {row["table"] for row in wrap["closest"][:2]} == {HEAP_NAME, TOAST_NAME}
    assert wrap["freeze_max_age"] >= LOW_LIMIT
    assert wrap["multixact_freeze_max_age"] > 0
    # Nothing else is that close, and nothing is near the hard limit.
    assert set(due) == {HEAP_NAME, TOAST_NAME}
    assert not findings(document, "xid_wraparound")


def test_overdue_forced_vacuum_is_a_warning(old_tables, dbtuning):
    dbtuning(
        REPORT_THRESHOLDS={
            "freeze_age_info_ratio": RATIO,
            "freeze_age_warning_ratio": RATIO,
        }
    )
    document = report_json("--database", "default", "--section", "tables")
    due = {f["object"]: f for f in findings(document, "wraparound_vacuum_due")}
    assert due[HEAP_NAME]["severity"] == "warning"
    assert "the forced vacuum is overdue" in due[HEAP_NAME]["detail"]


def test_hard_limit_per_table_never_repeats_the_database(old_tables, dbtuning):
    """Past xid_age_warning every table is reported once, as xid_wraparound with its
    share of 2^31; the database-level figure adds no second finding for them."""
    dbtuning(
        REPORT_THRESHOLDS={
            "xid_age_warning": BURNED,
            "xid_age_error": 2**31,
            "freeze_age_info_ratio": RATIO,
        }
    )
    document = report_json("--database", "default", "--section", "tables")
    wrap = {f["object"]: f for f in findings(document, "xid_wraparound")}
    heap = wrap[HEAP_NAME]
    assert heap["severity"] == "warning"
    assert heap["model"] is None
    assert 0 < heap["data"]["limit_share"] < 0.001
    assert "of the 2,147,483,648 limit" in heap["detail"]
    assert heap["hint"].startswith('VACUUM (FREEZE, VERBOSE) "Other Schema"')
    assert not any(name.startswith("database:") for name in wrap)
    due = {f["object"] for f in findings(document, "wraparound_vacuum_due")}
    assert not due & set(wrap)
    # The database's own figure is still in the section, consistent with the tables'.
    tables = document["databases"]["default"]["tables"]
    assert tables["database_xid_age"] >= tables["wraparound"]["table_xid_age_max"]


def test_database_age_is_never_younger_than_a_table_while_xids_are_spent(old_tables):
    """Another session spends transaction IDs while the report runs (as autoanalyze
    does): the database's age and the tables' are read at one instant, so the database
    (whose datfrozenxid is never newer than any table's relfrozenxid) is never younger."""
    stop = threading.Event()

    def spend() -> None:
        with admin_connection() as conn:
            while not stop.is_set():
                conn.execute("SELECT pg_current_xact_id()")

    spender = threading.Thread(target=spend)
    spender.start()
    try:
        pairs = []
        for _ in range(10):
            tables = report_json("--database", "default", "--section", "tables")[
                "databases"
            ]["default"]["tables"]
            pairs.append(
                (tables["database_xid_age"], tables["wraparound"]["table_xid_age_max"])
            )
    finally:
        stop.set()
        spender.join()
    assert all(database >= table >= BURNED for database, table in pairs), pairs
    # The spender really ran between the runs: the ages grew.
    assert pairs[-1][0] > pairs[0][0]


def test_hint_freezes_exactly_its_table(old_tables, dbtuning):
    dbtuning(REPORT_THRESHOLDS={"freeze_age_info_ratio": RATIO})
    document = report_json("--database", "default", "--section", "tables")
    heap = next(
        f
        for f in findings(document, "wraparound_vacuum_due")
        if f["object"] == HEAP_NAME
    )
    age = "SELECT age(relfrozenxid) FROM pg_class WHERE oid = %s::regclass"
    before = old_tables.execute(
        age, [heap["data"]["sql"][0].split(") ", 1)[1]]
    ).fetchone()
    old_tables.execute(heap["data"]["sql"][0])
    after = old_tables.execute(
        age, [heap["data"]["sql"][0].split(") ", 1)[1]]
    ).fetchone()
    assert after[0] < before[0]
    assert (
        old_tables.execute("SELECT to_regclass('public.x')").fetchone()[0] is not None
    )


def test_database_figure_alone_when_the_per_table_check_cannot_run(
    old_tables, dbtuning, monkeypatch
):
    from django_dbtuning.report import wraparound

    monkeypatch.setattr(wraparound, "TABLE_AGES", "SELECT * FROM no_such_view")
    dbtuning(REPORT_THRESHOLDS={"xid_age_warning": 1})
    document = report_json("--database", "default", "--section", "tables")
    wrap = findings(document, "xid_wraparound")
    assert [f["object"] for f in wrap] == [
        f"database:{document['databases']['default']['server']['database']}"
    ]
    assert document["databases"]["default"]["checks"]["table_wraparound"]["status"] == (
        "skipped"
    )


@pytest.mark.parametrize(
    ("options", "toast_options", "expected_limit", "what"),
    [
        (None, None, 200_000_000, "transaction ID"),
        (["autovacuum_freeze_max_age=100000"], None, 100_000, "transaction ID"),
        # A per-table value above the server's is ignored by autovacuum.
        (["autovacuum_freeze_max_age=900000000"], None, 200_000_000, "transaction ID"),
        (None, ["autovacuum_freeze_max_age=100000"], 100_000, "transaction ID (TOAST)"),
        (
            ["autovacuum_multixact_freeze_max_age=100000"],
            None,
            100_000,
            "multixact",
        ),
    ],
)
def test_table_age_limits(options, toast_options, expected_limit, what):
    row = {
        "heap_xid_age": 1000,
        "heap_mxid_age": 900,
        "toast_xid_age": 1000,
        "toast_mxid_age": 0,
        "reloptions": options,
        "toast_reloptions": toast_options,
    }
    horizon = {"freeze_max_age": 200_000_000, "multixact_freeze_max_age": 400_000_000}
    age = table_age(row, horizon)
    assert age.freeze_limit == expected_limit
    assert age.limited_by == what
    assert age.xid_age == 1000 and age.mxid_age == 900


def test_prometheus_gauges(old_tables):
    out, err, code = dbreport_text(
        "--database", "default", "--section", "tables", "--format", "prometheus"
    )
    assert code == 0, err
    lines = dict(
        line.rsplit(" ", 1)
        for line in out.splitlines()
        if line.startswith(("dbtuning_freeze_age_max_ratio{", "dbtuning_xid_age{"))
    )
    ratio = next(
        v for k, v in lines.items() if k.startswith("dbtuning_freeze_age_max_ratio")
    )
    # The planted table's share of its 100,000 limit leads.
    assert float(ratio) >= RATIO
    assert "# HELP dbtuning_table_bloat_bytes" in out


def test_text_names_the_table_nearest_a_forced_vacuum(old_tables):
    out, err, code = dbreport_text("--database", "default", "--section", "tables")
    assert code == 0, err
    line = next(
        text
        for text in out.splitlines()
        if "nearest forced anti-wraparound vacuum" in text
    )
    assert HEAP_NAME in line or TOAST_NAME in line
    assert "of 100,000" in line


def test_multixact_age_against_its_own_limit(old_tables, dbtuning):
    """Two sessions share-locking one row create a multixact: ten of them against a table
    whose multixact limit is 10,000 put it ahead of every transaction-ID age."""
    table = sql.Identifier(SCHEMA, "mxid")
    old_tables.execute(
        sql.SQL(
            "CREATE TABLE {} (id int) WITH (autovacuum_enabled = false, "
            "autovacuum_multixact_freeze_max_age = 10000)"
        ).format(table)
    )
    old_tables.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))
    try:
        with admin_connection() as first, admin_connection() as second:
            for _ in range(10):
                with first.transaction(), second.transaction():
                    for conn in (first, second):
                        conn.execute(
                            sql.SQL("SELECT id FROM {} FOR SHARE").format(table)
                        )
        dbtuning(REPORT_THRESHOLDS={"freeze_age_info_ratio": 0.0005})
        document = report_json("--database", "default", "--section", "tables")
    finally:
        old_tables.execute(sql.SQL("DROP TABLE {}").format(table))
    due = {f["object"]: f for f in findings(document, "wraparound_vacuum_due")}
    finding = due['"Other Schema".mxid']
    assert finding["data"]["freeze_limit"] == 10_000
    assert finding["data"]["mxid_age"] >= 10
    assert "The oldest unfrozen multixact of" in finding["detail"]
    assert "(autovacuum_multixact_freeze_max_age)" in finding["detail"]
