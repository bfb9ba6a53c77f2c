"""What a stored snapshot document must hold before ``--since`` or the dashboard reads it.

A :class:`~django_dbtuning.models.Snapshot` row is written by :func:`.snapshot.to_document`
and may since have been edited by hand, cut short, or written by another version. Read as
it stands, a document without rows compares as "every table is new" and a value of the
wrong type fails deep inside the comparison; :func:`unreadable` says what is wrong first,
so that the caller can refuse the row by name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django_dbtuning.report.snapshot import (
    FINDING_COLUMNS,
    FORMAT,
    INDEX_COLUMNS,
    STATEMENT_COLUMNS,
    TABLE_COLUMNS,
)

_STR, _NUMBER, _OPTIONAL, _QUERYID, _TEXT, _TIME = range(6)
# The stored columns (snapshot.*_COLUMNS, in order) and what each must hold.
_KINDS: dict[str, tuple[tuple[str, int], ...]] = {
    "tables": tuple(
        zip(TABLE_COLUMNS, (_STR, _STR, _OPTIONAL, _OPTIONAL, _OPTIONAL), strict=True)
    ),
    "indexes": tuple(
        zip(INDEX_COLUMNS, (_STR, _STR, _STR, _OPTIONAL, _OPTIONAL), strict=True)
    ),
    "statements": tuple(
        zip(
            STATEMENT_COLUMNS,
            (_QUERYID, _NUMBER, _NUMBER, _NUMBER, _TEXT, _TIME),
            strict=True,
        )
    ),
    "findings": tuple(zip(FINDING_COLUMNS, (_STR,) * 4, strict=True)),
}


_LIMIT = 2.0**63


def _fits(value: Any, kind: int) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if value is None:
        return kind in (_OPTIONAL, _TEXT, _TIME)
    if kind == _QUERYID:
        return type(value) is int
    if kind == _TEXT:
        return isinstance(value, str)
    if kind == _TIME:
        try:
            return isinstance(value, str) and bool(datetime.fromisoformat(value))
        except ValueError:
            return False
    # bigint and float8 are what the server hands out; a bigger number (a hand edit, 1e400
    # read back as inf) would fail or draw nothing where it is turned into a float.
    return type(value) in (int, float) and abs(value) < _LIMIT


def unreadable(document: Any) -> str | None:
    """Why ``document`` is not a snapshot document of :data:`~.snapshot.FORMAT`, or
    None."""
    if not isinstance(document, dict):
        return f"its data is a {type(document).__name__}, not an object"
    if document.get("format") != FORMAT or type(document.get("format")) is not int:
        shown = repr(document.get("format"))
        shown = shown if len(shown) <= 20 else shown[:19] + "…"
        return f"format {shown}, this version reads {FORMAT}"
    for name in ("sections", "missing"):
        value = document.get(name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"{name!r} is not a list of names"
    for kind, spec in _KINDS.items():
        part = document.get(kind)
        if not isinstance(part, dict) or part.get("columns") != [c for c, _ in spec]:
            return f"{kind!r} has not the columns {', '.join(c for c, _ in spec)}"
        rows = part.get("rows")
        if not isinstance(rows, list):
            return f"{kind!r} rows are not a list"
        for number, values in enumerate(rows, 1):
            if not (
                isinstance(values, list)
                and len(values) == len(spec)
                and all(_fits(v, k) for v, (_, k) in zip(values, spec, strict=True))
            ):
                return f"{kind!r} row {number} is not {len(spec)} values of the right types"
    return None
