"""Turn a failed COPY into a CopyError that names the input row and the column.

PostgreSQL reports a COPY failure with a context such as ``COPY t, line 3, column name:
"..."``: the line is the 1-based row within that one COPY statement, which the engine maps
back to the index in the caller's input (batches and groups included). Constraint errors
raised after the rows went in (foreign keys checked at the end of the statement) carry no
line, only ``Key (col)=(value)``; the row is then found by that value in the batch.

Messages never contain a value from the rows (see :mod:`.redact`): the server's texts are
kept on the error's attributes, and every error is raised ``from None`` so that a
traceback does not print the psycopg error (whose text has DETAIL and CONTEXT) either.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.db import utils as db_utils

from django_dbtuning import exceptions as public
from django_dbtuning.copy.plan import Column, RowProblem
from django_dbtuning.copy.redact import (
    integrity_condition,
    server_condition,
)
from django_dbtuning.exceptions import CopyDataError, CopyError, CopyIntegrityError

# Errors another transaction (or a timeout) causes: the load itself may be fine.
TRANSIENT = {
    "40P01": "deadlock",
    "40001": "serialization failure",
    "55P03": "lock timeout",
    "57014": "statement timeout or cancel",
}


@dataclass
class Locator:
    """How an input row and a field are named in messages (CSV: line and header)."""

    line_of: Callable[[int], int | None] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def row(self, row: int) -> str:
        line = self.line_of(row) if self.line_of is not None else None
        return f"row {row}" if line is None else f"row {row} (CSV line {line})"

    def column(self, name: str) -> str:
        header = self.headers.get(name)
        if header is None or header == name:
            return f"column {name!r}"
        return f"column {header!r} (field {name!r})"


_PLAIN = Locator()

# The server's own context line of a COPY (the value it may quote follows the column).
_CONTEXT = re.compile(r"^COPY [^\n]+?, line (\d+)(?:, column ([^\n]+))?", re.MULTILINE)
# Column names and values may hold newlines.
_KEY = re.compile(
    r"Key \((?P<cols>.+?)\)=\((?P<vals>.*)\)(?: already exists| is not)", re.DOTALL
)


def key_detail(detail: str | None) -> tuple[list[str], str] | None:
    """The column names and the values' text of a ``Key (cols)=(values)`` detail."""
    match = _KEY.search(detail or "")
    if not match:
        return None
    return [n.strip().strip('"') for n in match["cols"].split(",")], match["vals"]


def _message(
    label: str,
    row: int | None,
    column: str | None,
    text: str,
    locator: Locator | None = None,
    stage: str | None = None,
) -> str:
    locator = locator or _PLAIN
    where = []
    if row is not None:
        where.append(locator.row(row))
    if column is not None:
        where.append(locator.column(column))
    located = f" at {', '.join(where)}" if where else ""
    if stage is not None:
        return f"COPY into {label} failed{located} while {stage}: {text}. {_NOTHING}"
    return f"COPY into {label} failed{located}: {text}"


_NOTHING = "The load was rolled back and wrote nothing."


def problem_error(
    label: str, problem: RowProblem, locator: Locator | None = None
) -> CopyError:
    """The CopyError for a problem found in Python, before PostgreSQL saw the row.

    Its message names no value (see :mod:`.redact`); the value and the converter's own
    exception (whose text may quote it) go on attributes only.
    """
    cls = CopyIntegrityError if problem.integrity else CopyDataError
    return cls(
        _message(label, problem.row, problem.column, problem.message, locator),
        row=problem.row,
        column=problem.column,
        value=problem.value,
        original=problem.original,
    )


def _server_fields(pg: psycopg.Error) -> dict[str, Any]:
    """The server's own texts, kept on the error's attributes (never in its message)."""
    diag = pg.diag
    return {
        "pg_message": diag.message_primary,
        "sqlstate": pg.sqlstate,
        "detail": diag.message_detail,
        "pg_error": pg,
    }


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def find_row_by_key(
    detail: str | None, columns: Sequence[Column], rows: Sequence[Sequence[Any]]
) -> tuple[int | None, str | None]:
    """The position of the row whose key ``detail`` reports, and the key's field."""
    key = key_detail(detail)
    if key is None:
        return None, None
    names, text = key
    values = [v.strip() for v in text.split(", ")]
    by_column = {c.column: i for i, c in enumerate(columns)}
    field = next((columns[by_column[n]].name for n in names if n in by_column), None)
    if len(names) != len(values) or not all(n in by_column for n in names):
        return None, field
    positions = [by_column[n] for n in names]
    for j, row in enumerate(rows):
        if all(
            len(row) > p and row[p] is not None and _as_text(row[p]) == v
            for p, v in zip(positions, values, strict=True)
        ):
            return j, field
    return None, field


def copy_error(
    exc: psycopg.Error,
    *,
    label: str,
    columns: Sequence[Column],
    index_of: Callable[[int], int] | None,
    rows: Sequence[Sequence[Any]] | None = None,
    locator: Locator | None = None,
    located: int | None = None,
    relation: str | None = None,
    stage: str | None = None,
) -> CopyError | None:
    """The CopyError for a server error during a load, or None for other errors.

    ``index_of`` maps a 0-based position in the failed COPY to the input index; ``rows``
    (the rows of that COPY or batch) lets a ``Key (...)=(...)`` detail find its row;
    ``located`` is the input index when the caller found the row another way;
    ``relation`` is the bare name of the table the COPY wrote (the server's CONTEXT
    names it); ``stage`` says what the load was doing, for errors found outside a COPY.
    """
    sqlstate = exc.sqlstate or ""
    if not sqlstate.startswith(("22", "23")):
        return None
    diag = exc.diag
    detail = diag.message_detail
    by_column = {c.column: c.name for c in columns}
    position, column = _context(diag.context, by_column, relation)
    if diag.column_name in by_column:
        column = by_column[diag.column_name or ""]
    if position is None and rows is not None:
        position, key_field = find_row_by_key(detail, columns, rows)
        column = column or key_field
    elif column is None and detail:
        _, column = find_row_by_key(detail, columns, ())
    row = located
    if position is not None and index_of is not None:
        row = index_of(position)
    integrity = sqlstate.startswith("23")
    cls = CopyIntegrityError if integrity else CopyDataError
    if integrity:
        condition = integrity_condition(exc, _known_names(columns))
    else:
        condition = server_condition(exc)
    return cls(
        _message(label, row, column, condition, locator, stage),
        row=row,
        column=column,
        constraint=diag.constraint_name,
        **_server_fields(exc),
    )


def _known_names(columns: Sequence[Column]) -> set[str]:
    """The load's columns and the tables its foreign keys point to: the only names a
    constraint message may repeat from the server's (trigger-writable) fields."""
    names = {c.column for c in columns}
    for c in columns:
        related = getattr(c.field, "related_model", None)
        if related is not None and not isinstance(related, str):
            names.add(related._meta.db_table)
    return names


def _context(
    context: str | None, by_column: Mapping[str, str], relation: str | None = None
) -> tuple[int | None, str | None]:
    """The 0-based position and the field of a ``COPY t, line N, column c`` context.

    With ``relation`` (the table the COPY wrote, whose name may hold a newline or
    ``, line 2``), its own line is looked for; the first one counts (a value the
    server quotes comes after it). Only a column this load writes is taken: the text
    after it is the value.
    """
    text = context or ""
    match: re.Match[str] | None = None
    if relation is not None:
        match = re.compile(
            rf"(?:^|\n)COPY {re.escape(relation)}, line (\d+)(?:, column (.+))?",
            re.DOTALL,
        ).search(text)
    if match is None:
        match = _CONTEXT.search(text)
    if not match:
        return None, None
    column = None
    rest = match[2]
    if rest:
        for name, field_name in by_column.items():
            if rest == name or rest.startswith(f"{name}: "):
                column = field_name
                break
    return int(match[1]) - 1, column


# psycopg's class -> ours, which is also Django's class of the same name; Django's own
# class is the second base (for errors outside a load).
_CLASSES: tuple[tuple[type[psycopg.Error], type[CopyError]], ...] = (
    (psycopg.DataError, CopyDataError),
    (psycopg.IntegrityError, CopyIntegrityError),
    (psycopg.OperationalError, public.CopyOperationalError),
    (psycopg.InternalError, public.CopyInternalError),
    (psycopg.ProgrammingError, public.CopyProgrammingError),
    (psycopg.NotSupportedError, public.CopyNotSupportedError),
    (psycopg.DatabaseError, public.CopyDatabaseError),
    (psycopg.InterfaceError, public.CopyInterfaceError),
)


def _copy_class(pg: psycopg.Error) -> type[CopyError] | None:
    return next((ours for theirs, ours in _CLASSES if isinstance(pg, theirs)), None)


@dataclass
class Stage:
    """What a load is doing: ``stage`` reads after "while" in a message."""

    stage: str = "preparing the load"
    batch: int | None = None
    first_row: int | None = None
    last_row: int | None = None

    def words(self) -> str:
        if self.first_row is None or self.last_row is None:
            return self.stage
        return f"{self.stage} (rows {self.first_row}-{self.last_row})"


def load_error(
    exc: BaseException,
    *,
    label: str,
    stage: Stage,
    columns: Sequence[Column] = (),
    locator: Locator | None = None,
) -> CopyError | None:
    """The CopyError for any database error of a load, naming what it was doing.

    A deadlock or timeout is a :class:`CopyConcurrencyError`; a data or constraint error
    a :class:`CopyDataError` / :class:`CopyIntegrityError`; anything else (permission
    denied, a trigger's RAISE, a lost connection) one of the classes above, each also the
    Django error of the same name. None when ``exc`` is not a database error.
    """
    pg = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    if not isinstance(pg, psycopg.Error):
        return None
    kind = TRANSIENT.get(pg.sqlstate or "")
    if kind is not None:
        return public.CopyConcurrencyError(
            f"COPY into {label} stopped by a {kind} while {stage.words()}: "
            f"{server_condition(pg)}. "
            "The load was rolled back and wrote nothing; retrying it may succeed.",
            first_row=stage.first_row,
            last_row=stage.last_row,
            batch=stage.batch,
            **_server_fields(pg),
        )
    located = copy_error(
        pg,
        label=label,
        columns=columns,
        index_of=None,
        locator=locator,
        stage=stage.words(),
    )
    if located is not None:
        return located
    cls = _copy_class(pg) or public.CopyDatabaseError
    # A client-side error (no SQLSTATE, e.g. the connection was lost) is psycopg's own
    # words, which quote no value.
    condition = server_condition(pg) if pg.sqlstate else str(pg).strip()
    return cls(
        _message(label, None, None, condition, None, stage.words()),
        **_server_fields(pg),
    )


def database_error(exc: BaseException, what: str) -> Exception | None:
    """Django's error for any other server error of a COPY, with a value-free message.

    What Django itself would raise (``ProgrammingError`` for "permission denied" ...),
    but its text is the condition only (:func:`.redact.server_condition`): a trigger's
    ``RAISE``, a CONTEXT or a DETAIL may quote row values or query parameters. The
    psycopg error stays on ``.pg_error``. None when ``exc`` is not a database error.
    """
    pg = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    if not isinstance(pg, psycopg.Error):
        return None
    ours = _copy_class(pg)
    cls: type[Exception] = db_utils.Error if ours is None else ours.__bases__[1]
    if pg.sqlstate:
        error = cls(f"{what} failed: {server_condition(pg)}")
    else:
        # Raised by psycopg itself (a broken connection): its own words, no server text.
        error = cls(str(pg))
    error.pg_error = pg  # type: ignore[attr-defined]
    error.sqlstate = pg.sqlstate  # type: ignore[attr-defined]
    return error
