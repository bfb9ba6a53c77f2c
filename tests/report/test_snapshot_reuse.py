"""dbreport --save takes its snapshot from the report's own run: what the sections read,
the rest queried on the same connection. The snapshot is the same as one read over a
connection of its own. django_dbtuning's own snapshot table is no user's news: left out
of growth, and its findings folded like a contrib app's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps
from django.db import connections
from psycopg import sql

from django_dbtuning.models import Snapshot
from django_dbtuning.report import history, run_report, snapshot
from django_dbtuning.report.compare import compare
from django_dbtuning.report.ownership import third_party_app
from django_dbtuning.report.snapshot import SnapshotData, collect, to_document
from tests.report.test_report import admin_connection, dbreport, extra_alias

pytestmark = pytest.mark.django_db

SCHEMA = 'Snap "S"; DROP TABLE x; --'
TABLE = "Grow Ünï; x"
INDEX = 'Idx "G"; --'
SECTIONS = ("indexes", "tables", "statements")


def q(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


@pytest.fixture
def hostile(django_db_blocker):
    """A table and an index with hostile names in a hostile schema, rows, a statement."""
    with django_db_blocker.unblock(), admin_connection() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(q(SCHEMA)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(q(SCHEMA)))
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int, note text)").format(q(SCHEMA, TABLE))
        )
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} (id)").format(q(INDEX), q(SCHEMA, TABLE))
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT g, 'n' FROM generate_series(1, 50) g"
            ).format(q(SCHEMA, TABLE))
        )
        conn.execute(sql.SQL("SELECT count(*) FROM {}").format(q(SCHEMA, TABLE)))
        conn.execute("SELECT pg_stat_force_next_flush()")
        yield conn
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(q(SCHEMA)))


def standalone(report) -> dict:
    return to_document(collect("default", report, connections.settings["default"]))


def _objects(document: dict) -> tuple:
    return document["tables"], document["indexes"]


@pytest.mark.parametrize("sections", [SECTIONS, ("settings",)])
def test_a_report_run_for_a_snapshot_holds_the_standalone_one(hostile, sections):
    """With the sections that read tables and indexes (reused) and without (queried).

    Autovacuum may visit any table of the test database between two reads (it rewrites
    ``n_live_tup`` and adds map forks to the size), so the claim is checked on a quiet
    database: a standalone read before and after the report agree."""
    for _attempt in range(5):
        before = standalone(run_report(["default"], sections=["settings"]))
        report = run_report(["default"], sections=sections, snapshot=True)
        states, skipped = history.take(report)
        after = standalone(report)
        if _objects(before) == _objects(after):
            break
    else:
        pytest.fail("the test database never stayed quiet for one report run")
    assert skipped == {}
    reused = to_document(states["default"])
    assert reused == after
    assert [SCHEMA, TABLE] in [row[:2] for row in reused["tables"]["rows"]]
    assert [SCHEMA, TABLE, INDEX] in [row[:3] for row in reused["indexes"]["rows"]]
    assert reused["missing"] == []


def test_no_second_connection_and_no_gap_in_the_report(hostile, monkeypatch):
    plain = run_report(["default"], sections=SECTIONS)
    report = run_report(["default"], sections=SECTIONS, snapshot=True)

    def refuse(*args, **kwargs):
        raise AssertionError("the snapshot opened a connection of its own")

    monkeypatch.setattr(snapshot, "connect", refuse)
    states, skipped = history.take(report)
    assert list(states) == ["default"] and skipped == {}
    # The snapshot's own queries are not checks of the report.
    db = report.databases["default"]
    assert [c.name for c in db.checks] == [
        c.name for c in plain.databases["default"].checks
    ]
    assert db.as_dict().keys() == plain.databases["default"].as_dict().keys()


def test_save_through_the_command_matches_the_standalone_snapshot(hostile):
    own = Snapshot._meta.db_table

    def rows(document: dict, kind: str) -> list:
        # The snapshot table grew by the row --save wrote after reading it (and the
        # write's own statements are in pg_stat_statements now: compared above).
        return [row for row in document[kind]["rows"] if row[1] != own]

    def objects(document: dict) -> list:
        return [rows(document, kind) for kind in ("tables", "indexes")]

    for _attempt in range(5):  # on a quiet database: see the test above
        Snapshot.objects.all().delete()
        before = standalone(run_report(["default"], sections=["settings"]))
        _, err, code = dbreport(
            "--save", "--database", "default", "--section", ",".join(SECTIONS)
        )
        assert code == 0, err
        stored = Snapshot.objects.get().data
        again = standalone(run_report(["default"], sections=SECTIONS))
        if objects(before) == objects(again):
            break
    else:
        pytest.fail("the test database never stayed quiet for one dbreport --save")
    for kind in ("tables", "indexes"):
        assert stored[kind]["columns"] == again[kind]["columns"]
        assert rows(stored, kind) == rows(again, kind), kind


# -- the snapshot table itself -------------------------------------------------------------


def state(when: datetime, tables: dict, indexes: dict) -> SnapshotData:
    return SnapshotData(
        alias="default",
        taken_at=when,
        database="db",
        server_version=170000,
        tables=tables,
        indexes=indexes,
    )


def test_the_snapshot_table_is_left_out_of_growth():
    own = Snapshot._meta.db_table
    then = datetime(2026, 11, 1, tzinfo=UTC)

    def objects(rows: int) -> tuple[dict, dict]:
        size = rows * 1000
        tables = {
            ("public", own): {"bytes": size, "total_bytes": size, "rows": rows},
            ("public", "shop_order"): {
                "bytes": rows,
                "total_bytes": rows,
                "rows": rows,
            },
        }
        indexes = {
            ("public", own, f"{own}_pkey"): {"bytes": size, "scans": 0},
            ("public", "shop_order", "shop_order_pkey"): {"bytes": rows, "scans": 0},
        }
        return tables, indexes

    found = compare(
        state(then, *objects(10)), state(then + timedelta(days=1), *objects(5000))
    )
    assert [t["table"] for t in found.tables] == ["shop_order"]
    assert [i["index"] for i in found.indexes] == ["shop_order_pkey"]


def test_findings_on_the_snapshot_table_are_folded_like_contrib(django_db_blocker):
    assert third_party_app(apps.get_app_config("django_dbtuning"))
    with django_db_blocker.unblock(), admin_connection() as conn:
        conn.execute("CREATE INDEX snapshot_id_twin ON django_dbtuning_snapshot (id)")
        try:
            report = run_report(["default"], sections=["indexes"])
        finally:
            conn.execute("DROP INDEX snapshot_id_twin")
    (finding,) = [
        f
        for f in report.findings
        if f.object == "snapshot_id_twin" and f.code == "duplicate_index"
    ]
    assert finding.model == "django_dbtuning.Snapshot"
    assert finding.third_party
    assert finding.severity == "info"
    assert "installed app 'django_dbtuning'" in finding.hint


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_snapshot_must_be_a_bool(value):
    with pytest.raises(TypeError, match=r"^snapshot must be True or False, not "):
        run_report(["default"], sections=["settings"], snapshot=value)


def test_an_unreachable_alias_has_no_snapshot_and_says_why():
    with extra_alias("gone", HOST="127.0.0.1", PORT=1):
        report = run_report(["gone"], sections=SECTIONS, snapshot=True)
        states, skipped = history.take(report)
    assert states == {}
    assert skipped["gone"].startswith("unreachable (cannot connect to 127.0.0.1:1/")
