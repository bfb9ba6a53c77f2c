"""Tables: seq-scan heavy, cache hit ratio, dead tuples, vacuum/analyze freshness,
sequences near overflow (against the column's type), transaction-ID wraparound."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django_dbtuning.report.humanize import human_seconds, iso
from django_dbtuning.report.probe import Probe, Row
from django_dbtuning.report.quoting import ident, qualified, quote_ident

__all__ = ["collect"]

TABLES = """
SELECT s.relid::bigint AS oid, s.schemaname AS schema, s.relname AS "table",
       s.seq_scan, s.seq_tup_read, s.idx_scan, s.n_live_tup, s.n_dead_tup,
       s.n_mod_since_analyze, s.last_vacuum, s.last_autovacuum, s.last_analyze,
       s.last_autoanalyze, {last_seq_scan} AS last_seq_scan,
       io.heap_blks_read, io.heap_blks_hit, io.idx_blks_read, io.idx_blks_hit,
       GREATEST(c.reltuples, 0)::bigint AS reltuples, c.reloptions,
       {size} AS size_bytes, {total_size} AS total_bytes,
       age(c.relfrozenxid) AS xid_age
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
       d.deptype = 'i' AS identity
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


def _age_days(now: datetime | None, when: datetime | None) -> float | None:
    if now is None or when is None:
        return None
    return (now - when).total_seconds() / 86400


def collect(probe: Probe) -> None:
    section = probe.section("tables")
    extra = (
        "s.last_seq_scan"
        if probe.has_column("pg_stat_user_tables", "last_seq_scan")
        else "NULL::timestamptz"
    )
    rows = probe.query(
        "table_stats",
        "tables",
        TABLES.format(
            last_seq_scan=extra,
            size="pg_table_size(c.oid)",
            total_size="pg_total_relation_size(c.oid)",
        ),
    )
    if rows is None:
        rows = probe.query(
            "table_stats_estimated",
            "tables",
            TABLES.format(
                last_seq_scan=extra,
                size="c.relpages::bigint * current_setting('block_size')::bigint",
                total_size="NULL::bigint",
            ),
        )
        if rows is not None:
            probe.note("table sizes are estimates from pg_class.relpages")
    database = probe.query("database_stats", "tables", DATABASE)
    if database:
        section["database_size_bytes"] = database[0]["size_bytes"]
        section["database_xid_age"] = database[0]["xid_age"]
        _xid(probe, database[0])
    if rows is not None:
        _tables(probe, rows)
    _sequences(probe)
    _invalid_constraints(probe)


def _tables(probe: Probe, rows: list[Row]) -> None:
    t = probe.t
    section = probe.section("tables")
    now: datetime | None = probe.server.get("now")
    av = probe.server.get("autovacuum", {})
    heap_hit = sum(r["heap_blks_hit"] or 0 for r in rows)
    heap_read = sum(r["heap_blks_read"] or 0 for r in rows)
    idx_hit = sum(r["idx_blks_hit"] or 0 for r in rows)
    idx_read = sum(r["idx_blks_read"] or 0 for r in rows)
    section.update(
        {
            "count": len(rows),
            "size_bytes": sum(r["size_bytes"] or 0 for r in rows),
            "live_tuples": sum(r["n_live_tup"] or 0 for r in rows),
            "dead_tuples": sum(r["n_dead_tup"] or 0 for r in rows),
            "cache_hit_ratio": {
                "table": _ratio(heap_hit, heap_read),
                "index": _ratio(idx_hit, idx_read),
            },
        }
    )
    for kind, hit, read in (
        ("table", heap_hit, heap_read),
        ("index", idx_hit, idx_read),
    ):
        ratio = _ratio(hit, read)
        if (
            ratio is not None
            and hit + read >= t["cache_min_blocks"]
            and ratio < t["cache_hit_ratio_min"]
        ):
            probe.add(
                "warning",
                "low_cache_hit_ratio",
                f"{kind.capitalize()} cache hit ratio {ratio:.1%}",
                detail=(
                    f"{ratio:.2%} of {kind} block reads came from shared_buffers since the "
                    f"statistics were reset ({read:,} of {hit + read:,} from disk or the OS "
                    f"cache); below {t['cache_hit_ratio_min']:.0%} the working set does "
                    "not fit in memory."
                ),
                hint=(
                    f"raise shared_buffers (now {probe.server.get('shared_buffers', '?')}) "
                    "towards 25% of RAM, or find the queries that read the most blocks "
                    "(dbreport --section statements)"
                ),
                object=f"database:{probe.server.get('database')}",
                kind=kind,
                ratio=ratio,
            )
    heavy = []
    for row in rows:
        table = qualified(row["schema"], row["table"])
        label = probe.models.label(row["table"])
        live = row["n_live_tup"] or 0
        seq = row["seq_scan"] or 0
        idx = row["idx_scan"] or 0
        share = idx / (seq + idx) if seq + idx else None
        if (
            live >= t["seq_scan_min_rows"]
            and seq >= t["seq_scan_min_scans"]
            and share is not None
            and share < t["seq_scan_max_index_share"]
        ):
            per_scan = (row["seq_tup_read"] or 0) / seq
            heavy.append(row)
            probe.add(
                "warning",
                "seq_scan_heavy",
                f"Sequential scans on {table}",
                detail=(
                    f"{table} ({live:,} rows) was read by {seq:,} sequential scans "
                    f"(~{per_scan:,.0f} rows each) against {idx:,} index scans: only "
                    f"{share:.0%} of its scans use an index."
                ),
                hint=(
                    "find the query (dbreport --section statements, or EXPLAIN the "
                    f"slow views' queries) and add the missing index to "
                    f"{label + '.Meta.indexes' if label else table} "
                    "(AddIndexConcurrently on a large table)"
                ),
                object=table,
                model=label,
                seq_scans=seq,
                index_scans=idx,
                rows=live,
            )
        _vacuum(probe, row, table, label, now, av)
        _dead_tuples(probe, row, table, label)
    section["seq_scan_heavy"] = len(heavy)
    largest = sorted(rows, key=lambda r: r["total_bytes"] or r["size_bytes"] or 0)
    section["largest"] = [
        {
            "table": qualified(r["schema"], r["table"]),
            "model": probe.models.label(r["table"]),
            "rows": r["n_live_tup"],
            "dead_rows": r["n_dead_tup"],
            "size_bytes": r["size_bytes"],
            "total_bytes": r["total_bytes"],
            "seq_scans": r["seq_scan"],
            "index_scans": r["idx_scan"],
            "last_vacuum": iso(_latest(r["last_vacuum"], r["last_autovacuum"])),
            "last_analyze": iso(_latest(r["last_analyze"], r["last_autoanalyze"])),
        }
        for r in reversed(largest[-probe.top :] if probe.top else largest)
    ]


def _dead_tuples(probe: Probe, row: Row, table: str, label: str | None) -> None:
    t = probe.t
    live = row["n_live_tup"] or 0
    dead = row["n_dead_tup"] or 0
    sql_table = ident(row["schema"], row["table"])
    if (
        dead >= t["dead_tuples_min"]
        and dead / max(1, live + dead) >= t["dead_tuples_ratio"]
    ):
        vacuum = f"VACUUM (ANALYZE) {sql_table}"
        tune = f"ALTER TABLE {sql_table} SET (autovacuum_vacuum_scale_factor = 0.02)"
        probe.add(
            "warning",
            "dead_tuples",
            f"Dead tuples in {table}",
            detail=(
                f"{table} holds {dead:,} dead row versions against {live:,} live ones "
                f"({dead / max(1, live + dead):.0%}): scans read them, the table and "
                "its indexes bloat. Autovacuum is not keeping up, or a long "
                "transaction keeps them visible."
            ),
            hint=(
                f"{vacuum}; then lower autovacuum_vacuum_scale_factor for it "
                f"({tune}) and look for idle-in-transaction sessions"
            ),
            object=table,
            model=label,
            dead_tuples=dead,
            live_tuples=live,
            sql=[vacuum, tune],
        )


def _ratio(hit: int, read: int) -> float | None:
    return hit / (hit + read) if hit + read else None


def _latest(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _autovacuum_thresholds(
    row: Row, reltuples: float, av: dict[str, Any]
) -> tuple[float, float]:
    """The dead-row and changed-row counts past which autovacuum would act on the table
    (its own reloptions first, then the server's settings, then PostgreSQL's defaults)."""
    options = row["reloptions"]

    def setting(name: str, default: float) -> float:
        return _first(_reloption(options, name), av.get(name), default)

    return (
        setting("autovacuum_vacuum_threshold", 50)
        + setting("autovacuum_vacuum_scale_factor", 0.2) * reltuples,
        setting("autovacuum_analyze_threshold", 50)
        + setting("autovacuum_analyze_scale_factor", 0.1) * reltuples,
    )


def _vacuum(
    probe: Probe,
    row: Row,
    table: str,
    label: str | None,
    now: datetime | None,
    av: dict[str, Any],
) -> None:
    t = probe.t
    reltuples = max(row["reltuples"] or 0, row["n_live_tup"] or 0)
    vac_threshold, an_threshold = _autovacuum_thresholds(row, reltuples, av)
    sql_table = ident(row["schema"], row["table"])
    last_vacuum = _latest(row["last_vacuum"], row["last_autovacuum"])
    last_analyze = _latest(row["last_analyze"], row["last_autoanalyze"])
    dead = row["n_dead_tup"] or 0
    vacuum_age = _age_days(now, last_vacuum)
    # "Never vacuumed" means something only once the statistics are old enough: a
    # table created a minute ago has simply not had its turn.
    observed_days = (probe.server.get("stats_age_seconds") or 0) / 86400
    if (
        dead > vac_threshold
        and (vacuum_age is None or vacuum_age >= t["vacuum_stale_days"])
        and (vacuum_age is not None or observed_days >= t["vacuum_stale_days"])
    ):
        when = (
            "has never been vacuumed"
            if last_vacuum is None
            else f"was last vacuumed {vacuum_age:.0f} days ago"
        )
        probe.add(
            "warning",
            "vacuum_stale",
            f"{table} needs VACUUM",
            detail=(
                f"{table} {when} although its {dead:,} dead rows are past the autovacuum "
                f"threshold ({vac_threshold:,.0f}): autovacuum is off for it, blocked by "
                "locks or long transactions, or too slow for this table's churn."
            ),
            hint=(
                f"VACUUM (ANALYZE, VERBOSE) {sql_table}; check autovacuum is on and look "
                "for long-running and idle-in-transaction sessions (dbreport --section "
                "connections)"
            ),
            object=table,
            model=label,
            dead_tuples=dead,
            last_vacuum=iso(last_vacuum),
            sql=[f"VACUUM (ANALYZE, VERBOSE) {sql_table}"],
        )
    modified = row["n_mod_since_analyze"] or 0
    analyze_age = _age_days(now, last_analyze)
    if modified > an_threshold and (
        analyze_age is None or analyze_age >= t["analyze_stale_days"]
    ):
        when = (
            "has never been analyzed"
            if last_analyze is None
            else f"was last analyzed {human_seconds((analyze_age or 0) * 86400)} ago"
        )
        probe.add(
            "warning" if reltuples >= t["seq_scan_min_rows"] else "info",
            "analyze_stale",
            f"{table} needs ANALYZE",
            detail=(
                f"{table} {when} and {modified:,} rows changed since: the planner's row "
                "estimates for it are stale, which picks bad plans (typical after a bulk "
                "load with COPY or bulk_create)."
            ),
            hint=f"ANALYZE {sql_table}; (run it after every bulk load)",
            object=table,
            model=label,
            modified_rows=modified,
            last_analyze=iso(last_analyze),
            sql=[f"ANALYZE {sql_table}"],
        )


def _xid(probe: Probe, database: Row) -> None:
    age = database["xid_age"] or 0
    t = probe.t
    if age < t["xid_age_warning"]:
        return
    probe.add(
        "error" if age >= t["xid_age_error"] else "warning",
        "xid_wraparound",
        f"Transaction ID age {age:,}",
        detail=(
            f"The oldest unfrozen transaction ID in {probe.server.get('database')} is "
            f"{age:,} transactions old; at about 2.1 billion PostgreSQL stops accepting "
            "writes to prevent wraparound."
        ),
        hint=(
            "find the tables with the oldest relfrozenxid and VACUUM (FREEZE) them; check "
            "that autovacuum is not blocked by long transactions or abandoned "
            "replication slots / prepared transactions"
        ),
        object=f"database:{probe.server.get('database')}",
        xid_age=age,
    )


def _sequences(probe: Probe) -> None:
    rows = probe.query("sequences", "tables", SEQUENCES)
    if rows is None:
        return
    worst = 0.0
    unreadable = []
    for row in rows:
        if not row["readable"]:
            unreadable.append(qualified(row["seq_schema"], row["sequence"]))
            continue
        column_type = row["column_type"]
        limit = COLUMN_MAX.get(column_type)
        if limit is None or row["last_value"] is None or (row["increment_by"] or 1) < 0:
            continue
        limit = min(limit, row["max_value"] or limit)
        ratio = row["last_value"] / limit
        worst = max(worst, ratio)
        if ratio >= probe.t["sequence_warning_ratio"]:
            _overflow(probe, row, ratio, limit)
    section = probe.section("tables")
    section["sequence_usage_max_ratio"] = worst
    section["sequences"] = len(rows)
    section["unreadable_sequences"] = len(unreadable)
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


def _overflow(probe: Probe, row: Row, ratio: float, limit: int) -> None:
    column_type = row["column_type"]
    table = qualified(row["schema"], row["table"])
    column = f"{table}.{quote_ident(row['column'])}"
    info = probe.models.model(row["table"])
    field_label = info.field_label(row["column"]) if info else None
    narrower = (
        f" The sequence is {row['sequence_type']} but the column is {column_type}: "
        "it will fail at the column's limit first."
        if row["sequence_type"] != column_type
        else ""
    )
    statements = [
        f"ALTER TABLE {ident(row['schema'], row['table'])} "
        f"ALTER COLUMN {ident(row['column'])} TYPE bigint"
    ]
    if row["sequence_type"] != "bigint" and not row["identity"]:
        # An identity column's sequence follows the column's type; a serial's does not.
        statements.append(
            f"ALTER SEQUENCE {ident(row['seq_schema'], row['sequence'])} AS bigint"
        )
    hint = (
        "; ".join(statements)
        + "; (rewrites the table under an exclusive lock: plan a maintenance window or "
        "a shadow-column migration)"
    )
    if field_label and column_type != "bigint":
        hint = (
            f"make {field_label} a BigAutoField/BigIntegerField (set DEFAULT_AUTO_FIELD "
            f"= 'django.db.models.BigAutoField' for new models) and migrate; or {hint}"
        )
    probe.add(
        "error" if ratio >= probe.t["sequence_error_ratio"] else "warning",
        "sequence_near_overflow",
        f"{column} is {ratio:.0%} of its {column_type} range",
        detail=(
            f"{qualified(row['seq_schema'], row['sequence'])} feeds "
            f"{column} ({column_type}) and is at {row['last_value']:,} "
            f"of {limit:,} ({ratio:.1%}); inserts fail once it passes the limit."
            f"{narrower}"
        ),
        hint=hint,
        object=column,
        model=info.label if info else None,
        field=field_label,
        ratio=ratio,
        last_value=row["last_value"],
        max_value=limit,
        sql=statements,
    )


def _invalid_constraints(probe: Probe) -> None:
    rows = probe.query("invalid_constraints", "tables", NOT_VALID)
    for row in rows or []:
        table = qualified(row["schema"], row["table"])
        kind = "foreign key" if row["type"] == "f" else "check constraint"
        name = quote_ident(row["name"])
        validate = (
            f"ALTER TABLE {ident(row['schema'], row['table'])} "
            f"VALIDATE CONSTRAINT {ident(row['name'])}"
        )
        probe.add(
            "warning",
            "invalid_constraint",
            f"{kind.capitalize()} {name} on {table} is NOT VALID",
            detail=(
                f"{name} ({row['definition']}) was added NOT VALID and never "
                "validated: new rows are checked, existing rows may violate it, and the "
                "planner cannot rely on it."
            ),
            hint=(
                f"{validate}; (takes only a SHARE UPDATE EXCLUSIVE lock; in a migration: "
                "django.contrib.postgres.operations.ValidateConstraint)"
            ),
            object=f"{table}.{name}",
            model=probe.models.label(row["table"]),
            sql=[validate],
        )
