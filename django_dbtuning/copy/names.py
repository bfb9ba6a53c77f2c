"""Table and column names in a load's SQL: quoted as Django quoted them, or refused.

A name reaches SQL through :func:`quote` only. Django's ``quote_name`` wraps a name in double
quotes without doubling a ``"`` inside it and passes a name that is already written quoted
(``'"other"."t"'``, the usual way to put a model's table in another schema) through as it
is. For every name Django can actually have created a table or column with, that is what
``psycopg.sql.Identifier`` writes, so :func:`quote` uses ``Identifier`` for plain names and
keeps Django's pass-through for quoted ones; a name with a ``"`` that Django would have
written as broken SQL is refused up front, naming the model and the name.

Statements that take values never carry identifiers next to ``%s`` placeholders: psycopg
reads every ``%`` of the statement text as a placeholder, including one inside a quoted
table name (``"a%b"`` would read ``"a%b"`` as ``"a`` + a parameter). Such statements are
composed with :mod:`psycopg.sql` (values as ``Literal``) and sent without parameters, see
:func:`render`.

Helper columns (a staged row's number, the "never conflicts" flag) get names per load that
no column of the model has (:func:`helper_name`).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from psycopg import sql

# A name Django passes through because it is already quoted: "a"."b", with "" inside.
_QUOTED = re.compile(r'"(?:[^"]|"")+"(?:\."(?:[^"]|"")+")*')
_PART = re.compile(r'"((?:[^"]|"")+)"')
# PostgreSQL keeps the first 63 bytes of an identifier (NAMEDATALEN - 1).
_NAME_BYTES = 63


def quote(name: str, *, what: str = "name") -> str:
    """``name`` quoted for SQL, exactly as Django's schema editor wrote it.

    ``what`` names the name in the error ("db_table of copyapp.Item").
    """
    if len(name) > 1 and name.startswith('"') and name.endswith('"'):
        if _QUOTED.fullmatch(name):
            return name
        raise ValueError(
            f"{what} '{shown(name)}' starts and ends with a double quote, so Django "
            "writes it into SQL as it is, but it is not a valid quoted name"
        )
    if '"' in name or "\x00" in name:
        raise ValueError(
            f"{what} '{shown(name)}' contains a double quote or a NUL, which Django's "
            "quote_name cannot quote (Django's own queries and migrations for it would "
            "be invalid SQL); rename it"
        )
    return sql.Identifier(name).as_string()


def relation_name(table: str) -> str:
    """The bare name the server prints for ``table`` (``COPY t, line 3`` in CONTEXT)."""
    name = table
    if len(table) > 1 and table.startswith('"') and _QUOTED.fullmatch(table):
        name = _PART.findall(table)[-1].replace('""', '"')
    return truncated(name)


def truncated(name: str) -> str:
    """``name`` as PostgreSQL stores it: the first 63 bytes, whole characters."""
    data = name.encode("utf-8")
    if len(data) <= _NAME_BYTES:
        return name
    return data[:_NAME_BYTES].decode("utf-8", "ignore")


def helper_name(base: str, taken: Collection[str]) -> str:
    """``base``, or ``base_2``, ``base_3``...: the first that no column in ``taken`` has."""
    name = base
    n = 1
    while truncated(name) in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def render(cursor: Any, statement: sql.Composable) -> str:
    """The text of a composed statement, to run without parameters.

    ``cursor`` is a Django cursor (its driver cursor is used) or a psycopg cursor: literals
    are escaped for that connection.
    """
    raw = getattr(cursor, "cursor", cursor)
    return statement.as_string(raw)


def shown(name: str) -> str:
    """``name`` for a message: control and other invisible characters escaped.

    A constraint or table name may hold a newline or a bidirectional override; in a
    message (a log line, a terminal) it would break the line or reorder the text. Such a
    name is shown with Python's escapes (``nl\\nline``, backslashes doubled); any other name
    is shown as it is.
    """
    if name.isprintable():
        return name
    out = []
    for char in name:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            out.append(repr(char)[1:-1])
    return "".join(out)
