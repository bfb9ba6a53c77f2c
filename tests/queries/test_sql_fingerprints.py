"""SQL fingerprints: what counts as "the same query"."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from django_dbtuning.queries.fingerprint import (
    cached_sql_info,
    display_sql,
    fingerprint,
    sql_info,
)
from tests.queries.test_sql_lexer import FORMS, bits, hex_bits, hostile_text, numbers


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            'SELECT "t"."id" FROM "t" WHERE "t"."id" IN (%s, %s, %s)',
            'SELECT "t"."id" FROM "t" WHERE "t"."id" IN (...)',
        ),
        (
            'SELECT "t"."id" FROM "t" WHERE "t"."id" IN (%s)',
            'SELECT "t"."id" FROM "t" WHERE "t"."id" IN (...)',
        ),
        (
            'SELECT * FROM "t" WHERE "t"."id" = ANY(%s)',
            'SELECT * FROM "t" WHERE "t"."id" = ANY(%s)',
        ),
        ('SAVEPOINT "s140_x12"', "SAVEPOINT ?"),
        ('RELEASE SAVEPOINT "s140_x12"', "RELEASE SAVEPOINT ?"),
        ('ROLLBACK TO SAVEPOINT "s1_x1"', "ROLLBACK TO SAVEPOINT ?"),
        (
            "SELECT * FROM t1 WHERE name = 'it''s' AND n = 42 AND f = -1.5e3",
            "SELECT * FROM t1 WHERE name = ? AND n = ? AND f = ?",
        ),
        ('SELECT "col2" FROM "t2" LIMIT 21', 'SELECT "col2" FROM "t2" LIMIT ?'),
        ("SELECT 1 /* traceparent='00-abc' */", "SELECT ?"),
        (
            'INSERT INTO "t" ("a", "b") VALUES (%s, %s), (%s, %s) RETURNING "t"."id"',
            'INSERT INTO "t" ("a", "b") VALUES (...) RETURNING "t"."id"',
        ),
        ("SELECT a\n  FROM   t\n WHERE x = %s;", "SELECT a FROM t WHERE x = %s"),
    ],
)
def test_fingerprint_folds_what_varies(sql, expected):
    assert fingerprint(sql) == expected


def test_quoted_identifiers_keep_their_digits():
    assert (
        fingerprint('SELECT "t0"."c1" FROM "shop_v2" "t0"')
        == 'SELECT "t0"."c1" FROM "shop_v2" "t0"'
    )


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT 1", "read"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "read"),
        ("WITH x AS (DELETE FROM t RETURNING id) SELECT * FROM x", "write"),
        ('INSERT INTO "t" VALUES (%s)', "write"),
        ('UPDATE "t" SET "a" = %s', "write"),
        ('DELETE FROM "t"', "write"),
        ('SAVEPOINT "x"', "transaction"),
        ("SET TIME ZONE 'UTC'", "transaction"),
        ("CREATE TABLE t (id int)", "other"),
    ],
)
def test_statement_kinds(sql, kind):
    assert sql_info(sql).shape.kind == kind


def test_batches_pages_and_keysets_are_recognised():
    assert sql_info('SELECT * FROM "t" WHERE "t"."id" IN (%s, %s)').batch
    assert not sql_info('SELECT * FROM "t" WHERE "t"."id" IN (%s)').batch
    assert sql_info('INSERT INTO "t" ("a") VALUES (%s), (%s)').batch
    assert sql_info('INSERT INTO "t" ("a") SELECT * FROM UNNEST((%s)::integer[])').batch
    assert sql_info(
        'UPDATE "t" SET "p" = CASE WHEN ("t"."id" = %s) THEN %s WHEN ("t"."id" = %s) '
        'THEN %s ELSE NULL END WHERE "t"."id" IN (%s, %s)'
    ).batch
    assert sql_info("SELECT * FROM t ORDER BY id LIMIT 25 OFFSET 50").offset == 50
    assert (
        sql_info("SELECT * FROM t WHERE id > %s ORDER BY id LIMIT 100").keyset_limit
        == 100
    )
    assert (
        sql_info("SELECT * FROM t WHERE a = %s ORDER BY id LIMIT 1").keyset_limit
        is None
    )


def test_info_is_cached_per_sql_string_and_shapes_are_shared():
    first = sql_info('SELECT * FROM "cache_t" WHERE "id" IN (%s, %s)')
    assert sql_info('SELECT * FROM "cache_t" WHERE "id" IN (%s, %s)') is first
    other = sql_info('SELECT * FROM "cache_t" WHERE "id" IN (%s, %s, %s)')
    assert other is not first
    assert other.shape is first.shape
    assert len(first.shape.digest) == 12


def test_cached_sql_info_only_looks_up():
    sql = 'SELECT * FROM "cache_lookup_t" WHERE "id" = %s'
    assert cached_sql_info(sql) is None
    assert cached_sql_info(sql) is None  # looking up never builds
    info = sql_info(sql)
    assert cached_sql_info(sql) is info


def test_composed_sql_is_accepted():
    from psycopg import sql

    composed = sql.SQL("SELECT {} FROM t").format(sql.Identifier("col"))
    assert fingerprint(composed) == 'SELECT "col" FROM t'


def test_display_collapses_long_select_lists_and_cuts():
    text = (
        "SELECT "
        + ", ".join(f'"t"."c{i}"' for i in range(20))
        + ' FROM "t" WHERE "id" = %s'
    )
    assert display_sql(text) == 'SELECT … FROM "t" WHERE "id" = %s'
    assert display_sql("SELECT a FROM t") == "SELECT a FROM t"
    assert (
        len(display_sql("SELECT a FROM t WHERE " + "x = 1 AND " * 100, limit=50)) == 50
    )


# --- literals and comments never reach a shape (issue 9) -----------------------------------

SECRET = "s3cr3t"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            f"SELECT * FROM t WHERE a = $${SECRET} ' -- $$ AND b = %s",
            "SELECT * FROM t WHERE a = ? AND b = %s",
        ),
        (
            f"SELECT * FROM t WHERE a = $q${SECRET} $$ $Q$ $q$ AND b = %s",
            "SELECT * FROM t WHERE a = ? AND b = %s",
        ),
        (
            f"SELECT * FROM t WHERE a = E'it\\'s {SECRET} -- x' AND b = %s",
            "SELECT * FROM t WHERE a = ? AND b = %s",
        ),
        (
            f"SELECT * FROM t WHERE a = e'\\\\' AND b = '{SECRET}'",
            "SELECT * FROM t WHERE a = ? AND b = ?",
        ),
        (
            f"SELECT * FROM t WHERE a = '-- {SECRET}' AND b = %s",
            "SELECT * FROM t WHERE a = ? AND b = %s",
        ),
        (
            f"SELECT * FROM t WHERE a = '/* {SECRET}' AND b = %s",
            "SELECT * FROM t WHERE a = ? AND b = %s",
        ),
        (
            f"SELECT a FROM t /* traceparent='00-{SECRET}-01' */ WHERE b = %s",
            "SELECT a FROM t WHERE b = %s",
        ),
        (
            f"SELECT a FROM t /* outer /* {SECRET} */ still */ WHERE b = %s",
            "SELECT a FROM t WHERE b = %s",
        ),
        (f"SELECT a -- user={SECRET}\nFROM t", "SELECT a FROM t"),
        (f"SELECT U&'{SECRET}\\0061' FROM t", "SELECT ? FROM t"),
        (f"SELECT U&'{SECRET}!0061' UESCAPE '!' FROM t", "SELECT ? FROM t"),
        ("SELECT B'0101', X'DEADBEEF' FROM t", "SELECT ?, ? FROM t"),
        (f"SELECT N'{SECRET}' FROM t", "SELECT ? FROM t"),
        (f"SELECT 'a' -- {SECRET}\n 'b' FROM t", "SELECT ? FROM t"),
        (
            f"SELECT DATE '2024-01-01', interval '1 day', '{SECRET}'::text FROM t",
            "SELECT DATE ?, interval ?, ?::text FROM t",
        ),
        (
            "SELECT * FROM t WHERE a = 4111111111111111 AND b = 0x1F AND c = 1_000"
            " AND d = -1.5e-3 AND e = .5",
            "SELECT * FROM t WHERE a = ? AND b = ? AND c = ? AND d = ? AND e = ?",
        ),
        ("SELECT a - 1, b -1, c=-1, d @-1 FROM t", "SELECT a - ?, b -?, c=?, d @-? FROM t"),
        (
            "SELECT * FROM t WHERE a = %s AND b IN (%(x)s) AND c %% 2 = $1",
            "SELECT * FROM t WHERE a = %s AND b IN (...) AND c %% ? = $1",
        ),
    ],
)  # fmt: skip
def test_every_literal_form_is_masked_and_comments_are_dropped(sql, expected):
    assert fingerprint(sql) == expected
    assert SECRET not in display_sql(sql)


@pytest.mark.parametrize(
    "variants",
    [
        ["SELECT * FROM t WHERE id = 1", "SELECT * FROM t WHERE id = 2"],
        ["SELECT * FROM t WHERE id = -1", "SELECT * FROM t WHERE id = 250"],
        ["SELECT $$a$$ FROM t", "SELECT $$b$$ FROM t", "SELECT $x$c$x$ FROM t"],
        ["SELECT E'a\\'' FROM t", "SELECT E'b' FROM t"],
        ["SELECT 'a--b' FROM t", "SELECT 'c' FROM t"],
        ["SELECT a FROM t /* id=1 */", "SELECT a FROM t /* id=2 */", "SELECT a FROM t"],
        [
            "INSERT INTO t (a) VALUES ('x'), ('y')",
            "INSERT INTO t (a) VALUES ($$z$$), (1), (-2)",
        ],
    ],
)
def test_raw_sql_loops_are_one_shape(variants):
    shapes = {sql_info(sql).shape for sql in variants}
    assert len(shapes) == 1, [fingerprint(sql) for sql in variants]


def test_quoted_identifiers_are_shown_exactly_and_never_folded():
    sql = (
        'SELECT "we ird  ""x"" IN (%s, %s)", "a--b", "c/*d" FROM "sch.ema"."My Table" '
        'WHERE "k" IN (%s, %s)'
    )
    assert fingerprint(sql) == (
        'SELECT "we ird  ""x"" IN (%s, %s)", "a--b", "c/*d" FROM "sch.ema"."My Table" '
        'WHERE "k" IN (...)'
    )
    assert sql_info(sql).shape.table == "My Table"
    assert sql_info('UPDATE U&"t\\0061" SET a = 1').shape.text == (
        'UPDATE U&"t\\0061" SET a = ?'
    )


def test_kind_and_table_come_from_tokens_not_from_names_or_strings():
    assert sql_info(
        'WITH x AS (SELECT "delete" FROM t) SELECT * FROM x'
    ).shape.kind == ("read")
    assert sql_info("SELECT 'FROM secret_table' FROM real_table").shape.table == (
        "real_table"
    )


def test_offset_and_limit_are_read_from_real_tokens():
    in_string = sql_info(
        "SELECT * FROM t WHERE note = 'OFFSET 70 LIMIT 100' AND id > %s ORDER BY id"
    )
    assert in_string.offset is None
    assert in_string.keyset_limit is None
    commented = sql_info("SELECT * FROM t /* LIMIT 100 */ WHERE id > %s ORDER BY id")
    assert commented.keyset_limit is None
    real = sql_info("SELECT * FROM t WHERE id > 10 ORDER BY id LIMIT 0x64 OFFSET 1_000")
    assert (real.offset, real.keyset_limit) == (1000, 100)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (f"SELECT * FROM t WHERE a = 'open {SECRET}", "SELECT * FROM t WHERE a = ?…"),
        (f"SELECT * FROM t WHERE a = $$open {SECRET}", "SELECT * FROM t WHERE a = ?…"),
        (f"SELECT * FROM t WHERE a = E'x\\' {SECRET}", "SELECT * FROM t WHERE a = ?…"),
        (f"SELECT * FROM t /* open {SECRET}", "SELECT * FROM t ?…"),
        (f'SELECT "open {SECRET}', "SELECT ?…"),
        (f"SELECT 1abc, '{SECRET}'", "SELECT ?…"),
        (f"SELECT a {{ '{SECRET}'", "SELECT a ?…"),
        # With standard_conforming_strings off a backslash would escape the quote, and
        # the literal would run on: such a string ends the shape instead.
        (f"SELECT 'x\\' {SECRET} \\'' FROM t", "SELECT ?…"),
        # pg_stat_activity cuts long queries mid-literal.
        (f"UPDATE t SET a = 'ok', b = '{SECRET[:3]}", "UPDATE t SET a = ?, b = ?…"),
    ],
)
def test_what_cannot_be_read_is_not_shown(sql, expected):
    assert fingerprint(sql) == expected
    assert display_sql(sql) == expected


def test_display_masks_raw_sql_handed_to_it():
    assert display_sql(f"SELECT a FROM t WHERE b = $${SECRET}$$ -- {SECRET}") == (
        "SELECT a FROM t WHERE b = ?"
    )


def test_digest_accepts_a_lone_surrogate():
    assert len(sql_info("SELECT '\ud800' FROM t").shape.digest) == 12
    assert fingerprint('SELECT "\ud800" FROM t') == 'SELECT "\ud800" FROM t'


# --- property: changing only literal values keeps the shape --------------------------------


def signed(number: str, negative: bool) -> str:
    return ("-" if negative else "") + number


@st.composite
def literal_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """Two values of one literal (or comment) form."""
    form = draw(st.sampled_from([*sorted(FORMS), "number", "bits", "hex"]))
    if form == "number":
        return (
            signed(draw(numbers), draw(st.booleans())),
            signed(draw(numbers), draw(st.booleans())),
        )
    render = {"bits": bits, "hex": hex_bits}.get(form) or FORMS[form]
    # An even run of backslashes reads the same whether or not they escape (see
    # test_what_cannot_be_read_is_not_shown for the odd case).
    first, second = (draw(hostile_text).replace("\\", "\\\\") for _ in range(2))
    return render(first), render(second)


@settings(max_examples=150, database=None)
@given(st.lists(literal_pairs(), min_size=1, max_size=4), st.booleans())
def test_fingerprint_is_invariant_under_literal_changes(pairs, insert):
    if insert:
        rows = (
            ", ".join(f"({a}, %s)" for a, _ in pairs),
            ", ".join(f"({b}, %s)" for _, b in pairs),
        )
        template = 'INSERT INTO "t" ("a", "b") VALUES {} RETURNING "t"."id"'
    else:
        rows = tuple(
            " AND ".join(f'"t"."c{i}" = {p[side]}' for i, p in enumerate(pairs))
            for side in (0, 1)
        )
        template = 'SELECT "t"."id" FROM "t" WHERE {} ORDER BY "t"."id" LIMIT 21'
    first, second = (template.format(side) for side in rows)
    assert fingerprint(first) == fingerprint(second)
    assert sql_info(first).shape is sql_info(second).shape


def test_doubled_quotes_in_names_are_read_once():
    # "a""b" must be one identifier to every pattern: read as "a" then "b" as well, the
    # select-list pattern would try 2^40 splits here before giving up.
    names = " ".join(['"x""y"'] * 40)
    assert display_sql(f"SELECT {names}", limit=1000) == f"SELECT {names}"
    assert display_sql(f"SELECT {names} FROM t") == "SELECT … FROM t"
    assert sql_info(f'UPDATE "a""b" SET {names}').shape.table == 'a"b'


def test_bytes_and_composed_statements_are_masked_not_repr_quoted():
    # str(b"...") would wrap the text in double quotes, a quoted identifier to the lexer.
    assert fingerprint(b"SELECT 'it''s s3cr3t' FROM t") == "SELECT ? FROM t"
    assert fingerprint(bytearray(b"SELECT $$s3cr3t$$")) == "SELECT ?"
    from psycopg import sql

    composed = sql.SQL("SELECT {} FROM t").format(sql.Literal("it's s3cr3t"))
    assert fingerprint(composed) == "SELECT ? FROM t"


# --- bulk writes: the batch size never changes the shape, whatever a column's SQL ----------

# What Django puts in a VALUES row or a THEN branch for a column: a bare placeholder (JSON,
# ranges, numbers), an array's cast with a modifier, a PostGIS-style wrapper or typed cast.
COLUMN_SQL = [
    "%s",
    "%s::varchar(20)[]",
    "%s::integer[]",
    "%s::timestamp with time zone[]",
    "%s::numeric(10, 2)",
    "%s::jsonb",
    "%s::int4range",
    "%s::geometry(Point, 4326)",
    "ST_GeomFromEWKB(%s)",
    "ST_Transform(ST_GeomFromEWKB(%s), 4326)",
    "(%s)::varchar(20)[]",
    "CAST(%s AS numeric(10, 2))",
]


def bulk_insert(columns: list[str], rows: int) -> str:
    row = "(" + ", ".join(columns) + ")"
    names = ", ".join(f'"c{i}"' for i in range(len(columns)))
    return (
        f'INSERT INTO "r" ({names}) VALUES '
        + ", ".join([row] * rows)
        + ' RETURNING "r"."id"'
    )


def bulk_update(value: str, rows: int) -> str:
    branches = " ".join([f'WHEN ("r"."id" = %s) THEN {value}'] * rows)
    ids = ", ".join(["%s"] * rows)
    return (
        f'UPDATE "r" SET "c" = (CASE {branches} ELSE NULL END)::varchar(20)[] '
        f'WHERE "r"."id" IN ({ids})'
    )


@pytest.mark.parametrize("column", COLUMN_SQL)
def test_bulk_create_batches_of_any_size_are_one_shape(column):
    statements = [bulk_insert(["%s", column, "%s"], rows) for rows in (1, 2, 7, 10)]
    assert len({fingerprint(sql) for sql in statements}) == 1, fingerprint(
        statements[1]
    )
    assert [sql_info(sql).batch for sql in statements] == [False, True, True, True]
    assert "?…" not in fingerprint(statements[-1])


@pytest.mark.parametrize("column", COLUMN_SQL)
def test_bulk_update_batches_of_any_size_are_one_shape(column):
    statements = [bulk_update(column, rows) for rows in (1, 2, 7, 10)]
    assert len({fingerprint(sql) for sql in statements}) == 1, fingerprint(
        statements[1]
    )
    assert [sql_info(sql).batch for sql in statements] == [False, True, True, True]


def test_bulk_shapes_keep_what_a_row_does_to_its_values():
    # A wrapper is structure: two statements that wrap differently stay apart.
    plain = fingerprint(bulk_insert(["%s", "%s::varchar(20)[]"], 3))
    assert plain == 'INSERT INTO "r" ("c0", "c1") VALUES (...) RETURNING "r"."id"'
    wrapped = fingerprint(bulk_insert(["%s", "ST_GeomFromEWKB(%s)"], 3))
    assert wrapped == (
        'INSERT INTO "r" ("c0", "c1") VALUES (%s, ST_GeomFromEWKB(%s)) RETURNING "r"."id"'
    )
    assert wrapped != fingerprint(bulk_insert(["%s", "ST_Transform(%s, 4326)"], 3))
    assert fingerprint(bulk_update("%s::varchar(20)[]", 4)).startswith(
        'UPDATE "r" SET "c" = (CASE WHEN ... THEN ... ELSE ? END)'
    )
    assert "THEN ST_GeomFromEWKB(%s) ELSE" in fingerprint(
        bulk_update("ST_GeomFromEWKB(%s)", 4)
    )


def test_rows_that_differ_are_each_kept_once():
    mixed = 'INSERT INTO "r" ("a") VALUES (f(%s)), (%s), (f(%s)), (g(%s)), (%s::int[])'
    assert fingerprint(mixed) == 'INSERT INTO "r" ("a") VALUES (f(%s)), (...), (g(%s))'
    assert sql_info(mixed).batch


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # Cut at "?…" inside a row: the complete rows fold, the rest is kept as it is.
        ("INSERT INTO t VALUES (1, 2), (3, 4), (5, (6", "INSERT INTO t VALUES (...), (?, (?"),
        ("INSERT INTO t VALUES (1, 'x", "INSERT INTO t VALUES (?, ?…"),
        # A nested CASE folds on its own; the branch holding it stays as it is.
        ("SELECT CASE WHEN (a = 1) THEN CASE WHEN (b = 2) THEN 3 WHEN (b = 4) THEN 5 END "
         "WHEN (a = 6) THEN 7 END",
         "SELECT CASE WHEN (a = ?) THEN CASE WHEN ... THEN ... END WHEN ... THEN ... END"),
        # A composite key's condition holds brackets of its own.
        ('UPDATE t SET c = CASE WHEN (("t"."a" = %s) AND ("t"."b" = %s)) THEN %s '
         'WHEN (("t"."a" = %s) AND ("t"."b" = %s)) THEN %s ELSE NULL END',
         "UPDATE t SET c = CASE WHEN ... THEN ... ELSE ? END"),
        # A name ending in "values" is no VALUES list.
        ("SELECT my_values (1, 2) FROM t", "SELECT my_values (?, ?) FROM t"),
    ],
)  # fmt: skip
def test_folding_partial_and_nested_text(sql, expected):
    assert fingerprint(sql) == expected
