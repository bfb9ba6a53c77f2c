"""dbreport --save and --since on the embedded PostgreSQL: two snapshots with growth
between them, a statement getting slower, a reset between snapshots, retention, an
unmigrated table, a read-only storage alias, wrong --since values, hostile names."""

from __future__ import annotations

import datetime
import json
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.utils import timezone
from psycopg import sql

from django_dbtuning.models import Snapshot
from django_dbtuning.report.quoting import qualified
from tests.report.test_report import admin_connection, dbreport

pytestmark = pytest.mark.django_db

SCHEMA = 'Hist "S"; DROP TABLE x; --'
TABLE = "Grow Ünï; x"
INDEX = 'Idx "G"; --'
SECRET = "literal-secret-4711"
SECTIONS = ("--section", "tables,indexes,statements")


def q(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


@pytest.fixture
def planted(django_db_blocker):
    """A table (and an index) with hostile names in a hostile schema, ten rows."""
    with django_db_blocker.unblock(), admin_connection() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(q(SCHEMA)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(q(SCHEMA)))
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int, note text)").format(q(SCHEMA, TABLE))
        )
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} (id)").format(q(INDEX), q(SCHEMA, TABLE))
        )
        insert(conn, 10)
        yield conn
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(q(SCHEMA)))


def insert(conn: psycopg.Connection, rows: int) -> None:
    conn.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, repeat('n', 200) FROM generate_series(1, %s) g"
        ).format(q(SCHEMA, TABLE)),
        [rows],
    )
    conn.execute("SELECT pg_stat_force_next_flush()")


def save(*args: str) -> tuple[str, str]:
    out, err, code = dbreport("--save", *SECTIONS, *args)
    assert code == 0, err
    return out, err


def since(value: str = "1d", *args: str) -> dict:
    out, err, code = dbreport(
        "--since", value, "--format", "json", "--top", "0", *SECTIONS, *args
    )
    assert code == 0, err
    return json.loads(out)["since"]["default"]


def backdate(days: float) -> None:
    """Move every stored snapshot ``days`` into the past (what waiting would do)."""
    for row in Snapshot.objects.all():
        row.taken_at -= datetime.timedelta(days=days)
        row.save(update_fields=["taken_at"])


def entry(entries: list[dict], name: str) -> dict:
    return next(e for e in entries if e["name"] == name)


NAME = qualified(SCHEMA, TABLE)


def test_save_stores_one_snapshot_per_database(planted):
    _, err = save()
    assert "saved snapshot #" in err and "of alias 'default'" in err
    # The mirror alias reaches the same database: not saved twice.
    assert "no snapshot of alias 'other': same database as alias 'default'" in err
    row = Snapshot.objects.get()
    assert row.alias == "default"
    assert row.server_version >= 140000
    assert row.data["format"] == 1
    assert [SCHEMA, TABLE] in [r[:2] for r in row.data["tables"]["rows"]]


def test_growth_between_two_snapshots(planted):
    save()
    backdate(2)
    insert(planted, 5_000)
    found = since("1d")
    table = entry(found["tables"], NAME)
    # 5,000 rows of ~200 bytes over ~2 days.
    assert table["rows_per_day"] == pytest.approx(2_500, rel=0.05)
    assert table["bytes_per_day"] > 250_000
    assert not table["new"]
    assert (table["schema"], table["table"]) == (SCHEMA, TABLE)
    index = entry(found["indexes"], qualified(SCHEMA, INDEX))
    assert (index["schema"], index["table"], index["index"]) == (SCHEMA, TABLE, INDEX)
    assert index["on"] == NAME
    assert index["bytes_per_day"] > 0
    assert found["days"] == pytest.approx(2, rel=0.01)


def test_growth_in_text(planted):
    save()
    backdate(2)
    insert(planted, 1_000)
    out, _, code = dbreport("--since", "1d", *SECTIONS)
    assert code == 0
    history = out.split("\nHistory\n", 1)[1]
    assert f"{NAME}: +" in history
    assert "+500 rows/day" in history


def test_a_statement_getting_slower(planted):
    lookup = "SELECT pg_sleep(%s), 'hist-marker' AS marker"
    for _ in range(12):
        planted.execute(lookup, [0.0])
    planted.execute("SELECT pg_stat_force_next_flush()")
    save()
    backdate(1)
    for _ in range(12):
        planted.execute(lookup, [0.01])
    planted.execute("SELECT pg_stat_force_next_flush()")
    found = since("12h")
    slower = [
        s for s in found["statements"]["slower"] if "AS marker" in (s["query"] or "")
    ]
    assert len(slower) == 1, found["statements"]
    assert slower[0]["calls"] == 12
    assert slower[0]["mean_ms"] >= 10 > slower[0]["mean_ms_before"]


def test_no_literal_is_stored(planted):
    planted.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE note = %s").format(q(SCHEMA, TABLE)),
        [SECRET],
        prepare=False,
    )
    planted.execute(f"SELECT '{SECRET}' AS x")  # a literal in the statement's text
    planted.execute("SELECT pg_stat_force_next_flush()")
    save()
    stored = json.dumps(Snapshot.objects.get().data)
    assert SECRET not in stored


def test_a_reset_between_snapshots_is_said_not_subtracted(planted):
    lookup = sql.SQL("SELECT id FROM {} WHERE id = %s").format(q(SCHEMA, TABLE))
    for i in range(30):
        planted.execute(lookup, [i])
    planted.execute("SELECT pg_stat_force_next_flush()")
    save()
    backdate(1)
    planted.execute("SELECT pg_stat_statements_reset()")
    for i in range(12):
        planted.execute(lookup, [i])
    planted.execute("SELECT pg_stat_force_next_flush()")
    found = since("12h")
    assert any("pg_stat_statements was reset at" in note for note in found["notes"])
    for kind in ("slower", "more_frequent"):
        for e in found["statements"][kind]:
            assert e["calls"] > 0 and e["mean_ms"] >= 0


def test_new_and_resolved_findings(planted):
    duplicate = 'Dup "D"; x'
    planted.execute(
        sql.SQL("CREATE INDEX {} ON {} (id)").format(q(duplicate), q(SCHEMA, TABLE))
    )
    save()
    backdate(1)
    planted.execute(sql.SQL("DROP INDEX {}").format(q(SCHEMA, duplicate)))
    planted.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (id >= 0) NOT VALID").format(
            q(SCHEMA, TABLE), q("Chk; x")
        )
    )
    found = since("12h")
    new = {(f["code"], f["object"]) for f in found["findings"]["new"]}
    resolved = {f["code"] for f in found["findings"]["resolved"]}
    assert any(code == "invalid_constraint" and "Chk; x" in obj for code, obj in new)
    assert "duplicate_index" in resolved


def test_retention_deletes_old_snapshots_in_the_same_run(planted, dbtuning):
    save()
    backdate(50)
    save()
    backdate(10)
    dbtuning(HISTORY_RETENTION="30d")
    _, err = save()
    assert "deleted 1 snapshot(s) older than DBTUNING['HISTORY_RETENTION']" in err
    assert Snapshot.objects.count() == 2
    dbtuning(HISTORY_RETENTION=None)
    backdate(1000)
    save()
    assert Snapshot.objects.count() == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("90", "DBTUNING['HISTORY_RETENTION'] is not a duration"),
        ("soon", "DBTUNING['HISTORY_RETENTION'] is not a duration"),
        ("-1d", "DBTUNING['HISTORY_RETENTION'] must be positive"),
        (90, "DBTUNING['HISTORY_RETENTION'] must be a duration, not int"),
        (datetime.timedelta(0), "must be positive"),
    ],
)
def test_wrong_retention_is_refused_before_the_report(dbtuning, value, message):
    dbtuning(HISTORY_RETENTION=value)
    out, err, code = dbreport("--save")
    assert code == 1 and message in err and out == ""


def test_unapplied_migration_is_a_clear_error(planted):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'django_dbtuning'")
    _, err, code = dbreport("--save", *SECTIONS)
    assert code == 1
    assert "run manage.py migrate django_dbtuning --database default" in err
    _, err, code = dbreport("--since", "1d", *SECTIONS)
    assert "run manage.py migrate django_dbtuning" in err


def test_missing_table_is_a_clear_error(planted):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE django_dbtuning_snapshot RENAME TO moved_away")
    _, err, code = dbreport("--save", *SECTIONS)
    assert code == 1 and "not migrated on database alias 'default'" in err


class OtherRouter:
    def db_for_write(self, model, **hints):
        return "other" if model is Snapshot else None


@pytest.mark.django_db(databases=["default", "other"])
def test_snapshots_are_stored_where_the_routers_write_them(planted, settings):
    settings.DATABASE_ROUTERS = [OtherRouter()]
    _, err = save("--database", "default")
    assert "of alias 'default' on database alias 'other'" in err
    # A mirror alias' connection is outside the test's transaction: what it wrote is
    # committed, and it must be closed or the test database cannot be dropped.
    Snapshot.objects.using("other").all().delete()
    connections["other"].close()


def test_a_read_only_role_fails_cleanly(planted):
    role = 'Hist "Reader"; x'
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE ROLE {}").format(q(role)).as_string())
        cursor.execute(
            sql.SQL("GRANT pg_read_all_data TO {}").format(q(role)).as_string()
        )
        cursor.execute(sql.SQL("SET LOCAL ROLE {}").format(q(role)).as_string())
    out, err, code = dbreport("--save", "--database", "default", *SECTIONS)
    assert code == 1
    assert err.startswith("cannot save the snapshot on database alias 'default': ")
    assert "permission denied for table django_dbtuning_snapshot" in err
    assert "\n" not in err
    assert out == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("7x", "--since '7x' is not a duration or a date"),
        ("", "--since '' is not a duration or a date"),
        ("yesterday", "is not a duration or a date"),
        ("0d", "is not a duration or a date"),
        ("2999-01-01", "--since 2999-01-01T00:00:00+00:00 is in the future"),
        ("x" * 500, "--since 'xxxxxxxx"),
    ],
)
def test_wrong_since_values_name_the_option(value, message):
    out, err, code = dbreport("--since", value)
    assert code == 1 and message in err and out == ""
    assert len(err) < 300


def test_since_type_and_format_errors():
    with pytest.raises(CommandError, match="--since must be a str, not int"):
        call_command("dbreport", since=7, stdout=StringIO())
    out, err, code = dbreport("--since", "7d", "--format", "prometheus")
    assert code == 1 and "--since has no Prometheus form" in err
    with pytest.raises(CommandError, match="--save is a flag"):
        call_command("dbreport", save="yes", stdout=StringIO())


def test_since_without_an_old_enough_snapshot_names_the_oldest(planted):
    _, err, code = dbreport("--since", "1d", *SECTIONS)
    assert (
        code == 1 and "no snapshot of alias 'default' yet: run dbreport --save" in err
    )
    save()
    taken = Snapshot.objects.get().taken_at
    _, err, code = dbreport("--since", "1d", *SECTIONS)
    assert code == 1
    assert "no snapshot of alias 'default' at or before" in err
    assert f"the oldest is from {taken:%Y-%m-%d %H:%M:%S}" in err


def test_since_an_iso_date(planted):
    save()
    backdate(3)
    two_days_ago = (timezone.now() - datetime.timedelta(days=2)).date().isoformat()
    found = since(two_days_ago)
    assert found["days"] == pytest.approx(3, rel=0.01)


def test_save_and_since_together_compare_first(planted):
    save()
    backdate(1)
    out, err, code = dbreport("--save", "--since", "12h", "--format", "json", *SECTIONS)
    assert code == 0, err
    assert json.loads(out)["since"]["default"]["days"] == pytest.approx(1, rel=0.01)
    assert Snapshot.objects.count() == 2


def test_a_large_snapshot_stays_small(planted):
    """500 tables, 2,000 indexes and 5,000 statements: a few hundred KB stored."""
    from django_dbtuning.report.snapshot import SnapshotData, to_document

    data = SnapshotData(
        alias="default", taken_at=timezone.now(), database="d", server_version=180000
    )
    for t in range(500):
        data.tables[("public", f"shop_table_{t}")] = {
            "bytes": 8192 * t * 37,
            "total_bytes": 8192 * t * 51,
            "rows": t * 1234,
        }
        for i in range(4):
            data.indexes[
                ("public", f"shop_table_{t}", f"shop_table_{t}_col{i}_{t:x}_idx")
            ] = {"bytes": 8192 * (t + i) * 7, "scans": t * i * 13}
    for s in range(5000):
        data.statements[(s * 2654435761) % 2**63] = {
            "calls": s * 17,
            "total_ms": s * 3.141,
            "rows": s * 5,
            "query": f'SELECT "shop_table_{s % 500}"."id", "shop_table_{s % 500}"."name" FROM "shop_table_{s % 500}" WHERE "shop_table_{s % 500}"."id" = $1'[
                :120
            ],
            "since": None,
        }
    row = Snapshot.objects.create(
        alias="default",
        taken_at=data.taken_at,
        database="d",
        server_version=1,
        data=to_document(data),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_column_size(data), octet_length(data::text) FROM django_dbtuning_snapshot WHERE id = %s",
            [row.pk],
        )
        stored, text = cursor.fetchone()
    print(f"stored {stored} bytes, {text} bytes as text")
    assert stored < 400 * 1024


def test_migrations_are_complete():
    out = StringIO()
    call_command(
        "makemigrations", "django_dbtuning", "--check", "--dry-run", stdout=out
    )
    assert "No changes detected" in out.getvalue()


def test_view_report_permission(django_user_model):
    from django.contrib.auth.models import Permission

    permission = Permission.objects.get(codename="view_report")
    assert permission.name == "Can view the database report"
    assert permission.content_type.app_label == "django_dbtuning"


def test_python_api(planted):
    from django_dbtuning.report import (
        HistoryError,
        compare_since,
        run_report,
        save_snapshot,
    )

    report = run_report(["default"], sections=["tables", "indexes"])
    with pytest.raises(HistoryError, match="no snapshot of alias 'default' yet"):
        compare_since(report, "1h")
    saved = save_snapshot(report)
    assert list(saved.saved) == ["default"] and saved.using == "default"
    backdate(1)
    insert(planted, 100)
    (found,) = compare_since(
        run_report(["default"], sections=["tables", "indexes"]), "1h"
    )
    assert found.alias == "default"
    assert entry(found.tables, NAME)["rows_per_day"] == pytest.approx(100, rel=0.05)
    with pytest.raises(HistoryError, match="--since must be a str, not float"):
        compare_since(report, 1.5)


def test_table_size_metrics_are_opt_in_and_top_n(planted, dbtuning):
    out, _, code = dbreport("--format", "prometheus", "--section", "tables,statements")
    assert code == 0
    assert "dbtuning_table_size_bytes" not in out
    assert "queryid" not in out  # statements stay aggregate
    dbtuning(REPORT_TOP_TABLE_METRICS=2)
    out, _, code = dbreport("--format", "prometheus", "--section", "tables")
    samples = [
        line
        for line in out.splitlines()
        if line.startswith("dbtuning_table_size_bytes{")
    ]
    assert len(samples) == 2
    assert all('alias="default"' in line and 'table="' in line for line in samples)


def test_without_time_zone_support(planted, settings):
    settings.USE_TZ = False
    settings.TIME_ZONE = "Europe/Berlin"
    save()
    backdate(2)
    insert(planted, 200)
    found = since("1d")
    assert found["days"] == pytest.approx(2, rel=0.01)
    assert entry(found["tables"], NAME)["rows_per_day"] == pytest.approx(100, rel=0.05)


def test_since_says_which_aliases_it_could_not_compare(planted):
    save()
    backdate(1)
    out, err, code = dbreport("--since", "12h", *SECTIONS)
    assert code == 0
    assert "no comparison for alias 'other': same database as alias 'default'" in err
