"""What the statistics views say about tables, the database and sequence-fed columns.

:func:`gather` runs the tables section's queries (each one a check) and returns
:class:`TableFacts`; :mod:`.tables` judges them, one function per finding code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django_dbtuning.report.probe import Probe, Row
from django_dbtuning.report.quoting import ident, qualified
from django_dbtuning.report.table_bloat import TableBloat
from django_dbtuning.report.table_bloat import gather as gather_bloat
from django_dbtuning.report.wraparound import Wraparound
from django_dbtuning.report.wraparound import gather as gather_wraparound

TABLES = """
SELECT s.relid::bigint AS oid, s.schemaname AS schema, s.relname AS "table",
       s.seq_scan, s.seq_tup_read, s.idx_scan, s.n_live_tup, s.n_dead_tup,
       s.n_mod_since_analyze, s.last_vacuum, s.last_autovacuum, s.last_analyze,
       s.last_autoanalyze, {last_seq_scan} AS last_seq_scan,
       io.heap_blks_read, io.heap_blks_hit, io.idx_blks_read, io.idx_blks_hit,
       GREATEST(c.reltuples, 0)::bigint AS reltuples, c.reloptions,
       {size} AS size_bytes, {total_size} AS total_bytes
  FROM pg_stat_user_tables s
  JOIN pg_class c ON c.oid = s.relid
  LEFT JOIN pg_statio_user_tables io ON io.relid = s.relid
"""

SEQUENCES = """
SELECT sn.nspname AS seq_schema, seq.relname AS sequence, tn.nspname AS schema,
       t.relname AS "table", a.attname AS "column",
       format_type(a.atttypid, a.atttypmod) AS column_type,
       ps.data_type::text AS sequence_type, ps.last_value, ps.max_value, ps.increment_by,
       has_sequence_privilege(seq.oid, 'SELECT,USAGE') AS readable,
       d.deptype = 'i' AS identity,
       EXISTS (SELECT 1 FROM pg_index i
                WHERE i.indrelid = t.oid AND i.indisprimary AND i.indnkeyatts = 1
                  AND i.indkey[0] = a.attnum) AS primary_key
  FROM pg_depend d
  JOIN pg_class seq ON seq.oid = d.objid AND seq.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = seq.relnamespace
  JOIN pg_class t ON t.oid = d.refobjid
  JOIN pg_namespace tn ON tn.oid = t.relnamespace
  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
  JOIN pg_sequences ps ON ps.schemaname = sn.nspname AND ps.sequencename = seq.relname
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
   AND d.deptype IN ('a', 'i')
"""

NOT_VALID = """
SELECT n.nspname AS schema, t.relname AS "table", c.conname AS name,
       c.contype::text AS type, pg_get_constraintdef(c.oid) AS definition
  FROM pg_constraint c
  JOIN pg_class t ON t.oid = c.conrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE NOT c.convalidated AND c.contype IN ('c', 'f')
"""

DATABASE = """
SELECT pg_database_size(current_database()) AS size_bytes,
       age(datfrozenxid) AS xid_age, blks_hit, blks_read
  FROM pg_database d JOIN pg_stat_database s ON s.datid = d.oid
 WHERE d.datname = current_database()
"""

COLUMN_MAX = {
    "smallint": 32_767,
    "integer": 2_147_483_647,
    "bigint": 9_223_372_036_854_775_807,
}


def _first(*values: float | None) -> float:
    # A per-table 0 is a setting, not "unset": `or` would skip it.
    return next((v for v in values if v is not None), 0.0)


def _reloption(options: list[str] | None, name: str) -> float | None:
    for item in options or []:
        key, _, value = item.partition("=")
        if key == name:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def age_days(now: datetime | None, when: datetime | None) -> float | None:
    if now is None or when is None:
        return None
    return (now - when).total_seconds() / 86400


def hit_ratio(hit: int, read: int) -> float | None:
    return hit / (hit + read) if hit + read else None


def latest(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def autovacuum_thresholds(probe: Probe, row: Row) -> tuple[float, float]:
    """The dead-row and changed-row counts past which autovacuum would act on the table
    (its own reloptions first, then the server's settings, then PostgreSQL's defaults)."""
    options = row["reloptions"]
    av = probe.server.get("autovacuum", {})

    def setting(name: str, default: float) -> float:
        return _first(_reloption(options, name), av.get(name), default)

    reltuples = row_estimate(row)
    return (
        setting("autovacuum_vacuum_threshold", 50)
        + setting("autovacuum_vacuum_scale_factor", 0.2) * reltuples,
        setting("autovacuum_analyze_threshold", 50)
        + setting("autovacuum_analyze_scale_factor", 0.1) * reltuples,
    )


def row_estimate(row: Row) -> float:
    return max(row["reltuples"] or 0, row["n_live_tup"] or 0)


def names(probe: Probe, row: Row) -> tuple[str, str | None, str]:
    """The table as prose, its model's label, and as SQL."""
    return (
        qualified(row["schema"], row["table"]),
        probe.models.label(row["table"], row["schema"]),
        ident(row["schema"], row["table"]),
    )


@dataclass
class TableFacts:
    """The section's query results; None where the query's check failed."""

    tables: list[Row] | None
    database: Row | None
    sequences: list[tuple[Row, float, int]] | None
    """Readable sequence-fed columns: (row, share of the column's range used, limit)."""
    sequence_count: int
    unreadable_sequences: int
    constraints: list[Row] | None
    wraparound: Wraparound | None = None
    """Every table's transaction-ID and multixact ages against its limits."""
    bloat: dict[int, tuple[Row, TableBloat]] | None = None
    """Per table oid, for the tables large enough to matter."""

    @property
    def blocks(self) -> dict[str, tuple[int, int]]:
        """Block reads (from shared_buffers, from outside) by kind: table, index."""
        rows = self.tables or []
        return {
            kind: (
                sum(r[f"{prefix}_blks_hit"] or 0 for r in rows),
                sum(r[f"{prefix}_blks_read"] or 0 for r in rows),
            )
            for kind, prefix in (("table", "heap"), ("index", "idx"))
        }


def _table_stats(probe: Probe) -> list[Row] | None:
    extra = probe.optional_column(
        "pg_stat_user_tables", "last_seq_scan", "timestamptz", "s."
    )
    return probe.query_or_estimate(
        "table_stats",
        "tables",
        TABLES.format(
            last_seq_scan=extra,
            size="pg_table_size(c.oid)",
            total_size="pg_total_relation_size(c.oid)",
        ),
        TABLES.format(
            last_seq_scan=extra,
            size="c.relpages::bigint * current_setting('block_size')::bigint",
            total_size="NULL::bigint",
        ),
        "table sizes are estimates from pg_class.relpages",
    )


def _sequences(probe: Probe) -> tuple[list[tuple[Row, float, int]] | None, int, int]:
    """Readable sequence-fed columns with their usage, how many there are, how many
    could not be read (a partial check)."""
    rows = probe.query("sequences", "tables", SEQUENCES)
    if rows is None:
        return None, 0, 0
    usage = []
    unreadable = []
    for row in rows:
        if not row["readable"]:
            unreadable.append(qualified(row["seq_schema"], row["sequence"]))
            continue
        limit = COLUMN_MAX.get(row["column_type"])
        if limit is None or row["last_value"] is None or (row["increment_by"] or 1) < 0:
            continue
        limit = min(limit, row["max_value"] or limit)
        usage.append((row, row["last_value"] / limit, limit))
    if unreadable:
        probe.gap(
            "sequence_values",
            "tables",
            "partial",
            f"{len(unreadable)} of {len(rows)} sequence(s) are unreadable without "
            f"USAGE or SELECT ({', '.join(unreadable[:5])}"
            f"{'…' if len(unreadable) > 5 else ''}): their overflow is not checked",
            expected=True,
            fix="grant SELECT on them (or pg_read_all_data), or run as their owner",
        )
    return usage, len(rows), len(unreadable)


def gather(probe: Probe) -> TableFacts:
    """The section's queries, in the order their checks are listed."""
    tables = _table_stats(probe)
    database = probe.query("database_stats", "tables", DATABASE)
    sequences, count, unreadable = _sequences(probe)
    constraints = probe.query("invalid_constraints", "tables", NOT_VALID)
    wraparound = gather_wraparound(probe)
    database_row = database[0] if database else None
    if database_row and wraparound and wraparound.database_xid_age is not None:
        database_row = {**database_row, "xid_age": wraparound.database_xid_age}
    return TableFacts(
        tables=tables,
        database=database_row,
        sequences=sequences,
        sequence_count=count,
        unreadable_sequences=unreadable,
        constraints=constraints,
        wraparound=wraparound,
        bloat=gather_bloat(probe),
    )
