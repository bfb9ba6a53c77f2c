"""Which statements share a shape: every literal change groups, every other change splits.

A raw-SQL loop whose values change must stay one shape, or its N+1 is missed (or reported as
several smaller ones): that holds when a value turns from a number into a string, TRUE,
FALSE or NULL, and when a list of values (IN, VALUES, ARRAY[…], ROW(…), (…) rows, row-value
IN) grows or shrinks. The other way round, statements that differ in a keyword, a name, an
operator or their structure (IS NULL vs IS NOT NULL, = vs <>) must never be merged.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import NumericRange
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtuning.queries import QueryReport, track_queries
from django_dbtuning.queries.fingerprint import fingerprint, sql_info
from tests.queries.test_sql_lexer import (
    bits,
    continued,
    dollar,
    escaped,
    hex_bits,
    hostile_text,
    national,
    numbers,
    standard,
    tagged,
    unicode_escaped,
    unicode_uescape,
)

# --- regression: one case per literal form that used to split a loop ----------------------


@pytest.mark.parametrize(
    ("variants", "shape"),
    [
        (["SELECT 1 AS id, TRUE AS f", "SELECT 2 AS id, false AS f", "SELECT 3 AS id, 0 AS f"],
         "SELECT ? AS id, ? AS f"),
        (["SELECT * FROM t WHERE flag = TRUE", "SELECT * FROM t WHERE flag = FALSE"],
         "SELECT * FROM t WHERE flag = ?"),
        (["INSERT INTO t (a, b) VALUES (1, TRUE)", "INSERT INTO t (a, b) VALUES (2, 'x'), (3, NULL)"],
         "INSERT INTO t (a, b) VALUES (...)"),
        (["UPDATE t SET a = NULL WHERE id = 1", "UPDATE t SET a = 'x' WHERE id = 2"],
         "UPDATE t SET a = ? WHERE id = ?"),
        (["SELECT NULL AS v", "SELECT 'x' AS v"], "SELECT ? AS v"),
        # "= NULL" is legal and always null; it is still a value position.
        (["SELECT * FROM t WHERE a = NULL", "SELECT * FROM t WHERE a = 7"],
         "SELECT * FROM t WHERE a = ?"),
        (["SELECT * FROM t WHERE a = ANY(ARRAY[1, 2])", "SELECT * FROM t WHERE a = ANY(ARRAY[1, 2, 3])",
          "SELECT * FROM t WHERE a = ANY(ARRAY['x', NULL])", "SELECT * FROM t WHERE a = ANY(ARRAY[])"],
         "SELECT * FROM t WHERE a = ANY(ARRAY[...])"),
        (["SELECT ARRAY[ARRAY[1, 2], ARRAY[3, 4]]", "SELECT ARRAY[[1], [2], [3]]", "SELECT ARRAY[1]"],
         "SELECT ARRAY[...]"),
        (["SELECT * FROM t WHERE r = ROW(1, 2)", "SELECT * FROM t WHERE r = ROW(1, 2, 3)",
          "SELECT * FROM t WHERE r = ROW()"],
         "SELECT * FROM t WHERE r = ROW(...)"),
        (["SELECT * FROM t WHERE (a, b) = (1, 2)", "SELECT * FROM t WHERE (a, b) = ('x', NULL)"],
         "SELECT * FROM t WHERE (a, b) = (...)"),
        (["SELECT * FROM t WHERE (a, b) IN ((1, 2), (3, 4))", "SELECT * FROM t WHERE (a, b) IN ((1, 2))",
          "SELECT * FROM t WHERE (a, b) IN (ROW(1, 2), (TRUE, 'x'))"],
         "SELECT * FROM t WHERE (a, b) IN (...)"),
        (["SELECT * FROM t WHERE a IN (+1)", "SELECT * FROM t WHERE a IN (1, 2)"],
         "SELECT * FROM t WHERE a IN (...)"),
        (["SELECT * FROM t WHERE a = +1", "SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE a = - 1",
          "SELECT * FROM t WHERE a = -1"],
         "SELECT * FROM t WHERE a = ?"),
        (["SELECT * FROM t ORDER BY a LIMIT ALL", "SELECT * FROM t ORDER BY a LIMIT 10",
          "SELECT * FROM t ORDER BY a LIMIT NULL"],
         "SELECT * FROM t ORDER BY a LIMIT ?"),
        (["INSERT INTO t (a) VALUES (ARRAY[1], ROW(1))", "INSERT INTO t (a) VALUES (ARRAY[1, 2], ROW()), (ARRAY[], ROW(3))"],
         "INSERT INTO t (a) VALUES (...)"),
        # psycopg placeholders in the same positions: Django's ArrayField lookups send these.
        (['SELECT * FROM "i" WHERE "i"."tags" @> (ARRAY[%s, %s])::varchar(10)[]',
          'SELECT * FROM "i" WHERE "i"."tags" @> (ARRAY[%s])::varchar(10)[]'],
         'SELECT * FROM "i" WHERE "i"."tags" @> (ARRAY[...])::varchar(?)[]'),
        (["SELECT * FROM t WHERE a = ANY(ARRAY[%(a)s, %(b)s]) AND r = ROW(%s, %s)",
          "SELECT * FROM t WHERE a = ANY(ARRAY[%(a)s]) AND r = ROW(%s)"],
         "SELECT * FROM t WHERE a = ANY(ARRAY[...]) AND r = ROW(...)"),
        (["SELECT * FROM t WHERE (a, b) IN ((%s, %s), (%s, %s))", "SELECT * FROM t WHERE (a, b) IN ((%s, %s))"],
         "SELECT * FROM t WHERE (a, b) IN (...)"),
        (["SELECT * FROM t WHERE a IN (1::numeric(10, 2), 'x'::timestamp with time zone)",
          "SELECT * FROM t WHERE a IN ($1::int[], %s::\"char\", (2))"],
         "SELECT * FROM t WHERE a IN (...)"),
    ],
)  # fmt: skip
def test_a_literal_change_keeps_the_shape(variants: list[str], shape: str) -> None:
    assert {fingerprint(sql) for sql in variants} == {shape}
    assert len({sql_info(sql).shape for sql in variants}) == 1


@pytest.mark.parametrize(
    ("sql", "shape"),
    [
        ("SELECT * FROM t WHERE a IS NULL AND b IS NOT NULL AND c ISNULL AND d NOTNULL",
         "SELECT * FROM t WHERE a IS NULL AND b IS NOT NULL AND c ISNULL AND d NOTNULL"),
        ("SELECT * FROM t WHERE a IS DISTINCT FROM NULL OR b IS NOT DISTINCT FROM NULL",
         "SELECT * FROM t WHERE a IS DISTINCT FROM NULL OR b IS NOT DISTINCT FROM NULL"),
        ("SELECT * FROM t WHERE a IS TRUE AND b IS NOT FALSE AND NOT TRUE",
         "SELECT * FROM t WHERE a IS TRUE AND b IS NOT FALSE AND NOT TRUE"),
        ("CREATE TABLE t (a int NULL, b bool NOT NULL DEFAULT TRUE, c int REFERENCES u ON DELETE SET NULL)",
         "CREATE TABLE t (a int NULL, b bool NOT NULL DEFAULT ?, c int REFERENCES u ON DELETE SET NULL)"),
        ('SELECT 1 AS true, t.null, "null", a$null, %(null)s FROM t ORDER BY a NULLS FIRST',
         'SELECT ? AS true, t.null, "null", a$null, %(null)s FROM t ORDER BY a NULLS FIRST'),
        # Function arguments, type modifiers and subscripts are not lists of values.
        ("SELECT coalesce(a, 1, 2), f(1, 2), a[1], a[1:2], b::numeric(10, 2) FROM t",
         "SELECT coalesce(a, ?, ?), f(?, ?), a[?], a[?:?], b::numeric(?, ?) FROM t"),
        ("SELECT * FROM t WHERE a IN (SELECT 1) AND b = ANY(ARRAY[c, d]) AND (e) = (1)",
         "SELECT * FROM t WHERE a IN (SELECT ?) AND b = ANY(ARRAY[c, d]) AND (e) = (?)"),
    ],
)  # fmt: skip
def test_what_is_syntax_stays_in_the_shape(sql: str, shape: str) -> None:
    assert fingerprint(sql) == shape


@pytest.mark.parametrize(
    "pair",
    [
        ("SELECT * FROM t WHERE a IS NULL", "SELECT * FROM t WHERE a IS NOT NULL"),
        ("SELECT * FROM t WHERE a IS NULL", "SELECT * FROM t WHERE a = NULL"),
        ("SELECT * FROM t WHERE a IS TRUE", "SELECT * FROM t WHERE a = TRUE"),
        ("SELECT * FROM t WHERE a IS TRUE", "SELECT * FROM t WHERE a IS FALSE"),
        ("SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE a <> 1"),
        ("SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE b = 1"),
        ("SELECT * FROM t WHERE a IN (1, 2)", "SELECT * FROM t WHERE a NOT IN (1, 2)"),
        ("SELECT * FROM t WHERE a = ANY(ARRAY[1])", "SELECT * FROM t WHERE a = ALL(ARRAY[1])"),
        ("SELECT * FROM t WHERE a = ROW(1)", "SELECT * FROM t WHERE a = ARRAY[1]"),
        ("SELECT f(1)", "SELECT f(1, 2)"),
        ("SELECT * FROM t LIMIT ALL", "SELECT * FROM t"),
        ("ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES u ON DELETE SET NULL",
         "ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES u ON DELETE SET DEFAULT"),
    ],
)  # fmt: skip
def test_a_syntax_change_splits_the_shape(pair: tuple[str, str]) -> None:
    first, second = pair
    assert fingerprint(first) != fingerprint(second)


def test_limit_and_offset_tells_survive_the_folds() -> None:
    keyset = "SELECT * FROM t WHERE id > %s ORDER BY id LIMIT {}"
    assert sql_info(keyset.format("+50")).keyset_limit == 50
    assert sql_info(keyset.format("ALL")).keyset_limit is None
    assert sql_info(keyset.format("ALL") + " OFFSET +20").offset == 20
    assert sql_info(keyset.format("-1")).keyset_limit is None  # never read as 1
    assert sql_info(keyset.format("10").replace(">", "<>")).keyset_limit is None


# --- property: any literal for any literal, any list length --------------------------------

# Literal forms that stand alone (a typed literal, text 'x', is a name and a literal).
STRING_FORMS: list[Callable[[str], str]] = [
    standard, national, escaped, unicode_escaped, unicode_uescape, dollar, tagged, continued,
]  # fmt: skip


@st.composite
def literal(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["number", "string", "bits", "boolean", "null"]))
    if kind == "number":
        return draw(st.sampled_from(["", "-", "+", "- "])) + draw(numbers)
    if kind == "boolean":
        return draw(st.sampled_from(["TRUE", "FALSE", "true", "False"]))
    if kind == "null":
        return draw(st.sampled_from(["NULL", "null"]))
    # An even run of backslashes reads the same whether or not they escape.
    text = draw(hostile_text).replace("\\", "\\\\")
    if kind == "bits":
        return draw(st.sampled_from([bits, hex_bits]))(text)
    return draw(st.sampled_from(STRING_FORMS))(text)


CASTS = [
    "", "", "::int", "::text", "::varchar(10)", "::numeric(10, 2)",
    "::timestamp with time zone", "::int[]", '::"char"', "::pg_catalog.int4",
]  # fmt: skip


@st.composite
def element(draw: st.DrawFn) -> str:
    """A list item: a literal or a psycopg placeholder, with or without a cast."""
    value = draw(st.one_of(literal(), st.sampled_from(["%s", "%(name)s"])))
    return value + draw(st.sampled_from(CASTS))


def items(draw: st.DrawFn, minimum: int = 1) -> str:
    return ", ".join(draw(st.lists(element(), min_size=minimum, max_size=5)))


# A slot is filled on each side independently; the rest of a statement is its structure.
Slot = Callable[[st.DrawFn], str]
SLOTS: dict[str, Slot] = {
    "value": lambda draw: draw(literal()),
    "limit": lambda draw: draw(st.one_of(literal(), st.just("ALL"))),
    "in": lambda draw: "(" + items(draw) + ")",
    "array": lambda draw: "ARRAY[" + items(draw, 0) + "]",
    "row": lambda draw: "ROW(" + items(draw, 0) + ")",
    "pair": lambda draw: "(" + items(draw, 2) + ")",
    "rows": lambda draw: (
        "("
        + ", ".join(
            draw(st.sampled_from(["(", "ROW("])) + items(draw, 2) + ")"
            for _ in range(draw(st.integers(1, 4)))
        )
        + ")"
    ),
    "values": lambda draw: ", ".join(
        "(" + items(draw) + ")" for _ in range(draw(st.integers(1, 4)))
    ),
}

# Structure words that a negative example may swap for another of their class.
CLASSES = {
    "conj": ["AND", "OR"],
    "op": ["=", "<>", "<", ">=", "!=", "LIKE"],
    "col": ["a", "b", "price", '"x y"', '"t"."a"'],
    "table": ["t1", "t2", '"My Table"'],
    "nulltest": [
        "IS NULL", "IS NOT NULL", "IS TRUE", "IS NOT TRUE", "IS FALSE",
        "IS DISTINCT FROM NULL", "IS NOT DISTINCT FROM NULL",
    ],
    "in": ["IN", "NOT IN"],
    "quant": ["ANY", "ALL"],
    "dir": ["ASC", "DESC"],
    "func": ["coalesce", "greatest"],
    "args": [")", ", 0)", ", 0, 1)"],  # a function's arity is structure, not a list
}  # fmt: skip

Piece = tuple[str, str]  # ("text", s) | ("slot", name) | (class, word)


def word(draw: st.DrawFn, cls: str) -> Piece:
    return (cls, draw(st.sampled_from(CLASSES[cls])))


@st.composite
def condition(draw: st.DrawFn) -> list[Piece]:
    col, op = word(draw, "col"), word(draw, "op")
    shapes: list[list[Piece]] = [
        [col, op, ("slot", "value")],
        [col, word(draw, "in"), ("slot", "in")],
        [col, ("text", "="), word(draw, "quant"), ("text", "("), ("slot", "array"),
         ("text", ")")],
        [("text", "("), col, ("text", ","), word(draw, "col"), ("text", ")"),
         word(draw, "in"), ("slot", "rows")],
        [("text", "("), col, ("text", ","), word(draw, "col"), ("text", ") ="),
         ("slot", "pair")],
        [col, ("text", "BETWEEN"), ("slot", "value"), ("text", "AND"), ("slot", "value")],
        [col, word(draw, "nulltest")],
        [("text", "ROW("), col, ("text", ") ="), ("slot", "row")],
        [col, ("text", "@>"), ("slot", "array"), ("text", "::text[]")],
    ]  # fmt: skip
    return draw(st.sampled_from(shapes))


@st.composite
def conditions(draw: st.DrawFn) -> list[Piece]:
    out: list[Piece] = [("text", "WHERE")]
    for index in range(draw(st.integers(1, 3))):
        if index:
            out.append(word(draw, "conj"))
        out += draw(condition())
    return out


@st.composite
def select_item(draw: st.DrawFn) -> list[Piece]:
    col = word(draw, "col")
    shapes: list[list[Piece]] = [
        [("slot", "value"), ("text", "AS x")],
        [col],
        [("text", "CASE WHEN"), col, word(draw, "op"), ("slot", "value"),
         ("text", "THEN"), ("slot", "value"), ("text", "ELSE"), ("slot", "value"),
         ("text", "END")],
        [word(draw, "func"), ("text", "("), col, ("text", ","), ("slot", "value"),
         ("text", ")")],
        [word(draw, "func"), ("text", "("), ("slot", "value"), word(draw, "args")],
        [("slot", "array")],
        [("slot", "row")],
        [("slot", "pair"), ("text", "AS p")],
    ]  # fmt: skip
    return draw(st.sampled_from(shapes))


@st.composite
def structures(draw: st.DrawFn) -> list[Piece]:
    """A statement with literal slots, as a list of pieces."""
    kind = draw(st.sampled_from(["select", "update", "insert", "delete"]))
    table = word(draw, "table")
    if kind == "select":
        out: list[Piece] = [("text", "SELECT")]
        for index in range(draw(st.integers(1, 3))):
            if index:
                out.append(("text", ","))
            out += draw(select_item())
        out += [("text", "FROM"), table, *draw(conditions())]
        if draw(st.booleans()):
            out += [("text", "ORDER BY"), word(draw, "col"), word(draw, "dir")]
            out += [("text", "LIMIT"), ("slot", "limit"), ("text", "OFFSET")]
            out.append(("slot", "value"))
        return out
    if kind == "update":
        return [
            ("text", "UPDATE"), table, ("text", "SET"), word(draw, "col"), ("text", "="),
            ("slot", "value"), ("text", ","), word(draw, "col"), ("text", "="),
            ("slot", "value"), *draw(conditions()),
        ]  # fmt: skip
    if kind == "insert":
        return [
            ("text", "INSERT INTO"), table, ("text", "(a, b) VALUES"), ("slot", "values"),
            ("text", "RETURNING id"),
        ]  # fmt: skip
    return [("text", "DELETE FROM"), table, *draw(conditions())]


def render(draw: st.DrawFn, pieces: list[Piece]) -> str:
    return " ".join(
        SLOTS[text](draw) if kind == "slot" else text for kind, text in pieces
    )


@st.composite
def same_structure(draw: st.DrawFn) -> tuple[str, str]:
    pieces = draw(structures())
    return render(draw, pieces), render(draw, pieces)


@st.composite
def other_structure(draw: st.DrawFn) -> tuple[str, str]:
    """Two statements that differ in one keyword, name, operator, or a whole condition."""
    pieces = draw(structures())
    words = [i for i, (kind, _) in enumerate(pieces) if kind in CLASSES]
    conjunctions = [i for i, (kind, _) in enumerate(pieces) if kind == "conj"]
    drop = draw(st.booleans())
    if conjunctions and drop:
        changed = pieces[: conjunctions[-1]]  # the last condition dropped
    else:
        index = draw(st.sampled_from(words))
        cls, old = pieces[index]
        new = draw(st.sampled_from([w for w in CLASSES[cls] if w != old]))
        changed = [*pieces[:index], (cls, new), *pieces[index + 1 :]]
    return render(draw, pieces), render(draw, changed)


GROUPING = settings(
    max_examples=200, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@GROUPING
@given(same_structure())
def test_any_literal_for_any_literal_keeps_the_shape(pair: tuple[str, str]) -> None:
    first, second = pair
    assert fingerprint(first) == fingerprint(second), pair
    assert sql_info(first).shape is sql_info(second).shape
    assert "?…" not in fingerprint(first)  # the whole statement was read


@GROUPING
@given(other_structure())
def test_a_different_statement_keeps_a_different_shape(pair: tuple[str, str]) -> None:
    first, second = pair
    assert fingerprint(first) != fingerprint(second), pair


# --- the loops on PostgreSQL ---------------------------------------------------------------


def raw_loop(template: str, values: Callable[[int], dict[str, Any]]) -> QueryReport:
    """Eight executions of one raw statement from one line; the report."""
    with track_queries(threshold=4) as report, connection.cursor() as cursor:
        for i in range(8):
            cursor.execute(template.format(i=i, **values(i)))
    return report


def flag(i: int) -> dict[str, Any]:
    return {
        "flag": "TRUE" if i % 2 else "FALSE",
        "null": "NULL" if i % 2 else "'x'",
        "items": ", ".join(["1"] * (1 + i % 3)),
        # Most executions of one row: a loop of multi-item IN lists is a batch by design.
        "rows": ", ".join(["(1, 2)"] * (1 + (i % 4 == 3))),
        "limit": "ALL" if i % 2 else str(i),
        "signed": ("+", "-", "- ", "")[i % 4] + "1",
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "template",
    [
        "SELECT {i} AS id, {flag} AS f",
        "SELECT {i} AS id WHERE {flag} OR TRUE",
        "SELECT * FROM (VALUES ({i}, {flag})) v(a, b)",
        "SELECT {i} AS id, {null}::text AS v",
        "SELECT {i} AS id, ARRAY[{items}] AS a",
        "SELECT {i} AS id, ROW({items}) AS r",
        "SELECT {i} AS id WHERE (1, 2) IN ({rows})",
        "SELECT {i} AS id WHERE {signed} IN ({signed})",
        "SELECT {i} AS id ORDER BY 1 LIMIT {limit}",
    ],
)
def test_raw_sql_loops_are_one_n_plus_one_on_postgresql(template: str) -> None:
    report = raw_loop(template, flag)
    shapes = {q.fingerprint for q in report.queries}
    assert len(shapes) == 1, shapes
    assert report.n_plus_one, shapes


@pytest.mark.django_db
def test_array_field_lookups_of_any_length_are_one_n_plus_one() -> None:
    from tests.copyapp.models import Item

    with track_queries(threshold=4) as report:
        for i in range(8):
            list(Item.objects.filter(tags__overlap=["a"] * (1 + i % 3)))
    shapes = {q.fingerprint for q in report.queries}
    assert len(shapes) == 1, shapes
    assert "ARRAY[...]" in shapes.pop()
    assert report.n_plus_one


# --- bulk writes on PostgreSQL: never an N+1, whatever the column types -------------------

BULK_COLUMNS: dict[str, Callable[[int], Any]] = {
    "tags": lambda i: [f"t{i}"] * (i % 3),  # varchar(20)[]
    "scores": lambda i: list(range(i % 4)),  # integer[]
    "payload": lambda i: {"n": i, "xs": [i, None]},  # jsonb
    "span": lambda i: NumericRange(i, i + 5),  # int4range
    "amount": lambda i: Decimal(i) / 4,  # numeric(10, 2)
    "shape": lambda i: bytes([i % 256]) * 3,  # ST_GeomFromEWKB(%s)
}


def bulk_writes(
    columns: list[str], rows: int, batch_size: int
) -> tuple[QueryReport, list[str], list[str]]:
    """bulk_create then bulk_update of ``rows`` readings; the report and both fingerprints."""
    from tests.testapp.models import Reading

    def reading(i: int) -> Reading:
        return Reading(label=f"r{i}", **{c: BULK_COLUMNS[c](i) for c in columns})

    with track_queries() as report:
        created = Reading.objects.bulk_create(
            [reading(i) for i in range(rows)], batch_size=batch_size
        )
        for i, row in enumerate(created):
            for column in columns:
                setattr(row, column, BULK_COLUMNS[column](i + 1))
        Reading.objects.bulk_update(created, columns, batch_size=batch_size)
    inserts = [q.fingerprint for q in report.queries if q.sql.startswith("INSERT")]
    updates = [q.fingerprint for q in report.queries if q.sql.startswith("UPDATE")]
    assert len(updates) == -(-rows // batch_size)
    return report, inserts, updates


def assert_one_shape(inserts: list[str], updates: list[str]) -> None:
    assert len(set(updates)) == 1, set(updates)
    # Django's UNNEST strategy (columns of built-in types only) sends a last batch of one
    # row as plain VALUES: a different statement, run once, never part of a repeat.
    multi = {s for s in inserts if "UNNEST(" in s} or set(inserts)
    assert len(multi) == 1, set(inserts)


@pytest.mark.django_db
def test_bulk_create_of_an_array_model_in_batches_is_no_n_plus_one() -> None:
    report, inserts, updates = bulk_writes(["tags"], 50, 10)
    assert len(inserts) == 5
    assert_one_shape(inserts, updates)
    assert report.n_plus_one == []


@pytest.mark.django_db
def test_bulk_writes_of_every_column_kind_are_one_shape_each() -> None:
    report, inserts, updates = bulk_writes(sorted(BULK_COLUMNS), 47, 10)
    assert len(inserts) == 5
    assert_one_shape(inserts, updates)
    assert "ST_GeomFromEWKB(%s)" in inserts[0]
    assert report.n_plus_one == [] and report.duplicates == []


@pytest.mark.django_db
def test_a_loop_of_single_creates_is_still_an_n_plus_one_write() -> None:
    from tests.testapp.models import Reading

    with track_queries() as report:
        for i in range(8):
            Reading.objects.create(tags=[f"t{i}"], shape=b"x")
    assert [f.kind for f in report.n_plus_one] == ["n_plus_one_write"]


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    columns=st.lists(st.sampled_from(sorted(BULK_COLUMNS)), min_size=1, unique=True),
    rows=st.integers(2, 40),
    data=st.data(),
)
@pytest.mark.django_db
def test_bulk_writes_in_batches_are_one_shape_and_never_a_finding(
    columns: list[str], rows: int, data: st.DataObject
) -> None:
    batch_size = data.draw(st.integers(1, rows + 1), label="batch_size")
    report, inserts, updates = bulk_writes(columns, rows, batch_size)
    assert_one_shape(inserts, updates)
    if batch_size > 1:
        # batch_size=1 asks for one statement per row: N round trips from one call site,
        # which the detector reports like the loop it is.
        assert report.n_plus_one == [], [f.fingerprint for f in report.n_plus_one]
