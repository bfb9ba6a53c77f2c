"""Tables: seq-scan heavy, cache hit ratio, dead tuples, vacuum/analyze freshness,
sequences near overflow (against the column's type), transaction-ID wraparound per table
and per database (:mod:`.wraparound`), NOT VALID constraints, table bloat
(:mod:`.table_bloat`).

One function per finding code, listed in :data:`CHECKS`: each reads the
:class:`~.table_facts.TableFacts` and adds its findings (the section counts them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django_dbtuning.report.findings import Severity
from django_dbtuning.report.humanize import human_seconds, iso
from django_dbtuning.report.probe import Probe, Row
from django_dbtuning.report.quoting import ident, qualified, quote_ident
from django_dbtuning.report.schema_fixes import widen_key_fix
from django_dbtuning.report.table_bloat import table_bloat
from django_dbtuning.report.table_facts import (
    TableFacts,
    age_days,
    autovacuum_thresholds,
    gather,
    hit_ratio,
    latest,
    names,
    row_estimate,
)
from django_dbtuning.report.wraparound import (
    summary as wraparound_summary,
)
from django_dbtuning.report.wraparound import (
    wraparound_vacuum_due,
    xid_wraparound,
)


def low_cache_hit_ratio(probe: Probe, facts: TableFacts) -> None:
    t = probe.t
    for kind, (hit, read) in facts.blocks.items():
        ratio = hit_ratio(hit, read)
        if (
            ratio is None
            or hit + read < t["cache_min_blocks"]
            or ratio >= t["cache_hit_ratio_min"]
        ):
            continue
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


def seq_scan_heavy(probe: Probe, facts: TableFacts) -> None:
    t = probe.t
    for row in facts.tables or []:
        live = row["n_live_tup"] or 0
        seq = row["seq_scan"] or 0
        idx = row["idx_scan"] or 0
        share = idx / (seq + idx) if seq + idx else None
        if (
            live < t["seq_scan_min_rows"]
            or seq < t["seq_scan_min_scans"]
            or share is None
            or share >= t["seq_scan_max_index_share"]
        ):
            continue
        table, label, _ = names(probe, row)
        per_scan = (row["seq_tup_read"] or 0) / seq
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


def dead_tuples(probe: Probe, facts: TableFacts) -> None:
    t = probe.t
    for row in facts.tables or []:
        live = row["n_live_tup"] or 0
        dead = row["n_dead_tup"] or 0
        if (
            dead < t["dead_tuples_min"]
            or dead / max(1, live + dead) < t["dead_tuples_ratio"]
        ):
            continue
        table, label, sql_table = names(probe, row)
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


def vacuum_stale(probe: Probe, facts: TableFacts) -> None:
    stale_days = probe.t["vacuum_stale_days"]
    # "Never vacuumed" means something only once the statistics are old enough: a
    # table created a minute ago has simply not had its turn.
    observed_days = (probe.server.get("stats_age_seconds") or 0) / 86400
    for row in facts.tables or []:
        threshold = autovacuum_thresholds(probe, row)[0]
        last_vacuum = latest(row["last_vacuum"], row["last_autovacuum"])
        age = age_days(probe.server.get("now"), last_vacuum)
        dead = row["n_dead_tup"] or 0
        if (
            dead <= threshold
            or (age is not None and age < stale_days)
            or (age is None and observed_days < stale_days)
        ):
            continue
        table, label, sql_table = names(probe, row)
        when = (
            "has never been vacuumed"
            if last_vacuum is None
            else f"was last vacuumed {age:.0f} days ago"
        )
        probe.add(
            "warning",
            "vacuum_stale",
            f"{table} needs VACUUM",
            detail=(
                f"{table} {when} although its {dead:,} dead rows are past the autovacuum "
                f"threshold ({threshold:,.0f}): autovacuum is off for it, blocked by "
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


def analyze_stale(probe: Probe, facts: TableFacts) -> None:
    t = probe.t
    for row in facts.tables or []:
        threshold = autovacuum_thresholds(probe, row)[1]
        last_analyze = latest(row["last_analyze"], row["last_autoanalyze"])
        age = age_days(probe.server.get("now"), last_analyze)
        modified = row["n_mod_since_analyze"] or 0
        if modified <= threshold or (age is not None and age < t["analyze_stale_days"]):
            continue
        table, label, sql_table = names(probe, row)
        when = (
            "has never been analyzed"
            if last_analyze is None
            else f"was last analyzed {human_seconds((age or 0) * 86400)} ago"
        )
        probe.add(
            "warning" if row_estimate(row) >= t["seq_scan_min_rows"] else "info",
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


def sequence_near_overflow(probe: Probe, facts: TableFacts) -> None:
    t = probe.t
    for row, ratio, limit in facts.sequences or []:
        column_type = row["column_type"]
        # Integer primary keys are flagged early (info): widening one rewrites the table
        # and every table referencing it, a job to plan while it is small.
        early = row["primary_key"] and column_type != "bigint"
        if ratio < t["sequence_warning_ratio"] and not (
            early and ratio >= t["sequence_info_ratio"]
        ):
            continue
        table = qualified(row["schema"], row["table"])
        column = f"{table}.{quote_ident(row['column'])}"
        info = probe.models.model(row["table"], row["schema"])
        narrower = (
            f" The sequence is {row['sequence_type']} but the column is {column_type}: "
            "it will fail at the column's limit first."
            if row["sequence_type"] != column_type
            else ""
        )
        hint = widen_key_fix(row, info)
        severity: Severity = (
            "error"
            if ratio >= t["sequence_error_ratio"]
            else "warning"
            if ratio >= t["sequence_warning_ratio"]
            else "info"
        )
        probe.add(
            severity,
            "sequence_near_overflow",
            f"{column} is {ratio:.0%} of its {column_type} range",
            detail=(
                f"{qualified(row['seq_schema'], row['sequence'])} feeds "
                f"{column} ({column_type}"
                f"{', the primary key' if row['primary_key'] else ''}) and is at "
                f"{row['last_value']:,} of {limit:,} ({ratio:.1%}); inserts fail once it "
                f"passes the limit.{narrower}"
            ),
            hint=hint.text,
            object=column,
            model=info.label if info else None,
            field=info.field_label(row["column"]) if info else None,
            ratio=ratio,
            last_value=row["last_value"],
            max_value=limit,
            primary_key=row["primary_key"],
            **hint.data(),
        )


def invalid_constraint(probe: Probe, facts: TableFacts) -> None:
    for row in facts.constraints or []:
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
            model=probe.models.label(row["table"], row["schema"]),
            sql=[validate],
        )


CHECKS: dict[str, Callable[[Probe, TableFacts], None]] = {
    "xid_wraparound": xid_wraparound,
    "wraparound_vacuum_due": wraparound_vacuum_due,
    "low_cache_hit_ratio": low_cache_hit_ratio,
    "seq_scan_heavy": seq_scan_heavy,
    "vacuum_stale": vacuum_stale,
    "analyze_stale": analyze_stale,
    "dead_tuples": dead_tuples,
    "sequence_near_overflow": sequence_near_overflow,
    "invalid_constraint": invalid_constraint,
    "table_bloat": table_bloat,
}


def collect(probe: Probe) -> None:
    section = probe.section("tables")
    facts = gather(probe)
    if facts.database is not None:
        section["database_size_bytes"] = facts.database["size_bytes"]
        section["database_xid_age"] = facts.database["xid_age"]
    found = probe.judge(CHECKS, facts)
    rows = facts.tables
    if rows is not None:
        blocks = facts.blocks
        section.update(
            {
                "count": len(rows),
                "size_bytes": sum(r["size_bytes"] or 0 for r in rows),
                "live_tuples": sum(r["n_live_tup"] or 0 for r in rows),
                "dead_tuples": sum(r["n_dead_tup"] or 0 for r in rows),
                "cache_hit_ratio": {
                    kind: hit_ratio(*counts) for kind, counts in blocks.items()
                },
                "seq_scan_heavy": len(found["seq_scan_heavy"]),
                "largest": _largest(probe, rows),
            }
        )
        # Every table, for dbreport --save's snapshot (report.snapshot).
        probe.result.objects["tables"] = [
            {
                "schema": r["schema"],
                "table": r["table"],
                "bytes": r["size_bytes"],
                "rows": r["n_live_tup"],
            }
            for r in rows
        ]
    if facts.wraparound is not None:
        section["wraparound"] = wraparound_summary(probe, facts.wraparound)
        section["freeze_age_max_ratio"] = max(
            (a.freeze_share for a in facts.wraparound.tables), default=0.0
        )
    if facts.bloat is not None:
        section["bloat_bytes_estimate"] = sum(b.wasted for _, b in facts.bloat.values())
    if facts.sequences is not None:
        section["sequence_usage_max_ratio"] = max(
            (ratio for _, ratio, _ in facts.sequences), default=0.0
        )
        section["sequences"] = facts.sequence_count
        section["unreadable_sequences"] = facts.unreadable_sequences


def _largest(probe: Probe, rows: list[Row]) -> list[dict[str, Any]]:
    largest = sorted(rows, key=lambda r: r["total_bytes"] or r["size_bytes"] or 0)
    return [
        {
            "table": qualified(r["schema"], r["table"]),
            "model": probe.models.label(r["table"], r["schema"]),
            "rows": r["n_live_tup"],
            "dead_rows": r["n_dead_tup"],
            "size_bytes": r["size_bytes"],
            "total_bytes": r["total_bytes"],
            "seq_scans": r["seq_scan"],
            "index_scans": r["idx_scan"],
            "last_vacuum": iso(latest(r["last_vacuum"], r["last_autovacuum"])),
            "last_analyze": iso(latest(r["last_analyze"], r["last_autoanalyze"])),
        }
        for r in reversed(largest[-probe.top :] if probe.top else largest)
    ]
