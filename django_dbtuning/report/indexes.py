"""Indexes: unused, duplicate, overlapping, invalid, foreign keys without one, sizes, bloat.

PgHero's judgement, with pg-index-health's split between identical and prefix-overlapping
indexes. Primary-key, unique, exclusion and replica-identity indexes are never drop
candidates; neither is an index that backs a constraint.

One function per finding code, listed in :data:`CHECKS`: each reads the
:class:`~.index_facts.IndexFacts` and adds its findings (the section counts them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django_dbtuning.report.djangomap import Hint
from django_dbtuning.report.findings import Severity
from django_dbtuning.report.humanize import human_bytes, iso
from django_dbtuning.report.index_facts import (
    BLOCK_SIZE,
    Bloat,
    Index,
    IndexFacts,
    gather,
)
from django_dbtuning.report.noise import statistics_too_young
from django_dbtuning.report.probe import Probe
from django_dbtuning.report.quoting import qualified, quote_ident


def _shown(columns: Sequence[str | None]) -> str:
    return ", ".join(quote_ident(c) if c else "expr" for c in columns)


def invalid_index(probe: Probe, facts: IndexFacts) -> None:
    for index in facts.indexes:
        if index.is_valid or index.oid in facts.being_built:
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
            model=probe.models.label(index.table, index.schema),
            size_bytes=index.size_bytes,
            unique=index.is_unique,
            sql=[drop],
        )


def _usage(probe: Probe, index: Index) -> str | None:
    """How little ``index`` was used, or None when it is used enough."""
    t = probe.t
    if index.idx_scan <= t["unused_index_max_scans"]:
        usage = (
            "never scanned"
            if index.idx_scan == 0
            else f"scanned only {index.idx_scan} times"
        )
        since = probe.server.get("stats_since") or "the statistics were reset"
        return f"{usage} since {since}"
    now: datetime | None = probe.server.get("now")
    last: datetime | None = index.last_idx_scan
    if last is None or now is None:
        return None
    stale_days = (now - last).total_seconds() / 86400
    if stale_days < t["unused_index_last_scan_days"]:
        return None
    return f"last scanned {iso(last)} ({stale_days:.0f} days ago)"


def unused_index(probe: Probe, facts: IndexFacts) -> None:
    candidates = [
        (index, usage)
        for index in facts.indexes
        if index.droppable
        and index.is_valid
        and index.table_kind != "p"
        and index.idx_scan is not None
        and (usage := _usage(probe, index)) is not None
    ]
    size = sum(index.size_bytes or 0 for index, _ in candidates)
    if statistics_too_young(probe, len(candidates), size):
        return
    age = probe.server.get("stats_age_seconds")
    stats_age = float(age) if age is not None else None
    for index, usage in candidates:
        hint = index.drop_hint(probe.models)
        big = (index.size_bytes or 0) >= probe.t["unused_index_warning_bytes"]
        severity: Severity = "warning" if big else "info"
        caveats = [
            "scans on replicas are not counted here (give dbreport their aliases too)"
        ]
        head = index.key_attnums
        if any(
            sorted(head[: len(cols)]) == cols
            for cols in facts.fk_columns.get(index.table_oid, [])
        ):
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
            model=probe.models.label(index.table, index.schema),
            size_bytes=index.size_bytes,
            scans=index.idx_scan,
            schema=index.schema,
            index=index.index,
            last_scan=iso(index.last_idx_scan),
            stats_age_seconds=stats_age,
            **hint.data(),
        )


def _kept(other: Index) -> str:
    kind = (
        "the primary key"
        if other.is_primary
        else "a unique index"
        if other.is_unique
        else "an index"
    )
    return f"{kind} {other.name}"


def _redundant_hint(probe: Probe, candidate: Index, other: Index) -> Hint:
    """How to drop ``candidate``, in the terms of whatever declares it: a model change
    only for the index a model declares, SQL for one no model does."""
    models = probe.models
    origin = candidate.origin(models)
    info = models.model(candidate.table, candidate.schema)
    head = info.field_for(candidate.key_columns[0]) if info else None
    if (
        origin.kind == "field"
        and head is not None
        and info is not None
        and info.editable
        and getattr(head, "many_to_one", False)
        and len(candidate.key_columns) == 1
    ):
        return Hint(
            f"set db_index=False on the ForeignKey {info.label}.{head.name}: "
            f"{other.name} already serves lookups by {head.name} (run makemigrations)"
        )
    hint = candidate.drop_hint(models)
    kept = other.origin(models)
    if origin.kind == "unknown" and kept.kind != "unknown":
        # A RunSQL twin of a declared index: the model's own stays, this one goes.
        return Hint(
            f"{candidate.name} is declared by no model (a RunSQL migration, or made by "
            f"hand) and {other.name} by {kept.where}: keep that one, and {hint.text}",
            hint.sql,
            hint.migration,
        )
    return hint


def _redundant(
    probe: Probe, code: str, title: str, candidate: Index, other: Index, detail: str
) -> None:
    hint = _redundant_hint(probe, candidate, other)
    # Django's own tables (auto-created M2M, contrib apps) carry such indexes by design
    # and cannot be changed through models: worth knowing, not a warning.
    probe.add(
        "warning"
        if probe.models.editable(candidate.table, candidate.schema)
        else "info",
        code,
        f"{title} {candidate.name} on {candidate.table_name}",
        detail=detail,
        hint=hint.text,
        object=candidate.name,
        model=probe.models.label(candidate.table, candidate.schema),
        size_bytes=candidate.size_bytes,
        covered_by=other.name,
        **hint.data(),
    )


def _covered(facts: IndexFacts, identical: bool) -> list[tuple[Index, Index]]:
    return [
        (candidate, cover[0])
        for candidate in facts.indexes
        if (cover := facts.covers.get(candidate.oid)) is not None
        and cover[1] is identical
    ]


def duplicate_index(probe: Probe, facts: IndexFacts) -> None:
    for candidate, other in _covered(facts, identical=True):
        detail = (
            f"{candidate.name} indexes exactly the same columns of "
            f"{candidate.table_name} as {_kept(other)} "
            f"({_shown(candidate.key_columns)}): "
            f"{human_bytes(candidate.size_bytes)} and a write penalty for nothing."
        )
        _redundant(
            probe, "duplicate_index", "Duplicate index", candidate, other, detail
        )


def overlapping_index(probe: Probe, facts: IndexFacts) -> None:
    for candidate, other in _covered(facts, identical=False):
        detail = (
            f"{candidate.name} ({_shown(candidate.key_columns)}) "
            f"is a leading prefix of {_kept(other)} "
            f"({_shown(other.key_columns)}), which serves "
            f"the same lookups; {human_bytes(candidate.size_bytes)} could go "
            "(the wider index is a little slower for these lookups)."
        )
        _redundant(
            probe, "overlapping_index", "Overlapping index", candidate, other, detail
        )


def fk_without_index(probe: Probe, facts: IndexFacts) -> None:
    """Foreign keys no valid, full index starts with."""
    for fk in facts.foreign_keys or []:
        cols = sorted(fk["attnums"])
        if any(
            i.is_valid
            and i.predicate is None
            and sorted(i.key_attnums[: len(cols)]) == cols
            for i in facts.by_table.get(fk["table_oid"], [])
        ):
            continue
        table = qualified(fk["schema"], fk["table"])
        ref = qualified(fk["ref_schema"], fk["ref_table"])
        columns = ", ".join(quote_ident(c) for c in fk["columns"])
        name = quote_ident(fk["name"])
        hint = probe.models.create_fk_index_hint(
            fk["schema"], fk["table"], fk["columns"]
        )
        big = fk["table_rows"] >= probe.t["fk_without_index_warning_rows"]
        info = probe.models.model(fk["table"], fk["schema"])
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


def index_bloat(probe: Probe, facts: IndexFacts) -> None:
    for index in facts.indexes:
        bloat: Bloat | None = (facts.bloat or {}).get(index.oid)
        if bloat is None:
            continue
        size = index.relpages * BLOCK_SIZE
        ratio = bloat.wasted / size
        if (
            bloat.wasted < probe.t["index_bloat_warning_bytes"]
            or ratio < probe.t["index_bloat_min_ratio"]
        ):
            continue
        reindex = f"REINDEX INDEX CONCURRENTLY {index.sql_name}"
        probe.add(
            "warning",
            "index_bloat",
            f"Bloated index {index.name}",
            detail=(
                f"{index.name} takes {human_bytes(size)} "
                f"but its {index.table_rows:,} entries need about "
                f"{human_bytes(bloat.expected_pages * BLOCK_SIZE)}: "
                f"~{human_bytes(bloat.wasted)} ({ratio:.0%}) is dead space (an "
                "estimate from pg_stats)."
            ),
            hint=f"{reindex}; (not inside a transaction)",
            object=index.name,
            model=probe.models.label(index.table, index.schema),
            bloat_bytes=bloat.wasted,
            size_bytes=size,
            sql=[reindex],
        )


CHECKS: dict[str, Callable[[Probe, IndexFacts], None]] = {
    "invalid_index": invalid_index,
    "fk_without_index": fk_without_index,
    "unused_index": unused_index,
    "duplicate_index": duplicate_index,
    "overlapping_index": overlapping_index,
    "index_bloat": index_bloat,
}


def collect(probe: Probe) -> None:
    section = probe.section("indexes")
    facts = gather(probe)
    if facts is None:
        return
    indexes = facts.indexes
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
    found = probe.judge(CHECKS, facts)
    if facts.foreign_keys is not None:
        section["fk_without_index_count"] = len(found["fk_without_index"])
    bloat = facts.bloat
    if bloat is not None:
        section["bloat_bytes_estimate"] = sum(b.wasted for b in bloat.values())
    # On young statistics the check adds one stats_too_young note instead.
    unused = [f for f in found["unused_index"] if f.code == "unused_index"]
    section["unused_count"] = len(unused)
    section["unused_size_bytes"] = sum(f.data["size_bytes"] or 0 for f in unused)
    section["invalid_count"] = sum(1 for i in indexes if not i.is_valid)
    section["duplicate_count"] = len(found["duplicate_index"]) + len(
        found["overlapping_index"]
    )
    largest = sorted(indexes, key=lambda i: i.size_bytes or 0, reverse=True)
    section["largest"] = [_summary(probe, i, bloat or {}) for i in largest[: probe.top]]
    probe.result.objects["indexes"] = [
        {
            "schema": i.schema,
            "table": i.table,
            "index": i.index,
            "scans": i.idx_scan or 0,
            "size_bytes": i.size_bytes or 0,
            "table_kind": i.table_kind,
        }
        for i in indexes
    ]


def _summary(probe: Probe, index: Index, bloat: dict[int, Bloat]) -> dict[str, Any]:
    estimate = bloat.get(index.oid)
    return {
        "index": index.name,
        "table": index.table_name,
        "model": probe.models.label(index.table, index.schema),
        "size_bytes": index.size_bytes,
        "scans": index.idx_scan,
        "last_scan": iso(index.last_idx_scan),
        "unique": index.is_unique,
        "primary": index.is_primary,
        "valid": index.is_valid,
        "bloat_bytes": estimate.wasted if estimate is not None else None,
    }
