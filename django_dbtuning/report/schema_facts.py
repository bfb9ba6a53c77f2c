"""What the catalogs say about the schema's shape: foreign keys with their column types,
tables without a primary key, indexes on a boolean column alone.

:func:`gather` runs the schema section's queries (each one a check) and returns
:class:`SchemaFacts`; :mod:`.schema_lints` judges them, one function per finding code.
None of these queries waits for a lock: they read the catalogs only.
"""

from __future__ import annotations

from dataclasses import dataclass

from django_dbtuning.report.index_facts import SYSTEM_SCHEMAS
from django_dbtuning.report.probe import Probe, Row

USER_SCHEMAS = f"""n.nspname NOT IN {SYSTEM_SCHEMAS} AND n.nspname !~ '^pg_toast'
   AND n.nspname !~ '^pg_temp'"""


def _columns(relid: str, attnums: str, expression: str) -> str:
    return (
        f"ARRAY(SELECT {expression} FROM unnest({attnums}) WITH ORDINALITY AS k(attnum, ord)"
        f" JOIN pg_attribute a ON a.attrelid = {relid} AND a.attnum = k.attnum"
        " ORDER BY k.ord)"
    )


# conparentid = 0: a partitioned table's foreign key once, not once per partition. Only
# the foreign keys worth a finding come back with their details (names, types, the
# definition): those whose column types differ from the referenced key's, and those
# sharing columns and target with another one.
FOREIGN_KEYS = f"""
WITH keys AS (
  SELECT con.oid, con.conrelid, con.confrelid, con.conkey, con.confkey,
         bool_or(a.atttypid <> fa.atttypid OR a.atttypmod <> fa.atttypmod) AS mismatch
    FROM pg_constraint con
    JOIN pg_class t ON t.oid = con.conrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
   CROSS JOIN LATERAL unnest(con.conkey, con.confkey) AS k(attnum, ref_attnum)
    JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
    JOIN pg_attribute fa ON fa.attrelid = con.confrelid AND fa.attnum = k.ref_attnum
   WHERE con.contype = 'f' AND con.conparentid = 0 AND {USER_SCHEMAS}
   GROUP BY con.oid, con.conrelid, con.confrelid, con.conkey, con.confkey
), flagged AS (
  SELECT keys.*,
         count(*) OVER (PARTITION BY conrelid, conkey, confrelid, confkey) AS twins
    FROM keys
)
SELECT con.oid::bigint AS oid, con.conname AS name, n.nspname AS schema,
       t.relname AS "table", con.conrelid::bigint AS table_oid,
       fn.nspname AS ref_schema, f.relname AS ref_table, con.confrelid::bigint AS ref_oid,
       con.conkey::int2[]::int[] AS attnums, con.confkey::int2[]::int[] AS ref_attnums,
       {_columns("con.conrelid", "con.conkey", "a.attname::text")} AS columns,
       {_columns("con.conrelid", "con.conkey", "format_type(a.atttypid, a.atttypmod)")}
         AS types,
       {_columns("con.confrelid", "con.confkey", "a.attname::text")} AS ref_columns,
       {_columns("con.confrelid", "con.confkey", "format_type(a.atttypid, a.atttypmod)")}
         AS ref_types,
       pg_get_constraintdef(con.oid) AS definition,
       GREATEST(t.reltuples, 0)::bigint AS table_rows
  FROM flagged
  JOIN pg_constraint con ON con.oid = flagged.oid
  JOIN pg_class t ON t.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_class f ON f.oid = con.confrelid
  JOIN pg_namespace fn ON fn.oid = f.relnamespace
 WHERE flagged.mismatch OR flagged.twins > 1
 ORDER BY con.oid
"""

# Tables (and partitioned parents) with no primary key, leaving out extension-owned
# tables; unique_index is a valid, plain unique btree index on NOT NULL columns that
# could become the primary key as it is (ADD PRIMARY KEY USING INDEX).
WITHOUT_PRIMARY_KEY = f"""
SELECT c.oid::bigint AS oid, n.nspname AS schema, c.relname AS "table",
       c.relkind::text AS kind, GREATEST(c.reltuples, 0)::bigint AS table_rows,
       (SELECT ci.relname
          FROM pg_index ui
          JOIN pg_class ci ON ci.oid = ui.indexrelid
          JOIN pg_am am ON am.oid = ci.relam AND am.amname = 'btree'
         WHERE ui.indrelid = c.oid AND ui.indisunique AND ui.indisvalid
           AND ui.indpred IS NULL AND ui.indexprs IS NULL
           AND ui.indnatts = ui.indnkeyatts
           AND NOT EXISTS (SELECT 1 FROM unnest(ui.indoption::int2[]) o WHERE o <> 0)
           AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                            WHERE a.attrelid = c.oid AND a.attnum = ANY(ui.indkey::int2[])
                              AND NOT a.attnotnull)
         ORDER BY ui.indnatts, ci.relname LIMIT 1) AS unique_index
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {USER_SCHEMAS}
   AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
 ORDER BY n.nspname, c.relname
"""

# A plain index whose only column is a boolean; the column's value frequencies from
# pg_stats say which value is rare (most_common_vals is anyarray: through text to bool[]),
# read for those few indexes only (pg_stats is a view with a privilege check per row).
BOOLEAN_INDEXES = f"""
SELECT b.*, st.null_frac, st.common_values, st.common_freqs
  FROM (
    SELECT i.indexrelid::bigint AS oid, n.nspname AS schema, t.relname AS "table",
           c.relname AS index, a.attname AS "column", am.amname AS method,
           c.relpages::bigint * current_setting('block_size')::bigint AS size_bytes,
           pg_stat_get_numscans(i.indexrelid) AS idx_scan,
           GREATEST(t.reltuples, 0)::bigint AS table_rows
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_class t ON t.oid = i.indrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
      JOIN pg_am am ON am.oid = c.relam
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indnatts = 1 AND i.indexprs IS NULL AND i.indpred IS NULL
       AND NOT i.indisunique AND NOT i.indisprimary
       AND a.atttypid = 'pg_catalog.bool'::regtype AND t.relkind IN ('r', 'm', 'p')
       AND {USER_SCHEMAS}
  ) b
  LEFT JOIN LATERAL (
    SELECT null_frac, most_common_vals::text::boolean[] AS common_values,
           most_common_freqs AS common_freqs
      FROM pg_stats
     WHERE schemaname = b.schema AND tablename = b."table" AND attname = b."column"
       AND NOT inherited
     LIMIT 1  -- also keeps the planner from joining the whole view
  ) st ON true
 ORDER BY b.schema, b."table", b.index
"""


@dataclass
class SchemaFacts:
    """The section's query results; None where the query's check failed."""

    foreign_keys: list[Row] | None
    """Only the foreign keys of another type than their key, or duplicated."""
    without_primary_key: list[Row] | None
    boolean_indexes: list[Row] | None


def gather(probe: Probe) -> SchemaFacts:
    """The section's queries, in the order their checks are listed."""
    return SchemaFacts(
        foreign_keys=probe.query("schema_foreign_keys", "schema", FOREIGN_KEYS),
        without_primary_key=probe.query(
            "tables_without_primary_key", "schema", WITHOUT_PRIMARY_KEY
        ),
        boolean_indexes=probe.query("boolean_indexes", "schema", BOOLEAN_INDEXES),
    )


def value_shares(row: Row) -> dict[bool, float] | None:
    """The share of rows holding True and False (NULLs aside), from pg_stats; None
    without statistics."""
    values = row["common_values"]
    freqs = row["common_freqs"]
    if values is None or freqs is None:
        return None
    known = dict(zip(values, freqs, strict=False))
    rest = max(0.0, 1 - (row["null_frac"] or 0) - sum(known.values()))
    return {value: known.get(value, rest) for value in (True, False)}
