"""Indexes: unused, duplicate, overlapping, invalid, foreign keys without one, sizes, bloat.

PgHero's judgement, with pg-index-health's split between identical and prefix-overlapping
indexes. Primary-key, unique, exclusion and replica-identity indexes are never drop
candidates; neither is an index that backs a constraint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django_dbtuning.report.djangomap import Hint, ModelMap
from django_dbtuning.report.findings import Severity
from django_dbtuning.report.humanize import human_bytes, human_seconds, iso
from django_dbtuning.report.probe import Probe, Row
from django_dbtuning.report.quoting import ident, qualified, quote_ident

__all__ = ["collect"]

SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema')"

INVENTORY = """
SELECT i.indexrelid::bigint AS oid, i.indrelid::bigint AS table_oid,
       n.nspname AS schema, t.relname AS "table", c.relname AS index, am.amname AS method,
       i.indisunique AS is_unique, i.indisprimary AS is_primary,
       i.indisexclusion AS is_exclusion, i.indisvalid AS is_valid,
       i.indisready AS is_ready, i.indisreplident AS is_replident,
       i.indnkeyatts AS key_count,
       i.indkey::int2[]::int[] AS attnums,
       i.indclass::oid[]::bigint[] AS opclasses,
       i.indcollation::oid[]::bigint[] AS collations,
       ARRAY(SELECT a.attname::text
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               LEFT JOIN pg_attribute a
                 ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              ORDER BY k.ord) AS columns,
       ARRAY(SELECT oc.opcname::text
               FROM unnest(i.indclass::oid[]) WITH ORDINALITY AS k(oid, ord)
               JOIN pg_opclass oc ON oc.oid = k.oid ORDER BY k.ord) AS opclass_names,
       {expressions} AS expressions, {predicate} AS predicate,
       {definition} AS definition,
       con.conname AS constraint_name, con.contype::text AS constraint_type,
       s.idx_scan, s.idx_tup_read, {last_idx_scan} AS last_idx_scan,
       {size} AS size_bytes, c.relpages::bigint AS relpages,
       GREATEST(t.reltuples, 0)::bigint AS table_rows, t.relkind::text AS table_kind
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_am am ON am.oid = c.relam
  LEFT JOIN pg_stat_all_indexes s ON s.indexrelid = i.indexrelid
  LEFT JOIN pg_constraint con
    ON con.conindid = i.indexrelid AND con.contype IN ('p', 'u', 'x')
 WHERE n.nspname NOT IN {system} AND n.nspname !~ '^pg_toast'
   AND n.nspname !~ '^pg_temp' AND t.relkind IN ('r', 'm', 'p')
"""

FOREIGN_KEYS = f"""
SELECT con.conname AS name, n.nspname AS schema, t.relname AS "table",
       con.conkey::int2[]::int[] AS attnums,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
              ORDER BY k.ord) AS columns,
       fn.nspname AS ref_schema, f.relname AS ref_table,
       GREATEST(t.reltuples, 0)::bigint AS table_rows, con.convalidated AS validated
  FROM pg_constraint con
  JOIN pg_class t ON t.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_class f ON f.oid = con.confrelid
  JOIN pg_namespace fn ON fn.oid = f.relnamespace
 WHERE con.contype = 'f' AND n.nspname NOT IN {SYSTEM_SCHEMAS}
   AND t.relkind IN ('r', 'p')
"""

BUILDING = "SELECT index_relid::bigint AS oid FROM pg_stat_progress_create_index"

COLUMN_WIDTHS = f"""
SELECT schemaname AS schema, tablename AS "table", attname AS "column",
       avg_width, null_frac
  FROM pg_stats WHERE schemaname NOT IN {SYSTEM_SCHEMAS}
"""

BLOCK_SIZE = 8192


@dataclass
class Index:
    row: Row

    def __getattr__(self, name: str) -> Any:
        try:
            return self.row[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def key_attnums(self) -> list[int]:
        return list(self.row["attnums"][: self.row["key_count"]])

    @property
    def key_columns(self) -> list[str | None]:
        return list(self.row["columns"][: self.row["key_count"]])

    @property
    def name(self) -> str:
        return qualified(self.row["schema"], self.row["index"])

    @property
    def table_name(self) -> str:
        return qualified(self.row["schema"], self.row["table"])

    @property
    def sql_name(self) -> str:
        """The index as SQL: schema-qualified, every part quoted."""
        return ident(self.row["schema"], self.row["index"])

    def drop_hint(self, models: ModelMap) -> Hint:
        return models.drop_hint(
            schema=self.row["schema"],
            table=self.row["table"],
            index=self.row["index"],
            columns=self.key_columns,
            definition=self.row["definition"] or "",
            opclasses=self.row["opclass_names"],
        )

    @property
    def droppable(self) -> bool:
        """Never a drop candidate: PK, unique, exclusion, replica identity, constraint."""
        return not bool(
            self.row["is_primary"]
            or self.row["is_unique"]
            or self.row["is_exclusion"]
            or self.row["is_replident"]
            or self.row["constraint_name"]
        )

    def same_shape(self, other: Index) -> bool:
        return bool(
            self.row["method"] == other.row["method"]
            and self.row["expressions"] == other.row["expressions"]
            and self.row["predicate"] == other.row["predicate"]
        )


def _shown(columns: list[str | None]) -> str:
    return ", ".join(quote_ident(c) if c else "expr" for c in columns)


def _stats_age(probe: Probe) -> float | None:
    age = probe.server.get("stats_age_seconds")
    return float(age) if age is not None else None


def collect(probe: Probe) -> None:
    section = probe.section("indexes")
    last_scan = (
        "s.last_idx_scan"
        if probe.has_column("pg_stat_all_indexes", "last_idx_scan")
        else "NULL::timestamptz"
    )
    rows = probe.query(
        "index_inventory",
        "indexes",
        INVENTORY.format(
            last_idx_scan=last_scan,
            size="pg_relation_size(i.indexrelid)",
            expressions="pg_get_expr(i.indexprs, i.indrelid)",
            predicate="pg_get_expr(i.indpred, i.indrelid)",
            definition="pg_get_indexdef(i.indexrelid)",
            system=SYSTEM_SCHEMAS,
        ),
    )
    if rows is None:
        # pg_get_indexdef() and pg_get_expr() wait for the table's lock (a migration
        # holding ACCESS EXCLUSIVE): retry with what the catalogs hold without locking.
        rows = probe.query(
            "index_inventory_estimated",
            "indexes",
            INVENTORY.format(
                last_idx_scan=last_scan,
                size="c.relpages::bigint * current_setting('block_size')::bigint",
                expressions="i.indexprs::text",
                predicate="i.indpred::text",
                definition="NULL::text",
                system=SYSTEM_SCHEMAS,
            ),
        )
        if rows is None:
            return
        probe.note(
            "a relation was locked: index sizes are estimates from pg_class.relpages "
            "and index definitions are left out"
        )
    building = probe.query("indexes_being_built", "indexes", BUILDING)
    being_built = {r["oid"] for r in building or []}
    indexes = [Index(row) for row in rows]
    by_table: dict[int, list[Index]] = {}
    for index in indexes:
        by_table.setdefault(index.table_oid, []).append(index)

    section.update(
        {
            "count": len(indexes),
            "size_bytes": sum(i.size_bytes or 0 for i in indexes),
            "last_idx_scan_available": probe.has_column(
                "pg_stat_all_indexes", "last_idx_scan"
            ),
            "stats_since": probe.server.get("stats_since"),
        }
    )
    _invalid(probe, indexes, being_built)
    fk_columns = _foreign_keys(probe, by_table)
    unused = _unused(probe, indexes, fk_columns)
    redundant = _duplicates(probe, by_table)
    bloat = _bloat(probe, indexes)

    section["unused_count"] = len(unused)
    section["unused_size_bytes"] = sum(i.size_bytes or 0 for i in unused)
    section["invalid_count"] = sum(1 for i in indexes if not i.is_valid)
    section["duplicate_count"] = redundant
    largest = sorted(indexes, key=lambda i: i.size_bytes or 0, reverse=True)
    section["largest"] = [_summary(probe, i, bloat) for i in largest[: probe.top]]
    probe.result.objects["indexes"] = [
        {
            "schema": i.schema,
            "table": i.table,
            "index": i.index,
            "scans": i.idx_scan or 0,
            "size_bytes": i.size_bytes or 0,
        }
        for i in indexes
    ]


def _summary(probe: Probe, index: Index, bloat: dict[int, int]) -> dict[str, Any]:
    return {
        "index": index.name,
        "table": index.table_name,
        "model": probe.models.label(index.table),
        "size_bytes": index.size_bytes,
        "scans": index.idx_scan,
        "last_scan": iso(index.last_idx_scan),
        "unique": index.is_unique,
        "primary": index.is_primary,
        "valid": index.is_valid,
        "bloat_bytes": bloat.get(index.oid),
    }


def _invalid(probe: Probe, indexes: list[Index], being_built: set[int]) -> None:
    for index in indexes:
        if index.is_valid or index.oid in being_built:
            continue
        enforce = (
            " An invalid unique index still rejects duplicates for new rows."
            if index.is_unique
            else ""
        )
        drop = f"DROP INDEX CONCURRENTLY {index.sql_name}"
        probe.add(
            "error",
            "invalid_index",
            f"Invalid index {index.name} on {index.table_name}",
            detail=(
                f"{index.name} is marked invalid (a CREATE INDEX CONCURRENTLY or "
                "REINDEX CONCURRENTLY failed or was cancelled): the planner never uses "
                f"it, yet every write to {index.table_name} still updates it "
                f"({human_bytes(index.size_bytes)}).{enforce}"
            ),
            hint=(
                f"{drop}; then re-run the migration that created it "
                "(AddIndexConcurrently), after fixing what made it fail (duplicates for "
                "a unique index, a deadlock, a timeout)"
            ),
            object=index.name,
            model=probe.models.label(index.table),
            size_bytes=index.size_bytes,
            unique=index.is_unique,
            sql=[drop],
        )


def _unused(
    probe: Probe, indexes: list[Index], fk_columns: dict[int, list[list[int]]]
) -> list[Index]:
    t = probe.t
    stats_age = _stats_age(probe)
    min_age = t["min_stats_age_days"] * 86400
    since = probe.server.get("stats_since") or "the statistics were reset"
    now: datetime | None = probe.server.get("now")
    unused: list[Index] = []
    for index in indexes:
        if (
            not index.droppable
            or not index.is_valid
            or index.table_kind == "p"
            or index.idx_scan is None
        ):
            continue
        last: datetime | None = index.last_idx_scan
        stale_days: float | None = None
        if index.idx_scan <= t["unused_index_max_scans"]:
            usage = (
                "never scanned"
                if index.idx_scan == 0
                else f"scanned only {index.idx_scan} times"
            )
            usage += f" since {since}"
        elif last is not None and now is not None:
            stale_days = (now - last).total_seconds() / 86400
            if stale_days < t["unused_index_last_scan_days"]:
                continue
            usage = f"last scanned {iso(last)} ({stale_days:.0f} days ago)"
        else:
            continue
        unused.append(index)
        hint = index.drop_hint(probe.models)
        young = stats_age is not None and stats_age < min_age
        big = (index.size_bytes or 0) >= t["unused_index_warning_bytes"]
        severity: Severity = "warning" if big and not young else "info"
        caveats = []
        if young and stats_age is not None:
            caveats.append(
                f"statistics cover only {human_seconds(stats_age)}: wait for a full "
                "business cycle (month-end jobs, reports) before dropping"
            )
        caveats.append(
            "scans on replicas are not counted here (give dbreport their aliases too)"
        )
        if _backs_foreign_key(index, fk_columns.get(index.table_oid, [])):
            caveats.append(
                "it covers a foreign key: deleting or updating referenced rows will "
                "scan the table without it"
            )
        probe.add(
            severity,
            "unused_index",
            f"Unused index {index.name} on {index.table_name}",
            detail=(
                f"{index.name} ({human_bytes(index.size_bytes)}, "
                f"{_shown(index.key_columns)}) was {usage}; "
                f"every INSERT and UPDATE of {index.table_name} still maintains it. "
                + "; ".join(caveats)
                + "."
            ),
            hint=hint.text,
            object=index.name,
            model=probe.models.label(index.table),
            size_bytes=index.size_bytes,
            scans=index.idx_scan,
            schema=index.schema,
            index=index.index,
            last_scan=iso(last),
            stats_age_seconds=stats_age,
            **hint.data(),
        )
    return unused


def _backs_foreign_key(index: Index, fk_columns: list[list[int]]) -> bool:
    head = index.key_attnums
    return any(sorted(head[: len(cols)]) == cols for cols in fk_columns)


def _duplicates(probe: Probe, by_table: dict[int, list[Index]]) -> int:
    flagged = 0
    for group in by_table.values():
        valid = [i for i in group if i.is_valid and i.is_ready]
        for candidate in valid:
            if not candidate.droppable:
                continue
            cover = _covering(candidate, valid)
            if cover is None:
                continue
            other, identical = cover
            flagged += 1
            kept = other.name
            kind = (
                "the primary key"
                if other.is_primary
                else "a unique index"
                if other.is_unique
                else "an index"
            )
            if identical:
                code, title = "duplicate_index", "Duplicate index"
                detail = (
                    f"{candidate.name} indexes exactly the same columns of "
                    f"{candidate.table_name} as {kind} {kept} "
                    f"({_shown(candidate.key_columns)}): "
                    f"{human_bytes(candidate.size_bytes)} and a write penalty for "
                    "nothing."
                )
            else:
                code, title = "overlapping_index", "Overlapping index"
                detail = (
                    f"{candidate.name} ({_shown(candidate.key_columns)}) "
                    f"is a leading prefix of {kind} {kept} "
                    f"({_shown(other.key_columns)}), which serves "
                    f"the same lookups; {human_bytes(candidate.size_bytes)} could go "
                    "(the wider index is a little slower for these lookups)."
                )
            hint = candidate.drop_hint(probe.models)
            info = probe.models.model(candidate.table)
            head = info.field_for(candidate.key_columns[0]) if info else None
            if (
                head is not None
                and info is not None
                and info.editable
                and getattr(head, "many_to_one", False)
                and len(candidate.key_columns) == 1
            ):
                hint = Hint(
                    f"set db_index=False on the ForeignKey {info.label}.{head.name}: "
                    f"{kept} already serves lookups by {head.name} (run makemigrations)"
                )
            # Django's own tables (auto-created M2M, contrib apps) carry such indexes
            # by design and cannot be changed through models: worth knowing, not a
            # warning.
            probe.add(
                "warning" if probe.models.editable(candidate.table) else "info",
                code,
                f"{title} {candidate.name} on {candidate.table_name}",
                detail=detail,
                hint=hint.text,
                object=candidate.name,
                model=probe.models.label(candidate.table),
                size_bytes=candidate.size_bytes,
                covered_by=kept,
                **hint.data(),
            )
    return flagged


def _covering(candidate: Index, group: list[Index]) -> tuple[Index, bool] | None:
    """The index that makes ``candidate`` redundant, and whether it is identical."""
    mine = candidate.key_attnums
    best: tuple[Index, bool] | None = None
    for other in group:
        if other is candidate or not candidate.same_shape(other):
            continue
        theirs = other.key_attnums
        same_ops = (
            other.opclasses[: len(mine)] == candidate.opclasses[: len(mine)]
            and other.collations[: len(mine)] == candidate.collations[: len(mine)]
        )
        if not same_ops:
            continue
        if theirs == mine:
            # Identical twins: keep the one a constraint needs, else the older one.
            if not other.droppable or other.oid < candidate.oid:
                return other, True
            continue
        if (
            candidate.method == "btree"
            and 0 not in mine
            and len(theirs) > len(mine)
            and theirs[: len(mine)] == mine
        ) and (best is None or len(other.key_attnums) < len(best[0].key_attnums)):
            best = (other, False)
    return best


def _foreign_keys(
    probe: Probe, by_table: dict[int, list[Index]]
) -> dict[int, list[list[int]]]:
    """Flag foreign keys no index starts with; return each table's FK column sets."""
    rows = probe.query(
        "foreign_keys",
        "indexes",
        FOREIGN_KEYS.replace(
            "SELECT con.conname",
            "SELECT con.conrelid::bigint AS table_oid, con.conname",
        ),
    )
    if rows is None:
        return {}
    fk_columns: dict[int, list[list[int]]] = {}
    missing = 0
    for fk in rows:
        cols = sorted(fk["attnums"])
        fk_columns.setdefault(fk["table_oid"], []).append(cols)
        covered = any(
            i.is_valid
            and i.predicate is None
            and sorted(i.key_attnums[: len(cols)]) == cols
            for i in by_table.get(fk["table_oid"], [])
        )
        if covered:
            continue
        missing += 1
        table = qualified(fk["schema"], fk["table"])
        ref = qualified(fk["ref_schema"], fk["ref_table"])
        columns = ", ".join(quote_ident(c) for c in fk["columns"])
        name = quote_ident(fk["name"])
        hint = probe.models.create_fk_index_hint(
            fk["schema"], fk["table"], fk["columns"]
        )
        big = fk["table_rows"] >= probe.t["fk_without_index_warning_rows"]
        info = probe.models.model(fk["table"])
        field_label = info.field_label(fk["columns"][0]) if info else None
        probe.add(
            "warning" if big else "info",
            "fk_without_index",
            f"Foreign key {table}({columns}) has no index",
            detail=(
                f"{name} on {table}({columns}) references {ref} but no index starts "
                f"with {columns}: every DELETE or key UPDATE on {ref} scans all "
                f"~{fk['table_rows']:,} rows of {table}, and joins or filters by "
                f"{field_label or columns} have no index to use."
            ),
            hint=hint.text,
            object=f"{table}.{name}",
            model=info.label if info else None,
            field=field_label,
            table_rows=fk["table_rows"],
            **hint.data(),
        )
    probe.section("indexes")["fk_without_index_count"] = missing
    return fk_columns


def _bloat(probe: Probe, indexes: list[Index]) -> dict[int, int]:
    """Estimated wasted bytes per btree index, from pg_stats column widths."""
    rows = probe.query("index_bloat", "indexes", COLUMN_WIDTHS)
    if rows is None:
        return {}
    widths = {(r["schema"], r["table"], r["column"]): r for r in rows}
    estimates: dict[int, int] = {}
    total = 0
    for index in indexes:
        if (
            index.method != "btree"
            or not index.relpages
            or index.relpages < 10
            or 0 in index.key_attnums
        ):
            continue
        width = 0.0
        for column in index.columns:
            stats = widths.get((index.schema, index.table, column))
            if stats is None:
                break
            width += (stats["avg_width"] or 0) * (1 - (stats["null_frac"] or 0))
        else:
            # Item pointer (4) + index tuple header (8) + data, MAXALIGNed to 8; leaf
            # pages filled to the default fillfactor of 90 %.
            per_tuple = 4 + 8 * math.ceil((8 + width) / 8)
            per_page = (BLOCK_SIZE - 24 - 16) * 0.9
            expected = math.ceil(index.table_rows * per_tuple / per_page) + 1
            wasted = max(0, index.relpages - expected) * BLOCK_SIZE
            estimates[index.oid] = wasted
            total += wasted
            ratio = wasted / (index.relpages * BLOCK_SIZE)
            if (
                wasted >= probe.t["index_bloat_warning_bytes"]
                and ratio >= probe.t["index_bloat_min_ratio"]
            ):
                probe.add(
                    "warning",
                    "index_bloat",
                    f"Bloated index {index.name}",
                    detail=(
                        f"{index.name} takes {human_bytes(index.relpages * BLOCK_SIZE)} "
                        f"but its {index.table_rows:,} entries need about "
                        f"{human_bytes(expected * BLOCK_SIZE)}: ~{human_bytes(wasted)} "
                        f"({ratio:.0%}) is dead space (an estimate from pg_stats)."
                    ),
                    hint=f"REINDEX INDEX CONCURRENTLY {index.sql_name}; (not inside a "
                    "transaction)",
                    object=index.name,
                    model=probe.models.label(index.table),
                    bloat_bytes=wasted,
                    size_bytes=index.relpages * BLOCK_SIZE,
                    sql=[f"REINDEX INDEX CONCURRENTLY {index.sql_name}"],
                )
    probe.section("indexes")["bloat_bytes_estimate"] = total
    return estimates
