"""Table bloat: a planted bloated table (rows inserted, most deleted, never vacuumed),
found by the catalog estimate and by pgstattuple_approx when the extension is there."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from django_dbtuning.report.table_bloat import estimate
from tests.report.test_report import (
    LIMITED_PASSWORD,
    admin_connection,
    extra_alias,
    findings,
    report_json,
)

pytestmark = pytest.mark.django_db

SCHEMA = "Other Schema"
TABLE = 'Bloat "B"; DROP TABLE x; Ünï'
NAME = '"Other Schema"."Bloat ""B""; DROP TABLE x; Ünï"'
SQL_NAME = '"Other Schema"."Bloat ""B""; DROP TABLE x; Ünï"'
THRESHOLDS = {"table_bloat_warning_bytes": 512 * 1024, "table_bloat_min_ratio": 0.5}


@pytest.fixture(scope="module")
def bloated(django_db_setup, django_db_blocker):
    """20,000 rows of ~100 bytes, 90 % deleted, autovacuum off: ~2.7 MB, ~90 % dead."""
    table = sql.Identifier(SCHEMA, TABLE)
    with django_db_blocker.unblock(), admin_connection() as conn:
        conn.execute("DROP TABLE IF EXISTS public.x")
        conn.execute("CREATE TABLE public.x (id int)")
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA))
        )
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id int, payload text) WITH (autovacuum_enabled = false)"
            ).format(table)
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT g, repeat('p', 100) FROM generate_series(1, 20000) g"
            ).format(table)
        )
        conn.execute(sql.SQL("DELETE FROM {} WHERE id % 10 <> 0").format(table))
        conn.execute(sql.SQL("ANALYZE {}").format(table))
        yield conn
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.execute("DROP TABLE IF EXISTS public.x")


def bloat_finding(document: dict) -> dict:
    found = {f["object"]: f for f in findings(document, "table_bloat")}
    assert NAME in found, sorted(found)
    return found[NAME]


def test_catalog_estimate_finds_the_planted_table(bloated, dbtuning):
    dbtuning(REPORT_THRESHOLDS=THRESHOLDS)
    document = report_json("--database", "default", "--section", "tables")
    finding = bloat_finding(document)
    assert finding["severity"] == "warning"
    assert finding["data"]["method"] == "catalog estimate"
    assert "a catalog estimate from pg_stats" in finding["detail"]
    assert 0.8 < finding["data"]["ratio"] < 1
    assert finding["data"]["bloat_bytes"] > 2 * 1024 * 1024
    assert finding["data"]["sql"] == [
        f"VACUUM (ANALYZE) {SQL_NAME}",
        f"VACUUM (FULL, ANALYZE) {SQL_NAME}",
    ]
    assert "ACCESS EXCLUSIVE" in finding["hint"]
    assert document["databases"]["default"]["tables"]["bloat_bytes_estimate"] > 0
    # Tables other tests churned may be flagged too; a freshly filled one never is, and
    # the defaults flag nothing this small.
    assert "auth_permission" not in {
        f["object"] for f in findings(document, "table_bloat")
    }
    dbtuning(REPORT_THRESHOLDS={})
    document = report_json("--database", "default", "--section", "tables")
    assert not findings(document, "table_bloat")


def test_pgstattuple_measures_when_installed(bloated, dbtuning):
    available = bloated.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'pgstattuple'"
    ).fetchone()
    if available is None:
        pytest.skip("this server has no pgstattuple extension to install")
    bloated.execute("CREATE EXTENSION pgstattuple")
    try:
        dbtuning(REPORT_THRESHOLDS=THRESHOLDS)
        document = report_json("--database", "default", "--section", "tables")
    finally:
        bloated.execute("DROP EXTENSION pgstattuple")
    finding = bloat_finding(document)
    assert finding["data"]["method"] == "pgstattuple_approx"
    assert (
        "measured by pgstattuple_approx, which read 100% of its pages"
        in finding["detail"]
    )
    assert 0.8 < finding["data"]["ratio"] < 1
    checks = document["databases"]["default"]["checks"]
    assert checks["table_bloat_exact"]["status"] == "ok"


def test_role_without_pgstattuple_rights_falls_back_to_the_estimate(bloated, dbtuning):
    if not bloated.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'pgstattuple'"
    ).fetchone():
        pytest.skip("this server has no pgstattuple extension to install")
    bloated.execute("DROP ROLE IF EXISTS dbreport_bloat")
    bloated.execute(f"CREATE ROLE dbreport_bloat LOGIN PASSWORD '{LIMITED_PASSWORD}'")
    bloated.execute("CREATE EXTENSION pgstattuple")
    bloated.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO dbreport_bloat").format(
            sql.Identifier(SCHEMA)
        )
    )
    bloated.execute(
        sql.SQL("GRANT SELECT ON {} TO dbreport_bloat").format(
            sql.Identifier(SCHEMA, TABLE)
        )
    )
    try:
        dbtuning(REPORT_THRESHOLDS=THRESHOLDS)
        with extra_alias("bloat", USER="dbreport_bloat", PASSWORD=LIMITED_PASSWORD):
            # All sections: a gap in a section named with --section is a warning.
            document = report_json("--database", "bloat")
    finally:
        bloated.execute("DROP EXTENSION pgstattuple")
        bloated.execute("DROP OWNED BY dbreport_bloat")
        bloated.execute("DROP ROLE dbreport_bloat")
    finding = bloat_finding(document)
    assert finding["data"]["method"] == "catalog estimate"
    check = document["databases"]["bloat"]["checks"]["table_bloat_exact"]
    assert check["status"] == "skipped"
    assert "may not run pgstattuple_approx" in check["reason"]
    gap = next(
        f
        for f in findings(document, "check_incomplete")
        if f["data"]["check"] == "table_bloat_exact"
    )
    assert gap["severity"] == "info"
    assert "GRANT pg_stat_scan_tables TO" in gap["hint"]


def test_estimate_needs_statistics_for_every_column():
    row = {
        "pages": 100,
        "tuples": 1000.0,
        "block_size": 8192,
        "reloptions": None,
        "columns": 3,
        "stats_columns": 2,
        "data_width": 40.0,
        "max_null_frac": 0.0,
        "has_name": False,
    }
    assert estimate(row) is None
    assert estimate({**row, "stats_columns": 3}) is not None


@given(
    pages=st.integers(min_value=0, max_value=10**7),
    tuples=st.floats(min_value=0, max_value=10**9),
    columns=st.integers(min_value=1, max_value=1600),
    width=st.floats(min_value=0, max_value=8000),
    null_frac=st.floats(min_value=0, max_value=1),
    fillfactor=st.one_of(st.none(), st.integers(min_value=10, max_value=100)),
)
def test_estimate_stays_within_the_table(
    pages, tuples, columns, width, null_frac, fillfactor
):
    row = {
        "pages": pages,
        "tuples": tuples,
        "block_size": 8192,
        "reloptions": [f"fillfactor={fillfactor}"] if fillfactor else None,
        "columns": columns,
        "stats_columns": columns,
        "data_width": width,
        "max_null_frac": null_frac,
        "has_name": False,
    }
    found = estimate(row)
    if pages == 0:
        assert found is None
        return
    assert found is not None
    assert found.size == pages * 8192
    assert 0 <= found.wasted <= found.size
    assert found.wasted % 8192 == 0
    assert 0 <= found.ratio <= 1
    # More rows never make the same table look more bloated.
    more = estimate({**row, "tuples": tuples * 2 + 1})
    assert more is not None and more.wasted <= found.wasted
    assert math.isfinite(found.ratio)
