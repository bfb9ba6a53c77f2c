"""The per-row builder of a load, generated once per call: read, fill and convert a row.

The common case costs one call per row: the converters' ``inline`` forms become
expressions (``v if type(v) is int and ... else f(v)``), and for dict and tuple rows the
values are read, defaults made and values converted in one generated function. Anything
unusual (another shape, a value a converter refuses) falls back to the general path,
which names the failing column.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django_dbtuning.copy.plan import DB_DEFAULT, Column, RowProblem

Row = Sequence[Any]


@dataclass
class RowSpec:
    """How a dict or tuple row is read: ``n`` given values, then ``calls`` and ``consts``.

    ``getter`` reads the given values of a dict (None: the row is a tuple, unpacked as it
    is); ``slow`` builds a row of any other shape, or says what is wrong with it;
    ``strict``: a dict must have exactly ``n`` keys.
    """

    n: int
    getter: Callable[[Any], tuple[Any, ...]] | None
    slow: Callable[[Any], Any]
    strict: bool
    calls: list[Callable[[], Any]]
    consts: list[Any]


def with_converters(
    columns: list[Column],
    build: Callable[[Any], Row],
    short: int,
    spec: RowSpec | None = None,
) -> Callable[[Any], Row]:
    """``build`` followed by each column's fast converter, compiled where possible."""
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
    spec: RowSpec | None,
) -> Callable[[Any], Row] | None:
    """One generated function that builds and converts a row without a Python loop."""
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
    exprs = _expressions(columns, names, namespace)
    if spec is None:
        lines = [
            "    r = build(item)",
            f"    if len(r) != {short}:",
            "        return generic(r)",
            "    try:",
            f"        ({', '.join(names)},) = r",
        ]
    else:
        read = _read(spec, names, namespace)
        if read is None:  # pragma: no cover - the spec always fills the row
            return None
        lines = read
    code = "\n".join(
        [
            "def converted(item):",
            *lines,
            f"        return ({', '.join(exprs)},)",
            "    except RowProblem:",
            "        raise",
            "    except Exception:",
            "        return generic(build(item))",
        ]
    )
    exec(compile(code + "\n", "<django_dbtuning.copy row builder>", "exec"), namespace)
    converted: Callable[[Any], Row] = namespace["converted"]
    return converted


def _expressions(
    columns: list[Column], names: list[str], namespace: dict[str, Any]
) -> list[str]:
    exprs = []
    for i, (name, column) in enumerate(zip(names, columns, strict=False)):
        if column.fast is None:
            value = name
        else:
            namespace[f"f{i}"] = column.fast
            template = column.inline or "{f}({v})"
            value = template.replace("{v}", name).replace("{f}", f"f{i}")
        if column.optional and column.field.primary_key:
            # {"id": None} asks for a generated key, as it does with bulk_create.
            exprs.append(f"(DB if {name} is None or {name} is DB else {value})")
        elif column.optional and column.fast is not None:
            exprs.append(f"({name} if {name} is DB else {value})")
        else:
            exprs.append(value)
    return exprs


def _read(
    spec: RowSpec, names: list[str], namespace: dict[str, Any]
) -> list[str] | None:
    """The lines that read a dict or tuple row into the value variables, then fill the
    rest from the spec's calls and constants; None if they do not fill every column."""
    n = spec.n
    namespace["getter"] = spec.getter
    namespace["slow"] = spec.slow
    lines = []
    if spec.getter is None:
        # Tuple rows: unpack the tuple itself.
        lines += [
            f"    if (type(item) is not tuple and type(item) is not list) "
            f"or len(item) != {n}:",
            "        return generic(slow(item))",
        ]
        if n:
            lines.append(f"    ({', '.join(names[:n])},) = item")
    else:
        if spec.strict:
            lines += [f"    if len(item) != {n}:", "        return generic(slow(item))"]
        if n:
            lines += [
                "    try:",
                f"        ({', '.join(names[:n])},) = getter(item)",
                "    except (KeyError, TypeError, IndexError):",
                "        return generic(slow(item))",
            ]
    position = n
    for k, call in enumerate(spec.calls):
        namespace[f"c{k}"] = call
        lines.append(f"    {names[position]} = c{k}()")
        position += 1
    for k, value in enumerate(spec.consts):
        namespace[f"k{k}"] = value
        lines.append(f"    {names[position]} = k{k}")
        position += 1
    if position != len(names):
        return None
    return [*lines, "    try:", "        pass"]
