"""A finding's identity across runs and machines, for baselines.

A finding is known by its code and the database object it is about, as the report names
it in ``Finding.object`` (``reportapp_volume_pages_9a5ab7ca``, ``shop_order.total``,
``"Other Schema"."Odd Table"``: schema-qualified outside ``public``, quoted as PostgreSQL's
``quote_ident`` quotes): never by the alias that saw it, its sizes, counts, ratios or
timestamps, which change from run to run. The rules, per code:

- index findings (``unused_index``, ``duplicate_index``, ``overlapping_index``,
  ``invalid_index``, ``index_bloat``): the index;
- ``fk_without_index``, ``invalid_constraint``: the table and constraint;
- ``missing_index`` and ``plan_seq_scan``: the table and the set of suggested columns (in
  name order: their order in the suggestion follows the statistics);
- table findings (``seq_scan_heavy``, ``dead_tuples``, ``vacuum_stale``,
  ``analyze_stale``): the table; ``sequence_near_overflow``: the column;
- ``slow_query``, ``n_plus_one_suspect`` and the plan findings of ``--explain``: the
  statement's text with its literals masked (:func:`statement`), never pg_stat_statements'
  queryid, which hashes the OIDs of the tables, functions and types a statement uses: a
  dump restored elsewhere, a database migrated afresh in CI or a function a migration
  re-created gives the same statement another queryid;
- database-wide findings (the database's own ``xid_wraparound``, object
  ``database:<name>``; ``low_cache_hit_ratio`` per kind, table or index): the database,
  whatever its name, so a baseline fits a copy with another name (a table called
  ``database`` is that table, ``"database"``); a table's ``xid_wraparound`` is that
  table's, so that a baseline that knows one table (or the
  database) never hides another table nearing wraparound;
- settings and pool findings: the setting, or the alias whose pool it is;
- any other code: its ``object`` as the report names it.

Some findings describe a moment, not the database, and have no identity: they are never
written to a baseline nor hidden by one. A check that could not run (``check_incomplete``)
and an unreachable database, because a baseline must never silence them; sessions and
load (``long_running_query``, ``idle_in_transaction``, ``blocked_query``,
``connections_near_limit``, ``replication_lag``, any object ``pid:…``); and the note
that statistics are too young to judge unused indexes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from django_dbtuning.report.findings import INCOMPLETE, Finding
from django_dbtuning.report.quoting import quote_ident
from django_dbtuning.sqllex import masked_text

DATABASE = "database"
"""The identity of a database-wide finding's object (``database:<name>``), whatever the
database is called."""

STATS_TOO_YOUNG = "stats_too_young"
"""The code of the info finding that replaces unused_index on young statistics."""

TRANSIENT: frozenset[str] = frozenset(
    {
        INCOMPLETE,
        "database_unreachable",
        "long_running_query",
        "idle_in_transaction",
        "blocked_query",
        "connections_near_limit",
        "replication_lag",
        STATS_TOO_YOUNG,
    }
)


ESCALATING: frozenset[str] = frozenset(
    {"xid_wraparound", "wraparound_vacuum_due", "sequence_near_overflow"}
)
"""Codes whose severity grows with a quantity towards an outage (the database stops
accepting writes, inserts fail): a baseline records the severity it accepted them at, and
the same finding at a worse severity is new, so ``--fail-on error`` still fails when a
table known at warning reaches error."""


class Key(NamedTuple):
    """What a baseline entry stores: the finding's code and its object."""

    code: str
    object: str


def _cache(finding: Finding) -> str:
    return f"database ({finding.data.get('kind') or 'table'})"


def _index_columns(finding: Finding) -> str:
    """A suggested index by its table and its set of columns: their order (most
    selective first) and so the object's follow ``pg_stats``, which another machine's
    data or the next ANALYZE can reorder."""
    return _column_set(finding, finding.data.get("columns") or [])


def _scan_columns(finding: Finding) -> str:
    """``plan_seq_scan``: its object names the indexes' columns (else the filtered
    ones), ordered by ``pg_stats`` as ``missing_index``'s are."""
    indexes = finding.data.get("index_columns") or []
    columns = [c for cols in indexes for c in cols] or finding.data.get("columns")
    return _column_set(finding, columns or [])


def _column_set(finding: Finding, names: list[Any]) -> str:
    columns = [str(c) for c in names]
    shown = f"({','.join(quote_ident(c) for c in columns)})"
    if not columns or not finding.object.endswith(shown):
        return finding.object
    table = finding.object[: -len(shown)]
    return f"{table}({','.join(quote_ident(c) for c in sorted(columns))})"


OBJECT_RULES: dict[str, Callable[[Finding], str]] = {
    "low_cache_hit_ratio": _cache,
    "missing_index": _index_columns,
    "plan_seq_scan": _scan_columns,
}
"""Codes whose object is not ``Finding.object`` as it stands."""


def statement(query: str | None) -> str | None:
    """The identity of a pg_stat_statements entry's statement, ``statement:<digest>``: a
    digest of its text with literals masked, comments dropped and whitespace collapsed
    (the same on every server that runs the same code); None for a text hidden from the
    role."""
    if not query or query.startswith("<insufficient"):
        return None
    text = masked_text(query).encode("utf-8", "surrogatepass")
    return f"statement:{hashlib.blake2b(text, digest_size=8).hexdigest()}"


def _statement_of(finding: Finding) -> str | None:
    known = finding.data.get("statement")
    if finding.object.startswith("queryid:") and isinstance(known, str):
        return known
    return None


def key(finding: Finding) -> Key | None:
    """``finding``'s identity, or None when it has none (see the module doc)."""
    if finding.code in TRANSIENT or finding.object.startswith("pid:"):
        return None
    if (known := _statement_of(finding)) is not None:
        return Key(finding.code, known)
    rule = OBJECT_RULES.get(finding.code)
    if rule is not None:
        return Key(finding.code, rule(finding))
    if finding.object.startswith("database:"):
        return Key(finding.code, DATABASE)
    if finding.object == DATABASE:
        # public.database, which quote_ident leaves bare: the table, quoted (the same
        # name to PostgreSQL), never the database's own identity.
        return Key(finding.code, f'"{DATABASE}"')
    return Key(finding.code, finding.object)


_DIGIT = re.compile(r"[0-9]")


def label(finding: Finding) -> str:
    """A short description for a person reading the baseline file, without numbers that
    change from run to run (so that rewriting the file does not churn)."""
    rest = finding.title.replace(finding.object, "")
    model = f" ({finding.model})" if finding.model else ""
    if not _DIGIT.search(rest):
        return finding.title + model
    named = _statement_of(finding) or finding.object
    return f"{finding.code.replace('_', ' ')}: {named}{model}"
