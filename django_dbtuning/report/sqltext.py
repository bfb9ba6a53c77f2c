"""How the report shows SQL: literals masked, comments dropped, and which statements are
the application's data queries.

pg_stat_activity and pg_stat_statements hold query texts with their values inlined
(Django's psycopg backend binds client-side), and values may be personal data or, in a
utility statement (``CREATE ROLE ... PASSWORD``, ``ALTER SUBSCRIPTION ... CONNECTION``,
``DO $$...$$``), a secret. Everything here reads the text with the shared lexer
(:mod:`django_dbtuning.sqllex`), as PostgreSQL's scanner does.
"""

from __future__ import annotations

import re

from django_dbtuning.sqllex import (
    COMMENTS,
    ERRORS,
    NAME_CHAR,
    NAME_START,
    Token,
    mask,
    masked_text,
    tokens,
)

DATA = frozenset(
    {"select", "insert", "update", "delete", "merge", "with", "values", "table"}
)
"""Statements whose text is the application's data query."""
APPLICATION = DATA | {"copy", "call"}
"""Statements the statements section shows (literals always masked there)."""

# PostgreSQL's scanner: "space [ \t\n\r\f\v]"; a statement may open with parentheses.
_PREFIX = " \t\n\r\f\v("
_WORD = re.compile(f"{NAME_START}{NAME_CHAR}*")
_SPACE = re.compile(r"\s+")


def _first_word(sql: str, scanned: list[Token]) -> str | None:
    for token in scanned:
        if token.kind in COMMENTS:
            continue
        if token.kind != "plain":
            return None  # a literal, a quoted name, or text the lexer cannot read
        text = sql[token.start : token.end].lstrip(_PREFIX)
        if text:
            match = _WORD.match(text)
            return match.group().lower() if match else None
    return None


def leading_keyword(sql: str) -> str | None:
    """The statement's first word after whitespace, comments (``--`` to the end of the
    line, nested ``/* */``) and opening parentheses, in lower case; None when there is no
    word (an unterminated comment, a literal)."""
    return _first_word(sql, tokens(sql))


def _single_statement(sql: str, scanned: list[Token]) -> bool:
    """Whether ``sql`` reads to its end as one statement (a trailing ``;`` allowed).

    pg_stat_activity keeps a simple-query string whole, so ``SELECT 1; ALTER ROLE r
    PASSWORD '...'`` starts with a data query and still holds a secret.
    """
    plain = []
    for token in scanned:
        if token.kind in ERRORS:
            return False
        if token.kind == "plain":
            plain.append(sql[token.start : token.end])
        elif token.kind not in COMMENTS:
            plain.append("?")
    text = "".join(plain).rstrip(" \t\n\r\f\v").rstrip(";")
    return ";" not in text


def shows_values(sql: str) -> bool:
    """Whether ``sql`` is one data query, whose values an opted-in report may show.

    Not when a '…' string holds a backslash that moves its end under
    ``standard_conforming_strings = off`` (the session that ran it may have had it off):
    ``SELECT 'x\\' , '; ALTER ROLE r PASSWORD ''…'' --'`` is one SELECT as the lexer
    reads it, and a SELECT and an ALTER ROLE to such a server.
    """
    scanned = tokens(sql)
    return (
        _first_word(sql, scanned) in DATA
        and _single_statement(sql, scanned)
        and mask(sql).complete
    )


def strip_literals(sql: str, *, limit: int = 300) -> str:
    """``sql`` with every literal replaced by ``?``, comments dropped, whitespace collapsed.

    The report never shows values unless ``DBTUNING["LOG_PARAMETERS"]`` asks. The same
    lexer as the N+1 fingerprints draws the literals; a text it cannot read to the end
    (pg_stat_activity cuts long queries mid-string) shows ``?…`` from that point.
    """
    text = masked_text(sql)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten(sql: str, *, limit: int = 300) -> str:
    text = _SPACE.sub(" ", sql).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def query_text(query: str | None, *, show_values: bool) -> str:
    """A session's query as a finding shows it: masked, unless ``show_values`` (the
    ``LOG_PARAMETERS`` opt-in) and it is one data query, shown without its comments."""
    text = query or ""
    if text.startswith("<insufficient"):
        return text
    # LOG_PARAMETERS opts in to values of data queries only: a utility statement's
    # literals may be a password (CREATE ROLE ... PASSWORD, CREATE USER MAPPING ...
    # OPTIONS (password ...), ALTER SUBSCRIPTION ... CONNECTION) and stay masked.
    if show_values and shows_values(text):
        # Values are opted in; comments are not (sqlcommenter ids, user names, anything).
        # shows_values() has already refused texts the lexer cannot read to the end.
        return shorten(
            "".join(
                " " if token.kind in COMMENTS else text[token.start : token.end]
                for token in tokens(text)
            )
        )
    return strip_literals(text)
