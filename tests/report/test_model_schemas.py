"""Findings name the model whose table they are about, schema and search_path included,
and a duplicate index made by RunSQL is dropped as SQL, never through the wrong field.

tests/reportapp declares ``ArchivedOrder`` in another schema the way Django users do
(``db_table = 'schema"."table'``), every name hostile; these tests create its table, a
table of the same name in ``public``, and a copy of ``reportapp_volume`` in a schema a
second alias puts first on its search_path.
"""

from __future__ import annotations

import ast
from types import SimpleNamespace

import pytest
from django.db import connections
from psycopg import sql

from django_dbtuning.report import run_report
from django_dbtuning.report.djangomap import ModelMap, split_table
from django_dbtuning.report.findings import DatabaseReport, thresholds
from django_dbtuning.report.probe import Probe, connect
from django_dbtuning.report.quoting import ident, qualified
from django_dbtuning.report.statements import _label
from django_dbtuning.report.timeouts import configured
from tests.report.test_report import admin_connection, extra_alias
from tests.reportapp.models import (
    ARCHIVE_SCHEMA,
    ARCHIVE_TABLE,
    LONG_TABLE,
    ArchivedOrder,
    LongNamedEntry,
    Volume,
)

pytestmark = pytest.mark.django_db

SHADOW = "Shadow"
DUPLICATE = 'Dup "P"; x'
ARCHIVE_DUPLICATE = 'idx "dup"; Ünï'


def django_index_name(model, column: str) -> str:
    """The name Django's schema editor gives ``column``'s db_index index."""
    editor = connections["default"].schema_editor()  # only its naming rule, no DDL
    return editor._create_index_name(model._meta.db_table, [column], suffix="")


def q(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


@pytest.fixture
def schemas(django_db_blocker):
    """ArchivedOrder's table (its field's index under Django's name, and a RunSQL twin),
    a table of its name in public, and reportapp_volume copied into "Shadow" (with an
    index twin)."""
    statements = [
        sql.SQL("CREATE SCHEMA {}").format(q(ARCHIVE_SCHEMA)),
        sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, code int)").format(
            q(ARCHIVE_SCHEMA, ARCHIVE_TABLE)
        ),
        sql.SQL("CREATE INDEX {} ON {} (code)").format(
            q(django_index_name(ArchivedOrder, "code")),
            q(ARCHIVE_SCHEMA, ARCHIVE_TABLE),
        ),
        sql.SQL("CREATE INDEX {} ON {} (code)").format(
            q(ARCHIVE_DUPLICATE), q(ARCHIVE_SCHEMA, ARCHIVE_TABLE)
        ),
        sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, code int)").format(
            q("public", ARCHIVE_TABLE)
        ),
        sql.SQL("CREATE INDEX ON {} (code)").format(q("public", ARCHIVE_TABLE)),
        sql.SQL("CREATE INDEX ON {} (code)").format(q("public", ARCHIVE_TABLE)),
        sql.SQL("CREATE SCHEMA {}").format(q(SHADOW)),
        sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, pages int)").format(
            q(SHADOW, "reportapp_volume")
        ),
        sql.SQL("CREATE INDEX shadow_pages_a ON {} (pages)").format(
            q(SHADOW, "reportapp_volume")
        ),
        sql.SQL("CREATE INDEX shadow_pages_b ON {} (pages)").format(
            q(SHADOW, "reportapp_volume")
        ),
    ]
    with django_db_blocker.unblock(), admin_connection() as conn:
        drop(conn)
        for statement in statements:
            conn.execute(statement)
        yield conn
        drop(conn)


def drop(conn) -> None:
    for schema in (ARCHIVE_SCHEMA, SHADOW):
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(q(schema)))
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(q("public", ARCHIVE_TABLE)))
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(q("public", DUPLICATE)))


def duplicates(alias: str = "default") -> list:
    report = run_report([alias], sections=["indexes"])
    return [f for f in report.findings if f.code == "duplicate_index"]


def on(found: list, schema: str, table: str) -> list:
    return [f for f in found if f.title.endswith(f" on {qualified(schema, table)}")]


@pytest.mark.parametrize(
    ("db_table", "expected"),
    [
        ("shop_order", (None, "shop_order")),
        ('archive"."order', ("archive", "order")),
        ('"archive"."order"', ("archive", "order")),
        ("a.b", (None, "a.b")),
        ("Shop Order; x", (None, "Shop Order; x")),
        ('x""y', (None, 'x"y')),
        ('"', (None, '"')),
        ('"Ünï ""S"""."c; d"', ('Ünï "S"', "c; d")),
        (ArchivedOrder._meta.db_table, (ARCHIVE_SCHEMA, ARCHIVE_TABLE)),
    ],
)
def test_db_table_is_read_as_the_sql_django_makes_of_it(db_table, expected):
    assert split_table(db_table) == expected


def test_tables_map_by_schema_and_name(schemas):
    found = duplicates()
    (archived,) = on(found, ARCHIVE_SCHEMA, ARCHIVE_TABLE)
    assert archived.model == "reportapp.ArchivedOrder"
    # Tables of a model's name in other schemas are no model's.
    (same_name,) = on(found, "public", ARCHIVE_TABLE)
    assert same_name.model is None
    (shadow,) = on(found, SHADOW, "reportapp_volume")
    assert shadow.model is None
    assert "db_index" not in shadow.hint
    assert {f.model for f in on(found, "public", "reportapp_volume")} == {
        "reportapp.Volume"
    }


def test_an_unqualified_table_is_where_the_search_path_finds_it(schemas):
    options = {
        **connections.settings["default"].get("OPTIONS", {}),
        "options": f'-c search_path="{SHADOW}",public',
    }
    with extra_alias("shadow", OPTIONS=options):
        found = duplicates("shadow")
    # Django's queries on this alias read "Shadow".reportapp_volume: the model's.
    (shadow,) = on(found, SHADOW, "reportapp_volume")
    assert shadow.model == "reportapp.Volume"
    assert {f.model for f in on(found, "public", "reportapp_volume")} == {None}
    # A qualified db_table does not depend on the search_path.
    (archived,) = on(found, ARCHIVE_SCHEMA, ARCHIVE_TABLE)
    assert archived.model == "reportapp.ArchivedOrder"


def test_a_runsql_twin_of_a_field_index_is_dropped_as_sql(schemas):
    (archived,) = on(duplicates(), ARCHIVE_SCHEMA, ARCHIVE_TABLE)
    assert archived.object == qualified(ARCHIVE_SCHEMA, ARCHIVE_DUPLICATE)
    drop = (
        f"DROP INDEX CONCURRENTLY IF EXISTS {ident(ARCHIVE_SCHEMA, ARCHIVE_DUPLICATE)}"
    )
    assert archived.data["sql"] == [drop]
    assert drop in archived.hint
    assert "declared by no model" in archived.hint
    assert "by reportapp.ArchivedOrder.code: keep that one" in archived.hint
    assert "db_index" not in archived.hint
    # The migration snippet is Python whose string is exactly the SQL.
    call = ast.parse(archived.data["migration"]).body[0].value
    assert ast.literal_eval(call.args[0]) == drop


@pytest.mark.parametrize(
    ("table", "column", "field"),
    [
        ("reportapp_volume", "pages", "reportapp.Volume.pages"),
        ("reportapp_review", "volume_id", "reportapp.Review.volume"),  # a ForeignKey
    ],
)
def test_a_runsql_twin_never_blames_the_field(schemas, table, column, field):
    schemas.execute(
        sql.SQL("CREATE INDEX {} ON {} ({})").format(q(DUPLICATE), q(table), q(column))
    )
    found = [f for f in duplicates() if f.object == qualified("public", DUPLICATE)]
    (finding,) = found
    # Before: "set db_index=False on reportapp.Volume.pages", which drops the other one.
    assert "db_index=False" not in finding.hint
    assert f"by {field}: keep that one" in finding.hint
    assert finding.data["sql"] == [
        f"DROP INDEX CONCURRENTLY IF EXISTS {ident('public', DUPLICATE)}"
    ]


def test_an_unreadable_search_path_leaves_models_in_public(django_db_blocker):
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
        conn.close()
        bound = probe.models.resolved(probe)
    assert bound.label("reportapp_volume", "public") == "reportapp.Volume"
    assert bound.label("reportapp_volume", SHADOW) is None
    assert bound.label(ARCHIVE_TABLE, ARCHIVE_SCHEMA) == "reportapp.ArchivedOrder"
    assert any("search_path could not be read" in n for n in probe.result.notes)
    (check,) = probe.result.checks
    assert (check.name, check.status) == ("model_tables", "error")


def test_of_identical_twins_the_declared_one_stays_whichever_is_older(schemas):
    """The RunSQL index came first and the field's db_index later: still the RunSQL one
    is the duplicate to drop (as SQL), never the field's (which a model change drops)."""
    declared = django_index_name(Volume, "pages")
    for statement in (
        sql.SQL("DROP INDEX {}").format(q(declared)),
        sql.SQL("CREATE INDEX {} ON reportapp_volume (pages)").format(q(DUPLICATE)),
        sql.SQL("CREATE INDEX {} ON reportapp_volume (pages)").format(q(declared)),
    ):
        schemas.execute(statement)
    found = [f for f in duplicates() if f.title.endswith(" on reportapp_volume")]
    assert qualified("public", DUPLICATE) in {f.object for f in found}
    assert declared not in {f.object for f in found}
    (finding,) = [f for f in found if f.object == qualified("public", DUPLICATE)]
    assert finding.data["covered_by"] == declared
    assert "db_index=False" not in finding.hint


@pytest.mark.parametrize(
    ("query", "label"),
    [
        ('SELECT "x" FROM "reportapp_volume" WHERE "id" = $1', "reportapp.Volume"),
        ('SELECT "x" FROM "public"."reportapp_volume"', "reportapp.Volume"),
        # Before: the schema was dropped and the statement labelled reportapp.Volume.
        (f'SELECT "x" FROM "{SHADOW}"."reportapp_volume"', None),
        ("SELECT 1", None),
        # Unquoted names are folded as the server folds them; before, no label.
        ("select x from Public.ReportApp_Volume", "reportapp.Volume"),
        # Before: the FROM inside EXTRACT named table "d" in schema "t".
        (
            'SELECT EXTRACT(YEAR FROM "t"."d") FROM "reportapp_volume"',
            "reportapp.Volume",
        ),
        ('SELECT "a FROM reportapp_volume" FROM "elsewhere"', None),
    ],
)
def test_a_statement_is_labelled_by_its_schema_qualified_table(query, label):
    probe = SimpleNamespace(models=ModelMap())
    assert _label(probe, query) == label


def test_a_db_table_longer_than_63_bytes_maps_to_the_name_the_server_keeps(
    django_db_blocker,
):
    """The server cuts the name at 63 bytes on a character boundary ("é" straddles it);
    before, the model's findings came without a model."""
    with django_db_blocker.unblock(), admin_connection() as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, code int)").format(
                q(LONG_TABLE)
            )
        )
        try:
            (stored,) = conn.execute(
                "SELECT relname FROM pg_class"
                " WHERE relkind = 'r' AND relname LIKE 'reportapp\\_xxx%'"
            ).fetchone()
            conn.execute(sql.SQL("CREATE INDEX long_a ON {} (code)").format(q(stored)))
            conn.execute(sql.SQL("CREATE INDEX long_b ON {} (code)").format(q(stored)))
            found = duplicates()
        finally:
            conn.execute(sql.SQL("DROP TABLE {}").format(q(stored)))
    assert stored == LONG_TABLE.encode()[:62].decode() and len(stored.encode()) == 62
    assert split_table(LongNamedEntry._meta.db_table) == (None, stored)
    (finding,) = on(found, "public", stored)
    assert finding.model == "reportapp.LongNamedEntry"
