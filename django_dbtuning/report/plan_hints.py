"""The index a plan finding proposes: which columns, whether one exists, and the hint
that creates it (the model's ``Meta.indexes`` line, else quoted, schema-qualified SQL)."""

from __future__ import annotations

from django_dbtuning.report.plans import Use
from django_dbtuning.report.probe import Probe
from django_dbtuning.report.quoting import column_list, ident

Relation = tuple[str, str]


def index_columns(uses: list[tuple[str, Use]]) -> list[list[str]]:
    """The index that would serve these filter or join columns, without statistics:
    equality columns first, then one range column (a btree stops using columns after a
    range), three at most."""
    usable = [(c, u) for c, u in uses if u != "other"]
    if not usable:
        return []
    eq = [c for c, u in usable if u == "eq"]
    ranges = [c for c, u in usable if u == "range"]
    return [(eq + ranges[:1])[:3]]


def indexed(existing: list[list[str]] | None, columns: list[str]) -> bool:
    """Whether a valid, non-partial index already starts with ``columns``."""
    existing = existing or []
    return any(list(index[: len(columns)]) == columns for index in existing)


def index_hint(
    probe: Probe, rel: Relation, indexes: list[list[str]]
) -> tuple[str, list[str], str | None]:
    """The hint, the SQL (when no model declares the table) and the model label."""
    schema, table = rel
    creates = [
        f"CREATE INDEX CONCURRENTLY ON {ident(schema, table)} {column_list(cols)}"
        for cols in indexes
    ]
    info = probe.models.model(table, schema)
    if info is not None:
        lines = []
        for cols in indexes:
            fields = [
                found.name if (found := info.field_for(c)) is not None else c
                for c in cols
            ]
            lines.append(f"models.Index(fields={fields!r}, name=...)")
        hint = (
            f"add {' and '.join(lines)} to {info.label}.Meta.indexes and run "
            "makemigrations (AddIndexConcurrently on a large table); confirm with "
            "EXPLAIN (ANALYZE) before and after"
        )
        return hint, [], info.label
    return (
        "; ".join(creates) + "; (not inside a transaction) confirm with EXPLAIN "
        "(ANALYZE) before and after",
        creates,
        None,
    )
