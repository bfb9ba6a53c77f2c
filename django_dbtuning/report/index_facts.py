"""What the catalogs say about the indexes: the inventory, foreign keys, builds in
progress, and btree bloat estimated from ``pg_stats`` column widths.

:func:`gather` runs the index section's queries (each one a check) and returns
:class:`IndexFacts`; :mod:`.indexes` judges them, one function per finding code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from django_dbtuning.report.djangomap import Hint, IndexOrigin, ModelMap
from django_dbtuning.report.probe import Probe, Row
from django_dbtuning.report.quoting import ident, qualified

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
SELECT con.conrelid::bigint AS table_oid, con.conname AS name, n.nspname AS schema,
       t.relname AS "table",
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

# Only the columns of the indexes the estimate is for: pg_stats holds a row per column of
# every analyzed table. Names as arrays (= ANY) let the planner look each table up by
# pg_class's name index instead of reading all of pg_statistic; the cross product of
# schemas and tables it may return is narrowed to the wanted triples in Python.
COLUMN_WIDTHS = """
SELECT schemaname AS schema, tablename AS "table", attname AS "column",
       avg_width, null_frac
  FROM pg_stats
 WHERE tablename = ANY(%(tables)s::name[]) AND schemaname = ANY(%(schemas)s::name[])
   AND attname = ANY(%(columns)s::name[])
"""

BLOCK_SIZE = 8192


class Index:
    """One row of the inventory, its columns readable as attributes."""

    __slots__ = ("row",)

    def __init__(self, row: Row) -> None:
        self.row = row

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

    def origin(self, models: ModelMap) -> IndexOrigin:
        """Which model declaration produced this index, if any."""
        return models.index_origin(
            self.row["table"],
            self.row["index"],
            self.key_columns,
            definition=self.row["definition"] or "",
            opclasses=self.row["opclass_names"],
            schema=self.row["schema"],
        )

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


class Bloat(NamedTuple):
    wasted: int
    """Bytes beyond what the entries need."""
    expected_pages: int


@dataclass
class IndexFacts:
    indexes: list[Index]
    being_built: set[int]
    foreign_keys: list[Row] | None
    """None when the foreign_keys check failed."""
    bloat: dict[int, Bloat] | None
    """Per btree index oid; None when the index_bloat check failed."""
    models: ModelMap | None = None
    """The project's models: of identical twins, the one a model declares is kept."""
    by_table: dict[int, list[Index]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_table = {}
        for index in self.indexes:
            self.by_table.setdefault(index.table_oid, []).append(index)

    @cached_property
    def fk_columns(self) -> dict[int, list[list[int]]]:
        """Each table's foreign-key column sets (sorted attnums)."""
        found: dict[int, list[list[int]]] = {}
        for fk in self.foreign_keys or []:
            found.setdefault(fk["table_oid"], []).append(sorted(fk["attnums"]))
        return found

    @cached_property
    def covers(self) -> dict[int, tuple[Index, bool]]:
        """For each droppable index another one makes redundant: that index, and
        whether the two are identical (else the droppable one is a prefix of it)."""
        found: dict[int, tuple[Index, bool]] = {}
        for group in self.by_table.values():
            valid = [i for i in group if i.is_valid and i.is_ready]
            for candidate in valid:
                if candidate.droppable:
                    cover = _covering(candidate, valid, self.declared)
                    if cover is not None:
                        found[candidate.oid] = cover
        return found

    def declared(self, index: Index) -> bool:
        """Whether a model declares ``index`` (a field's db_index, Meta.indexes...)."""
        return self.models is not None and index.origin(self.models).kind != "unknown"


def _covering(
    candidate: Index, group: list[Index], declared: Callable[[Index], bool]
) -> tuple[Index, bool] | None:
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
            # Identical twins: keep the one a constraint needs, else the one a model
            # declares (a RunSQL twin goes, whichever is older), else the older one.
            if not other.droppable or _kept_first(other, candidate, declared):
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


def _kept_first(
    other: Index, candidate: Index, declared: Callable[[Index], bool]
) -> bool:
    """Of two droppable identical twins, whether ``other`` is the one to keep."""
    if candidate.droppable and other.droppable:
        ours, theirs = declared(candidate), declared(other)
        if ours != theirs:
            return theirs
    return bool(other.oid < candidate.oid)


def _inventory(probe: Probe) -> list[Row] | None:
    last_scan = probe.optional_column(
        "pg_stat_all_indexes", "last_idx_scan", "timestamptz", "s."
    )
    # pg_get_indexdef() and pg_get_expr() wait for the table's lock (a migration
    # holding ACCESS EXCLUSIVE): the estimate reads what the catalogs hold without it.
    return probe.query_or_estimate(
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
        INVENTORY.format(
            last_idx_scan=last_scan,
            size="c.relpages::bigint * current_setting('block_size')::bigint",
            expressions="i.indexprs::text",
            predicate="i.indpred::text",
            definition="NULL::text",
            system=SYSTEM_SCHEMAS,
        ),
        "a relation was locked: index sizes are estimates from pg_class.relpages "
        "and index definitions are left out",
    )


def _estimated(index: Index) -> bool:
    """Whether the bloat estimate covers ``index``: a btree on columns (no expression)
    of at least 10 pages."""
    return bool(
        index.method == "btree"
        and index.relpages
        and index.relpages >= 10
        and 0 not in index.key_attnums
    )


def _widths(probe: Probe, indexes: list[Index]) -> list[Row] | None:
    """pg_stats' width and null share of the estimated indexes' columns."""
    wanted = {
        (index.schema, index.table, column)
        for index in indexes
        if _estimated(index)
        for column in index.columns
        if column is not None
    }
    rows = probe.query(
        "index_bloat",
        "indexes",
        COLUMN_WIDTHS,
        {
            "schemas": sorted({schema for schema, _, _ in wanted}),
            "tables": sorted({table for _, table, _ in wanted}),
            "columns": sorted({column for _, _, column in wanted}),
        },
    )
    if rows is None:
        return None
    return [r for r in rows if (r["schema"], r["table"], r["column"]) in wanted]


def _estimate_bloat(indexes: list[Index], widths: list[Row]) -> dict[int, Bloat]:
    """Estimated wasted bytes per btree index, from pg_stats column widths."""
    by_column = {(r["schema"], r["table"], r["column"]): r for r in widths}
    estimates: dict[int, Bloat] = {}
    for index in indexes:
        if not _estimated(index):
            continue
        width = 0.0
        for column in index.columns:
            stats = by_column.get((index.schema, index.table, column))
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
            estimates[index.oid] = Bloat(wasted, expected)
    return estimates


def gather(probe: Probe) -> IndexFacts | None:
    """The section's queries, in the order their checks are listed; None when even the
    inventory could not be read."""
    rows = _inventory(probe)
    if rows is None:
        return None
    building = probe.query("indexes_being_built", "indexes", BUILDING)
    indexes = [Index(row) for row in rows]
    foreign_keys = probe.query("foreign_keys", "indexes", FOREIGN_KEYS)
    widths = _widths(probe, indexes)
    return IndexFacts(
        indexes=indexes,
        being_built={r["oid"] for r in building or []},
        foreign_keys=foreign_keys,
        bloat=_estimate_bloat(indexes, widths) if widths is not None else None,
        models=probe.models,
    )
