"""Map tables, columns and indexes back to Django models, and write hints in their terms."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import models

from django_dbtuning.report.ownership import third_party_app
from django_dbtuning.report.quoting import column_list, ident, run_sql


@dataclass(frozen=True)
class Hint:
    """A fix in words, with the exact SQL and migration code it quotes (for JSON
    readers, and so that the text renderer never wraps inside them)."""

    text: str
    sql: tuple[str, ...] = ()
    migration: str | None = None

    def data(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.sql:
            found["sql"] = list(self.sql)
        if self.migration is not None:
            found["migration"] = self.migration
        return found


@dataclass
class ModelInfo:
    label: str
    model: type[models.Model]
    columns: dict[str, models.Field[Any, Any]] = field(default_factory=dict)
    editable: bool = True
    """False for tables the project does not declare itself: auto-created many-to-many
    tables and models of installed packages (django.contrib, site-packages)."""

    def field_for(self, column: str | None) -> models.Field[Any, Any] | None:
        return self.columns.get(column or "")

    def field_label(self, column: str | None) -> str | None:
        found = self.field_for(column)
        return f"{self.label}.{found.name}" if found is not None else None


@dataclass(frozen=True)
class IndexOrigin:
    """Where a Django project declares an index, in the words a migration needs."""

    kind: str  # "field", "like", "meta", "unknown"
    where: str  # "shop.Order.created" / "shop.Order.Meta.indexes" / ""
    name: str | None = None


class ModelMap:
    """Tables of the installed models, keyed by table name (schema ignored)."""

    def __init__(self) -> None:
        self.tables: dict[str, ModelInfo] = {}
        for model in apps.get_models(include_auto_created=True):
            opts = model._meta
            if opts.proxy:
                continue
            info = ModelInfo(
                label=opts.label,
                model=model,
                editable=not opts.auto_created and not third_party_app(opts.app_config),
            )
            for item in opts.local_concrete_fields:
                if item.column:
                    info.columns[item.column] = item
            # A table shared by several models (unmanaged views, swapped models) keeps
            # the first concrete one.
            self.tables.setdefault(_bare(opts.db_table), info)

    def model(self, table: str) -> ModelInfo | None:
        return self.tables.get(table)

    def editable(self, table: str) -> bool:
        """Whether the project's own code declares ``table`` (unknown tables count)."""
        info = self.tables.get(table)
        return info.editable if info is not None else True

    def label(self, table: str) -> str | None:
        info = self.tables.get(table)
        return info.label if info is not None else None

    def index_origin(
        self,
        table: str,
        index: str,
        columns: Sequence[str | None],
        *,
        definition: str = "",
        opclasses: Sequence[str] = (),
    ) -> IndexOrigin:
        """Which declaration produced ``index``: a field's db_index, Django's ``_like``
        pattern-ops twin, a ``Meta.indexes`` entry, or none we can see."""
        info = self.tables.get(table)
        if info is None:
            return IndexOrigin("unknown", "")
        opts = info.model._meta
        for declared in opts.indexes:
            if declared.name == index:
                return IndexOrigin("meta", f"{info.label}.Meta.indexes", declared.name)
        if len(columns) == 1:
            found = info.field_for(columns[0])
            if found is not None:
                where = f"{info.label}.{found.name}"
                pattern_ops = any(o.endswith("_pattern_ops") for o in opclasses)
                if (pattern_ops or "_pattern_ops" in definition) and index.endswith(
                    "_like"
                ):
                    return IndexOrigin("like", where)
                if getattr(found, "db_index", False) and not found.unique:
                    return IndexOrigin("field", where)
        wanted = list(columns)
        for declared in opts.indexes:
            declared_columns = [
                _column(info, name.lstrip("-")) for name in declared.fields
            ]
            if declared_columns and declared_columns == wanted:
                return IndexOrigin("meta", f"{info.label}.Meta.indexes", declared.name)
        return IndexOrigin("unknown", "")

    def drop_hint(
        self,
        *,
        schema: str,
        table: str,
        index: str,
        columns: Sequence[str | None],
        definition: str,
        opclasses: Sequence[str] = (),
    ) -> Hint:
        """A migration-ready way to drop ``index``."""
        origin = self.index_origin(
            table, index, columns, definition=definition, opclasses=opclasses
        )
        info = self.tables.get(table)
        drop = f"DROP INDEX CONCURRENTLY IF EXISTS {ident(schema, index)}"
        reverse = _reverse(definition)
        code = run_sql(drop, reverse)
        sql = (
            f"{code} in a migration with atomic = False"
            if reverse is not None
            else f"{code} in a migration with atomic = False (add reverse_sql= the "
            "index's CREATE INDEX from pg_indexes.indexdef to make it reversible)"
        )
        raw = Hint(f"drop it with {sql}", (drop,), code)
        if info is not None and not info.editable and origin.kind != "like":
            owner = (
                "an auto-created many-to-many table"
                if info.model._meta.auto_created
                else f"the installed app {info.model._meta.app_label!r}"
            )
            return Hint(
                f"{info.label} belongs to {owner}, so its models cannot change; if the "
                f"index is truly unneeded, drop it from one of your own migrations with "
                f"{sql}",
                (drop,),
                code,
            )
        if origin.kind == "field":
            return Hint(
                f"set db_index=False on {origin.where} and run makemigrations "
                "(on a large table, wrap the generated operation in "
                "SeparateDatabaseAndState and drop it CONCURRENTLY)"
            )
        if origin.kind == "meta":
            named = f" named {origin.name!r}" if origin.name else ""
            return Hint(
                f"remove the models.Index{named} from {origin.where} and run "
                "makemigrations; use django.contrib.postgres.operations."
                "RemoveIndexConcurrently in the migration on a large table"
            )
        if origin.kind == "like":
            return Hint(
                f"Django adds this varchar_pattern_ops twin for {origin.where} (db_index "
                "or unique on a CharField/TextField) to serve LIKE 'prefix%' lookups; "
                f"if the app never filters it with startswith/like, drop it with {sql} "
                "(Django will not recreate it)",
                (drop,),
                code,
            )
        return raw

    def create_fk_index_hint(
        self, schema: str, table: str, columns: Sequence[str]
    ) -> Hint:
        info = self.tables.get(table)
        if info is not None and len(columns) == 1:
            found = info.field_for(columns[0])
            if found is not None and isinstance(found, models.ForeignKey):
                return Hint(
                    f"set db_index=True on {info.label}.{found.name} (it is False now) "
                    "and run makemigrations; on a large table use "
                    "django.contrib.postgres.operations.AddIndexConcurrently"
                )
        if info is not None:
            names = [
                found.name for c in columns if (found := info.field_for(c)) is not None
            ]
            if len(names) == len(columns):
                return Hint(
                    f"add models.Index(fields={names!r}, name=...) to "
                    f"{info.label}.Meta.indexes (AddIndexConcurrently on a large table)"
                )
        create = f"CREATE INDEX CONCURRENTLY ON {ident(schema, table)} {column_list(columns)}"
        return Hint(f"{create}; (not inside a transaction)", (create,))


def _bare(db_table: str) -> str:
    # db_table = '"schema"."table"' is a common hack for other schemas.
    return db_table.rsplit(".", 1)[-1].strip('"')


def _column(info: ModelInfo, name: str) -> str | None:
    try:
        found = info.model._meta.get_field(name)
    except Exception:
        return None
    return getattr(found, "column", None)


def _reverse(definition: str) -> str | None:
    """pg_get_indexdef's statement (already quoted and schema-qualified by the server),
    made concurrent and idempotent for a migration's reverse_sql."""
    if not definition:
        return None
    return re.sub(
        r"^CREATE (UNIQUE )?INDEX ",
        lambda m: f"CREATE {m.group(1) or ''}INDEX CONCURRENTLY IF NOT EXISTS ",
        definition,
        count=1,
    )
