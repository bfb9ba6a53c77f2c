"""The column plan of a COPY load: which fields, which PostgreSQL types, which converters.

Built once per call. The fast path hands values to psycopg untouched wherever psycopg's own
binary dumper stores exactly what Django would (``str`` into ``varchar``, ``int`` into
``int4``, ``Decimal`` into ``numeric``...): a value of another type makes the dumper fail,
and only then is that row converted with Django's semantics and written again (the
converters are in :mod:`.converters`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from django.conf import settings
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.fields import NOT_PROVIDED
from django.utils import timezone

from django_dbtuning.copy.converters import (
    Converter,
    django_base,
    fast_converter,
    slow_converter,
)
from django_dbtuning.copy.names import helper_name, quote, relation_name, truncated
from django_dbtuning.copy.redact import conversion_reason


class _DbDefault:
    """Marks a value the database fills in (an auto primary key or a ``db_default``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DB_DEFAULT"


DB_DEFAULT: Any = _DbDefault()


class RowProblem(Exception):
    """A row cannot be built; the caller adds the input index and raises a CopyError.

    ``message`` names no value (it becomes the CopyError's message); the refused value and
    the converter's own exception travel on ``value`` and ``original``.
    """

    def __init__(
        self,
        message: str,
        *,
        column: str | None = None,
        integrity: bool = False,
        row: int | None = None,
        value: Any = None,
        original: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.integrity = integrity
        self.row = row
        self.value = value
        self.original = original

    @classmethod
    def refused(cls, exc: BaseException, column: Column, value: Any) -> RowProblem:
        return cls(
            conversion_reason(exc, column.field),
            column=column.name,
            value=value,
            original=exc,
        )


# psycopg type names with a binary dumper that stores Django's Python values faithfully.
_BINARY_SAFE = {
    "int2",
    "int4",
    "int8",
    "float8",
    "numeric",
    "bool",
    "text",
    "varchar",
    "bpchar",
    "uuid",
    "json",
    "jsonb",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "interval",
    "bytea",
}
_TYPE_ALIASES = {
    "integer": "int4",
    "int": "int4",
    "serial": "int4",
    "bigint": "int8",
    "bigserial": "int8",
    "smallint": "int2",
    "smallserial": "int2",
    "double precision": "float8",
    "real": "float4",
    "decimal": "numeric",
    "boolean": "bool",
    "character varying": "varchar",
    "char": "bpchar",
    "character": "bpchar",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "time without time zone": "time",
}
_TYPMOD = re.compile(r"\([^)]*\)")
# Fields whose values are text as given (a CSV cell goes in as it is).
TEXT_INTERNAL_TYPES = frozenset(
    {
        "CharField",
        "TextField",
        "SlugField",
        "EmailField",
        "URLField",
        "FilePathField",
        "FileField",
        "ImageField",
    }
)


def pg_type_name(db_type: str | None) -> str | None:
    """``varchar(20)[]`` -> ``varchar[]``: a psycopg type name for ``set_types``, if known."""
    if not db_type:
        return None
    name = _TYPMOD.sub("", db_type).strip().lower()
    dims = 0
    while name.endswith("[]"):
        name = name[:-2].strip()
        dims += 1
    name = _TYPE_ALIASES.get(name, name)
    if name not in _BINARY_SAFE:
        return None
    # PostgreSQL has one array type per element type, whatever the dimensions.
    return name + ("[]" if dims else "")


def has_db_default(field: models.Field[Any, Any]) -> bool:
    """``db_default`` exists since Django 5.0."""
    return getattr(field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED


def is_generated(field: models.Field[Any, Any]) -> bool:
    """``GeneratedField`` exists since Django 5.0."""
    return bool(getattr(field, "generated", False))


def _auto_now_kind(field: models.Field[Any, Any]) -> str | None:
    if not isinstance(field, models.DateField | models.TimeField):
        return None
    if field.auto_now:
        return "auto_now"
    if field.auto_now_add:
        return "auto_now_add"
    return None


@dataclass(eq=False)
class Column:
    """One loaded column: the field, its SQL name and how its values are prepared."""

    field: models.Field[Any, Any]
    name: str
    attname: str
    column: str
    pg_type: str | None
    known: bool
    # The database may fill it: an auto primary key or a db_default.
    optional: bool
    # NOT NULL in the table: enforced on the staging table too, so the error has a line.
    not_null: bool
    # auto_now / auto_now_add: filled with the load's timestamp.
    auto_now: str | None
    # The column's name as SQL, quoted as Django quoted it (see names.quote).
    quoted: str = ""
    # Set per call once the format is known.
    fast: Converter | None = dataclass_field(default=None)
    # The fast converter as an inline expression over "{v}", calling "{f}" (the fast
    # converter) only off the common path; compiled into one function per load.
    inline: str | None = dataclass_field(default=None)
    slow: Converter = dataclass_field(default=lambda value: value)


class ModelPlan:
    """Everything about a model that a COPY needs, computed once per call."""

    def __init__(
        self, model: type[models.Model], connection: BaseDatabaseWrapper
    ) -> None:
        check_model(model)
        self.model = model
        self.connection = connection
        opts = model._meta
        self.table = opts.db_table
        # Names Django could not have written as valid SQL are refused before any work.
        self.quoted_table = quote(self.table, what=f"db_table of {opts.label}")
        self.relname = relation_name(self.table)
        self.taken = {truncated(f.column) for f in opts.concrete_fields if f.column}
        self.pk = opts.pk
        self.pk_is_auto = bool(getattr(opts.pk, "db_returning", False))
        self.columns: dict[str, Column] = {}
        self.by_key: dict[str, Column] = {}
        for f in opts.concrete_fields:
            if is_generated(f) or f.column is None:
                continue
            column = self._column(f)
            self.columns[f.name] = column
            self.by_key[f.name] = column
            self.by_key[f.attname] = column
        self.now = timezone.now()

    def _column(self, f: models.Field[Any, Any]) -> Column:
        base = django_base(f)
        pg_type = pg_type_name(f.db_type(self.connection)) if base else None
        optional = (f.primary_key and self.pk_is_auto) or has_db_default(f)
        return Column(
            field=f,
            name=f.name,
            attname=f.attname,
            column=f.column or "",
            pg_type=pg_type,
            known=base is not None,
            optional=optional,
            not_null=not f.null and not optional,
            auto_now=_auto_now_kind(f),
            quoted=quote(
                f.column or "", what=f"db_column of {self.model._meta.label}.{f.name}"
            ),
        )

    def helper(self, base: str) -> str:
        return helper_name(base, self.taken)

    def column(self, key: str) -> Column:
        """The column for a field name or attname; a ValueError naming near misses."""
        try:
            return self.by_key[key]
        except (KeyError, TypeError):
            pass
        import difflib

        label = self.model._meta.label
        close = difflib.get_close_matches(str(key), self.by_key, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        generated = {
            f.name for f in self.model._meta.concrete_fields if is_generated(f)
        }
        if key in generated:
            raise ValueError(f"{label}.{key} is a generated field and cannot be loaded")
        raise ValueError(f"{label} has no field {key!r}{hint}")

    def now_value(self, column: Column) -> Any:
        """The value ``pre_save(add=True)`` would give an auto_now field, once per load."""
        if isinstance(column.field, models.DateTimeField):
            return self.now if settings.USE_TZ else timezone.make_naive(self.now)
        local = timezone.localtime(self.now) if settings.USE_TZ else self.now
        if isinstance(column.field, models.DateField):
            return local.date()
        return local.time()

    def prepare(self, columns: list[Column], *, binary: bool) -> None:
        for column in columns:
            column.slow = slow_converter(column.field, self.connection)
            column.inline = None
            column.fast = fast_converter(column, binary=binary)


def check_model(model: type[models.Model]) -> None:
    """Refuse models whose rows span several tables, as ``bulk_create`` does."""
    opts = model._meta
    if opts.abstract or opts.swapped:
        raise TypeError(f"cannot COPY into abstract or swapped model {opts.label}")
    concrete = opts.concrete_model or model
    parents = [p for p in concrete._meta.get_parent_list() if p is not concrete]
    if parents:
        names = ", ".join(p._meta.label for p in parents)
        raise TypeError(
            f"cannot COPY into {opts.label}: it inherits from {names} (multi-table "
            "inheritance stores one row in several tables); load the parent and child "
            "models separately or use bulk_create on the parent"
        )
