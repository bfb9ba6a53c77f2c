"""SQL fingerprints: what counts as "the same query"."""

from __future__ import annotations

import pytest

from django_dbtuning.sql import display_sql, fingerprint, sql_info


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
