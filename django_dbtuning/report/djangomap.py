"""Map tables, columns and indexes back to Django models, and write hints in their terms."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import models

from django_dbtuning.report.ownership import third_party_app
from django_dbtuning.report.quoting import column_list, ident, run_sql

if TYPE_CHECKING:
    from django_dbtuning.report.probe import Probe


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


# Each model table's schema through the connection's search_path: to_regclass() finds a
# name as an unqualified query of that session would (quote_ident keeps its case).
RESOLVE = """
SELECT w.name, n.nspname AS schema
  FROM unnest(%s::text[]) AS w(name)
  JOIN pg_class c ON c.oid = to_regclass(quote_ident(w.name))
  JOIN pg_namespace n ON n.oid = c.relnamespace
"""

Table = tuple[str, str]
"""(schema, table) as the catalogs spell them."""


class ModelMap:
    """Tables of the installed models, keyed by schema and table name.

    A model's ``db_table`` is SQL Django quotes: ``'archive"."order'`` (or
    ``'"archive"."order"'``) is table ``order`` in schema ``archive``, ``'Shop Order'`` one
    table whose name holds a space. An unqualified ``db_table`` is in the first schema of
    the connection's search_path that has it, as for Django's own queries:
    :meth:`resolved` asks one alias' server. Until then it is taken to be in ``public``.
    """

    def __init__(self) -> None:
        self.declared: dict[tuple[str | None, str], ModelInfo] = {}
        """Each model table as ``db_table`` names it: (schema or None, table)."""
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
                    info.columns[stored_name(item.column)] = item
            # A table shared by several models (unmanaged views, swapped models) keeps
            # the first concrete one.
            self.declared.setdefault(split_table(opts.db_table), info)
        self.tables: dict[Table, ModelInfo] = {}
        self._place(None)

    def _place(self, schemas: dict[str, str] | None) -> None:
        """Key the models by (schema, table): ``schemas`` holds where the server found
        each unqualified table (one it did not find maps to nothing); None: all in
        ``public``."""
        self.tables = {}
        for (schema, table), info in self.declared.items():
            where = schema or ("public" if schemas is None else schemas.get(table))
            if where is not None:
                self.tables.setdefault((where, table), info)

    def resolved(self, probe: Probe) -> ModelMap:
        """This map for ``probe``'s alias: unqualified tables placed where its
        search_path finds them (one catalog query). When it cannot be read, ``public``
        stands in and a note says so."""
        names = sorted({table for schema, table in self.declared if schema is None})
        found = probe.query("model_tables", "server", RESOLVE, [names])
        bound = copy.copy(self)
        if found is None:
            probe.note(
                "the search_path could not be read: models are matched to tables in "
                "public"
            )
            return bound
        bound._place({row["name"]: row["schema"] for row in found})
        return bound

    def model(self, table: str, schema: str | None = None) -> ModelInfo | None:
        """The model of ``schema.table``; with no schema, of ``table`` as an
        unqualified query names it."""
        if schema is None:
            return self.declared.get((None, table))
        return self.tables.get((schema, table))

    def editable(self, table: str, schema: str | None = None) -> bool:
        """Whether the project's own code declares ``table`` (unknown tables count)."""
        info = self.model(table, schema)
        return info.editable if info is not None else True

    def label(self, table: str, schema: str | None = None) -> str | None:
        info = self.model(table, schema)
        return info.label if info is not None else None

    def index_origin(
        self,
        table: str,
        index: str,
        columns: Sequence[str | None],
        *,
        definition: str = "",
        opclasses: Sequence[str] = (),
        schema: str | None = None,
    ) -> IndexOrigin:
        """Which declaration produced ``index``: a field's db_index, Django's ``_like``
        pattern-ops twin, a ``Meta.indexes`` entry, or none we can see."""
        info = self.model(table, schema)
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
                # Under another name: an index on the column from RunSQL or by hand.
                if (
                    getattr(found, "db_index", False)
                    and not found.unique
                    and _field_index_name(opts.db_table, found.column or "")
                    in (None, index)
                ):
                    return IndexOrigin("field", where)
        wanted = list(columns)
        for declared in opts.indexes:
            if declared.name:
                continue  # named: matched by its name above, or not this index
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
            table,
            index,
            columns,
            definition=definition,
            opclasses=opclasses,
            schema=schema,
        )
        info = self.model(table, schema)
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
        info = self.model(table, schema)
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


_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
_QUALIFIED = re.compile(r'"(?:[^"]|"")*"(\."(?:[^"]|"")*")?')


def split_table(db_table: str) -> tuple[str | None, str]:
    """``db_table`` as (schema or None, table), read as the SQL Django makes of it:
    it quotes a name unless it is quoted already, so ``'archive"."order'`` and
    ``'"archive"."order"'`` are both ``order`` in ``archive``, while ``'a.b'`` is one
    table named ``a.b``."""
    sql = db_table if db_table[:1] == db_table[-1:] == '"' else f'"{db_table}"'
    if len(sql) < 2 or not _QUALIFIED.fullmatch(sql):
        return None, stored_name(db_table)
    parts = [stored_name(part.replace('""', '"')) for part in _QUOTED.findall(sql)]
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def stored_name(name: str) -> str:
    """``name`` as the server stores it: its first 63 bytes (NAMEDATALEN - 1), cut at a
    character boundary. Django leaves an explicit ``db_table`` whole; the server
    truncates it with a NOTICE, and the catalogs hold the short name."""
    data = name.encode("utf-8", "surrogatepass")
    return name if len(data) <= 63 else data[:63].decode("utf-8", "ignore")


def _field_index_name(db_table: str, column: str) -> str | None:
    """The name Django's schema editor gives a field's ``db_index`` index; None when it
    cannot say (no PostgreSQL alias, a Django whose editor changed)."""
    from django.db import connections

    for alias in connections:
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        try:
            # Private, but the one rule Django names these indexes by.
            editor: Any = connection.schema_editor()
            name = editor._create_index_name(db_table, [column], suffix="")
        except Exception:
            return None
        return name if isinstance(name, str) else None
    return None


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
