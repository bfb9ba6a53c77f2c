"""The conflict target of an upsert: which unique constraint ``unique_fields`` names.

``INSERT ... ON CONFLICT (cols)`` needs a unique constraint or unique index on exactly
those columns (in any order), not partial unless the statement repeats its predicate, and
not deferrable; otherwise PostgreSQL refuses the statement after every row was sent, with
"there is no unique or exclusion constraint matching the ON CONFLICT specification". The
target is found up front: first among the model's own constraints (``primary_key``,
``unique=True``, ``unique_together``, ``UniqueConstraint(fields=...)``, whose ``condition``
becomes the statement's ``WHERE``), then among the table's unique indexes in the catalog
(one made by ``RunSQL``); if there is none, a ``ValueError`` names the fields and the
unique constraints that do exist, before any data goes out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db import models
from django.db.backends.utils import CursorWrapper
from psycopg import ClientCursor

from django_dbtuning.copy.names import shown
from django_dbtuning.copy.plan import Column, ModelPlan


@dataclass
class Target:
    """What ON CONFLICT names: the key columns and, for a partial index, its predicate.

    ``predicate`` is SQL over the table's unquoted-alias columns with its values bound
    (no ``%s``): it is written into statements that take no parameters.
    """

    keys: list[Column]
    # The UniqueConstraint's condition (a Q) of a partial target, and its SQL once
    # confirm() has bound it.
    condition: Any = None
    predicate: str = ""
    # NULLS NOT DISTINCT (Django 5's nulls_distinct=False): a NULL key conflicts too.
    nulls_distinct: bool = True
    # False when the model declares no unique set on the keys: confirm() asks the
    # catalog before any row is sent.
    found: bool = True
    # The model's unique sets, for the error.
    sets: tuple[str, ...] = ()


class _UniqueSet(NamedTuple):
    names: tuple[str, ...]
    condition: Any = None
    deferrable: bool = False
    nulls_distinct: bool = True


def _model_sets(model: type[models.Model]) -> list[_UniqueSet]:
    """Every unique set the model declares, once each, the primary key first."""
    opts = model._meta
    sets = [_UniqueSet((opts.pk.name,))]
    sets += [_UniqueSet((f.name,)) for f in opts.concrete_fields if f.unique]
    sets += [_UniqueSet(tuple(names)) for names in opts.unique_together]
    sets += [
        _UniqueSet(
            tuple(c.fields),
            c.condition,
            c.deferrable is not None,
            getattr(c, "nulls_distinct", None) is not False,
        )
        for c in opts.constraints
        if isinstance(c, models.UniqueConstraint) and c.fields
    ]
    return list(dict.fromkeys(sets))  # the primary key is also unique=True


def unique_columns(plan: ModelPlan, loaded: set[str]) -> list[Column]:
    """Every column of the model's unique sets this load fills, in order.

    ``on_conflict="ignore"`` without ``unique_fields`` may conflict on any of them;
    inserting in this order keeps concurrent loads from locking in opposite orders.
    """
    order: list[Column] = []
    for unique in _model_sets(plan.model):
        columns = [plan.column(n) for n in unique.names]
        if all(c.name in loaded for c in columns):
            order += [c for c in columns if c not in order]
    return order


def _condition_fields(condition: Any) -> set[str]:
    referenced = getattr(condition, "referenced_base_fields", None)  # Django 5.0+
    if referenced is not None:
        return set(referenced)
    names: set[str] = set()
    for child in condition.children:
        if isinstance(child, tuple):
            names.add(child[0].split("__", 1)[0])
        elif hasattr(child, "children"):
            names |= _condition_fields(child)
    return names


def conflict_target(plan: ModelPlan, keys: list[Column], loaded: set[str]) -> Target:
    """The model's unique set on exactly ``keys``; ``found=False`` if it declares none.

    A partial set's condition is evaluated on the staged rows (which never conflict),
    so the load must fill every field it reads.
    """
    wanted = {k.name for k in keys}
    label = plan.model._meta.label
    sets = _model_sets(plan.model)
    matches = [u for u in sets if {plan.column(n).name for n in u.names} == wanted]
    if not matches:
        described = tuple(_describe(plan, u.names) for u in sets)
        return Target(keys, found=False, sets=described)
    # A full unique constraint wins over a partial one on the same columns.
    matches.sort(key=lambda u: u.condition is not None)
    match = matches[0]
    if match.deferrable:
        raise ValueError(
            f"unique_fields {sorted(wanted)} of {label} name a DEFERRABLE unique "
            "constraint, which PostgreSQL's ON CONFLICT cannot use; make it not "
            "deferrable or load without on_conflict"
        )
    if match.condition is not None:
        unfilled = sorted(
            name
            for name in _condition_fields(match.condition)
            if plan.column(name).name not in loaded
        )
        if unfilled:
            raise ValueError(
                f"unique_fields {sorted(wanted)} of {label} name a conditional "
                f"unique constraint whose condition reads {unfilled}, which this load "
                "does not fill; include them in the rows (or in fields=)"
            )
    return Target(keys, condition=match.condition, nulls_distinct=match.nulls_distinct)


def _describe(plan: ModelPlan, names: tuple[str, ...]) -> str:
    return "(" + ", ".join(plan.column(n).name for n in names) + ")"


def _predicate(plan: ModelPlan, condition: Any, cursor: CursorWrapper) -> str:
    """A UniqueConstraint's condition as SQL, written as Django writes the index's WHERE.

    ``ON CONFLICT (code)`` only matches a partial unique index when the statement repeats
    its predicate: ``ON CONFLICT (code) WHERE active``. Its values are bound here, once:
    the statements that repeat it take no parameters (a ``%`` in a table name would be
    read as a placeholder).
    """
    from django.db.models.sql.query import Query

    connection = cursor.db
    query = Query(model=plan.model, alias_cols=False)
    where = query.build_where(condition)
    compiler = query.get_compiler(connection=connection)
    text, params = where.as_sql(compiler, connection)
    with ClientCursor(cursor.cursor.connection) as client:
        return client.mogrify(text, params)


def confirm(target: Target, plan: ModelPlan, cursor: CursorWrapper) -> None:
    """Bind a partial target's predicate; without a model constraint, ask the catalog.

    The catalog is asked only when the model declares no unique set on the keys (an
    index made by ``RunSQL``): a full (not partial), valid, immediate unique index on
    exactly the key columns, or the load is refused.
    """
    if target.condition is not None:
        target.predicate = _predicate(plan, target.condition, cursor)
    if target.found:
        return
    # indnullsnotdistinct exists since PostgreSQL 15.
    nulls = (
        "i.indnullsnotdistinct"
        if getattr(cursor.db, "pg_version", 0) >= 150000
        else "false"
    )
    cursor.execute(
        f"SELECT ic.relname, array_agg(a.attname::text ORDER BY k.n), {nulls} "
        "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
        "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) "
        "LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = %s::regclass AND i.indisunique AND i.indisvalid "
        "AND i.indimmediate AND i.indpred IS NULL AND k.n <= i.indnkeyatts "
        f"GROUP BY ic.relname, {nulls} HAVING bool_and(a.attname IS NOT NULL) "
        "ORDER BY 1",
        [plan.quoted_table],
    )
    wanted = {k.column for k in target.keys}
    found = cursor.fetchall()
    # One usable index with NULLS NOT DISTINCT makes a NULL key conflict.
    matching = [
        bool(not_distinct) for _, cols, not_distinct in found if set(cols) == wanted
    ]
    if matching:
        target.found = True
        target.nulls_distinct = not any(matching)
        return
    indexes = [(name, columns) for name, columns, _ in found]
    names = sorted(k.name for k in target.keys)
    declared = ", ".join(target.sets)
    existing = ", ".join(
        f"{shown(name)} ({', '.join(shown(c) for c in columns)})"
        for name, columns in indexes
    )
    raise ValueError(
        f"unique_fields {names} of {plan.model._meta.label} match no unique constraint "
        "or unique index (ON CONFLICT needs one on exactly these columns, not partial "
        f"and not deferrable); the model declares unique {declared}; the table has "
        f"unique indexes {existing or '(none)'}"
    )


class Conflict(NamedTuple):
    """What an upsert keys on, locks in the order of, and overwrites."""

    keys: list[Column]
    order: list[Column]
    updates: list[Column]
    target: Target


def resolve(
    plan: ModelPlan,
    columns: list[Column],
    *,
    on_conflict: str | None,
    unique_fields: Sequence[str] | None,
    update_fields: Sequence[str] | None,
) -> Conflict:
    """The keys, lock order, updated columns and target of a load filling ``columns``.

    ``update_fields`` defaults to every loaded non-key column but the primary key and
    ``auto_now_add`` (which keeps the time the row was created).
    """
    loaded = {c.name for c in columns}
    keys = [plan.column(n) for n in unique_fields or ()]
    for key in keys:
        if key.name not in loaded:
            raise _unfilled("unique_fields", key, "; include it in the rows")
    target = conflict_target(plan, keys, loaded) if keys else Target([])
    if update_fields is None:
        updates = [
            c
            for c in columns
            if c not in keys
            and not c.field.primary_key
            and c.auto_now != "auto_now_add"
        ]
    else:
        updates = [plan.column(n) for n in update_fields]
        for update in updates:
            if update.name not in loaded:
                raise _unfilled("update_fields", update)
            if update in keys:
                raise ValueError(
                    f"update_fields names {update.name!r}, which is one of "
                    "unique_fields"
                )
    if on_conflict == "update" and not updates:
        raise ValueError(
            "on_conflict='update' has no column to update: pass update_fields or "
            "use on_conflict='ignore'"
        )
    return Conflict(keys, keys or unique_columns(plan, loaded), updates, target)


def _unfilled(what: str, column: Column, hint: str = "") -> ValueError:
    return ValueError(
        f"{what} names {column.name!r}, which this load does not fill{hint}"
    )
