"""Adversarial pass (session 20): ``--per-index`` Prometheus labels of real, hostile
schema, table and index names parse back to the names the catalogs hold."""

from __future__ import annotations

import pytest
from psycopg import sql

from tests.report.test_report import admin_connection, dbreport

pytestmark = pytest.mark.django_db
parser = pytest.importorskip("prometheus_client.parser")

SCHEMA = 'Prom "S"\\ ; --\n'
TABLE = 'T}{ "x" 1\nevil_metric 2'
INDEX = 'idx\\"\n\u202e é'


@pytest.fixture
def hostile_index():
    with admin_connection() as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA))
        )
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(SCHEMA, TABLE))
        )
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} (id)").format(
                sql.Identifier(INDEX), sql.Identifier(SCHEMA, TABLE)
            )
        )
        try:
            yield
        finally:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(SCHEMA)
                )
            )


def test_per_index_labels_round_trip(hostile_index):
    out, err, code = dbreport(
        "--database",
        "default",
        "--section",
        "indexes",
        "--format",
        "prometheus",
        "--per-index",
    )
    assert code == 0, err
    families = {f.name: f for f in parser.text_string_to_metric_families(out)}
    assert "evil_metric" not in families
    labels = [s.labels for s in families["dbtuning_index_size_bytes"].samples]
    assert {
        "alias": "default",
        "schema": SCHEMA,
        "table": TABLE,
        "index": INDEX,
    } in labels
