"""The index bloat estimate reads pg_stats only for the columns of the indexes it
estimates (btree, on columns, at least 10 pages), not the whole view: the same
estimates as from every row of pg_stats, hostile names included."""

from __future__ import annotations

import pytest
from django.db import connections
from psycopg import sql

from django_dbtuning.report.djangomap import ModelMap
from django_dbtuning.report.findings import DatabaseReport, thresholds
from django_dbtuning.report.index_facts import _estimate_bloat, gather
from django_dbtuning.report.probe import Probe, connect
from django_dbtuning.report.timeouts import configured
from tests.report.test_report import admin_connection

pytestmark = pytest.mark.django_db

SCHEMA = 'Wide "S"; DROP x; --'
TABLE = "Tälle; X"
COLUMN = 'Nöte "N"'
# Every row of pg_stats, as the check read it before.
EVERY_ROW = """
SELECT schemaname AS schema, tablename AS "table", attname AS "column",
       avg_width, null_frac
  FROM pg_stats WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
"""


def q(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


@pytest.fixture
def indexed(django_db_blocker):
    """Tables with indexes large enough to estimate, in public and a hostile schema
    (the same table name in both), and small ones that are not estimated."""
    statements = []
    for schema in ("public", SCHEMA):
        table = q(schema, TABLE)
        statements += [
            sql.SQL("CREATE TABLE {} (id int, {} text, small int)").format(
                table, q(COLUMN)
            ),
            sql.SQL(
                "INSERT INTO {} SELECT g, repeat('x', g % 40), g FROM "
                "generate_series(1, 20000) g"
            ).format(table),
            sql.SQL("CREATE INDEX ON {} (id, {})").format(table, q(COLUMN)),
            sql.SQL("CREATE INDEX ON {} (lower({}))").format(table, q(COLUMN)),
            sql.SQL("CREATE INDEX ON {} USING hash (id)").format(table),
            # Bloat: most rows deleted after the index was built.
            sql.SQL("DELETE FROM {} WHERE id % 4 <> 0").format(table),
            sql.SQL("ANALYZE {}").format(table),
        ]
    with django_db_blocker.unblock(), admin_connection() as conn:
        drop(conn)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(q(SCHEMA)))
        for statement in statements:
            conn.execute(statement)
        yield conn
        drop(conn)


def drop(conn) -> None:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(q(SCHEMA)))
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(q("public", TABLE)))


def test_the_estimates_are_those_of_every_pg_stats_row(indexed, django_db_blocker):
    with django_db_blocker.unblock(), connect(connections.settings["default"]) as conn:
        probe = Probe(
            "default",
            conn,
            result=DatabaseReport(alias="default"),
            findings=[],
            thresholds=thresholds({}),
            models=ModelMap(),
            top=0,
            timeouts=configured(),
        )
        facts = gather(probe)
        assert facts is not None
        every_row = conn.execute(EVERY_ROW).fetchall()
    assert facts.bloat == _estimate_bloat(facts.indexes, every_row)
    estimated = {(i.schema, i.table) for i in facts.indexes if i.oid in facts.bloat}
    assert {("public", TABLE), (SCHEMA, TABLE)} <= estimated
    (check,) = [c for c in probe.result.checks if c.name == "index_bloat"]
    assert check.complete
