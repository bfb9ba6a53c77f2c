"""Statements from pg_stat_statements: top by total time, slow queries, N+1 suspects,
missing indexes (:mod:`.suggest`).

Columns follow the extension's version, not the server's, so they are probed. The report
never resets the statistics (other tools read them too). One function per finding code,
listed in :data:`CHECKS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django_dbtuning.report import explain
from django_dbtuning.report.identity import statement
from django_dbtuning.report.probe import MARKER, Probe, Row
from django_dbtuning.report.quoting import ident
from django_dbtuning.report.sqltext import APPLICATION, leading_keyword, strip_literals
from django_dbtuning.report.suggest import suggest
from django_dbtuning.sqllex import mask

EXTENSION = """
SELECT e.extversion AS version, n.nspname AS schema
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'pg_stat_statements'
"""

STATEMENTS = """
WITH s AS (
  SELECT queryid, query, calls, {total} AS total_ms, rows, shared_blks_hit,
         shared_blks_read
    FROM {relation}
   WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
     {toplevel}
     AND query NOT LIKE %(marker)s
     AND (query ~* %(application)s OR query = '<insufficient privilege>')
     AND query !~ %(catalog)s
),
-- pg_stat_statements keeps a row per role: one statement run by a web and a worker
-- role is one statement, its calls and time summed. Other roles' hidden rows (queryid
-- NULL) stay apart, as nothing says they are one statement.
g AS (
  SELECT queryid, min(query) AS query, sum(calls)::bigint AS calls,
         sum(total_ms)::float8 AS total_ms, sum(rows)::bigint AS rows,
         sum(shared_blks_hit)::bigint AS shared_blks_hit,
         sum(shared_blks_read)::bigint AS shared_blks_read
    FROM (SELECT *, CASE WHEN queryid IS NULL THEN row_number() OVER () END AS hidden
            FROM s) AS s
   GROUP BY queryid, hidden
)
SELECT *, sum(total_ms) OVER () AS all_ms, sum(calls) OVER () AS all_calls,
       count(*) OVER () AS tracked,
       count(*) FILTER (WHERE queryid IS NULL) OVER () AS hidden_texts
  FROM g ORDER BY {order} DESC LIMIT %(limit)s
"""

INFO = "SELECT dealloc, stats_reset FROM {relation}"

# Only the application's statements, by their first word after comments and parentheses
# (an allowlist: transaction plumbing, DDL and every other utility statement stay out,
# and utility statements are stored with their literals, CREATE ROLE ... PASSWORD '...').
# The server-side pattern cannot follow nested comments; sqltext.leading_keyword checks
# each row again in Python.
APPLICATION_PATTERN = (
    r"^([ \t\n\r\f\v(]|/\*([^*]|\*+[^*/])*\*+/|--[^\n\r]*[\n\r])*"
    r"(" + "|".join(sorted(APPLICATION)) + r")\M"
)
CATALOG = (
    r"\m(pg_catalog|information_schema|pg_stat_[a-z_]+|pg_statio_[a-z_]+|pg_stats"
    r"|pg_class|pg_index|pg_indexes|pg_settings|pg_attribute|pg_attrdef|pg_constraint"
    r"|pg_depend|pg_sequences|pg_namespace|pg_database|pg_extension|pg_roles|pg_am"
    r"|pg_type|pg_proc|pg_locks|pg_tables|pg_views|pg_matviews|pg_description"
    r"|pg_collation|pg_inherits|pg_trigger|pg_control_system|pg_get_[a-z_]+"
    r"|pg_relation_size|pg_table_size|pg_total_relation_size|pg_database_size"
    r"|pg_has_role|pg_is_in_recovery|pg_postmaster_start_time|pg_blocking_pids"
    r"|pg_stat_force_next_flush|set_config|current_setting|has_sequence_privilege)\M"
)

_FROM = re.compile(r'(?<![\w$\x80-\U0010ffff])FROM(?:[ \t\n\r\f\v]+|(?="))', re.I)
# A name as PostgreSQL reads it: quoted ("" is one quote) or a word it folds to lower case.
_NAME = r'"((?:[^"]|"")+)"|([A-Za-z_\x80-\U0010ffff][\w$\x80-\U0010ffff]*)'
_QUALIFIED = re.compile(rf"(?:{_NAME})(?:[ \t\n\r\f\v]*\.[ \t\n\r\f\v]*(?:{_NAME}))?")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _relation(query: str) -> tuple[str | None, str] | None:
    """The outermost ``FROM`` relation of ``query``: (schema or None, table).

    Read from the masked text: pg_stat_statements keeps comments, and a comment or a
    literal holding "FROM secret" must not become a table name in a finding. Quoted names
    stand in it as placeholders, so a ``FROM`` or a parenthesis in one is no SQL. A
    ``FROM`` inside parentheses (``EXTRACT(YEAR FROM "t"."d")``, a subquery) counts only
    when the statement has none outside them, and only when the text was read to its end.
    """
    masked = mask(query)
    text = masked.text
    found: tuple[int, re.Match[str]] | None = None
    depth, counted = 0, 0
    for keyword in _FROM.finditer(text):
        depth += text.count("(", counted, keyword.start())
        depth -= text.count(")", counted, keyword.start())
        counted = keyword.start()
        name = _QUALIFIED.match(text, keyword.end())
        if name is not None and (found is None or depth < found[0]):
            found = (depth, name)
            if depth <= 0:
                break
    # A nested FROM only, and the outermost may lie past where reading stopped: no guess.
    if found is None or (found[0] > 0 and not masked.complete):
        return None
    name = _QUALIFIED.fullmatch(masked.restore(found[1].group(0)))
    if name is None:
        return None
    schema, table = _unquote(name, 1), _unquote(name, 3)
    return (schema, table) if table is not None else (None, str(schema))


def _unquote(name: re.Match[str], group: int) -> str | None:
    """Part ``group`` (1 or 3) of a qualified name as the catalog spells it."""
    if name.group(group) is not None:
        return name.group(group).replace('""', '"')
    word = name.group(group + 1)
    return word.translate(_ASCII_LOWER) if word is not None else None


def _label(probe: Probe, query: str) -> str | None:
    """The model of the statement's outermost ``FROM`` table, schema-qualified or as the
    search_path finds it."""
    found = _relation(query)
    return probe.models.label(found[1], found[0]) if found is not None else None


def _application(query: str | None) -> bool:
    text = query or ""
    return text.startswith("<insuff") or leading_keyword(text) in APPLICATION


@dataclass
class StatementFacts:
    ranked: list[Row]
    """The application's statements, most total time first."""
    all_ms: float
    """Total time of every tracked statement."""
    info: Row | None
    """pg_stat_statements_info (PostgreSQL 14+)."""


def _extension(probe: Probe) -> str | None:
    """The pg_stat_statements relation, quoted and qualified; None (a gap recorded) when
    the extension is missing."""
    section = probe.section("statements")
    ext = probe.query("pg_stat_statements", "statements", EXTENSION)
    if ext is None:
        return None
    if not ext:
        section["installed"] = False
        # An optional extension: an expected gap, unless --section statements asked.
        probe.gap(
            "statements",
            "statements",
            "skipped",
            "pg_stat_statements is not installed",
            expected=True,
            fix=(
                "add pg_stat_statements to shared_preload_libraries, restart, and "
                "CREATE EXTENSION pg_stat_statements"
            ),
        )
        return None
    section["installed"] = True
    section["extension_version"] = ext[0]["version"]
    section["extension_schema"] = ext[0]["schema"]
    # The extension may live in any schema ("Monitoring"): qualify, quoted.
    return str(ext[0]["schema"])


def total_time_sql(columns: set[str]) -> str:
    """A statement's total time in pg_stat_statements, whatever its version names it:
    execution plus planning (1.8+), execution alone when planning is not tracked, or the
    old ``total_time``."""
    if {"total_exec_time", "total_plan_time"} <= columns:
        return "total_exec_time + total_plan_time"
    return "total_exec_time" if "total_exec_time" in columns else "total_time"


def _statements(probe: Probe, schema: str) -> tuple[list[Row], list[Row]] | None:
    """The application's statements: the top ones by total time, and by calls."""
    relation = ident(schema, "pg_stat_statements")
    probe.probe_columns(
        relation, check="pg_stat_statements_columns", section="statements"
    )
    has = set(probe.columns.get("pg_stat_statements", set()))
    total = total_time_sql(has)
    toplevel = "AND toplevel" if "toplevel" in has else ""
    params: dict[str, Any] = {
        "marker": f"{MARKER}%",
        "application": APPLICATION_PATTERN,
        "catalog": CATALOG,
        "limit": max(probe.top, probe.explain, 100),
    }
    results = probe.queries(
        "statements",
        "statements",
        [
            (
                STATEMENTS.format(
                    total=total, relation=relation, toplevel=toplevel, order=order
                ),
                params,
            )
            for order in ("total_ms", "calls")
        ],
    )
    if results is None:
        return None
    top, frequent = ([r for r in rows if _application(r["query"])] for rows in results)
    return top, frequent


def gather(probe: Probe) -> StatementFacts | None:
    """The section's queries, in the order their checks are listed; None when there is
    nothing to judge."""
    section = probe.section("statements")
    schema = _extension(probe)
    if schema is None:
        return None
    found = _statements(probe, schema)
    if found is None:
        return None
    top, frequent = found
    info = probe.query(
        "pg_stat_statements_info",
        "statements",
        INFO.format(relation=ident(schema, "pg_stat_statements_info")),
    )
    if info:
        section["deallocations"] = info[0]["dealloc"]
        section["stats_reset"] = (
            info[0]["stats_reset"].isoformat() if info[0]["stats_reset"] else None
        )
    rows = {r["queryid"]: r for r in [*top, *frequent]}
    all_ms = float(top[0]["all_ms"]) if top else 0.0
    section["tracked"] = top[0]["tracked"] if top else 0
    section["total_seconds"] = all_ms / 1000
    section["calls"] = int(top[0]["all_calls"]) if top else 0
    # Counted by the server: the rows hold no queryid to tell them apart by.
    hidden = int(top[0]["hidden_texts"]) if top else 0
    if hidden:
        probe.gap(
            "statement_texts",
            "statements",
            "partial",
            f"{hidden} statement text(s) of other roles are hidden "
            "(no N+1 or missing-index judgement for them)",
            expected=True,
            fix=probe.grant_pg_monitor(),
        )
    section["top"] = [
        _summary(probe, r, all_ms) for r in top[: probe.top if probe.top else None]
    ]
    return StatementFacts(
        ranked=sorted(rows.values(), key=lambda r: r["total_ms"], reverse=True),
        all_ms=all_ms,
        info=info[0] if info else None,
    )


def statements_evicted(probe: Probe, facts: StatementFacts) -> None:
    if facts.info is None or not facts.info["dealloc"]:
        return
    dealloc = facts.info["dealloc"]
    probe.add(
        "info",
        "statements_evicted",
        "pg_stat_statements is evicting entries",
        detail=(
            f"{dealloc:,} times the least-used statements were dropped to make room: "
            "rarely run queries are missing from the statistics."
        ),
        hint="raise pg_stat_statements.max (default 5000) and restart",
        object="setting:pg_stat_statements.max",
        deallocations=dealloc,
    )


def _summary(probe: Probe, row: Row, all_ms: float) -> dict[str, Any]:
    calls = row["calls"] or 0
    return {
        "queryid": row["queryid"],
        "query": strip_literals(row["query"] or "", limit=500),
        "model": _label(probe, row["query"] or ""),
        "calls": calls,
        "total_seconds": float(row["total_ms"]) / 1000,
        "mean_ms": float(row["total_ms"]) / calls if calls else None,
        "rows": row["rows"],
        "time_share": float(row["total_ms"]) / all_ms if all_ms else None,
        "cache_hit_ratio": (
            row["shared_blks_hit"] / (row["shared_blks_hit"] + row["shared_blks_read"])
            if (row["shared_blks_hit"] or 0) + (row["shared_blks_read"] or 0)
            else None
        ),
    }


def _rates(row: Row, all_ms: float) -> tuple[int, float, float]:
    """Calls, mean ms per call, and share of all database time."""
    calls = row["calls"] or 0
    total_ms = float(row["total_ms"])
    return (
        calls,
        total_ms / calls if calls else 0.0,
        total_ms / all_ms if all_ms else 0.0,
    )


def _slow(t: Mapping[str, float], calls: int, mean: float) -> bool:
    return bool(
        calls and mean >= t["slow_query_mean_ms"] and calls >= t["slow_query_min_calls"]
    )


def _named(probe: Probe, query: str) -> tuple[str | None, str, str]:
    """The statement's model label, `` on <model or table>``, and its masked text."""
    found = _relation(query)  # read once: it masks the whole text
    label = probe.models.label(found[1], found[0]) if found is not None else None
    table = found[1] if found is not None else None
    where = f" on {label}" if label else (f" on {table}" if table else "")
    return label, where, strip_literals(query, limit=200)


def slow_query(probe: Probe, facts: StatementFacts) -> None:
    for row in facts.ranked:
        calls, mean, share = _rates(row, facts.all_ms)
        if not _slow(probe.t, calls, mean):
            continue
        label, where, text = _named(probe, row["query"] or "")
        probe.add(
            "warning",
            "slow_query",
            f"Slow query{where}: {mean:,.1f} ms mean over {calls:,} calls",
            detail=(
                f"queryid {row['queryid']} averages {mean:,.1f} ms over {calls:,} "
                f"calls ({share:.0%} of all database time): {text}"
            ),
            hint=(
                "EXPLAIN (ANALYZE, BUFFERS) it with typical values; a missing index shows "
                "up as a Seq Scan with a big 'Rows Removed by Filter'"
                + (f" (add it to {label}.Meta.indexes)" if label else "")
            ),
            object=f"queryid:{row['queryid']}",
            model=label,
            statement=statement(row["query"]),
            calls=calls,
            mean_ms=mean,
            time_share=share,
        )


def n_plus_one_suspect(probe: Probe, facts: StatementFacts) -> None:
    t = probe.t
    for row in facts.ranked:
        calls, mean, share = _rates(row, facts.all_ms)
        # A statement slow enough to be a slow_query is reported as that, not twice.
        if not calls or _slow(t, calls, mean):
            continue
        rows_per_call = (row["rows"] or 0) / calls
        if not (
            (row["query"] or "").lstrip().upper().startswith("SELECT")
            and calls >= t["n_plus_one_min_calls"]
            and mean <= t["n_plus_one_max_mean_ms"]
            and rows_per_call <= t["n_plus_one_max_rows_per_call"]
            and share >= t["n_plus_one_min_time_share"]
        ):
            continue
        label, where, text = _named(probe, row["query"] or "")
        probe.add(
            "warning",
            "n_plus_one_suspect",
            f"N+1 suspect{where}: {calls:,} calls of {mean:.2f} ms",
            detail=(
                f"queryid {row['queryid']} fetched ~{rows_per_call:.1f} row per call "
                f"{calls:,} times ({share:.0%} of all database time): the shape of "
                f"a per-object lookup inside a loop. {text}"
            ),
            hint=(
                "find the loop with django_dbtuning's QueryCountMiddleware or "
                "track_queries() and load the relation in one query with "
                "select_related()/prefetch_related()"
                + (f" (the model is {label})" if label else "")
            ),
            object=f"queryid:{row['queryid']}",
            model=label,
            statement=statement(row["query"]),
            calls=calls,
            mean_ms=mean,
            time_share=share,
        )


def missing_index(probe: Probe, facts: StatementFacts) -> None:
    suggest(probe, facts.ranked, facts.all_ms)


CHECKS: dict[str, Callable[[Probe, StatementFacts], None]] = {
    "statements_evicted": statements_evicted,
    "slow_query": slow_query,
    "n_plus_one_suspect": n_plus_one_suspect,
    "missing_index": missing_index,
}


def collect(probe: Probe) -> None:
    facts = gather(probe)
    if facts is not None:
        probe.judge(CHECKS, facts)
        if probe.explain:
            explain.collect(probe, facts.ranked, facts.all_ms, probe.explain)
