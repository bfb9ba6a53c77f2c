"""Missing-index suggestions from pg_stat_statements, PgHero-style, without extensions.

Django's SQL is regular (``WHERE "shop_order"."status" = $1 AND ...``), so the equality
and range filters of single-table statements can be read without a full parser. For each
statement that costs real time on a table large enough to matter, the filter columns are
ordered by selectivity from ``pg_stats`` (rows per value = rows / n_distinct), the index
stops at two columns, after a range column, or once another column no longer cuts the
rows to a third; a suggestion an existing index already starts with is dropped. The
hint is a ``Meta.indexes`` line for the model. Estimates, not plans: the detail says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django_dbtuning.report.probe import Probe, Row
from django_dbtuning.report.quoting import column_list, ident, qualified, quote_ident

LEADING = """
SELECT t.relname AS "table", n.nspname AS schema,
       pg_table_is_visible(t.oid) AS visible,
       GREATEST(t.reltuples, 0)::bigint AS rows,
       ARRAY(SELECT a.attname::text
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) AS columns,
       i.indpred IS NULL AS full_index, i.indisvalid AS valid
  FROM pg_class t
  JOIN pg_namespace n ON n.oid = t.relnamespace
  LEFT JOIN pg_index i ON i.indrelid = t.oid
 WHERE t.relname = ANY(%s) AND t.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""

STATS = """
SELECT schemaname AS schema, tablename AS "table", attname AS "column", n_distinct,
       null_frac
  FROM pg_stats WHERE tablename = ANY(%s)
"""

# A name as PostgreSQL writes it: quoted (inner quotes doubled) or a plain word.
_QUOTED = r'"(?:[^"]|"")+"'
_NAME = rf"(?:{_QUOTED}|[A-Za-z_][\w$]*)"
_SINGLE_TABLE = re.compile(
    rf"^\s*(?:SELECT\b.*?\bFROM|UPDATE|DELETE\s+FROM)\s+"
    rf"(?P<relation>{_NAME}(?:\.{_NAME})?)(?:\s|$)",
    re.I | re.S,
)
_JOIN = re.compile(r"\bJOIN\b|\bFROM\b[^()]*?,", re.I)
# Django quotes every column: "table"."column" = $1, "schema"."table"."column" IN (...).
_FILTER = re.compile(
    rf"(?P<qualifier>(?:{_NAME}\.){{0,2}})(?P<c>{_QUOTED})\s*"
    r"(?P<op>=|<=|>=|<|>|IN\b|=\s*ANY)",
    re.I,
)
_PART = re.compile(_NAME)


def _names(text: str) -> list[str]:
    """``"Other Schema".t`` -> ``['Other Schema', 't']``: quotes undone, plain words
    folded to lower case, as PostgreSQL reads them."""
    return [
        part[1:-1].replace('""', '"') if part.startswith('"') else part.lower()
        for part in _PART.findall(text)
    ]


def _where(query: str) -> str | None:
    upper = query.upper()
    start = upper.find(" WHERE ")
    if start < 0:
        return None
    end = len(query)
    for keyword in (
        " ORDER BY ",
        " GROUP BY ",
        " LIMIT ",
        " RETURNING ",
        " FOR UPDATE",
    ):
        found = upper.find(keyword, start)
        if found >= 0:
            end = min(end, found)
    return query[start + 7 : end]


def relation_filters(
    query: str,
) -> tuple[str | None, str, list[tuple[str, bool]]] | None:
    """``(schema or None, table, [(column, is_range), ...])`` for a single-table
    statement, else None."""
    head = _SINGLE_TABLE.match(query)
    if head is None or _JOIN.search(query[head.start("relation") :]):
        return None
    *qualifier, table = _names(head.group("relation"))
    schema = qualifier[0] if qualifier else None
    where = _where(query)
    if where is None or re.search(r"\bOR\b", where, re.I):
        return None
    found: list[tuple[str, bool]] = []
    for match in _FILTER.finditer(where):
        parts = _names(match.group("qualifier"))
        if parts and (parts[-1] != table or (len(parts) == 2 and parts[0] != schema)):
            continue
        column = _names(match.group("c"))[0]
        is_range = match.group("op") in ("<", ">", "<=", ">=")
        if column not in (c for c, _ in found):
            found.append((column, is_range))
    return (schema, table, found) if found else None


def _rows_per_value(rows: int, stats: Row | None) -> float | None:
    if stats is None or stats["n_distinct"] is None:
        return None
    distinct = float(stats["n_distinct"])
    if distinct < 0:
        distinct = -distinct * rows
    if distinct <= 0:
        return None
    return max(1.0, rows * (1 - float(stats["null_frac"] or 0)) / distinct)


Relation = tuple[str, str]


def _resolve(
    schema: str | None, table: str, known: dict[Relation, Row]
) -> Relation | None:
    """The relation a statement names: its schema when qualified, else the table the
    search path shows (or the only one of that name)."""
    if schema is not None:
        return (schema, table) if (schema, table) in known else None
    matches = [key for key in known if key[1] == table]
    visible = [key for key in matches if known[key]["visible"]]
    if visible:
        return visible[0]
    return matches[0] if len(matches) == 1 else None


def suggest(probe: Probe, statements: Iterable[Row], all_ms: float) -> None:
    """Add ``missing_index`` findings for the costly statements of ``statements``."""
    t = probe.t
    candidates: list[tuple[Row, str | None, str, list[tuple[str, bool]]]] = []
    for row in statements:
        calls = row["calls"] or 0
        share = float(row["total_ms"]) / all_ms if all_ms else 0.0
        if calls < t["missing_index_min_calls"] or (
            share < t["missing_index_min_time_share"]
            and float(row["total_ms"]) / max(1, calls) < t["slow_query_mean_ms"]
        ):
            continue
        parsed = relation_filters(row["query"] or "")
        if parsed is not None:
            candidates.append((row, *parsed))
    if not candidates:
        return
    tables = sorted({table for _, _, table, _ in candidates})
    results = probe.queries(
        "index_suggestions",
        "statements",
        [(LEADING, [tables]), (STATS, [tables])],
    )
    if results is None:
        return
    leading_rows, stats_rows = results
    known: dict[Relation, Row] = {}
    indexed: dict[Relation, list[list[str]]] = {}
    for r in leading_rows:
        key = (r["schema"], r["table"])
        known[key] = r
        if r["columns"] and r["valid"] and r["full_index"]:
            indexed.setdefault(key, []).append(list(r["columns"]))
    stats = {(r["schema"], r["table"], r["column"]): r for r in stats_rows}
    suggested: set[tuple[Relation, tuple[str, ...]]] = set()
    for row, schema, table, columns in candidates:
        relation = _resolve(schema, table, known)
        if relation is None:
            continue
        rows = known[relation]["rows"]
        if rows < t["missing_index_min_rows"]:
            continue
        chosen = choose_columns(rows, relation, columns, stats)
        if not chosen:
            continue
        names = [c for c, _ in chosen]
        if any(
            existing[: len(names)] == names for existing in indexed.get(relation, [])
        ):
            continue
        if (relation, tuple(names)) in suggested:
            continue
        suggested.add((relation, tuple(names)))
        _finding(probe, row, relation, rows, chosen, all_ms)


def choose_columns(
    rows: int,
    relation: Relation,
    columns: list[tuple[str, bool]],
    stats: dict[tuple[str, str, str], Row],
) -> list[tuple[str, float]]:
    """The index columns for ``columns`` (``(name, is_range)``) of a table of ``rows``
    rows, with the rows an index would still read after each; ``stats`` are pg_stats
    rows by (schema, table, column). Empty when an index would barely filter."""
    estimated = [
        (column, per_value, is_range)
        for column, is_range in columns
        if (per_value := _rows_per_value(rows, stats.get((*relation, column))))
        is not None
    ]
    # Equality columns first, most selective first; a range column can only end it.
    estimated.sort(key=lambda item: (item[2], item[1]))
    chosen: list[tuple[str, float]] = []
    remaining = float(rows)
    for column, per_value, is_range in estimated:
        if is_range:
            if not chosen:
                chosen.append((column, remaining / 3))
            break
        after = per_value if not chosen else remaining * per_value / rows
        if chosen and after > remaining * 0.3:
            break
        chosen.append((column, after))
        remaining = after
        if len(chosen) == 2 or remaining <= 50:
            break
    # An index that barely filters is not worth its writes.
    if chosen and chosen[-1][1] > rows * 0.3:
        return []
    return chosen


def _finding(
    probe: Probe,
    row: Row,
    relation: Relation,
    rows: int,
    chosen: list[tuple[str, float]],
    all_ms: float,
) -> None:
    schema, table = relation
    info = probe.models.model(table, schema)
    columns = [c for c, _ in chosen]
    shown = ", ".join(quote_ident(c) for c in columns)
    estimate = chosen[-1][1]
    calls = row["calls"] or 0
    share = float(row["total_ms"]) / all_ms if all_ms else 0.0
    mean = float(row["total_ms"]) / max(1, calls)
    name = qualified(schema, table)
    create = (
        f"CREATE INDEX CONCURRENTLY ON {ident(schema, table)} {column_list(columns)}"
    )
    sql: list[str] = []
    if info is not None:
        fields = [
            found.name if (found := info.field_for(c)) is not None else c
            for c in columns
        ]
        hint = (
            f"add models.Index(fields={fields!r}, name=...) to {info.label}.Meta.indexes "
            "and run makemigrations (AddIndexConcurrently on a large table); confirm "
            "with EXPLAIN (ANALYZE) before and after"
        )
    else:
        sql = [create]
        hint = (
            f"{create}; (not inside a transaction) confirm with EXPLAIN (ANALYZE) "
            "before and after"
        )
    probe.add(
        "warning",
        "missing_index",
        f"Missing index on {name} ({shown})",
        detail=(
            f"queryid {row['queryid']} filters {name} (~{rows:,} rows) by "
            f"{shown}: an index would read ~{estimate:,.0f} rows per call "
            f"(estimated from pg_stats). It ran {calls:,} times at {mean:,.2f} ms "
            f"({share:.0%} of all database time), and no index starts with these columns. "
            "Every INSERT and UPDATE will maintain the new index."
        ),
        hint=hint,
        object=f"{name}({','.join(quote_ident(c) for c in columns)})",
        model=info.label if info else None,
        columns=columns,
        queryid=row["queryid"],
        estimated_rows=estimate,
        **({"sql": sql} if sql else {}),
    )
