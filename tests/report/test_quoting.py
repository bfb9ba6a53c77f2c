"""Property tests for the pieces that make hints safe to paste and statement texts safe
to show: identifier and literal quoting (read back by PostgreSQL itself and by pglast),
migration code (read back by Python's own parser), text wrapping, and the statement-kind
reader (against libpg_query's scanner)."""

from __future__ import annotations

import ast

import pglast
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pglast.parser import ParseError, scan
from psycopg import sql

from django_dbtuning.report.djangomap import ModelMap
from django_dbtuning.report.quoting import column_list, ident, literal, run_sql
from django_dbtuning.report.sqltext import leading_keyword, shows_values
from django_dbtuning.report.wrapping import wrap
from tests.report.test_report import admin_connection

# Names as the catalogs hold them: any character but NUL, 1 to 63 bytes (NAMEDATALEN).
names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
    min_size=1,
    max_size=63,
).filter(lambda name: len(name.encode()) <= 63)
values = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"))
HOSTILE = [
    "Chk Val; DROP TABLE x",
    'a"b',
    '"',
    "ParentId",
    "Ünï",
    " ",
    "x'y",
    "\\",
    "--",
]

DB = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def conn(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), admin_connection() as connection:
        yield connection


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_read_back(conn, name):
    quoted = ident("Other Schema", name)
    assert conn.execute("SELECT parse_ident(%s)", [quoted]).fetchone()[0] == [
        "Other Schema",
        name,
    ]


@DB
@given(schema=names, name=names)
def test_identifiers_read_back_as_the_same_name(conn, schema, name):
    quoted = ident(schema, name)
    # PostgreSQL's own reading of a qualified name.
    assert conn.execute("SELECT parse_ident(%s)", [quoted]).fetchone()[0] == [
        schema,
        name,
    ]
    # The same text psycopg.sql.Identifier writes for this connection.
    assert quoted == sql.Identifier(schema, name).as_string(conn)
    # And the parser's: a relation of exactly that schema and name.
    (statement,) = pglast.parse_sql(f"SELECT 1 FROM {quoted}")
    relation = statement.stmt.fromClause[0]
    assert (relation.schemaname, relation.relname) == (schema, name)


@settings(max_examples=100, deadline=None)
@given(columns=st.lists(names, min_size=1, max_size=3))
def test_column_lists_parse_to_the_same_columns(columns):
    (statement,) = pglast.parse_sql(
        f"CREATE INDEX ON {ident('s', 't')} {column_list(columns)}"
    )
    assert [e.name for e in statement.stmt.indexParams] == columns


@DB
@given(value=values)
def test_literals_read_back_as_the_same_text(conn, value):
    for conforming in ("on", "off"):
        conn.execute(f"SET standard_conforming_strings = {conforming}")
        assert conn.execute(f"SELECT {literal(value)}").fetchone()[0] == value
    conn.execute("RESET standard_conforming_strings")


@settings(max_examples=200, deadline=None)
@given(schema=names, index=names, table=names)
def test_drop_migration_compiles_to_exactly_its_statements(schema, index, table):
    definition = (
        f"CREATE INDEX {ident(index)} ON {ident(schema, table)} USING btree "
        f"{column_list(['c'])}"
    )
    hint = MODELS.drop_hint(
        schema=schema,
        table=f"not_a_model_{table}",
        index=index,
        columns=["c"],
        definition=definition,
    )
    assert hint.migration is not None and hint.migration in hint.text
    call = ast.parse(hint.migration, mode="eval").body
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == "migrations.RunSQL"
    forward = ast.literal_eval(call.args[0])
    (reverse,) = [ast.literal_eval(k.value) for k in call.keywords]
    assert [forward] == list(hint.sql)
    (drop,) = pglast.parse_sql(forward)
    assert drop.stmt.concurrent and drop.stmt.missing_ok
    assert [[s.sval for s in name] for name in drop.stmt.objects] == [[schema, index]]
    (create,) = pglast.parse_sql(reverse)
    assert create.stmt.concurrent and create.stmt.if_not_exists
    assert create.stmt.idxname == index
    assert (create.stmt.relation.schemaname, create.stmt.relation.relname) == (
        schema,
        table,
    )


@settings(max_examples=100, deadline=None)
@given(sql_text=values, reverse=st.none() | values)
def test_run_sql_is_python_that_holds_the_exact_sql(sql_text, reverse):
    call = ast.parse(run_sql(sql_text, reverse), mode="eval").body
    assert isinstance(call, ast.Call)
    assert ast.literal_eval(call.args[0]) == sql_text
    assert [ast.literal_eval(k.value) for k in call.keywords] == (
        [] if reverse is None else [reverse]
    )


MODELS = ModelMap()

# -- text wrapping never breaks the SQL a hint quotes ----------------------------------------

words = st.text(alphabet="abcdefghij ,.;()", min_size=0, max_size=40)


@settings(max_examples=100, deadline=None)
@given(before=words, after=words, schema=names, name=names)
def test_wrapping_keeps_every_statement_whole(before, after, schema, name):
    statement = f"DROP INDEX CONCURRENTLY {ident(schema, name)}"
    if any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in statement):
        return  # shown escaped in text (JSON holds it exactly)
    wrapped = wrap(
        f"{before} {statement}; {after}", "    fix: ", "         ", keep=[statement]
    )
    assert statement in wrapped


# -- statement kinds, read as PostgreSQL's scanner reads them --------------------------------


def reference_keyword(text: str) -> str | None:
    """The first word libpg_query's scanner sees after comments and parentheses."""
    try:
        tokens = scan(text)
    except ParseError as exc:
        # Scanning stops where the text breaks (an unterminated comment or string):
        # what comes before it is what PostgreSQL would have read.
        stop = exc.args[1]
        return reference_keyword(text[:stop]) if stop < len(text) else None
    for token in tokens:
        if token.name in ("C_COMMENT", "SQL_COMMENT", "ASCII_40"):
            continue
        word = text[token.start : token.end + 1]
        if token.name == "IDENT" or token.kind != "NO_KEYWORD":
            return word.lower() if not word.startswith('"') else None
        return None
    return None


comment_text = st.text(alphabet="ab */-\n\r(", max_size=12)


@st.composite
def block_comments(draw: st.DrawFn, depth: int = 0) -> str:
    parts = [draw(comment_text)]
    if depth < 2 and draw(st.booleans()):
        parts.append(draw(block_comments(depth + 1)))
        parts.append(draw(comment_text))
    return "/*" + "".join(parts) + "*/"


prefix_part = st.one_of(
    st.sampled_from([" ", "\t", "\n", "\r", "\f", "\v", "(", "\u00a0"]),
    st.builds(
        lambda text, end: f"--{text}{end}",
        st.text(alphabet="ab */-(", max_size=8),
        st.sampled_from(["\n", "\r"]),
    ),
    block_comments(),
)
first_words = st.sampled_from(
    [
        "select", "SELECT", "Insert", "with", "values", "table", "create", "ALTER",
        "do", "copy", "set", "selectx", "_x", "é", '"select"', "1", "$1", "'s'", "",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.lists(prefix_part, max_size=5),
    word=first_words,
    rest=st.sampled_from(["", " 1", "(1)", " ROLE r PASSWORD 'pw'", "$$x$$", "x"]),
)
def test_leading_keyword_agrees_with_libpg_query(prefix, word, rest):
    text = "".join(prefix) + word + rest
    assert leading_keyword(text) == reference_keyword(text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("SELECT 'a'", True),
        ("  /* c */ (WITH x AS (SELECT 1) SELECT * FROM x)", True),
        ("-- note\nUPDATE t SET a = 'v'", True),
        ("CREATE ROLE r PASSWORD 'pw'", False),
        ("/* /* */ select */ ALTER ROLE r PASSWORD 'pw'", False),
        ("DO $$BEGIN PERFORM 'pw'; END$$", False),
        ("ALTER SUBSCRIPTION s CONNECTION 'password=pw'", False),
        ("/* unterminated SELECT 'pw'", False),
        ("", False),
    ],
)
def test_only_data_queries_may_show_values(text, shown):
    assert shows_values(text) is shown
