"""The migration that fixes each schema lint, in the terms of the project's models.

Each function returns a :class:`~.djangomap.Hint`: the fix in words (naming the model and
field, and the lock the statement takes), the SQL it runs and the migration operation
(``migrations.AlterField(...)`` when the model is what must change, else
``migrations.RunSQL(...)``), whose strings are exactly the SQL (:mod:`.quoting`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.writer import MigrationWriter

from django_dbtuning.report.djangomap import Hint, ModelInfo, ModelMap
from django_dbtuning.report.probe import Row
from django_dbtuning.report.quoting import (
    column_list,
    ident,
    qualified,
    quote_ident,
    run_sql,
)

INTEGER_TYPES = ("smallint", "integer", "bigint")
AUTO_FIELDS = {
    "smallint": models.SmallAutoField,
    "integer": models.AutoField,
    "bigint": models.BigAutoField,
}
PLAIN_FIELDS = {
    "smallint": models.SmallIntegerField,
    "integer": models.IntegerField,
    "bigint": models.BigIntegerField,
}

REWRITE_LOCK = (
    "ALTER COLUMN ... TYPE rewrites {tables} and rebuilds the indexes under an ACCESS "
    "EXCLUSIVE lock (no reads or writes until it ends) and re-checks the foreign keys "
    "involving the column: on a large table plan a maintenance window, or add a new "
    "column, backfill it in batches and swap it in"
)


def run_sql_many(statements: Sequence[str], reverse: Sequence[str]) -> str:
    """``migrations.RunSQL([...], reverse_sql=[...])`` whose strings are the SQL."""
    return f"migrations.RunSQL({list(statements)!r}, reverse_sql={list(reverse)!r})"


def _owned(info: ModelInfo | None) -> bool:
    return info is not None and info.editable and info.model._meta.managed


def _where(info: ModelInfo | None) -> str:
    """Where the RunSQL goes: a migration of the model's app, or one of the project's."""
    if info is None:
        return "in a migration of one of your apps"
    if not info.editable:
        return (
            f"in a migration of one of your own apps ({info.label} belongs to an "
            "installed package; depend on its latest migration)"
        )
    if not info.model._meta.managed:
        return (
            f"where {info.label}'s table is managed ({info.label} is managed = False)"
        )
    return f"in a new migration of {info.model._meta.app_label}"


def _alter_sql(fk: Row, types: Sequence[str]) -> str:
    changes = ", ".join(
        f"ALTER COLUMN {ident(column)} TYPE {kind}"
        for column, kind in zip(fk["columns"], types, strict=True)
    )
    return f"ALTER TABLE {ident(fk['schema'], fk['table'])} {changes}"


def _retype(field: models.Field[Any, Any], sql_type: str) -> str:
    """``field`` declared with the integer class of ``sql_type``, as makemigrations
    writes it (``models.BigAutoField(auto_created=True, primary_key=True, ...)``)."""
    family = AUTO_FIELDS if isinstance(field, models.AutoField) else PLAIN_FIELDS
    _, _, args, kwargs = field.deconstruct()
    source, _ = MigrationWriter.serialize(family[sql_type](*args, **kwargs))
    return str(source)


def fk_type_fix(fk: Row, models_map: ModelMap, connection: BaseDatabaseWrapper) -> Hint:
    """Bring a foreign key's columns to the referenced key's types: through the model
    when the model is what lags, else by altering the column."""
    alter = _alter_sql(fk, fk["ref_types"])
    reverse = _alter_sql(fk, fk["types"])
    info = models_map.model(fk["table"], fk["schema"])
    field = info.field_for(fk["columns"][0]) if info else None
    lock = REWRITE_LOCK.format(tables=qualified(fk["schema"], fk["table"]))
    raw = Hint(
        f"{alter} {_where(info)}: {run_sql(alter, reverse)}; ({lock})",
        (alter,),
        run_sql(alter, reverse),
    )
    if (
        not isinstance(field, models.ForeignKey)
        or len(fk["columns"]) != 1
        or info is None
    ):
        return raw
    expected = field.db_type(connection)
    column_type, ref_type = fk["types"][0], fk["ref_types"][0]
    target = field.target_field
    label = f"{info.label}.{field.name}"
    target_label = f"{target.model._meta.label}.{target.name}"
    if expected == ref_type:
        return Hint(
            f"{label} references {target_label} ({type(target).__name__}): Django "
            f"expects {expected} and already records it, the column is {column_type} "
            "(a faked or hand-edited migration). AlterField would change nothing; add "
            f"{run_sql(alter, reverse)} {_where(info)} ({lock})",
            (alter,),
            run_sql(alter, reverse),
        )
    target_info = models_map.model(fk["ref_table"], fk["ref_schema"])
    if (
        expected == column_type
        and ref_type in INTEGER_TYPES
        and isinstance(target, models.IntegerField)
        and _owned(target_info)
    ):
        model_name = target.model._meta.model_name
        operation = (
            f"migrations.AlterField(model_name={model_name!r}, name={target.name!r}, "
            f"field={_retype(target, ref_type)})"
        )
        return Hint(
            f"the database has {fk['ref_table']}.{fk['ref_columns'][0]} as {ref_type} but "
            f"the model declares {target_label} as {type(target).__name__} "
            f"({expected}): declare it {_retype(target, ref_type)} (for an implicit id, "
            "set default_auto_field on its AppConfig) and run makemigrations: "
            f"{operation} — Django then alters {label}'s column and every other one "
            f"referencing it ({REWRITE_LOCK.format(tables='each referencing table')})",
            migration=operation,
        )
    return raw


def drop_fk_fix(fk: Row, kept: Row, ref: str) -> Hint:
    table = ident(fk["schema"], fk["table"])
    drop = f"ALTER TABLE {table} DROP CONSTRAINT {ident(fk['name'])}"
    # pg_get_constraintdef: the server's own quoting of the definition.
    add = f"ALTER TABLE {table} ADD CONSTRAINT {ident(fk['name'])} {fk['definition']}"
    code = run_sql(drop, add)
    return Hint(
        f"{drop} in a migration: {code}; it takes an ACCESS EXCLUSIVE lock on "
        f"{qualified(fk['schema'], fk['table'])} and {ref} for a moment (no rewrite, no "
        "scan): run it with a short lock_timeout so it never queues behind a long query "
        f"({quote_ident(kept['name'])} stays)",
        (drop,),
        code,
    )


def primary_key_fix(row: Row, info: ModelInfo | None) -> Hint:
    table = ident(row["schema"], row["table"])
    pk = info.model._meta.pk if info is not None else None
    if pk is not None and info is not None and pk.column in info.columns:
        name = f"{row['table']}_pkey"
        create = (
            f"CREATE UNIQUE INDEX CONCURRENTLY {ident(name)} ON {table} "
            f"{column_list([pk.column])}"
        )
        add = (
            f"ALTER TABLE {table} ADD CONSTRAINT {ident(name)} PRIMARY KEY "
            f"USING INDEX {ident(name)}"
        )
        drop = f"ALTER TABLE {table} DROP CONSTRAINT {ident(name)}"
        code = run_sql_many([create, add], [drop])
        return Hint(
            f"{info.label}.{pk.name} is its primary key in Django's state but not in "
            f"the database: {code} in a migration with atomic = False (the index is "
            "built without blocking writes; ADD ... USING INDEX then takes an ACCESS "
            "EXCLUSIVE lock for a moment, and scans the table if the column allows "
            "NULLs; duplicates make the index build fail: remove them first)",
            (create, add),
            code,
        )
    if row["kind"] == "p":
        return Hint(
            f"add a primary key that includes the partition key: ALTER TABLE {table} ADD "
            "PRIMARY KEY (<partition key columns>, <a unique column>) — it builds the "
            "index on every partition under an ACCESS EXCLUSIVE lock (or build it on each "
            "partition CONCURRENTLY first and attach)"
        )
    if row["unique_index"]:
        add = (
            f"ALTER TABLE {table} ADD CONSTRAINT {ident(row['unique_index'])} "
            f"PRIMARY KEY USING INDEX {ident(row['unique_index'])}"
        )
        return Hint(
            f"{add}; (promotes the existing unique index on NOT NULL columns: an ACCESS "
            "EXCLUSIVE lock for a moment, no scan)",
            (add,),
            run_sql(add),
        )
    add = (
        f"ALTER TABLE {table} ADD COLUMN {ident('id')} bigint GENERATED ALWAYS AS "
        "IDENTITY PRIMARY KEY"
    )
    return Hint(
        f"{add}; (pick a column name the table does not have; rewrites the table under "
        "an ACCESS EXCLUSIVE lock: plan a maintenance window on a large table)",
        (add,),
        run_sql(add),
    )


def partial_index(row: Row, rare: bool, models_map: ModelMap) -> tuple[str, str | None]:
    """The partial index on the rare value that can replace a boolean column's index:
    how to declare it, and its SQL when no model of the project declares the table."""
    info = models_map.model(row["table"], row["schema"])
    field = info.field_for(row["column"]) if info is not None else None
    if info is not None and field is not None and info.editable:
        name = (
            f"{info.model._meta.model_name}_{field.name}"[:24] + f"_{rare!s:.1}".lower()
        )
        return (
            f"add models.Index(fields=[{field.name!r}], condition=models.Q("
            f"{field.name}={rare!r}), name={name!r}) to {info.label}.Meta.indexes "
            "(AddIndexConcurrently on a large table)",
            None,
        )
    condition = ("" if rare else "NOT ") + ident(row["column"])
    create = (
        f"CREATE INDEX CONCURRENTLY ON {ident(row['schema'], row['table'])} "
        f"{column_list([row['column']])} WHERE {condition}"
    )
    return f"{create} (not inside a transaction)", create


def widen_key_fix(row: Row, info: ModelInfo | None) -> Hint:
    """Move a sequence-fed integer column (a SEQUENCES row of the tables section) to
    bigint: through the model when Django owns it, else with the SQL."""
    table = ident(row["schema"], row["table"])
    statements = [
        f"ALTER TABLE {table} ALTER COLUMN {ident(row['column'])} TYPE bigint"
    ]
    reverse = [
        f"ALTER TABLE {table} ALTER COLUMN {ident(row['column'])} TYPE "
        f"{row['column_type']}"
    ]
    if row["sequence_type"] != "bigint" and not row["identity"]:
        # An identity column's sequence follows the column's type; a serial's does not.
        statements.append(
            f"ALTER SEQUENCE {ident(row['seq_schema'], row['sequence'])} AS bigint"
        )
    lock = REWRITE_LOCK.format(tables=qualified(row["schema"], row["table"]))
    field = info.field_for(row["column"]) if info is not None else None
    code = run_sql_many(statements, reverse)
    if (
        info is not None
        and field is not None
        and _owned(info)
        and isinstance(field, models.IntegerField)
        and row["column_type"] != "bigint"
    ):
        declared = _retype(field, "bigint")
        operation = (
            f"migrations.AlterField(model_name={info.model._meta.model_name!r}, "
            f"name={field.name!r}, field={declared})"
        )
        return Hint(
            f"declare {info.label}.{field.name} as {declared} (for an implicit id, set "
            "default_auto_field on its AppConfig, or DEFAULT_AUTO_FIELD = "
            "'django.db.models.BigAutoField') and run makemigrations: "
            f"{operation} — Django also alters the columns referencing it ({lock})",
            tuple(statements),
            operation,
        )
    where = f" ({info.label}.{field.name}) {_where(info)}" if info and field else ""
    return Hint(
        f"{'; '.join(statements)}{where}: {code}; ({lock})", tuple(statements), code
    )
