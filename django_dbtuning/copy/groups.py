"""A batch's rows grouped by which columns they leave to the database.

COPY has no per-row DEFAULT, so rows that leave a column out (an auto primary key, a
``db_default``) go in a COPY that omits it. Nearly always every row of a batch has the same
shape: one group, and no row is copied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from django_dbtuning.copy.plan import DB_DEFAULT, Column

__all__ = ["Group", "groups", "widen"]

Row = Sequence[Any]


class Group(NamedTuple):
    """Rows of one shape: their columns, and where each came from in the input.

    ``index_of`` maps a 0-based position in ``rows`` to the input index; ``positions``
    are the rows' positions in their batch (None: all of the batch, in order).
    """

    columns: list[Column]
    rows: list[Row]
    index_of: Callable[[int], int]
    positions: list[int] | None


def widen(rows: list[Row], full: int, short: int) -> list[Row]:
    """Give fast-path rows (``short`` long) their trailing DB_DEFAULT columns back."""
    if short == full:
        return rows
    pad = (DB_DEFAULT,) * (full - short)
    return [(*r, *pad[: full - len(r)]) if len(r) < full else r for r in rows]


def groups(
    columns: list[Column], short: int, rows: list[Row], start: int
) -> Iterator[Group]:
    """Split the rows of a batch starting at input index ``start`` by their shape."""
    optional = [i for i, c in enumerate(columns) if c.optional]
    if not optional:
        yield Group(columns, rows, lambda j: start + j, None)
        return
    if (
        short < len(columns)
        and not any(i < short for i in optional)
        and all(len(r) == short for r in rows)
    ):
        yield Group(columns[:short], rows, lambda j: start + j, None)
        return
    rows = widen(rows, len(columns), short)
    counts = {i: sum(1 for r in rows if r[i] is DB_DEFAULT) for i in optional}
    if all(n in (0, len(rows)) for n in counts.values()):
        drop = {i for i, n in counts.items() if n}
        yield Group(*_project(columns, rows, drop), lambda j: start + j, None)
        return
    shapes: dict[tuple[int, ...], list[int]] = {}
    for j, r in enumerate(rows):
        key = tuple(i for i in optional if r[i] is DB_DEFAULT)
        shapes.setdefault(key, []).append(j)
    for drop_key, positions in shapes.items():
        group_cols, group_rows = _project(
            columns, [rows[j] for j in positions], set(drop_key)
        )
        yield Group(
            group_cols,
            group_rows,
            lambda j, positions=positions: start + positions[j],  # type: ignore[misc]
            positions,
        )


def _project(
    columns: list[Column], rows: list[Row], drop: set[int]
) -> tuple[list[Column], list[Row]]:
    if not drop:
        return columns, rows
    keep = [i for i in range(len(columns)) if i not in drop]
    kept = [columns[i] for i in keep]
    n = len(columns)
    if keep == list(range(len(keep))):
        k = len(keep)
        return kept, [r[:k] for r in rows]
    if keep == list(range(n - len(keep), n)):
        k = n - len(keep)
        return kept, [r[k:] for r in rows]
    if len(keep) == 1:
        (only,) = keep
        return kept, [(r[only],) for r in rows]
    getter = itemgetter(*keep)
    return kept, [getter(r) for r in rows]
