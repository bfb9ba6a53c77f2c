"""Adversarial pass over history snapshots: a Snapshot row whose document is corrupt,
truncated, of another format or of wrong types is a clear error naming the row (for
``--since`` and the dashboard's history page alike), never a crash or a silent empty
comparison; and no literal ever reaches a snapshot."""

from __future__ import annotations

import copy
import datetime
import json

import pytest
from django.db import connections
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtuning.models import Snapshot
from django_dbtuning.report import HistoryError, run_report
from django_dbtuning.report.compare import compare
from django_dbtuning.report.findings import Report
from django_dbtuning.report.history import from_row, take
from django_dbtuning.report.snapshot import collect, to_document
from tests.report.test_report import admin_connection, dbreport

pytestmark = pytest.mark.django_db

SECTIONS = ("--database", "default", "--section", "tables,indexes,statements")


@pytest.fixture
def saved():
    """One real snapshot of the test database, its row."""
    Snapshot.objects.all().delete()
    out, err, code = dbreport(*SECTIONS, "--save")
    assert code == 0, err
    row = Snapshot.objects.get()
    assert row.data["tables"]["rows"], "the test database has tables"
    return row


def planted(row: Snapshot, data, *, days: int = 2) -> Snapshot:
    """A copy of ``row`` taken ``days`` ago, holding ``data``."""
    return Snapshot.objects.create(
        alias=row.alias,
        taken_at=row.taken_at - datetime.timedelta(days=days),
        database=row.database,
        server_version=row.server_version,
        data=data,
    )


def since(*extra: str) -> tuple[str, str, int]:
    when = (timezone.now() - datetime.timedelta(days=1)).isoformat()
    return dbreport(*SECTIONS, "--since", when, *extra)


def corrupt(document: dict) -> list:
    """Damaged copies of a good document, as a hand edit, a truncated write or another
    version would leave them."""
    damaged: list = ["", "garbage", 42, [], {}, {"format": 1}]
    damaged.append({**document, "format": 99})
    damaged.append({**document, "format": True})
    tables = copy.deepcopy(document)
    tables["tables"]["rows"][0] = tables["tables"]["rows"][0][:2]  # truncated row
    damaged.append(tables)
    numbers = copy.deepcopy(document)
    numbers["tables"]["rows"][0][2] = "12 MB"  # bytes as text
    damaged.append(numbers)
    columns = copy.deepcopy(document)
    columns["tables"]["columns"] = ["schema", "table"]
    damaged.append(columns)
    rows = copy.deepcopy(document)
    rows["indexes"]["rows"] = "none"
    damaged.append(rows)
    statements = copy.deepcopy(document)
    statements["statements"]["rows"].append(["not a queryid", 1, 1.0, 1, "x", None])
    damaged.append(statements)
    when = copy.deepcopy(document)
    when["statements"]["rows"].append([7, 1, 1.0, 1, "SELECT ?", "yesterday"])
    damaged.append(when)
    missing = copy.deepcopy(document)
    del missing["findings"]
    damaged.append(missing)
    return damaged


def test_corrupt_snapshots_are_an_error_naming_the_row(saved):
    for data in corrupt(saved.data):
        row = planted(saved, data)
        out, err, code = since()
        assert code == 1, (data, out)
        assert f"snapshot #{row.pk} of alias 'default'" in err, (data, err)
        assert "\n" not in err and "Traceback" not in err
        with pytest.raises(HistoryError, match=f"snapshot #{row.pk}"):
            from_row(row)
        row.delete()


@pytest.mark.parametrize(
    ("column", "number"), [(2, "1" + "0" * 400), (2, "1e400"), (4, "-9.3e18")]
)
def test_numbers_no_server_hands_out_are_an_error_naming_the_row(saved, column, number):
    """bigint and float8 are what a snapshot holds: a bigger number (1e400 is read back
    as inf) would fail where it is turned into a float, or draw nothing."""
    row = planted(saved, saved.data)
    document = json.dumps(row.data)
    first = json.dumps(row.data["tables"]["rows"][0])
    values = row.data["tables"]["rows"][0]
    values[column] = "NUMBER"
    document = document.replace(first, json.dumps(values).replace('"NUMBER"', number))
    with connections["default"].cursor() as cursor:  # the test's own transaction
        cursor.execute(
            "UPDATE django_dbtuning_snapshot SET data = %s::jsonb WHERE id = %s",
            [document, row.pk],
        )
    row.refresh_from_db()
    with pytest.raises(HistoryError, match=f"snapshot #{row.pk}"):
        from_row(row)
    out, err, code = since()
    assert code == 1 and f"snapshot #{row.pk}" in err


def test_a_good_snapshot_still_compares(saved):
    planted(saved, saved.data)
    out, err, code = since()
    assert code == 0, err
    assert "History" in out


@pytest.mark.urls("tests.dashboard.urls")
def test_the_dashboard_history_page_names_the_corrupt_row(saved, client):
    from django.contrib.auth.models import User

    row = planted(saved, {**saved.data, "format": 99})
    client.force_login(User.objects.create_superuser("attack-root", password="x"))
    page = client.get("/dbtuning/history/")
    assert page.status_code == 200
    text = page.content.decode()
    assert f"snapshot #{row.pk}" in text
    assert "Traceback" not in text


# -- mutations, as a property -------------------------------------------------------


LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_any_damage_is_read_or_refused_never_a_crash(saved, data):
    document = copy.deepcopy(saved.data)
    kind = data.draw(st.sampled_from(["tables", "indexes", "statements", "findings"]))
    rows = document[kind]["rows"] or [[]]
    if not document[kind]["rows"]:
        document[kind]["rows"] = rows
    row = rows[data.draw(st.integers(0, len(rows) - 1))]
    if row and data.draw(st.booleans()):
        row[data.draw(st.integers(0, len(row) - 1))] = data.draw(LEAVES)
    else:
        row.append(data.draw(LEAVES))
    stored = Snapshot(
        pk=10**9,
        alias="default",
        taken_at=saved.taken_at,
        database=saved.database,
        server_version=saved.server_version,
        data=json.loads(json.dumps(document)),
    )
    try:
        old = from_row(stored)
    except HistoryError as exc:
        assert f"snapshot #{10**9} of alias 'default'" in str(exc)
        return
    # What was read compares with the state now without an exception.
    compare(old, from_row(saved), top=0)


# -- no literal in a snapshot ------------------------------------------------------

VALUES = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from(["it's", "$$x$$", "$t$;$t$", '{"k": "v"}', "{1,2}", "a\\b", "☃"]),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(VALUES)
def test_no_literal_reaches_a_snapshot(django_db_blocker, value):
    marker = f"Zq{abs(hash(value)) % 10**8:08d}"
    secret = marker + value
    literal = "'" + secret.replace("'", "''") + "'"
    dollar = "$lit$" + secret + "$lit$"
    with django_db_blocker.unblock(), admin_connection() as conn:
        conn.execute(f"SELECT {literal} AS a, {literal}::text || 'x' AS b")
        conn.execute(f"SELECT ARRAY[{literal}], jsonb_build_object('k', {literal})")
        if "$lit$" not in secret:
            conn.execute(f"SELECT {dollar}")
        # Utility statements keep their text in pg_stat_statements, literals and all.
        with conn.cursor().copy(f"COPY (SELECT {literal}) TO STDOUT") as copying:
            for _ in copying:
                pass
        conn.execute(f"DO $do$BEGIN PERFORM {literal}; END$do$")
        conn.execute("SELECT pg_stat_force_next_flush()")
    report = Report(
        generated_at=timezone.now(),
        sections=("statements",),
        databases={},
        findings=[],
    )
    state = collect("default", report, connections.settings["default"])
    stored = json.dumps(to_document(state), ensure_ascii=False)
    assert marker not in stored
    # What --save stores: read by the report's own sections (snapshot=True).
    states, _ = take(run_report("default", sections="statements", snapshot=True))
    stored = json.dumps(to_document(states["default"]), ensure_ascii=False)
    assert marker not in stored
    assert "jsonb_build_object(" in stored  # the statements are there, masked


# -- --since output ------------------------------------------------------------------

ESCAPE_TABLE = "grow\x1b[2J\x07 <b>t</b>"
SECRET = "attack-since-secret-5521"
PASSWORD = "attack-since-pw-6642"


@pytest.fixture
def escape_table(django_db_blocker):
    from psycopg import sql

    table = sql.Identifier(ESCAPE_TABLE)
    with django_db_blocker.unblock(), admin_connection() as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(sql.SQL("CREATE TABLE {} (id int, note text)").format(table))
        yield conn, table
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


def grow(conn, table, rows: int) -> None:
    from psycopg import sql

    conn.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, repeat('n', 300) FROM generate_series(1, %s) g"
        ).format(table),
        [rows],
    )
    for _ in range(3):
        conn.execute(
            sql.SQL("SELECT id FROM {} WHERE note = '" + SECRET + "'").format(table)
        )
    conn.execute("SELECT pg_stat_force_next_flush()")


def saved_and_grown(conn, table) -> str:
    Snapshot.objects.all().delete()
    grow(conn, table, 10)
    out, err, code = dbreport(*SECTIONS, "--save", "--format", "prometheus")
    assert code == 0, err
    assert SECRET not in out + err and PASSWORD not in out + err
    grow(conn, table, 3000)
    stored = json.dumps(list(Snapshot.objects.values_list("data", flat=True)))
    assert SECRET not in stored
    return timezone.now().isoformat()


def test_since_output_holds_no_secret(escape_table, monkeypatch):
    monkeypatch.setitem(connections.settings["default"], "PASSWORD", PASSWORD)
    when = saved_and_grown(*escape_table)
    text, err, code = dbreport(*SECTIONS, "--since", when, "--top", "0")
    assert code == 0, err
    assert "History" in text and "grow" in text
    document, err2, code = dbreport(*SECTIONS, "--since", when, "--format", "json")
    assert code == 0, err2
    for output in (text, err, document, err2):
        assert SECRET not in output and PASSWORD not in output


def test_since_text_shows_no_terminal_escape(escape_table):
    when = saved_and_grown(*escape_table)
    text, err, code = dbreport(*SECTIONS, "--since", when, "--top", "0")
    assert code == 0, err
    assert "History" in text and "grow" in text
    assert "\x1b" not in text and "\x07" not in text
