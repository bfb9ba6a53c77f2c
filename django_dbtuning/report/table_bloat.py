"""Table (heap) bloat: measured with ``pgstattuple_approx`` where the extension is installed
and the role may run it, else estimated from the catalogs.

The catalog estimate is the well-known heap-bloat query's arithmetic (ioguix, pgexperts),
done here per table in Python: from ``pg_stats`` average widths and null fractions, the
tuple header (23 bytes, plus a null bitmap when a column holds NULLs), the 4-byte line
pointer and the 24-byte page header, MAXALIGNed to 8, the pages the live rows need at the
table's fillfactor; whatever the heap holds beyond that is bloat. TOAST is left out (a
toasted value's ``avg_width`` is its pointer's). Tables whose columns lack statistics
(never analyzed, or columns the role cannot read) are not estimated.

Only tables that could reach ``table_bloat_warning_bytes`` are read at all, so the check
costs nothing on a schema of small tables; ``pgstattuple_approx`` (which reads every page
the visibility map does not mark all-visible) runs on at most ``table_bloat_exact_tables``
of the largest, under the report's statement timeout, and the estimate covers the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from django_dbtuning.report.humanize import human_bytes
from django_dbtuning.report.index_facts import SYSTEM_SCHEMAS
from django_dbtuning.report.probe import Probe, Row
from django_dbtuning.report.quoting import ident, qualified

if TYPE_CHECKING:
    from django_dbtuning.report.table_facts import TableFacts

Method = Literal["pgstattuple_approx", "catalog estimate"]

PAGE_HEADER = 24
LINE_POINTER = 4
TUPLE_HEADER = 23
MAXALIGN = 8

# The candidates first, then pg_stats for them only: pg_stats is a view with a privilege
# check per row, and joined column by column it costs ~2 ms a table (1.1 s for 500).
CANDIDATES = f"""
WITH candidates AS MATERIALIZED (
  SELECT c.oid, n.nspname, c.relname, c.relpages, c.reltuples, c.reloptions
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN {SYSTEM_SCHEMAS}
     AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp'
     AND c.relpages::bigint * current_setting('block_size')::bigint >= %(min_bytes)s
), widths AS MATERIALIZED (
  SELECT s.schemaname, s.tablename, s.attname, s.null_frac, s.avg_width
    FROM pg_stats s
   WHERE NOT s.inherited
     AND (s.schemaname, s.tablename) IN (SELECT nspname, relname FROM candidates)
)
SELECT c.oid::bigint AS oid, c.nspname AS schema, c.relname AS "table",
       c.relpages::bigint AS pages, GREATEST(c.reltuples, 0)::float8 AS tuples,
       current_setting('block_size')::int AS block_size, c.reloptions,
       count(a.attnum) AS columns, count(w.attname) AS stats_columns,
       COALESCE(sum((1 - w.null_frac) * w.avg_width), 0)::float8 AS data_width,
       COALESCE(max(w.null_frac), 0)::float8 AS max_null_frac,
       COALESCE(bool_or(a.atttypid = 'pg_catalog.name'::regtype), false) AS has_name
  FROM candidates c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN widths w
    ON w.schemaname = c.nspname AND w.tablename = c.relname AND w.attname = a.attname
 GROUP BY c.oid, c.nspname, c.relname, c.relpages, c.reltuples, c.reloptions
 ORDER BY c.relpages DESC
"""

EXTENSION = """
SELECT n.nspname AS schema, has_function_privilege(p.oid, 'EXECUTE') AS allowed
  FROM pg_extension e
  JOIN pg_namespace n ON n.oid = e.extnamespace
  JOIN pg_proc p ON p.pronamespace = e.extnamespace AND p.proname = 'pgstattuple_approx'
 WHERE e.extname = 'pgstattuple'
 LIMIT 1
"""

MEASURE = """
SELECT t.oid::bigint AS oid, a.table_len, a.scanned_percent, a.dead_tuple_len,
       a.approx_free_space
  FROM unnest(%s::oid[]) AS t(oid), LATERAL {function}(t.oid::regclass) AS a
"""


@dataclass(frozen=True)
class TableBloat:
    size: int
    """Bytes of the heap."""
    wasted: int
    """Bytes beyond what the live rows need (dead rows and free space)."""
    method: Method
    scanned_share: float | None = None
    """pgstattuple_approx: the share of pages it read (the rest from the visibility map)."""

    @property
    def ratio(self) -> float:
        return self.wasted / self.size if self.size else 0.0


def _align(size: float) -> int:
    return MAXALIGN * math.ceil(size / MAXALIGN)


def _fillfactor(options: list[str] | None) -> int:
    for item in options or []:
        key, _, value = item.partition("=")
        if key == "fillfactor" and value.isdigit():
            return min(100, max(10, int(value)))
    return 100


def estimate(row: Row) -> TableBloat | None:
    """The catalog estimate for one CANDIDATES row; None without full statistics."""
    if row["stats_columns"] < row["columns"] or row["has_name"] or not row["pages"]:
        return None
    block = row["block_size"]
    bitmap = math.ceil(row["columns"] / 8) if row["max_null_frac"] > 0 else 0
    tuple_size = (
        LINE_POINTER + _align(TUPLE_HEADER + bitmap) + _align(row["data_width"])
    )
    per_page = (block - PAGE_HEADER) * _fillfactor(row["reloptions"]) / 100
    expected = math.ceil(row["tuples"] / max(1, math.floor(per_page / tuple_size)))
    size = row["pages"] * block
    return TableBloat(
        size=size,
        wasted=max(0, row["pages"] - expected) * block,
        method="catalog estimate",
    )


def _role(probe: Probe) -> str:
    user = probe.server.get("user")
    return ident(user) if user else "<this role>"


def _measure(probe: Probe, rows: list[Row]) -> dict[int, TableBloat]:
    """pgstattuple_approx for the largest candidates, when the role may run it."""
    limit = int(probe.t["table_bloat_exact_tables"])
    if not rows or limit <= 0:
        return {}
    found = probe.query("table_bloat_extension", "tables", EXTENSION)
    if not found:
        return {}
    if not found[0]["allowed"]:
        probe.gap(
            "table_bloat_exact",
            "tables",
            "skipped",
            "pgstattuple is installed but this role may not run pgstattuple_approx: "
            "table bloat is estimated from the catalogs",
            expected=True,
            fix=f"GRANT pg_stat_scan_tables TO {_role(probe)}",
        )
        return {}
    function = f"{ident(found[0]['schema'])}.pgstattuple_approx"
    chosen = [r["oid"] for r in rows[:limit]]
    measured = probe.query(
        "table_bloat_exact", "tables", MEASURE.format(function=function), [chosen]
    )
    if measured is None:
        # A degraded measurement, not a blind spot: the estimate covers these tables.
        record = probe.result.checks[-1]
        record.expected = True
        record.reason += "; table bloat is estimated from the catalogs instead"
    return {
        m["oid"]: TableBloat(
            size=m["table_len"],
            wasted=(m["dead_tuple_len"] or 0) + (m["approx_free_space"] or 0),
            method="pgstattuple_approx",
            scanned_share=(m["scanned_percent"] or 0) / 100,
        )
        for m in measured or []
    }


def gather(probe: Probe) -> dict[int, tuple[Row, TableBloat]] | None:
    """Per table oid: the candidate row and its bloat, measured where possible;
    None when the candidates could not be read."""
    rows = probe.query(
        "table_bloat",
        "tables",
        CANDIDATES,
        {"min_bytes": int(probe.t["table_bloat_warning_bytes"])},
    )
    if rows is None:
        return None
    measured = _measure(probe, rows)
    found: dict[int, tuple[Row, TableBloat]] = {}
    for row in rows:
        bloat = measured.get(row["oid"]) or estimate(row)
        if bloat is not None:
            found[row["oid"]] = (row, bloat)
    return found


def _how(bloat: TableBloat) -> str:
    if bloat.method == "pgstattuple_approx":
        return (
            f"measured by pgstattuple_approx, which read {bloat.scanned_share:.0%} of "
            "its pages"
        )
    return "a catalog estimate from pg_stats column widths and tuple headers"


def table_bloat(probe: Probe, facts: TableFacts) -> None:
    t = probe.t
    for row, bloat in (facts.bloat or {}).values():
        if (
            bloat.wasted < t["table_bloat_warning_bytes"]
            or bloat.ratio < t["table_bloat_min_ratio"]
        ):
            continue
        table = qualified(row["schema"], row["table"])
        sql_table = ident(row["schema"], row["table"])
        vacuum = f"VACUUM (ANALYZE) {sql_table}"
        full = f"VACUUM (FULL, ANALYZE) {sql_table}"
        probe.add(
            "warning",
            "table_bloat",
            f"Bloated table {table}",
            detail=(
                f"{table} takes {human_bytes(bloat.size)} but ~{human_bytes(bloat.wasted)} "
                f"({bloat.ratio:.0%}) of it is dead rows and free space ({_how(bloat)}): "
                "sequential scans read it all and it crowds shared_buffers."
            ),
            hint=(
                f"{vacuum} so new rows reuse the space; to give it back to the OS, "
                f"pg_repack (online) or {full} (rewrites the table under an ACCESS "
                "EXCLUSIVE lock: no reads or writes until it ends); then find why "
                "autovacuum fell behind (dead_tuples, long transactions)"
            ),
            object=table,
            model=probe.models.label(row["table"], row["schema"]),
            method=bloat.method,
            bloat_bytes=bloat.wasted,
            size_bytes=bloat.size,
            ratio=round(bloat.ratio, 4),
            sql=[vacuum, full],
        )
