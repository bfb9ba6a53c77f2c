"""The table a pg_stat_statements text reads from, as the server names it: quoted names
unquoted, plain ones folded, never a word from a literal, a comment or a quoted name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from django_dbtuning.report.statements import _relation
from django_dbtuning.sqllex import mask

names = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=1,
    max_size=20,
)
words = st.from_regex(r"[A-Za-z_][A-Za-z0-9_$]{0,10}", fullmatch=True)


def quoted(name: str) -> str:
    return sql.Identifier(name).as_string(None)


@given(names, names, names)
def test_any_quoted_schema_and_table_are_read_back(schema, table, secret):
    text = (
        f"SELECT EXTRACT(YEAR FROM {quoted('t')}.{quoted('d')}), "
        f"'FROM {secret.replace(chr(39), '')}' /* FROM {secret.replace('*/', '')} */ "
        f"FROM {quoted(schema)}.{quoted(table)} WHERE {quoted('x FROM y')} = $1"
    )
    # A backslash in the literal may end it elsewhere on a server without
    # standard_conforming_strings: the masked text stops there, before the real FROM, and
    # the nested one in EXTRACT is not taken for it.
    assert _relation(text) == ((schema, table) if mask(text).complete else None)


@given(words, words)
def test_plain_names_are_folded_to_lower_case(schema, table):
    assert _relation(f"select 1 from {schema}.{table}") == (
        schema.lower(),
        table.lower(),
    )


@pytest.mark.parametrize(
    ("text", "relation"),
    [
        ("SELECT * FROM (SELECT id FROM inner_t) s", (None, "inner_t")),
        ("SELECT 'FROM secret'", None),
        ("SELECT 1 -- FROM secret", None),
        ('SELECT "a FROM b"', None),
        ("SELECT * FROM ÉtÉ.Ünï", ("ÉtÉ", "Ünï")),  # only ASCII letters are folded
        ('SELECT * FROM"T"', (None, "T")),
        # A U&"…" name is not decoded: no label rather than the "u" before its quote.
        ('SELECT * FROM U&"d\\0061t"', None),
        ('SELECT * FROM s.U&"x y"', None),
        ('SELECT ")(" FROM (SELECT 1 FROM "In ( t") s', (None, "In ( t")),
        # Read up to an ambiguous literal only: the outermost FROM is past it.
        ("SELECT EXTRACT(YEAR FROM d), 'a\\' FROM t", None),
        ("SELECT x FROM t WHERE y = 'a\\'", (None, "t")),
    ],
)
def test_what_is_no_relation_and_where_it_is_nested(text, relation):
    assert _relation(text) == relation
