"""Names holding bidi overrides and zero-width characters: the dashboard's pages and the
toolbar panel show them as the text report does (escapes), so such a name cannot reorder
its row as the browser shows it; other non-ASCII names are shown as they are."""

from __future__ import annotations

import html

import pytest
from django.template.loader import render_to_string
from psycopg import sql

from django_dbtuning.templatetags.dbtuning_dashboard import printable
from tests.report.test_report import admin_connection, dbreport

pytestmark = [pytest.mark.urls("tests.dashboard.urls"), pytest.mark.django_db]

SCHEMA = "dash_bidi"
BIDI = "t\u202eab\u200b"
UNICODE = "tbl_é日本"
RAW = ("\u202e", "\u200b")
ESCAPED = ("\\u202e", "\\u200b")


@pytest.fixture(scope="module")
def bidi_tables(django_db_setup, django_db_blocker):
    """Two tables large enough to be among the pages' top rows, each with an index, and
    a slow statement on the bidi one (among the top statements by total time)."""
    with django_db_blocker.unblock(), admin_connection() as conn:
        schema = sql.Identifier(SCHEMA)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        for name in (BIDI, UNICODE):
            table = sql.Identifier(SCHEMA, name)
            conn.execute(sql.SQL("CREATE TABLE {} (n int, note text)").format(table))
            conn.execute(
                sql.SQL("CREATE INDEX {} ON {} (n)").format(
                    sql.Identifier(name + "_idx"), table
                )
            )
            grow(conn, name, 3000)
        for _ in range(2):
            conn.execute(
                sql.SQL("SELECT count(*), pg_sleep(0.3) FROM {}").format(
                    sql.Identifier(SCHEMA, BIDI)
                )
            )
        conn.execute("SELECT pg_stat_force_next_flush()")
        yield conn
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))


def grow(conn, name: str, rows: int) -> None:
    conn.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, repeat('n', 200) FROM generate_series(1, %s) g"
        ).format(sql.Identifier(SCHEMA, name)),
        [rows],
    )
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(SCHEMA, name)))


def assert_escaped(page: str) -> None:
    for raw in RAW:
        assert raw not in page
    for escaped in ESCAPED:
        assert escaped in page


@pytest.mark.parametrize("url", ["/dbtuning/indexes/", "/dbtuning/tables/"])
def test_pages_show_bidi_names_escaped(bidi_tables, staff_client, url):
    page = staff_client.get(url).content.decode()
    assert_escaped(page)
    assert UNICODE in page


def test_statements_page_shows_bidi_names_escaped(bidi_tables, staff_client):
    page = staff_client.get("/dbtuning/statements/").content.decode()
    assert_escaped(page)
    assert "pg_sleep" in page


def test_history_shows_bidi_names_escaped(bidi_tables, staff_client):
    for rows in (0, 2000):
        if rows:
            grow(bidi_tables, BIDI, rows)
            grow(bidi_tables, UNICODE, rows)
        out, err, code = dbreport("--save", "--section", "tables,indexes,statements")
        assert code == 0, err
    page = staff_client.get("/dbtuning/history/").content.decode()
    assert_escaped(page)
    assert UNICODE in page


def test_filter_keeps_lines_and_leaves_markup_alone():
    assert printable("a\u202eb\nc") == "a\\u202eb\nc"
    assert printable(None) is None
    safe = render_to_string("django_dbtuning/finding.html", {"f": {"detail": "x\ny"}})
    assert "x<br>y" in safe


def test_toolbar_panel_shows_bidi_subject_escaped():
    pytest.importorskip("debug_toolbar")
    row = {
        "kind": "N+1",
        "subject": f"{BIDI}.author",
        "alias": "default",
        "count": 3,
        "time_ms": 1.0,
        "hint": f"select_related('{BIDI}')",
        "sql": f'SELECT * FROM "{BIDI}"',
        "locations": [],
    }
    unused = {"subject": BIDI, "method": "x", "objects": BIDI, "hint": BIDI}
    page = render_to_string(
        "django_dbtuning/toolbar/queries.html",
        {
            "tracked": True,
            "count": 3,
            "time_ms": 1.0,
            "n_plus_one": [row],
            "duplicates": [],
            "unused": [unused | {"locations": []}],
        },
    )
    assert_escaped(page)
    assert page.count(html.escape("\\u202e")) >= 6
