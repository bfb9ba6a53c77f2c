"""Turn whatever the caller passed into batches of rows in the plan's column order.

Inputs: model instances, dicts keyed by field name or attname, tuples with ``fields=``, or
a file (CSV: :mod:`.csvinput`; PostgreSQL's own formats: :mod:`.pgformat`). Any iterable is
consumed lazily, one batch at a time, so a generator of a million rows never sits in
memory. Each row is a tuple (or list) of values in column order; :data:`DB_DEFAULT` marks a
value left to the database.

Every kind of row goes through one pipeline: a kind-specific extraction reads the given
values (the first row's keys compiled into one ``itemgetter`` for dicts, the tuple itself,
an instance's ``__dict__``), :class:`.Defaults` fills the columns the rows leave out, and
:func:`.rowcode.with_converters` compiles reading, filling and converting into one call per
row. A row of another shape takes the slower, per-key path that names what is wrong.
"""

from __future__ import annotations

import gc
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from django.db import models

from django_dbtuning.copy.defaults import Defaults, required
from django_dbtuning.copy.options import CopyOptions
from django_dbtuning.copy.plan import DB_DEFAULT, Column, ModelPlan, RowProblem
from django_dbtuning.copy.rowcode import RowSpec, with_converters

Row = Sequence[Any]


@dataclass
class Batch:
    """Rows ``start`` .. ``start + len(rows) - 1`` of the input."""

    start: int
    rows: list[Row]
    objs: list[models.Model] | None


@dataclass
class Source:
    """A stream of rows with a fixed column list, built by ``build`` (compiled with the
    columns' converters by :meth:`finish`).

    ``given``: how many leading columns the rows carry (the rest the load fills);
    ``short``: how long a row built on the fast path is (it stops before the trailing
    columns left to the database: no per-row slicing later). ``text``: CSV cells are
    strings the server parses (text COPY, no client conversion). ``mark``, ``line_of``
    and ``headers``: where each row of a CSV batch starts, and each field's header.
    """

    columns: list[Column]
    items: Iterator[Any]
    build: Callable[[Any], Row]
    given: int = -1
    short: int = -1
    spec: RowSpec | None = None
    instances: bool = False
    text: bool = False
    total: int | None = None
    kind: str = "rows"
    closers: list[Callable[[], None]] = field(default_factory=list)
    mark: Callable[[int], None] = lambda start: None
    line_of: Callable[[int], int | None] = lambda row: None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.given = len(self.columns) if self.given < 0 else self.given
        self.short = len(self.columns) if self.short < 0 else self.short

    def finish(self) -> None:
        self.build = with_converters(self.columns, self.build, self.short, self.spec)

    def batches(self, size: int) -> Iterator[Batch]:
        start = 0
        while True:
            self.mark(start)
            with gc_paused():
                chunk, rows = self._build(size, start)
            if not chunk:
                return
            yield Batch(start, rows, chunk if self.instances else None)
            start += len(rows)

    def _build(self, size: int, start: int) -> tuple[list[Any], list[Row]]:
        build = self.build
        chunk = list(itertools.islice(self.items, size))
        try:
            return chunk, [build(item) for item in chunk]
        except RowProblem:
            # Rare: find the failing item again to name its index.
            for j, item in enumerate(chunk):
                try:
                    build(item)
                except RowProblem as problem:
                    problem.row = start + j
                    raise
            raise  # pragma: no cover - the failure did not repeat

    def close(self) -> None:
        closers, self.closers = self.closers, []
        for closer in closers:
            closer()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a batch's rows are made; never across I/O.

    Building a batch allocates tens of thousands of containers that all survive; the
    collector would scan the whole heap again and again for nothing (a tenth to a quarter
    of a load's time in a big process).
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def key_columns(plan: ModelPlan, keys: Sequence[str]) -> list[Column]:
    columns: list[Column] = []
    seen: dict[str, str] = {}
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"field names must be strings, not {type(key).__name__}")
        column = plan.column(key)
        if column.name in seen:
            raise ValueError(
                f"field {column.name!r} is given twice (as {seen[column.name]!r} and "
                f"{key!r})"
            )
        seen[column.name] = key
        columns.append(column)
    return columns


def _getter(keys: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """A C-level reader of ``keys`` that always returns a tuple."""
    if len(keys) == 1:
        (only,) = keys
        return lambda row: (row[only],)
    if keys:
        return itemgetter(*keys)
    return lambda row: ()


# -- dicts and tuples ----------------------------------------------------------------


def _mapping_source(
    plan: ModelPlan,
    first: Mapping[str, Any],
    items: Iterator[Any],
    fields: Sequence[str] | None,
    total: int | None,
) -> Source:
    keys = list(fields) if fields is not None else list(first)
    given = key_columns(plan, keys)
    defaults = Defaults(plan, given)
    if defaults.required:
        raise required(defaults.required[0], row=0)
    tail = defaults.tail_maker()
    n = len(keys)
    getter = _getter(keys)
    strict = fields is None
    slow = _mapping_reader(plan, defaults, n, strict=strict)

    def fast(row: Any) -> Row:
        if strict and len(row) != n:
            return slow(row)
        try:
            return getter(row) + tail()
        except (KeyError, TypeError, IndexError):
            return slow(row)

    return Source(
        defaults.columns,
        items,
        fast,
        given=len(given),
        short=defaults.short,
        spec=defaults.spec(n, getter, slow, strict=strict),
        total=total,
    )


def _mapping_reader(
    plan: ModelPlan, defaults: Defaults, n: int, *, strict: bool
) -> Callable[[Any], Row]:
    """The per-key reader of a dict row: names unknown and repeated keys, fills the rest.

    ``strict`` (no ``fields=``): every key must name a field; otherwise keys outside
    the ``n`` given fields are ignored.
    """
    columns = defaults.columns
    wanted = {c.name for c in columns[:n]}
    by_key = plan.by_key

    def slow(row: Any) -> Row:
        if not isinstance(row, Mapping):
            raise RowProblem(
                f"expected a dict like the first row, got {type(row).__name__}"
            )
        found: dict[str, Any] = {}
        for key, value in row.items():
            column = by_key.get(key) if isinstance(key, str) else None
            if column is None:
                if not strict:
                    continue
                try:
                    plan.column(key)
                except ValueError as exc:
                    raise RowProblem(str(exc), column=str(key)) from None
                continue  # pragma: no cover
            if column.name in found:
                raise RowProblem(
                    f"field {column.name!r} is given twice", column=column.name
                )
            if not strict and column.name not in wanted:
                continue
            found[column.name] = value
        values: list[Any] = []
        for column in columns:
            if column.name in found:
                value = found[column.name]
                if value is None and column.optional and column.field.primary_key:
                    value = DB_DEFAULT
                values.append(value)
            else:
                values.append(defaults.value(column))
        return values

    return slow


def tuple_source(
    plan: ModelPlan,
    items: Iterator[Any],
    fields: Sequence[str] | None,
    total: int | None,
    *,
    text: bool = False,
    cell: Callable[[Column], Callable[[Any], Any] | None] | None = None,
    shape: str = "values (fields=)",
    width: int | None = None,
) -> Source:
    """Rows of values in the order of ``fields``; ``cell`` gives a per-column reader of
    a file's cells, ``shape`` and ``width`` say what a row should be in errors."""
    if fields is None:
        raise ValueError(
            "tuple rows need fields=[...] naming the field of each position"
        )
    given = key_columns(plan, list(fields))
    defaults = Defaults(plan, given)
    if defaults.required:
        names = ", ".join(repr(c.name) for c in defaults.required)
        raise ValueError(
            f"fields= lacks required field(s) {names} of {plan.model._meta.label} "
            "(NOT NULL, no default)"
        )
    tail = defaults.tail_maker()
    n = len(given)
    expected = n if width is None else width
    tuple_type = tuple

    def build(row: Any) -> Row:
        if type(row) is not tuple_type:
            if isinstance(row, str | bytes | Mapping) or not isinstance(row, Sequence):
                raise RowProblem(
                    f"expected a tuple of {n} values, got {type(row).__name__}"
                )
            row = tuple_type(row)
        if len(row) != n:
            raise RowProblem(f"expected {expected} {shape}, got {len(row)}")
        return row + tail()  # type: ignore[no-any-return]

    spec: RowSpec | None = defaults.spec(n, None, build)
    if cell is not None:
        cells = [(i, conv) for i, c in enumerate(given) if (conv := cell(c))]
        plain = build
        spec = None

        def build(row: Any) -> Row:
            values = list(plain(row))
            for i, conv in cells:
                values[i] = conv(values[i])
            return values

    return Source(
        defaults.columns,
        items,
        build,
        given=n,
        short=defaults.short,
        spec=spec,
        text=text,
        total=total,
    )


# -- model instances -----------------------------------------------------------------


def _instance_columns(
    plan: ModelPlan, fields: Sequence[str] | None
) -> tuple[list[Column], bool]:
    """The columns read from instances, and whether the last is an auto primary key
    (which an unsaved instance leaves out: the fast path simply stops before it)."""
    if fields is not None:
        columns = key_columns(plan, list(fields))
        if plan.pk.name in plan.columns and plan.columns[plan.pk.name] not in columns:
            columns.insert(0, plan.columns[plan.pk.name])
    else:
        columns = list(plan.columns.values())
    pk_column = plan.columns.get(plan.pk.name)
    auto_pk = pk_column is not None and pk_column.optional and pk_column in columns
    if auto_pk:
        assert pk_column is not None
        columns.remove(pk_column)
        columns.append(pk_column)
    return columns, auto_pk


def _instance_source(
    plan: ModelPlan,
    items: Iterator[Any],
    fields: Sequence[str] | None,
    total: int | None,
) -> Source:
    model = plan.model
    columns, auto_pk = _instance_columns(plan, fields)
    pk_attname = plan.pk.attname
    stamps = [(c.attname, plan.now_value(c)) for c in columns if c.auto_now]
    # pre_save() as bulk_create calls it (FileField commits its file, custom fields do
    # their thing); date/time fields without auto_now only return the value: skipped.
    pre_saves = [
        c.field
        for c in columns
        if not c.auto_now
        and type(c.field).pre_save is not models.Field.pre_save
        and not (c.known and isinstance(c.field, models.DateField | models.TimeField))
    ]
    db_defaults = [
        i for i, c in enumerate(columns) if c.optional and not c.field.primary_key
    ]
    try:
        from django.db.models.expressions import DatabaseDefault
    except ImportError:  # Django < 5.0
        db_defaults = []
    getter = _getter([c.attname for c in (columns[:-1] if auto_pk else columns)])

    def build(obj: Any) -> Row:
        if type(obj) is not model and not isinstance(obj, model):
            raise RowProblem(
                f"expected a {model._meta.label} instance, got {type(obj).__name__}"
            )
        state = obj.__dict__
        for attname, value in stamps:
            state[attname] = value
        for f in pre_saves:
            f.pre_save(obj, True)
        try:
            values: Row = getter(state)
        except KeyError as exc:
            raise RowProblem(
                f"field {exc.args[0]!r} is deferred on this instance; load it or pass "
                "fields=[...]",
                column=str(exc.args[0]),
            ) from None
        if auto_pk:
            pk = state.get(pk_attname)
            if pk is not None:
                values = (*values, pk)
        if db_defaults and any(
            isinstance(values[i], DatabaseDefault) for i in db_defaults
        ):
            values = [
                DB_DEFAULT if isinstance(v, DatabaseDefault) else v for v in values
            ]
        return values

    short = len(columns) - 1 if auto_pk else len(columns)
    return Source(columns, items, build, short=short, instances=True, total=total)


def open_source(
    plan: ModelPlan, rows: Any, options: CopyOptions, alias: str
) -> Source | None:
    """A :class:`Source` for ``rows``, or None when ``rows`` is empty."""
    format = options.format
    if format == "binary" and options.null is not None:
        raise ValueError("null= is for format='csv' and 'text' files")
    is_file = isinstance(rows, str | os.PathLike) or hasattr(rows, "read")
    if format != "csv" and not is_file:
        raise ValueError(
            f"format={format!r} reads a file: pass a path or a file object"
        )
    if format != "csv":
        from django_dbtuning.copy.pgformat import pg_source

        return pg_source(plan, rows, options, alias)
    if is_file:
        from django_dbtuning.copy.csvinput import csv_source

        return csv_source(plan, rows, options)
    if isinstance(rows, bytes | bytearray | Mapping | models.Model) or not isinstance(
        rows, Iterable
    ):
        raise TypeError(
            "rows must be an iterable of model instances, dicts or tuples, or a CSV "
            f"path or file object; got {type(rows).__name__}"
        )
    total = len(rows) if isinstance(rows, Sequence) else None
    items = iter(rows)
    try:
        first = next(items)
    except StopIteration:
        return None
    items = itertools.chain((first,), items)
    fields = options.fields
    if isinstance(first, models.Model):
        return _instance_source(plan, items, fields, total)
    if isinstance(first, Mapping):
        return _mapping_source(plan, first, items, fields, total)
    if isinstance(first, Sequence) and not isinstance(first, str | bytes):
        return tuple_source(plan, items, fields, total)
    raise TypeError(
        "each row must be a model instance, a dict or a tuple; the first row is "
        f"{type(first).__name__}"
    )
