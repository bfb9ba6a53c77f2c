"""The dashboard's fixtures: hostile objects planted on the embedded PostgreSQL (a
duplicate index, a statement with a literal), and users of every kind."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from psycopg import sql

from tests.report.test_report import admin_connection, dbreport

SCHEMA = 'Dash "S"; --'
TABLE = "<script>alert('t')</script>"
INDEX = '<b>idx "i"</b>'
DUPLICATE = "<i>dup</i>"
COLUMN = "dash_marker_col"
SECRET = "literal-secret-4711"
PASSWORD = "pw-planted-0815"
PAGES = ("", "indexes/", "tables/", "statements/", "history/")


def insert(conn, rows: int) -> None:
    conn.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, repeat('n', 200) FROM generate_series(1, %s) g"
        ).format(sql.Identifier(SCHEMA, TABLE)),
        [rows],
    )
    conn.execute("SELECT pg_stat_force_next_flush()")


@pytest.fixture(scope="module")
def planted(django_db_setup, django_db_blocker):
    """A hostile schema and table with two identical indexes (a duplicate_index finding)
    and a statement that carried a literal, in pg_stat_statements."""
    with django_db_blocker.unblock(), admin_connection() as conn:
        schema, table = sql.Identifier(SCHEMA), sql.Identifier(SCHEMA, TABLE)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        conn.execute(
            sql.SQL("CREATE TABLE {} ({} int, note text)").format(
                table, sql.Identifier(COLUMN)
            )
        )
        for name in (INDEX, DUPLICATE):
            conn.execute(
                sql.SQL("CREATE INDEX {} ON {} ({})").format(
                    sql.Identifier(name), table, sql.Identifier(COLUMN)
                )
            )
        insert(conn, 100)
        # Alone in pg_stat_statements: after the rest of the suite, the planted statement
        # would not be among the top ones the page lists.
        conn.execute("SELECT pg_stat_statements_reset()")
        for _ in range(3):
            conn.execute(
                sql.SQL("SELECT {} FROM {} WHERE note = '" + SECRET + "'").format(
                    sql.Identifier(COLUMN), table
                )
            )
        yield conn
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))


def _user(name: str, *, staff: bool, permitted: bool) -> User:
    user = User.objects.create_user(name, password="user-pw-not-shown", is_staff=staff)
    if permitted:
        user.user_permissions.add(
            Permission.objects.get(
                content_type__app_label="django_dbtuning", codename="view_report"
            )
        )
    return user


@pytest.fixture
def staff(db):
    return _user("staff", staff=True, permitted=True)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def users(db):
    return {
        "not staff": _user("member", staff=False, permitted=True),
        "no permission": _user("clerk", staff=True, permitted=False),
    }


@pytest.fixture
def snapshots(planted, db):
    """Two saved snapshots with 2,000 rows of growth between them."""
    for rows in (0, 2000):
        if rows:
            insert(planted, rows)
        out, err, code = dbreport("--save", "--section", "tables,indexes,statements")
        assert code == 0, err
