"""Turn whatever the caller passed into batches of rows in the plan's column order.

Inputs: model instances, dicts keyed by field name or attname, tuples with ``fields=``, or
a CSV file (path, text or binary file object). Any iterable is consumed lazily, one batch
at a time, so a generator of a million rows never sits in memory. Each row is a tuple (or
list) of values in column order; :data:`DB_DEFAULT` marks a value left to the database.

The common case costs one C-level ``itemgetter`` call per row: the shape of the first row
(its keys) is compiled into a getter, and a row of another shape takes the slower,
per-key path that applies defaults and names unknown keys.
"""

from __future__ import annotations

import decimal
import gc
import itertools
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from django.db import models

from django_dbtuning.copy.plan import DB_DEFAULT, Column, ModelPlan, RowProblem

__all__ = ["Batch", "Source", "key_columns", "open_source", "tuple_source"]

Row = Sequence[Any]


@dataclass
class Batch:
    """Rows ``start`` .. ``start + len(rows) - 1`` of the input."""

    start: int
    rows: list[Row]
    objs: list[models.Model] | None


class Source:
    """A stream of rows with a fixed column list."""

    kind = "rows"

    def __init__(
        self,
        plan: ModelPlan,
        columns: list[Column],
        items: Iterator[Any],
        build: Callable[[Any], Row],
        *,
        filler_columns: Sequence[Column] = (),
        instances: bool = False,
        text: bool = False,
        total: int | None = None,
    ) -> None:
        self.plan = plan
        self.columns = columns
        self.items = items
        self.raw_build = build
        self.build = build
        self.filler_columns = list(filler_columns)
        # Rows built on the fast path stop before the trailing columns left to the
        # database (an auto pk, db_defaults): no per-row slicing later.
        self.short = len(columns)
        # For dict rows: what the generated builder needs to read a row directly.
        self.spec: dict[str, Any] | None = None
        self.instances = instances
        # CSV cells are strings the server parses: text COPY, no client conversion.
        self.text = text
        self.total = total
        self.closers: list[Callable[[], None]] = []
        # CSV: where each row of the current batch starts, and the header of each field.
        self.mark: Callable[[int], None] = _no_mark
        self.line_of: Callable[[int], int | None] = _no_line
        self.headers: dict[str, str] = {}

    def finish(self) -> None:
        """Compile the per-row builder once the columns' converters are chosen."""
        self.build = _with_converters(
            self.columns, self.raw_build, self.short, self.spec
        )

    def batches(self, size: int) -> Iterator[Batch]:
        """Yield batches of at most ``size`` rows, building each row once."""
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


# -- helpers -------------------------------------------------------------------------


def _no_mark(start: int) -> None:
    return None


def _no_line(row: int) -> int | None:
    return None


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


class _Filler:
    """Values for the columns a row does not carry: defaults, auto_now, the database."""

    def __init__(self, plan: ModelPlan, columns: list[Column]) -> None:
        self.plan = plan
        self.calls: list[tuple[Column, Callable[[], Any]]] = []
        self.consts: list[tuple[Column, Any]] = []
        self.required: list[Column] = []
        for column in columns:
            kind, value = self.missing(column)
            if kind == "call":
                self.calls.append((column, value))
            elif kind == "const":
                self.consts.append((column, value))
            else:
                self.required.append(column)
        # Columns left to the database go last: dropping them from a row is a slice.
        self.consts.sort(key=lambda item: item[1] is DB_DEFAULT)

    def missing(self, column: Column) -> tuple[str, Any]:
        """How to fill ``column`` when a row lacks it: ("call"|"const"|"required", v)."""
        f = column.field
        if column.auto_now:
            return "const", self.plan.now_value(column)
        if f.has_default():
            if f.default is uuid.uuid4:
                return "call", fast_uuid4()
            if callable(f.default):
                is_fk = isinstance(f, models.ForeignKey)
                return "call", f.get_default if is_fk else f.default
            return "const", f.get_default()
        if column.optional:
            return "const", DB_DEFAULT
        value = f.get_default()  # "" for string fields, None otherwise
        if value is None and not f.null:
            return "required", None
        return "const", value

    def value(self, column: Column) -> Any:
        kind, value = self.missing(column)
        if kind == "call":
            return value()
        if kind == "const":
            return value
        raise RowProblem(
            f"no value for required field {column.name!r} (NOT NULL, no default)",
            column=column.name,
            integrity=True,
        )

    @property
    def columns(self) -> list[Column]:
        return [c for c, _ in self.calls] + [c for c, _ in self.consts]

    @property
    def omitted(self) -> int:
        """How many trailing columns the fast path leaves out (all DB_DEFAULT)."""
        return sum(1 for _, value in self.consts if value is DB_DEFAULT)

    def tail_maker(self) -> Callable[[], tuple[Any, ...]]:
        tail = tuple(value for _, value in self.consts if value is not DB_DEFAULT)
        calls = [call for _, call in self.calls]
        if not calls:
            return lambda: tail
        if len(calls) == 1:
            (c0,) = calls
            return lambda: (c0(), *tail)
        if len(calls) == 2:
            c0, c1 = calls
            return lambda: (c0(), c1(), *tail)
        return lambda: (*(call() for call in calls), *tail)


_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (4 << 76)


def fast_uuid4(chunk: int = 4096) -> Callable[[], uuid.UUID]:
    """``uuid.uuid4`` for bulk loads: the same os.urandom bits, about 3x cheaper.

    ``uuid.uuid4()`` costs a system call and a validating ``UUID.__init__`` per value,
    a fifth of a whole COPY row; this draws the randomness in chunks and fills the
    UUID's slots the way ``UUID.__init__`` does (RFC 4122 variant, version 4).
    """
    new = object.__new__
    set_slot = object.__setattr__
    cls = uuid.UUID
    safe = uuid.SafeUUID.unknown
    from_bytes = int.from_bytes
    pending: Iterator[uuid.UUID] = iter(())

    def make(value: int) -> uuid.UUID:
        u = new(cls)
        set_slot(u, "int", (value & _UUID_CLEAR) | _UUID_SET)
        set_slot(u, "is_safe", safe)
        return u

    def refill() -> Iterator[uuid.UUID]:
        data = os.urandom(16 * chunk)
        return iter(
            [
                make(from_bytes(data[i : i + 16], "big"))
                for i in range(0, 16 * chunk, 16)
            ]
        )

    def uuid4() -> uuid.UUID:
        nonlocal pending
        for value in pending:
            return value
        pending = refill()
        return next(pending)

    return uuid4


def _with_converters(
    columns: list[Column],
    build: Callable[[Any], Row],
    short: int,
    spec: dict[str, Any] | None = None,
) -> Callable[[Any], Row]:
    convs = [(i, c.fast) for i, c in enumerate(columns) if c.fast is not None]
    if not convs and spec is None:
        return build
    marker = DB_DEFAULT

    def generic(values: Row) -> Row:
        values = list(values)
        n = len(values)
        for i, convert in convs:
            if i >= n:
                break
            value = values[i]
            if value is not marker:
                try:
                    values[i] = convert(value)
                except RowProblem:
                    raise
                except Exception as exc:
                    raise RowProblem.refused(exc, columns[i], value) from None
        return values

    return _compiled(columns, build, short, generic, spec) or (
        lambda item: generic(build(item))
    )


def _compiled(
    columns: list[Column],
    build: Callable[[Any], Row],
    short: int,
    generic: Callable[[Row], Row],
    spec: dict[str, Any] | None = None,
) -> Callable[[Any], Row] | None:
    """One generated function that builds and converts a row without a Python loop.

    Converters become inline expressions (``v if type(v) is int and ... else f(v)``), so
    the common value costs no function call; for dict rows the keys are read, defaults
    made and values converted in one place. Anything unusual falls back to the general
    path, which names the failing column.
    """
    if short < 1 or short > 250:
        return None
    names = [f"v{i}" for i in range(short)]
    namespace: dict[str, Any] = {
        "build": build,
        "generic": generic,
        "RowProblem": RowProblem,
        "DB": DB_DEFAULT,
        "Decimal": decimal.Decimal,
    }
    exprs = []
    for i, (name, column) in enumerate(zip(names, columns, strict=False)):
        if column.optional and column.field.primary_key:
            # {"id": None} asks for a generated key, as it does with bulk_create.
            if column.fast is not None:
                namespace[f"f{i}"] = column.fast
                template = column.inline or "{f}({v})"
                value = template.replace("{v}", name).replace("{f}", f"f{i}")
            else:
                value = name
            exprs.append(f"(DB if {name} is None or {name} is DB else {value})")
            continue
        if column.fast is None:
            exprs.append(name)
            continue
        namespace[f"f{i}"] = column.fast
        template = column.inline or "{f}({v})"
        expr = template.replace("{v}", name).replace("{f}", f"f{i}")
        if column.optional:
            expr = f"({name} if {name} is DB else {expr})"
        exprs.append(expr)
    lines = ["def converted(item):"]
    if spec is None:
        lines += [
            "    r = build(item)",
            f"    if len(r) != {short}:",
            "        return generic(r)",
            "    try:",
            f"        ({', '.join(names)},) = r",
        ]
    else:
        n = spec["n"]
        namespace["getter"] = spec["getter"]
        namespace["slow"] = spec["slow"]
        if spec["getter"] is None:
            # Tuple rows: unpack the tuple itself.
            lines += [
                f"    if (type(item) is not tuple and type(item) is not list) "
                f"or len(item) != {n}:",
                "        return generic(slow(item))",
            ]
            if n:
                lines.append(f"    ({', '.join(names[:n])},) = item")
        else:
            if spec["strict"]:
                lines += [
                    f"    if len(item) != {n}:",
                    "        return generic(slow(item))",
                ]
            if n:
                lines += [
                    "    try:",
                    f"        ({', '.join(names[:n])},) = getter(item)",
                    "    except (KeyError, TypeError, IndexError):",
                    "        return generic(slow(item))",
                ]
        position = n
        for k, call in enumerate(spec["calls"]):
            namespace[f"c{k}"] = call
            lines.append(f"    {names[position]} = c{k}()")
            position += 1
        for k, value in enumerate(spec["consts"]):
            namespace[f"k{k}"] = value
            lines.append(f"    {names[position]} = k{k}")
            position += 1
        if position != short:  # pragma: no cover - the spec always fills the row
            return None
        lines += ["    try:", "        pass"]
    lines += [
        f"        return ({', '.join(exprs)},)",
        "    except RowProblem:",
        "        raise",
        "    except Exception:",
        "        return generic(build(item))",
    ]
    code = "\n".join(lines) + "\n"
    exec(compile(code, "<django_dbtuning.copy row builder>", "exec"), namespace)
    converted: Callable[[Any], Row] = namespace["converted"]
    return converted


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
    filler = _Filler(plan, [c for c in plan.columns.values() if c not in given])
    columns = given + filler.columns
    key_of = {c.name: k for c, k in zip(given, keys, strict=True)}
    tail = filler.tail_maker()
    n = len(keys)
    getter: Callable[[Any], tuple[Any, ...]]
    if n == 1:
        (only,) = keys
        getter = lambda row: (row[only],)  # noqa: E731
    elif n:
        getter = itemgetter(*keys)
    else:
        getter = lambda row: ()  # noqa: E731
    strict = fields is None
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
            if not strict and column.name not in key_of:
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
                values.append(filler.value(column))
        return values

    def fast(row: Any) -> Row:
        if strict and len(row) != n:
            return slow(row)
        try:
            return getter(row) + tail()
        except (KeyError, TypeError, IndexError):
            return slow(row)

    if filler.required:
        column = filler.required[0]
        raise RowProblem(
            f"no value for required field {column.name!r} (NOT NULL, no default)",
            column=column.name,
            integrity=True,
            row=0,
        )
    source = Source(
        plan, columns, items, fast, filler_columns=filler.columns, total=total
    )
    source.short = len(columns) - filler.omitted
    source.spec = {
        "n": n,
        "getter": getter,
        "slow": slow,
        "strict": strict,
        "calls": [call for _, call in filler.calls],
        "consts": [v for _, v in filler.consts if v is not DB_DEFAULT],
    }
    return source


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
    if fields is None:
        raise ValueError(
            "tuple rows need fields=[...] naming the field of each position"
        )
    given = key_columns(plan, list(fields))
    filler = _Filler(plan, [c for c in plan.columns.values() if c not in given])
    if filler.required:
        names = ", ".join(repr(c.name) for c in filler.required)
        raise ValueError(
            f"fields= lacks required field(s) {names} of {plan.model._meta.label} "
            "(NOT NULL, no default)"
        )
    columns = given + filler.columns
    tail = filler.tail_maker()
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

    if cell is not None:
        cells = [(i, conv) for i, c in enumerate(given) if (conv := cell(c))]
        plain = build

        def build(row: Any) -> Row:
            values = list(plain(row))
            for i, conv in cells:
                values[i] = conv(values[i])
            return values

    source = Source(
        plan,
        columns,
        items,
        build,
        filler_columns=filler.columns,
        text=text,
        total=total,
    )
    source.short = len(columns) - filler.omitted
    if cell is None:
        source.spec = {
            "n": n,
            "getter": None,
            "slow": build,
            "strict": True,
            "calls": [call for _, call in filler.calls],
            "consts": [v for _, v in filler.consts if v is not DB_DEFAULT],
        }
    return source


# -- model instances -----------------------------------------------------------------


def _instance_source(
    plan: ModelPlan,
    items: Iterator[Any],
    fields: Sequence[str] | None,
    total: int | None,
) -> Source:
    model = plan.model
    if fields is not None:
        columns = key_columns(plan, list(fields))
        if plan.pk.name in plan.columns and plan.columns[plan.pk.name] not in columns:
            columns.insert(0, plan.columns[plan.pk.name])
    else:
        columns = list(plan.columns.values())
    # An unset auto primary key goes last: the fast path simply leaves it out.
    pk_column = plan.columns.get(plan.pk.name)
    auto_pk = pk_column is not None and pk_column.optional and pk_column in columns
    if auto_pk:
        assert pk_column is not None
        columns.remove(pk_column)
        columns.append(pk_column)
        rest = columns[:-1]
    else:
        rest = columns
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
        i for i, c in enumerate(columns) if c.optional and c is not pk_column
    ]
    try:
        from django.db.models.expressions import DatabaseDefault
    except ImportError:  # Django < 5.0
        db_defaults = []
    attnames = [c.attname for c in rest]
    getter: Callable[[Any], tuple[Any, ...]]
    if len(attnames) == 1:
        (only,) = attnames
        getter = lambda d: (d[only],)  # noqa: E731
    elif attnames:
        getter = itemgetter(*attnames)
    else:
        getter = lambda d: ()  # noqa: E731

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
            values = getter(state)
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

    source = Source(plan, columns, items, build, instances=True, total=total)
    source.short = len(columns) - 1 if auto_pk else len(columns)
    return source


# -- entry point ---------------------------------------------------------------------


def open_source(
    plan: ModelPlan,
    rows: Any,
    *,
    fields: Sequence[str] | None,
    header: bool = True,
    mapping: Mapping[str, str | None] | None = None,
    delimiter: str | None = None,
    quotechar: str = '"',
    encoding: str = "utf-8",
    format: str = "csv",
    null: str | None = None,
    alias: str = "default",
) -> Source | None:
    """A :class:`Source` for ``rows``, or None when ``rows`` is empty."""
    if format not in ("csv", "text", "binary"):
        raise ValueError(f"format must be 'csv', 'text' or 'binary', not {format!r}")
    if format == "binary" and null is not None:
        raise ValueError("null= is for format='csv' and 'text' files")
    is_file = isinstance(rows, str | os.PathLike) or hasattr(rows, "read")
    if format != "csv" and not is_file:
        raise ValueError(
            f"format={format!r} reads a file: pass a path or a file object"
        )
    if format != "csv":
        from django_dbtuning.copy.pgformat import pg_source

        return pg_source(
            plan,
            rows,
            format=format,
            fields=fields,
            header=header and format == "text",
            mapping=mapping,
            delimiter="\t" if delimiter is None else delimiter,
            null=null,
            encoding=encoding,
            alias=alias,
        )
    if is_file:
        from django_dbtuning.copy.csvinput import csv_source

        return csv_source(
            plan,
            rows,
            fields=fields,
            header=header,
            mapping=mapping,
            delimiter="," if delimiter is None else delimiter,
            quotechar=quotechar,
            encoding=encoding,
            null=null,
        )
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
