"""Faster binary dumpers for the shapes bulk loads are made of, scoped to one cursor.

psycopg's generic list dumper works out dimensions, element types and a dumper per element
for every array, about 1.2 µs for ``["new", "sale"]``. A load of one ``ArrayField`` of
text spends more time there than in the COPY itself. For the common shape, a flat list of
``str``, the binary array format is short enough to write directly (PostgreSQL's
``array_recv``: ndim, has-null flag, element oid, then size and lower bound, then each
element as length + bytes); anything else (``None`` elements, nesting, other types) goes
to psycopg's own dumper. The dumpers are registered on the load's cursor only.
"""

from __future__ import annotations

import struct
from typing import Any

import psycopg
from psycopg.pq import Format

__all__ = ["install"]

_HEADER = struct.Struct("!iiIii").pack
_LENGTH = struct.Struct("!i").pack
_TEXT_ARRAYS = ("text", "varchar", "bpchar")


def _text_array_dumper(base: Any, array_oid: int, element_oid: int) -> Any:
    class TextArrayBinaryDumper(base):  # type: ignore[misc]
        oid = array_oid

        def dump(self, obj: Any) -> Any:
            if type(obj) is list and obj:
                parts: list[bytes] = [b""]
                append = parts.append
                for item in obj:
                    if type(item) is not str:
                        break
                    data = item.encode()
                    append(_LENGTH(len(data)))
                    append(data)
                else:
                    parts[0] = _HEADER(1, 0, element_oid, len(obj), 1)
                    return b"".join(parts)
            return super().dump(obj)

    return TextArrayBinaryDumper


def install(cursor: psycopg.Cursor[Any], pg_types: set[str]) -> None:
    """Register the fast dumpers this load's column types can use on ``cursor``."""
    if cursor.connection.info.encoding != "utf-8":
        return
    registry = cursor.adapters.types
    for name in _TEXT_ARRAYS:
        if f"{name}[]" not in pg_types:
            continue
        info = registry.get(name)
        if info is None or not info.array_oid:
            continue
        try:
            base = cursor.adapters.get_dumper_by_oid(info.array_oid, Format.BINARY)
        except psycopg.ProgrammingError:
            continue
        cursor.adapters.register_dumper(
            None, _text_array_dumper(base, info.array_oid, info.oid)
        )
