"""What kind of statement a query text is, read as PostgreSQL's scanner reads its start.

Only the first word after whitespace, comments (``--`` to the end of the line, nested
``/* */``) and opening parentheses matters: it tells a data query (``SELECT``,
``INSERT``...) from a utility statement (``CREATE ROLE ... PASSWORD``, ``ALTER
SUBSCRIPTION ... CONNECTION``, ``DO $$...$$``), which may carry secrets in its text and is
never shown with its values.
"""

from __future__ import annotations

import re

from django_dbtuning.sqllex import COMMENTS, ERRORS, tokens

__all__ = ["APPLICATION", "DATA", "leading_keyword", "shows_values"]

# PostgreSQL's scanner: "space [ \t\n\r\f\v]"; anything else ends the prefix.
_WHITESPACE = " \t\n\r\f\v"
_SPACE = frozenset(_WHITESPACE)
# ident_start / ident_cont of scan.l: ASCII letters, underscore, any non-ASCII character.
_NEWLINE = re.compile(r"[\n\r]")
_WORD = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")

DATA = frozenset(
    {"select", "insert", "update", "delete", "merge", "with", "values", "table"}
)
"""Statements whose text is the application's data query."""
APPLICATION = DATA | {"copy", "call"}
"""Statements the statements section shows (literals always masked there)."""


def _skip_comment(sql: str, start: int) -> int | None:
    """The index after the (nested) block comment opening at ``start``, or None."""
    depth = 0
    i = start
    while i < len(sql):
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return None


def leading_keyword(sql: str) -> str | None:
    """The statement's first word in lower case, or None (no word, an unterminated
    comment)."""
    i = 0
    while i < len(sql):
        if sql[i] in _SPACE or sql[i] == "(":
            i += 1
        elif sql.startswith("--", i):
            # scan.l: a comment runs to the next newline, \n or \r.
            end = _NEWLINE.search(sql, i)
            if end is None:
                return None
            i = end.end()
        elif sql.startswith("/*", i):
            after = _skip_comment(sql, i)
            if after is None:
                return None
            i = after
        else:
            break
    match = _WORD.match(sql, i)
    return match.group().lower() if match else None


def _single_statement(sql: str) -> bool:
    """Whether ``sql`` reads to its end as one statement (a trailing ``;`` allowed).

    pg_stat_activity keeps a simple-query string whole, so ``SELECT 1; ALTER ROLE r
    PASSWORD '...'`` starts with a data query and still holds a secret.
    """
    plain = []
    for token in tokens(sql):
        if token.kind in ERRORS:
            return False
        if token.kind == "plain":
            plain.append(sql[token.start : token.end])
        elif token.kind not in COMMENTS:
            plain.append("?")
    text = "".join(plain).rstrip(_WHITESPACE).rstrip(";")
    return ";" not in text


def shows_values(sql: str) -> bool:
    """Whether ``sql`` is one data query, whose values an opted-in report may show."""
    return leading_keyword(sql) in DATA and _single_statement(sql)
