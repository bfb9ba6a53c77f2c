"""Schema: Django schema lints from the catalogs, each mapped to its model and field with
the migration that fixes it (:mod:`.schema_fixes`).

- ``fk_type_mismatch``: a foreign key column whose type differs from the key it
  references (the classic: an ``integer`` column referencing a ``bigint`` primary key
  after a ``DEFAULT_AUTO_FIELD`` change, which fails once the ids pass 2,147,483,647);
- ``duplicate_foreign_key``: the same columns referencing the same key twice;
- ``missing_primary_key``: a table without a primary key;
- ``boolean_index``: a plain index on one boolean column.

Integer primary keys running out of range are ``sequence_near_overflow`` in the tables
section, which measures the sequence against the column's type.

One function per finding code, listed in :data:`CHECKS`: each reads the
:class:`~.schema_facts.SchemaFacts` and adds its findings (the section counts them).
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connections

from django_dbtuning.report.humanize import human_bytes
from django_dbtuning.report.probe import Probe, Row
from django_dbtuning.report.quoting import qualified, quote_ident
from django_dbtuning.report.schema_facts import SchemaFacts, gather, value_shares
from django_dbtuning.report.schema_fixes import (
    INTEGER_TYPES,
    drop_fk_fix,
    fk_type_fix,
    partial_index,
    primary_key_fix,
)


def _fk_names(fk: Row) -> tuple[str, str, str]:
    """The table, the referenced table, and the column list, for prose."""
    return (
        qualified(fk["schema"], fk["table"]),
        qualified(fk["ref_schema"], fk["ref_table"]),
        ", ".join(quote_ident(c) for c in fk["columns"]),
    )


def _narrower(types: list[str], ref_types: list[str]) -> bool:
    return any(
        mine in INTEGER_TYPES
        and theirs in INTEGER_TYPES
        and INTEGER_TYPES.index(mine) < INTEGER_TYPES.index(theirs)
        for mine, theirs in zip(types, ref_types, strict=True)
    )


def fk_type_mismatch(probe: Probe, facts: SchemaFacts) -> None:
    connection = connections[probe.alias]
    seen: set[tuple[object, ...]] = set()
    for fk in facts.foreign_keys or []:
        # Columns referencing a key twice (duplicate_foreign_key) need one fix.
        key = (fk["table_oid"], tuple(fk["attnums"]))
        if fk["types"] == fk["ref_types"] or key in seen:
            continue
        seen.add(key)
        table, ref, columns = _fk_names(fk)
        narrower = _narrower(fk["types"], fk["ref_types"])
        info = probe.models.model(fk["table"], fk["schema"])
        field_label = info.field_label(fk["columns"][0]) if info else None
        hint = fk_type_fix(fk, probe.models, connection)
        consequence = (
            f"once {ref}'s keys pass the {fk['types'][0]} range, rows referencing them "
            "cannot be inserted"
            if narrower
            else "joins compare across types and the column wastes or lacks room"
        )
        probe.add(
            "warning" if narrower else "info",
            "fk_type_mismatch",
            f"Foreign key {table}({columns}) is {', '.join(fk['types'])}, "
            f"{ref} is {', '.join(fk['ref_types'])}",
            detail=(
                f"{quote_ident(fk['name'])} on {table}({columns}) "
                f"({', '.join(fk['types'])}) references {ref}"
                f"({', '.join(quote_ident(c) for c in fk['ref_columns'])}) "
                f"({', '.join(fk['ref_types'])}): {consequence}. The usual cause is a "
                "primary key changed to bigint (DEFAULT_AUTO_FIELD) while a column "
                "referencing it kept integer."
            ),
            hint=hint.text,
            object=f"{table}({columns})",
            model=info.label if info else None,
            field=field_label,
            constraint=fk["name"],
            column_types=fk["types"],
            referenced_types=fk["ref_types"],
            **hint.data(),
        )


def duplicate_foreign_key(probe: Probe, facts: SchemaFacts) -> None:
    groups: dict[tuple[object, ...], list[Row]] = {}
    for fk in facts.foreign_keys or []:
        key = (
            fk["table_oid"],
            tuple(fk["attnums"]),
            fk["ref_oid"],
            tuple(fk["ref_attnums"]),
        )
        groups.setdefault(key, []).append(fk)
    for group in groups.values():
        if len(group) < 2:
            continue
        # Keep the one Django named (<table>_<column>_<hash>_fk_<table>_<column>), else
        # the oldest (rows come ordered by oid).
        kept = next((fk for fk in group if "_fk_" in fk["name"]), group[0])
        for fk in group:
            if fk is kept:
                continue
            table, ref, columns = _fk_names(fk)
            info = probe.models.model(fk["table"], fk["schema"])
            field_label = info.field_label(fk["columns"][0]) if info else None
            hint = drop_fk_fix(fk, kept, ref)
            probe.add(
                "warning",
                "duplicate_foreign_key",
                f"Duplicate foreign key {quote_ident(fk['name'])} on {table}({columns})",
                detail=(
                    f"{quote_ident(fk['name'])} and {quote_ident(kept['name'])} both make "
                    f"{table}({columns}) reference {ref}: every insert and key update of "
                    f"{table}, and every delete on {ref}, checks the rows twice"
                    + (
                        f"; Django's {field_label} declares only one of them"
                        if field_label
                        else ""
                    )
                    + "."
                ),
                hint=hint.text,
                object=f"{table}.{quote_ident(fk['name'])}",
                model=info.label if info else None,
                field=field_label,
                duplicate_of=kept["name"],
                **hint.data(),
            )


def missing_primary_key(probe: Probe, facts: SchemaFacts) -> None:
    for row in facts.without_primary_key or []:
        table = qualified(row["schema"], row["table"])
        info = probe.models.model(row["table"], row["schema"])
        hint = primary_key_fix(row, info)
        pk = info.model._meta.pk if info is not None else None
        probe.add(
            "warning",
            "missing_primary_key",
            f"{table} has no primary key",
            detail=(
                f"{table} (~{row['table_rows']:,} rows) has no primary key: nothing stops "
                "duplicate rows, logical replication cannot replicate its UPDATEs and "
                "DELETEs"
                + (
                    f", and Django's {info.label}.{pk.name} lookups (get, save, delete) "
                    "can match several rows"
                    if info is not None and pk is not None
                    else ""
                )
                + "."
            ),
            hint=hint.text,
            object=table,
            model=info.label if info else None,
            field=f"{info.label}.{pk.name}"
            if info is not None and pk is not None
            else None,
            **hint.data(),
        )


def boolean_index(probe: Probe, facts: SchemaFacts) -> None:
    for row in facts.boolean_indexes or []:
        index = qualified(row["schema"], row["index"])
        table = qualified(row["schema"], row["table"])
        info = probe.models.model(row["table"], row["schema"])
        definition = (
            f"CREATE INDEX {quote_ident(row['index'])} ON {table} USING {row['method']} "
            f"({quote_ident(row['column'])})"
        )
        drop = probe.models.drop_hint(
            schema=row["schema"],
            table=row["table"],
            index=row["index"],
            columns=[row["column"]],
            definition=definition,
        )
        shares = value_shares(row)
        rare = min(shares, key=lambda v: shares[v]) if shares else True
        replacement, create = partial_index(row, rare, probe.models)
        spread = (
            f"{shares[True]:.0%} of its rows are true, {shares[False]:.0%} false"
            if shares
            else "it has no statistics yet"
        )
        probe.add(
            "info",
            "boolean_index",
            f"Index {index} on the boolean {table}.{quote_ident(row['column'])}",
            detail=(
                f"{index} ({human_bytes(row['size_bytes'])}, "
                f"{row['idx_scan'] or 0:,} scans) indexes the boolean "
                f"{quote_ident(row['column'])} alone ({spread}): the planner uses it "
                "only for the rare value, and a partial index holding just those rows "
                "serves that lookup at a fraction of the size and write cost."
            ),
            hint=(
                f"{drop.text}; if queries filter on {quote_ident(row['column'])} = "
                f"{str(rare).lower()}, {replacement}"
            ),
            object=index,
            model=info.label if info else None,
            field=info.field_label(row["column"]) if info else None,
            size_bytes=row["size_bytes"],
            scans=row["idx_scan"],
            rare_value=rare,
            **drop.data(),
            **({"create_sql": create} if create else {}),
        )


CHECKS: dict[str, Callable[[Probe, SchemaFacts], None]] = {
    "fk_type_mismatch": fk_type_mismatch,
    "duplicate_foreign_key": duplicate_foreign_key,
    "missing_primary_key": missing_primary_key,
    "boolean_index": boolean_index,
}


def collect(probe: Probe) -> None:
    section = probe.section("schema")
    facts = gather(probe)
    found = probe.judge(CHECKS, facts)
    # A count only where its query ran: a failed check is a gap, not a clean zero.
    sources = {
        "fk_type_mismatch": facts.foreign_keys,
        "duplicate_foreign_key": facts.foreign_keys,
        "missing_primary_key": facts.without_primary_key,
        "boolean_index": facts.boolean_indexes,
    }
    section.update(
        {code: len(found[code]) for code, rows in sources.items() if rows is not None}
    )
