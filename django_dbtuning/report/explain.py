"""``dbreport --explain``: plan the top statements of pg_stat_statements.

Each of the top statements by total time is planned with ``EXPLAIN (GENERIC_PLAN, VERBOSE,
FORMAT JSON)`` (PostgreSQL 16+: it plans the normalised text, ``$1`` and all, without
values), never ``ANALYZE``: nothing is executed. All of them run in one read-only
transaction that is always rolled back, under the report's ``statement_timeout`` and
``lock_timeout``, each behind its own savepoint, so a statement that cannot be planned
(its table dropped since, a ``$n`` whose type PostgreSQL cannot infer, a table this role
may not read) is reported on its own and the others are still planned.

pg_stat_statements' texts are planned through the simple query protocol (the extended one
would want values for ``$1``), so only a text the shared lexer reads as exactly one
explainable statement is sent. Plans are masked (:func:`.plans.mask_plan`) before anything
keeps them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import errors

from django_dbtuning.report import plan_findings
from django_dbtuning.report.findings import CheckOutcome
from django_dbtuning.report.identity import statement
from django_dbtuning.report.plans import Plan, mask_plan, nodes, relation, summary
from django_dbtuning.report.probe import MARKER, Probe, Row, first_line
from django_dbtuning.report.quoting import quote_ident
from django_dbtuning.report.sqltext import (
    DATA,
    leading_keyword,
    shows_values,
    strip_literals,
)
from django_dbtuning.report.suggest import STATS

DEFAULT_TOP = 20
"""Statements ``--explain`` plans when no number is given."""
GENERIC_PLAN_VERSION = 160000
EXPLAIN = "EXPLAIN (GENERIC_PLAN, VERBOSE, FORMAT JSON) "

Status = Literal["planned", "skipped", "stale", "timeout", "error"]

RELATIONS = """
SELECT n.nspname AS schema, c.relname AS "table",
       GREATEST(c.reltuples, 0)::bigint AS rows,
       c.relpages::bigint * current_setting('block_size')::bigint AS bytes,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
         AS columns,
       (SELECT coalesce(json_agg(k.columns), '[]'::json) FROM (
          SELECT ARRAY(SELECT a.attname::text
                         FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS u(attnum, ord)
                         LEFT JOIN pg_attribute a
                           ON a.attrelid = i.indrelid AND a.attnum = u.attnum
                        WHERE u.ord <= i.indnkeyatts ORDER BY u.ord) AS columns
            FROM pg_index i
           WHERE i.indrelid = c.oid AND i.indisvalid AND i.indpred IS NULL) k)
         AS indexes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""
MEMORY = """
SELECT pg_size_bytes(current_setting('work_mem')) AS work_mem,
       current_setting('hash_mem_multiplier')::float8 AS hash_mem_multiplier
"""

_DENIED = re.compile(
    r"permission denied for (?:table|view|materialized view|relation|schema|sequence"
    r"|function) (.+)$"
)


@dataclass
class Explained:
    """One of the top statements and how planning it went."""

    queryid: Any
    query: str
    """Masked text (literals as ``?``, comments dropped)."""
    calls: int
    total_ms: float
    status: Status = "planned"
    reason: str = ""
    plan: Plan | None = None
    """The masked ``Plan`` node of ``EXPLAIN (FORMAT JSON)``."""
    denied: str | None = None
    """The object a permission error names ("" when it names none); None: no error."""
    statement: str | None = None
    """Its identity in a baseline (:func:`.identity.statement`, of the whole text)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "queryid": self.queryid,
            "query": self.query,
            "calls": self.calls,
            "total_seconds": self.total_ms / 1000,
            "status": self.status,
            "reason": self.reason,
            "summary": summary(self.plan) if self.plan is not None else None,
            "plan": self.plan,
        }


@dataclass
class _Run:
    items: list[tuple[Explained, str]] = field(default_factory=list)
    failed: str | None = None


def statements_to_plan(value: object) -> int:
    """``run_report(explain=...)`` as a number of statements: True is
    :data:`DEFAULT_TOP`, False or 0 none.

    Raises:
        ValueError: anything but a bool or an int >= 0, naming the option.
    """
    if value is True:
        return DEFAULT_TOP
    if value is False or value is None:
        return 0
    if type(value) is not int or value < 0:
        raise ValueError(
            "explain must be True, False or the number of top statements to plan "
            f"(an int >= 0), got {value!r}"
        )
    return value


def _prepare(row: Row) -> tuple[Explained, str | None]:
    """The statement as reported, and the text to plan (None: skipped, reason set)."""
    text = row["query"] or ""
    item = Explained(
        queryid=row["queryid"],
        query=strip_literals(text, limit=500)
        if not text.startswith("<insuff")
        else text,
        calls=int(row["calls"] or 0),
        total_ms=float(row["total_ms"] or 0),
        statement=statement(text),
    )
    if text.startswith("<insuff"):
        item.status, item.reason = "skipped", "its text is hidden from this role"
        return item, None
    kind = leading_keyword(text)
    if kind not in DATA:
        item.status = "skipped"
        item.reason = f"{(kind or 'this').upper()} statements cannot be EXPLAINed"
        return item, None
    # The simple query protocol runs every statement of a text: one only, or none.
    if not shows_values(text):
        item.status, item.reason = "skipped", "the text is not exactly one statement"
        return item, None
    return item, text


def _failed(item: Explained, exc: psycopg.Error, probe: Probe) -> None:
    if isinstance(exc, errors.QueryCanceled | errors.LockNotAvailable):
        item.status = "timeout"
        item.reason = (
            f"lock_timeout {probe.lock_timeout}"
            if isinstance(exc, errors.LockNotAvailable)
            else f"statement_timeout {probe.statement_timeout}"
        )
    elif isinstance(exc, errors.InsufficientPrivilege):
        message = first_line(exc)
        found = _DENIED.search(message)
        item.denied = found.group(1) if found else ""
        item.status, item.reason = "skipped", message
    elif isinstance(
        exc,
        errors.UndefinedTable
        | errors.UndefinedColumn
        | errors.UndefinedObject
        | errors.InvalidSchemaName,
    ) or (
        # "function f(integer) does not exist": dropped; "operator does not exist:
        # unknown = integer": a $n without its type (below).
        isinstance(exc, errors.UndefinedFunction) and "unknown" not in first_line(exc)
    ):
        # pg_stat_statements outlives the schema it was recorded against.
        item.status, item.reason = "stale", first_line(exc)
    elif isinstance(
        exc,
        errors.IndeterminateDatatype
        | errors.AmbiguousParameter
        | errors.AmbiguousFunction
        | errors.UndefinedFunction,
    ):
        # "$1 + $2": the values that told PostgreSQL the types are gone.
        item.status = "skipped"
        item.reason = (
            f"{first_line(exc)} (a generic plan does not know the parameters' types)"
        )
    else:
        # Other messages may quote the statement's text (a syntax error "at or near"
        # a literal): the class and SQLSTATE only.
        item.status = "error"
        item.reason = f"{type(exc).__name__} (SQLSTATE {exc.sqlstate})"


def _plan_one(
    probe: Probe, cur: psycopg.Cursor[Row], item: Explained, text: str
) -> None:
    try:
        # Rolled back, not released: the locks planning took (ACCESS SHARE, ROW
        # EXCLUSIVE on an UPDATE's table) go now, not when the last statement is
        # planned, so a migration never queues behind a table planned earlier.
        with probe.conn.transaction(force_rollback=True):
            cur.execute(f"{MARKER} {EXPLAIN}{text}")
            row = cur.fetchone()
    except psycopg.Error as exc:
        _failed(item, exc, probe)
        return
    # psycopg loads the json column: a list of one {"Plan": ...} per statement.
    document = next(iter(row.values())) if row else None
    if (
        not isinstance(document, list)
        or not document
        or not isinstance(document[0], dict)
    ):
        item.status, item.reason = "error", "EXPLAIN returned no plan"
        return
    item.plan = mask_plan(document[0].get("Plan") or {})


def _plan_all(probe: Probe, run: _Run) -> None:
    conn = probe.conn
    try:
        with conn.transaction() as outer, conn.cursor() as cur:
            # The lexer that vouched for "one statement" reads '…' strings as
            # standard_conforming_strings = on does; with it off (a database or role
            # setting), 'x\' , '; COMMIT; INSERT …' is two strings to the lexer and a
            # COMMIT and an INSERT to the server. The server reads as the lexer did.
            cur.execute(
                f"{MARKER} SELECT set_config('statement_timeout', %s, true),"
                " set_config('lock_timeout', %s, true),"
                " set_config('standard_conforming_strings', 'on', true)",
                [f"{probe.timeouts.statement_ms}ms", f"{probe.timeouts.lock_ms}ms"],
            )
            for item, text in run.items:
                if conn.broken:
                    item.status, item.reason = "error", "the connection was lost"
                    continue
                _plan_one(probe, cur, item, text)
            # Nothing was executed, and nothing is kept either way.
            raise psycopg.Rollback(outer)
    except psycopg.Error as exc:
        run.failed = f"{type(exc).__name__}: {first_line(exc)}"
        for item, _ in run.items:
            if item.status == "planned" and item.plan is None:
                item.status, item.reason = "error", run.failed


def _record(
    probe: Probe, explained: list[Explained], run: _Run, started: float
) -> None:
    record = CheckOutcome(name="explain", section="statements")
    record.duration = time.perf_counter() - started
    probe.result.checks.append(record)
    if run.failed:
        record.status, record.reason = "error", run.failed
        return
    missing = [
        e for e in explained if e.status in ("timeout", "error") or e.denied is not None
    ]
    if not missing:
        return
    record.status = "partial"
    shown = "; ".join(f"queryid {e.queryid}: {e.reason}" for e in missing[:5])
    record.reason = (
        f"{len(missing)} of {len(explained)} statements could not be planned ({shown}"
        + ("; …" if len(missing) > 5 else "")
        + ")"
    )
    # Tables this role may not read are a deployment's choice; timeouts and errors not.
    record.expected = all(e.denied is not None for e in missing)
    denied = sorted({e.denied for e in missing if e.denied})
    if denied:
        record.fix = (
            "grant this role what the statements need on "
            + ", ".join(quote_ident(name) for name in denied)
            + " (EXPLAIN checks privileges as if it ran them: SELECT, UPDATE..., "
            "USAGE on a schema), or accept that they stay unplanned"
        )


def _relations(probe: Probe, explained: list[Explained]) -> plan_findings.Memory | None:
    names = sorted(
        {
            found
            for e in explained
            if e.plan is not None
            for node, _ in nodes(e.plan)
            if (found := relation(node)) is not None
        }
    )
    results = probe.queries(
        "explain_relations",
        "statements",
        [
            (RELATIONS, [[s for s, _ in names], [t for _, t in names]]),
            (MEMORY, ()),
            (STATS, [sorted({t for _, t in names})]),
        ],
    )
    if results is None:
        return None
    rows, memory, stats = results
    return plan_findings.Memory(
        relations={(r["schema"], r["table"]): r for r in rows},
        stats={(r["schema"], r["table"], r["column"]): r for r in stats},
        work_mem=int(memory[0]["work_mem"]),
        hash_mem_multiplier=float(memory[0]["hash_mem_multiplier"]),
    )


def _outcomes(explained: list[Explained]) -> str:
    """One line for the text report: how many statements were planned, and the rest."""
    counts: dict[str, int] = {}
    for item in explained:
        counts[item.status] = counts.get(item.status, 0) + 1
    others = ", ".join(
        f"{counts[status]} {status}"
        for status in ("stale", "skipped", "timeout", "error")
        if status in counts
    )
    return (
        f"--explain planned {counts.get('planned', 0)} of the top {len(explained)} "
        "statements with EXPLAIN (GENERIC_PLAN)"
        + (f" ({others}; JSON statements.explain has each reason)" if others else "")
    )


def collect(probe: Probe, ranked: Sequence[Row], all_ms: float, limit: int) -> None:
    """Plan the first ``limit`` of ``ranked`` (most total time first) and judge the
    plans; on a server before PostgreSQL 16, one skipped check saying why."""
    section = probe.section("statements")
    version_num = int(probe.server.get("version_num") or 0)
    if version_num < GENERIC_PLAN_VERSION:
        version = str(probe.server.get("version") or "?").split()[0]
        probe.gap(
            "explain",
            "statements",
            "skipped",
            f"EXPLAIN (GENERIC_PLAN) needs PostgreSQL 16+, this server is {version}",
            expected=True,
            fix="upgrade to PostgreSQL 16 or later to plan the top statements",
        )
        section["explain"] = {"limit": limit, "planned": 0, "statements": []}
        return
    started = time.perf_counter()
    explained: list[Explained] = []
    run = _Run()
    for row in list(ranked)[:limit]:
        item, text = _prepare(row)
        explained.append(item)
        if text is not None:
            run.items.append((item, text))
    if run.items:
        _plan_all(probe, run)
    _record(probe, explained, run, started)
    section["explain"] = {
        "limit": limit,
        "planned": sum(1 for e in explained if e.status == "planned"),
        "statements": [e.as_dict() for e in explained],
    }
    probe.note(_outcomes(explained))
    if not any(e.plan is not None for e in explained):
        return
    memory = _relations(probe, explained)
    if memory is not None:
        plan_findings.judge(probe, plan_findings.PlanFacts(explained, memory, all_ms))
