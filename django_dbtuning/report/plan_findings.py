"""Findings from the plans ``--explain`` got: one function per finding code.

Each ties a frequent statement (at least ``plan_min_calls`` calls) to what its generic
plan does badly, names the statement (query id, masked text) and carries the masked plan
in ``data``. Generic plans estimate for typical values, so these are estimates, as the
details say. ``missing_index`` findings from :mod:`.suggest` are told which of the planned
statements the index would serve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django_dbtuning.report.humanize import human_bytes
from django_dbtuning.report.plan_hints import (
    Relation,
    index_columns,
    index_hint,
    indexed,
)
from django_dbtuning.report.plans import (
    Plan,
    Use,
    column_uses,
    has_or,
    label,
    nodes,
    plain_column,
    relation,
    summary,
    uses_index,
)
from django_dbtuning.report.probe import Probe, Row
from django_dbtuning.report.quoting import qualified, quote_ident
from django_dbtuning.report.suggest import choose_columns

if TYPE_CHECKING:
    from django_dbtuning.report.explain import Explained

ESTIMATED = "Estimated by EXPLAIN (GENERIC_PLAN), for typical values."
_Scan = tuple["Explained", Plan, list[tuple[str, Use]]]
_MB = 1024 * 1024


@dataclass
class Memory:
    """What the plans' judgement reads from the catalogs."""

    relations: dict[Relation, Row]
    stats: dict[tuple[str, str, str], Row]
    """pg_stats rows by (schema, table, column)."""
    work_mem: int
    hash_mem_multiplier: float


@dataclass
class PlanFacts:
    explained: list[Explained]
    memory: Memory
    all_ms: float


def _frequent(probe: Probe, facts: PlanFacts) -> Iterator[tuple[Explained, Plan]]:
    for item in facts.explained:
        if item.plan is not None and item.calls >= probe.t["plan_min_calls"]:
            yield item, item.plan


def _statement(
    item: Explained, all_ms: float, node: Plan | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "queryid": item.queryid,
        "query": item.query,
        "calls": item.calls,
        "total_seconds": item.total_ms / 1000,
        "time_share": item.total_ms / all_ms if all_ms else None,
        "plan": item.plan,
    }
    if node is not None:
        entry["node"] = {k: v for k, v in node.items() if k != "Plans"}
    return entry


def _said(item: Explained, all_ms: float) -> str:
    share = f", {item.total_ms / all_ms:.0%} of all database time" if all_ms else ""
    return f"queryid {item.queryid} ({item.calls:,} calls{share}): {item.query}"


def _filtered_scans(
    facts: PlanFacts, items: Iterable[Explained]
) -> Iterator[tuple[Explained, Plan, Relation, list[tuple[str, Use]]]]:
    """Every sequential scan under a filter in the plans of ``items``, with the columns
    of the scanned table the filter tests."""
    memory = facts.memory
    for item in items:
        for node, _ in nodes(item.plan or {}):
            rel = relation(node)
            if node.get("Node Type") != "Seq Scan" or not node.get("Filter"):
                continue
            if rel is None or rel not in memory.relations:
                continue
            columns = set(memory.relations[rel]["columns"])
            alias = str(node.get("Alias") or rel[1])
            yield item, node, rel, column_uses(str(node["Filter"]), alias, columns)


def _scans(
    probe: Probe, facts: PlanFacts
) -> Iterator[tuple[Explained, Plan, Relation, list[tuple[str, Use]]]]:
    """Sequential scans under a filter of large tables by frequent statements."""
    t = probe.t
    frequent = [item for item, _ in _frequent(probe, facts)]
    for item, node, rel, uses in _filtered_scans(facts, frequent):
        row = facts.memory.relations[rel]
        rows, size = row["rows"], row["bytes"]
        if rows < t["plan_seq_scan_min_rows"] and size < t["plan_seq_scan_min_bytes"]:
            continue
        if float(node.get("Plan Rows") or 0) > rows * t["plan_seq_scan_max_share"]:
            continue  # the filter keeps most rows: a scan is the right plan
        yield item, node, rel, uses


def _seq_scan_indexes(
    memory: Memory, rel: Relation, node: Plan, uses: list[tuple[str, Use]]
) -> list[list[str]] | None:
    """The indexes that would serve a scan's filter; None when one would barely filter.

    Under an OR, one index per column (PostgreSQL combines them with a BitmapOr); else
    the columns :func:`.suggest.choose_columns` picks by selectivity from pg_stats, or,
    without statistics, the equality columns and one range column.
    """
    usable = [(c, u == "range") for c, u in uses if u != "other"]
    if has_or(str(node["Filter"])):
        return [[c] for c, _ in usable]
    if not any((*rel, c) in memory.stats for c, _ in usable):
        return index_columns(uses)
    chosen = choose_columns(memory.relations[rel]["rows"], rel, usable, memory.stats)
    return [[c for c, _ in chosen]] if chosen else None


def _proposed(probe: Probe) -> set[tuple[str, str]]:
    """(table as shown, first column) of this alias' ``missing_index`` findings."""
    found = set()
    for finding in probe.findings:
        columns = [str(c) for c in finding.data.get("columns") or []]
        if finding.database != probe.alias or finding.code != "missing_index":
            continue
        if not columns:
            continue
        tail = "(" + ",".join(quote_ident(c) for c in columns) + ")"
        if finding.object.endswith(tail):
            found.add((finding.object[: -len(tail)], columns[0]))
    return found


def plan_seq_scan(probe: Probe, facts: PlanFacts) -> None:
    memory = facts.memory
    # One finding per fix: statements the same index would serve are listed together.
    grouped: dict[tuple[Relation, tuple[tuple[str, ...], ...]], list[_Scan]] = {}
    proposed = _proposed(probe)
    for item, node, rel, uses in _scans(probe, facts):
        indexes = _seq_scan_indexes(memory, rel, node, uses)
        if indexes is None:
            continue  # an index would barely filter: not worth its writes
        if indexes and all((qualified(*rel), cols[0]) in proposed for cols in indexes):
            continue  # missing_index proposes it, and names the statements it serves
        if any(indexed(memory.relations[rel]["indexes"], cols) for cols in indexes):
            continue  # an index already starts with them: the planner prefers the scan
        key = tuple(tuple(cols) for cols in indexes) or (tuple(c for c, _ in uses),)
        grouped.setdefault((rel, key), []).append((item, node, uses))
    for (rel, key), found in grouped.items():
        usable = any(u != "other" for _, u in found[0][2])
        indexes = [list(cols) for cols in key] if usable else []
        _seq_scan_finding(probe, facts, rel, found, indexes)


def _seq_scan_finding(
    probe: Probe,
    facts: PlanFacts,
    rel: Relation,
    found: list[_Scan],
    indexes: list[list[str]],
) -> None:
    schema, table = rel
    row = facts.memory.relations[rel]
    name = qualified(schema, table)
    filtered = list(dict.fromkeys(c for _, _, uses in found for c, _ in uses))
    shown = ", ".join(quote_ident(c) for c in filtered) or "an expression"
    # The object is the fix (the index's columns), as missing_index's is.
    columns = [c for cols in indexes for c in cols] or filtered
    calls = sum(item.calls for item, _, _ in found)
    item, node, _ = found[0]
    statements = "; ".join(_said(i, facts.all_ms) for i, _, _ in found[:3])
    if indexes:
        hint, sql, model = index_hint(probe, rel, indexes)
    else:
        hint, sql, model = (
            f"the filter tests {shown} in a way a btree index cannot serve (LIKE with a "
            "leading wildcard, a function of the column): an expression index, or a "
            "pg_trgm GIN index for LIKE, would; or filter differently",
            [],
            probe.models.label(table, schema),
        )
    probe.add(
        "warning",
        "plan_seq_scan",
        f"Sequential scan of {name} (~{row['rows']:,} rows) filtered by {shown}, "
        f"{calls:,} calls",
        detail=(
            f"{len(found)} frequent statement(s) read all of {name} (~{row['rows']:,} rows,"
            f" {human_bytes(row['bytes'])}) to keep ~{float(node.get('Plan Rows') or 0):,.0f}"
            f" row(s) per call: {statements}. Plan: {summary(item.plan or node)}. "
            + ESTIMATED
        ),
        hint=hint,
        object=f"{name}({','.join(quote_ident(c) for c in columns)})",
        model=model,
        schema=schema,
        table=table,
        columns=filtered,
        index_columns=indexes,
        rows=row["rows"],
        size_bytes=row["bytes"],
        statements=[_statement(i, facts.all_ms, n) for i, n, _ in found],
        **({"sql": sql} if sql else {}),
    )


def _spills(plan: Plan, memory: Memory) -> Iterator[tuple[Plan, str, float, float]]:
    """Sorts and hashes whose estimated input exceeds the memory they may use."""
    limited = {
        id(child)
        for node, _ in nodes(plan)
        if node.get("Node Type") == "Limit"
        for child in node.get("Plans") or []
    }
    for node, _ in nodes(plan):
        kind = node.get("Node Type")
        estimate = float(node.get("Plan Rows") or 0) * float(
            node.get("Plan Width") or 0
        )
        # An Incremental Sort holds one group of presorted rows at a time: left out.
        if kind == "Sort":
            if id(node) in limited:
                continue  # a top-N heapsort keeps only the limit's rows
            yield node, "sort", estimate, float(memory.work_mem)
        elif kind == "Hash" or (
            kind == "Aggregate" and node.get("Strategy") == "Hashed"
        ):
            budget = memory.work_mem * memory.hash_mem_multiplier
            yield node, "hash", estimate, budget


def _sort_index(node: Plan, memory: Memory) -> tuple[Relation, list[str]] | None:
    """The relation and columns an index would have to cover to feed this sort in order:
    one plain column per key, all read from the one table scanned below."""
    scans = [(n, r) for n, _ in nodes(node) if (r := relation(n)) is not None]
    keys = node.get("Sort Key") or []
    if len(scans) != 1 or scans[0][1] not in memory.relations or not keys:
        return None
    scan, rel = scans[0]
    columns: list[str] = []
    directions = {str(k).endswith(" DESC") for k in keys}
    if len(directions) > 1:
        return None  # mixed directions need an index declared so; leave it to people
    alias, known = (
        str(scan.get("Alias") or rel[1]),
        set(memory.relations[rel]["columns"]),
    )
    for key in keys:
        column = plain_column(str(key), alias, known)
        if column is None:
            return None
        columns.append(column)
    return rel, columns


def plan_spill(probe: Probe, facts: PlanFacts) -> None:
    memory = facts.memory
    for item, plan in _frequent(probe, facts):
        worst = max(
            (
                s
                for s in _spills(plan, memory)
                if s[2] > s[3] * probe.t["plan_spill_min_ratio"]
            ),
            key=lambda s: s[2] / max(s[3], 1.0),
            default=None,
        )
        if worst is None:
            continue
        node, kind, estimate, budget = worst
        # Twice the estimate, in work_mem's terms (a hash gets hash_mem_multiplier
        # times it), rounded up to a power of two megabytes.
        needed = estimate * 2 * memory.work_mem / max(budget, 1.0)
        suggested = 2 ** math.ceil(math.log2(max(needed / _MB, 1)))
        setting = f"SET LOCAL work_mem = '{suggested}MB'"
        hint = (
            f"raise work_mem for this query ({setting} in its transaction, or ALTER ROLE "
            "… SET work_mem for the role that runs it; every sort and hash of every "
            "session may use that much)"
        )
        sql: list[str] = []
        model = None
        served = _sort_index(node, memory) if kind == "sort" else None
        if served is not None and not indexed(
            memory.relations[served[0]]["indexes"], served[1]
        ):
            made, sql, model = index_hint(probe, served[0], [served[1]])
            hint = f"an index in the sort's order removes the sort: {made}; or {hint}"
        probe.add(
            "warning",
            "plan_spill",
            f"{label(node).split(' (')[0]} likely to spill to disk: ~{human_bytes(estimate)}"
            f" for work_mem {human_bytes(memory.work_mem)}",
            detail=(
                f"The {kind} of {_said(item, facts.all_ms)} holds "
                f"~{float(node.get('Plan Rows') or 0):,.0f} rows of "
                f"{node.get('Plan Width')} bytes (~{human_bytes(estimate)}); past "
                f"{human_bytes(budget)} it writes temporary files. Plan: {summary(plan)}. "
                + ESTIMATED
            ),
            hint=hint,
            object=f"queryid:{item.queryid}",
            model=model,
            statement=item.statement,
            kind=kind,
            estimated_bytes=estimate,
            memory_bytes=budget,
            work_mem_bytes=memory.work_mem,
            statements=[_statement(item, facts.all_ms, node)],
            **({"sql": sql} if sql else {}),
        )


def _side(child: Plan, memory: Memory) -> tuple[Plan, Relation] | None:
    """The one table a join input reads, when it reads exactly one."""
    scans = [(n, r) for n, _ in nodes(child) if (r := relation(n)) is not None]
    if len(scans) != 1 or scans[0][1] not in memory.relations:
        return None
    return scans[0]


def _loops(
    plan: Plan, memory: Memory
) -> Iterator[tuple[Plan, float, tuple[Plan, Relation], list[tuple[Plan, Relation]]]]:
    """Nested loops whose inner side reads one table without an index: the node, its
    outer rows, the inner scan, and the scans of both sides."""
    for node, _ in nodes(plan):
        children = node.get("Plans") or []
        if node.get("Node Type") != "Nested Loop" or len(children) != 2:
            continue
        outer, inner = children
        inner_scan = _side(inner, memory)
        if uses_index(inner) or inner_scan is None:
            continue
        sides = [s for s in (_side(outer, memory), inner_scan) if s is not None]
        yield node, float(outer.get("Plan Rows") or 0), inner_scan, sides


def _join_index(
    node: Plan, sides: list[tuple[Plan, Relation]], memory: Memory
) -> tuple[Relation, list[tuple[str, Use]], list[list[str]]] | None:
    """The index that lets the planner probe instead of loop: on the join columns of the
    larger table (it becomes the inner side, probed once per row of the other)."""
    condition = str(node.get("Join Filter") or "")
    found = []
    for scan, rel in sides:
        columns = set(memory.relations[rel]["columns"])
        uses = column_uses(condition, str(scan.get("Alias") or rel[1]), columns)
        indexes = [
            c
            for c in index_columns(uses)
            if not indexed(memory.relations[rel]["indexes"], c)
        ]
        if indexes:
            found.append((memory.relations[rel]["rows"], rel, uses, indexes))
    if not found:
        return None
    _, rel, uses, indexes = max(found, key=lambda f: f[0])
    return rel, uses, indexes


def plan_nested_loop(probe: Probe, facts: PlanFacts) -> None:
    memory = facts.memory
    for item, plan in _frequent(probe, facts):
        for node, outer_rows, (scan, rel), sides in _loops(plan, memory):
            inner_rows = float(scan.get("Plan Rows") or 0)
            comparisons = outer_rows * inner_rows
            if outer_rows < 2 or comparisons < probe.t["plan_nested_loop_min_rows"]:
                continue
            inner = qualified(*rel)
            fix = _join_index(node, sides, memory)
            sql: list[str] = []
            model = None
            if fix is not None:
                hint, sql, model = index_hint(probe, fix[0], fix[2])
                hint = f"index the join columns of {qualified(*fix[0])}: {hint}"
            else:
                hint = (
                    "give the join an equality condition a hash join can use, or an "
                    "index the join condition can probe"
                )
            probe.add(
                "warning",
                "plan_nested_loop",
                f"Nested loop over {inner} without an index: ~{comparisons:,.0f} row "
                "comparisons per call",
                detail=(
                    f"{_said(item, facts.all_ms)} joins ~{outer_rows:,.0f} outer rows, each "
                    f"against ~{inner_rows:,.0f} rows of {inner} read without an index. "
                    f"Plan: {summary(plan)}. {ESTIMATED}"
                ),
                hint=hint,
                object=f"queryid:{item.queryid}",
                model=model,
                statement=item.statement,
                schema=rel[0],
                table=rel[1],
                index_table=list(fix[0]) if fix else None,
                index_columns=fix[2] if fix else [],
                outer_rows=outer_rows,
                inner_rows=inner_rows,
                statements=[_statement(item, facts.all_ms, node)],
                **({"sql": sql} if sql else {}),
            )
            break  # one per statement: the outermost


def serve_missing_indexes(probe: Probe, facts: PlanFacts) -> None:
    """Tell each ``missing_index`` finding which planned statements scan its table under
    a filter on its leading column (the statements the index would serve)."""
    scans = [
        (item, rel, uses)
        for item, _, rel, uses in _filtered_scans(facts, facts.explained)
    ]
    for finding in probe.findings:
        if finding.database != probe.alias or finding.code != "missing_index":
            continue
        columns = [str(c) for c in finding.data.get("columns") or []]
        served: dict[Any, Explained] = {}
        for item, rel, uses in scans:
            wanted = f"{qualified(*rel)}({','.join(quote_ident(c) for c in columns)})"
            if wanted != finding.object or not columns:
                continue
            if any(c == columns[0] and u != "other" for c, u in uses):
                served.setdefault(item.queryid, item)
        finding.data["serves"] = [
            {"queryid": i.queryid, "query": i.query, "calls": i.calls}
            for i in served.values()
        ]
        if served:
            finding.detail += (
                " Planned with --explain, it would serve "
                + "; ".join(_said(i, facts.all_ms) for i in list(served.values())[:3])
                + "."
            )


CHECKS: dict[str, Callable[[Probe, PlanFacts], None]] = {
    "plan_seq_scan": plan_seq_scan,
    "plan_spill": plan_spill,
    "plan_nested_loop": plan_nested_loop,
}


def judge(probe: Probe, facts: PlanFacts) -> None:
    probe.judge(CHECKS, facts)
    serve_missing_indexes(probe, facts)
