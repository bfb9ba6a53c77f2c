"""Adversarial pass over the staff dashboard: hostile table, index and column names and
statement texts, hostile ``?database=`` values and alias names, methods other than GET,
and an alias that cannot be reached: no markup injected, no password or literal on any
page, every response ``no-store``."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.db import connections
from psycopg import sql

from tests.dashboard.conftest import PAGES
from tests.report.test_report import admin_connection, extra_alias

pytestmark = [pytest.mark.urls("tests.dashboard.urls"), pytest.mark.django_db]

SCHEMA = "<svg onload=alert('s')>"
TABLE = "\"><img src=x onerror=alert('t')>"
COLUMN = "</title><script>alert('c')</script>"
INDEX = "<iframe src=javascript:alert('i')>"
LITERAL = "attack-literal-'9931'-</script><script>alert('l')</script>"
PASSWORD = "attack-pw-7731"
# Raw markup a page must never contain (escaped, the same text is fine).
RAW = re.compile(r"<(svg onload|img src=x|script>alert|iframe src=javascript)")


@pytest.fixture(scope="module")
def hostile(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), admin_connection() as conn:
        schema, table = sql.Identifier(SCHEMA), sql.Identifier(SCHEMA, TABLE)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        conn.execute(
            sql.SQL("CREATE TABLE {} ({} int, note text)").format(
                table, sql.Identifier(COLUMN)
            )
        )
        # Two identical indexes: a duplicate_index finding naming both.
        for name in (INDEX, INDEX + "2"):
            conn.execute(
                sql.SQL("CREATE INDEX {} ON {} ({})").format(
                    sql.Identifier(name), table, sql.Identifier(COLUMN)
                )
            )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT g, 'n' FROM generate_series(1, 500) g"
            ).format(table)
        )
        conn.execute("SELECT pg_stat_statements_reset()")
        for _ in range(5):
            conn.execute(
                sql.SQL("SELECT {} FROM {} WHERE note = {}").format(
                    sql.Identifier(COLUMN), table, sql.Literal(LITERAL)
                )
            )
        conn.execute("ANALYZE")
        conn.execute("SELECT pg_stat_force_next_flush()")
        yield conn
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))


@pytest.fixture
def root(client, db):
    client.force_login(User.objects.create_superuser("attack", password="x-not-shown"))
    return client


def test_hostile_names_and_statement_texts_are_text_on_every_page(hostile, root):
    for path in PAGES:
        response = root.get(f"/dbtuning/{path}")
        assert response.status_code == 200, path
        page = response.content.decode()
        assert not RAW.search(page), (path, RAW.search(page))
        assert "attack-literal" not in page, path
    # The hostile objects are on the pages, escaped.
    indexes = root.get("/dbtuning/indexes/").content.decode()
    assert "&lt;iframe src=javascript:alert" in indexes
    statements = root.get("/dbtuning/statements/").content.decode()
    assert "&lt;/title&gt;&lt;script&gt;alert(" in statements


@pytest.mark.parametrize(
    "value",
    [
        "",
        " default",
        "default\x00",
        "<script>alert(1)</script>",
        "default%00",
        "ÿ" * 5000,
        "../default",
    ],
)
def test_wrong_database_values_are_400_and_never_echoed(root, value):
    response = root.get("/dbtuning/", {"database": value})
    assert response.status_code == 400
    assert "no-store" in response["Cache-Control"]
    if value:
        assert value.encode() not in response.content


def test_the_last_of_repeated_database_values_is_validated(root):
    response = root.get("/dbtuning/?database=default&database=%3Cscript%3E")
    assert response.status_code == 400


@pytest.mark.parametrize("path", PAGES)
def test_head_and_options(root, path):
    head = root.head(f"/dbtuning/{path}")
    assert head.status_code == 200
    assert head.content == b""
    assert "no-store" in head["Cache-Control"]
    options = root.options(f"/dbtuning/{path}")
    assert options.status_code == 405
    assert "no-store" in options["Cache-Control"]
    assert sorted(options["Allow"].split(", ")) == ["GET", "HEAD"]


def test_anonymous_options_and_post_reveal_nothing(client):
    for method in ("options", "post", "head"):
        response = getattr(client, method)("/dbtuning/")
        assert response.status_code in (302, 405), method
        assert "no-store" in response["Cache-Control"]
        assert b"Database" not in response.content


def test_a_hostile_alias_name_is_escaped(root):
    name = "<script>alert('alias')</script>"
    with extra_alias(name):
        page = root.get("/dbtuning/").content.decode()
        assert not RAW.search(page)
        chosen = root.get("/dbtuning/", {"database": name})
        assert chosen.status_code == 200
        assert not RAW.search(chosen.content.decode())


@pytest.mark.parametrize("path", PAGES)
def test_an_unreachable_alias_shows_no_password_on_any_page(root, path, monkeypatch):
    broken = {
        **connections.settings["default"],
        "HOST": "127.0.0.1",
        "PORT": 1,
        "PASSWORD": PASSWORD,
    }
    with extra_alias("unreachable", **broken):
        response = root.get(f"/dbtuning/{path}", {"database": "unreachable"})
        assert response.status_code == 200
        page = response.content.decode()
        assert PASSWORD not in page
        assert "no-store" in response["Cache-Control"]
        if path != "history/":
            assert "unreachable" in page.lower()
