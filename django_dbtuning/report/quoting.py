"""SQL and Python text for the report's hints, safe to paste whatever the names hold.

Names come from the catalogs, and a table, index, constraint or column may be called
anything (``Chk Val; DROP TABLE x``, ``ParentId``, ``a"b``). Every identifier in SQL a hint
quotes (:func:`ident`) is therefore quoted the way ``psycopg.sql.Identifier`` and Django's ``sqlmigrate`` quote them:
always in double quotes with inner quotes doubled, and schema-qualified so that the
statement means the same object whatever the pasting session's ``search_path``. Python
snippets (``migrations.RunSQL(...)``) carry their SQL as ``repr()`` literals, which
``ast.literal_eval`` reads back to the same text.

Names in prose (titles, details, ``object``) are shown as PostgreSQL's ``quote_ident()``
shows them: quoted only when needed, and without the ``public`` schema (:func:`quote_ident`,
:func:`qualified`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")


def ident(*parts: str) -> str:
    """``"part"."part"``: each part double-quoted, inner double quotes doubled.

    Always quoting costs a little readability and is never wrong: an unquoted name is
    folded to lower case and may collide with a keyword of a later PostgreSQL.
    """
    if not parts:
        raise ValueError("an identifier needs at least one part")
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def quote_ident(name: str) -> str:
    """``name`` for prose: bare when PostgreSQL would read it back unquoted."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    """``schema.name`` for prose, the ``public`` schema left out."""
    if schema == "public":
        return quote_ident(name)
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def column_list(columns: Iterable[str]) -> str:
    """``("a", "B c")`` for an index or constraint column list."""
    return "(" + ", ".join(ident(column) for column in columns) + ")"


def literal(value: str) -> str:
    """A string literal PostgreSQL reads back as ``value``, as its ``quote_literal``.

    Single quotes are doubled; a value holding a backslash becomes an ``E''`` literal with
    backslashes doubled, which means the same with ``standard_conforming_strings`` on
    or off.
    """
    quoted = "'" + value.replace("'", "''") + "'"
    if "\\" in value:
        return "E" + quoted.replace("\\", "\\\\")
    return quoted


def run_sql(sql: str, reverse_sql: str | None = None) -> str:
    """``migrations.RunSQL(...)`` as Python source whose strings are exactly ``sql``
    and ``reverse_sql`` (``repr()`` literals: quotes and backslashes escaped)."""
    if reverse_sql is None:
        return f"migrations.RunSQL({sql!r})"
    return f"migrations.RunSQL({sql!r}, reverse_sql={reverse_sql!r})"
