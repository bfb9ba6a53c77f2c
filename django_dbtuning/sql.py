"""SQL fingerprints: one shape key per statement, cached per SQL string.

Django hands the database ``%s`` templates, so two executions of one ORM query differ only in
their parameters; what still varies between executions of "the same" query is folded here:
``IN (%s, %s, ...)`` lists and multi-row ``VALUES``, ``bulk_update``'s ``CASE WHEN`` ladders,
literals in raw SQL, savepoint names and SQL comments (sqlcommenter trace ids). The result is
computed once per distinct SQL string; after that, :func:`sql_info` is one dict lookup.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Shape", "SqlInfo", "display_sql", "fingerprint", "sql_info"]

Kind = Literal["read", "write", "transaction", "other"]

_CACHE_LIMIT = 10_000

_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*", re.S)
# Quoted identifiers are kept; string and number literals become "?". One alternation so a
# digit inside "t1" or a quote inside an identifier is never mistaken for a literal.
_TOKEN = re.compile(
    r'(?P<ident>"(?:[^"]|"")*")'
    r"|(?P<string>[EeBbXxNn]?'(?:[^']|'')*')"
    r"|(?P<number>(?<![\w$.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w$]))"
)
_PLACEHOLDER = r"(?:%s|\?|%\(\w+\)s|DEFAULT|NULL)(?:::[\w\s()\[\],]+?)?"
_IN_LIST = re.compile(
    rf"\bIN\s*\(\s*{_PLACEHOLDER}(?:\s*,\s*{_PLACEHOLDER})*\s*\)", re.I
)
_ROW = rf"\(\s*{_PLACEHOLDER}(?:\s*,\s*{_PLACEHOLDER})*\s*\)"
_VALUES = re.compile(rf"\bVALUES\s*{_ROW}(?:\s*,\s*{_ROW})*", re.I)
_CASE_LADDER = re.compile(
    r"(?:\s*WHEN\s+\([^()]*\)\s+THEN\s+(?:CAST\([^()]*\)|[^\s()]+))+", re.I
)
_SAVEPOINT = re.compile(
    r"^(SAVEPOINT|RELEASE\s+SAVEPOINT|ROLLBACK\s+TO\s+SAVEPOINT)\s+\S+", re.I
)
_SPACE = re.compile(r"\s+")
_OFFSET = re.compile(r"\bOFFSET\s+(\d+)\b", re.I)
_LIMIT = re.compile(r"\bLIMIT\s+(\d+)\b", re.I)
_RANGE = re.compile(r"[<>]=?\s*(?:%s|\?)")
_TABLE = re.compile(
    r'\b(?:FROM|INTO|UPDATE|JOIN)\s+((?:"(?:[^"]|"")+"|\w+)(?:\.(?:"(?:[^"]|"")+"|\w+))?)',
    re.I,
)
_SELECT_LIST = re.compile(r"^(SELECT\s+(?:DISTINCT\s+)?)(.+?)(\s+FROM\s)", re.I | re.S)

_TRANSACTION = frozenset(
    [
        "SAVEPOINT",
        "RELEASE",
        "ROLLBACK",
        "BEGIN",
        "COMMIT",
        "START",
        "END",
        "SET",
        "SHOW",
        "RESET",
        "DEALLOCATE",
        "DISCARD",
        "LISTEN",
        "UNLISTEN",
    ]
)
_WRITE = frozenset(["INSERT", "UPDATE", "DELETE", "MERGE", "COPY"])


@dataclass(frozen=True, slots=True, eq=False)
class Shape:
    """The normalised form of a statement: what "the same query" means.

    Shapes are interned per text, so identity is equality and hashing is cheap.
    """

    text: str
    digest: str
    kind: Kind
    table: str | None


@dataclass(slots=True)
class SqlInfo:
    """What is known about one exact SQL string; shared by every execution of it."""

    shape: Shape
    # Many rows per execution: multi-row VALUES, a multi-item IN list, UNNEST, CASE ladders.
    batch: bool
    offset: int | None
    # LIMIT n with an ORDER BY and a range predicate: a keyset page when it comes back full.
    keyset_limit: int | None
    # Learned distance from the recorder to the first frame of user code (see detection).
    site_depth: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


_shapes: dict[str, Shape] = {}
_infos: dict[str, SqlInfo] = {}


def _kind(text: str) -> Kind:
    head = text.lstrip("( \n\t").split(None, 1)
    word = head[0].upper() if head else ""
    if word in _TRANSACTION:
        return "transaction"
    if word in _WRITE:
        return "write"
    if word in ("SELECT", "WITH", "VALUES", "TABLE"):
        upper = text.upper()
        if word == "WITH" and re.search(r"\b(INSERT|UPDATE|DELETE)\b", upper):
            return "write"
        return "read"
    return "other"


def _replace_literal(match: re.Match[str]) -> str:
    return match.group("ident") or "?"


def _normalise(sql: str) -> tuple[str, bool]:
    text = _COMMENT.sub(" ", sql)
    text = _SPACE.sub(" ", text).strip().rstrip(";").strip()
    savepoint = _SAVEPOINT.match(text)
    if savepoint:
        return f"{_SPACE.sub(' ', savepoint.group(1)).upper()} ?", False
    text = _TOKEN.sub(_replace_literal, text)
    batch = False

    def in_list(match: re.Match[str]) -> str:
        nonlocal batch
        batch = batch or "," in match.group(0)
        return "IN (...)"

    def values(match: re.Match[str]) -> str:
        nonlocal batch
        batch = batch or match.group(0).count("(") > 1
        return "VALUES (...)"

    def ladder(match: re.Match[str]) -> str:
        nonlocal batch
        batch = batch or match.group(0).upper().count("WHEN") > 1
        return " WHEN ... THEN ..."

    text = _IN_LIST.sub(in_list, text)
    text = _VALUES.sub(values, text)
    text = _CASE_LADDER.sub(ladder, text)
    if "UNNEST(" in text.upper():
        batch = True
    return text, batch


def _table(text: str) -> str | None:
    match = _TABLE.search(text)
    if not match:
        return None
    return match.group(1).split(".")[-1].strip('"').replace('""', '"')


def _build(sql: str) -> SqlInfo:
    text, batch = _normalise(sql)
    shape = _shapes.get(text)
    if shape is None:
        digest = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
        shape = Shape(text=text, digest=digest, kind=_kind(text), table=_table(text))
        if len(_shapes) >= _CACHE_LIMIT:
            _shapes.clear()
        _shapes[text] = shape
    offset_match = _OFFSET.search(sql) if shape.kind == "read" else None
    keyset_limit = None
    if shape.kind == "read" and "ORDER BY" in sql.upper() and _RANGE.search(sql):
        limit = _LIMIT.search(sql)
        if limit and int(limit.group(1)) > 1:
            keyset_limit = int(limit.group(1))
    return SqlInfo(
        shape=shape,
        batch=batch,
        offset=int(offset_match.group(1)) if offset_match else None,
        keyset_limit=keyset_limit,
    )


def sql_info(sql: Any) -> SqlInfo:
    """Everything the recorder needs about ``sql``; a dict lookup after the first call."""
    if isinstance(sql, str):
        info = _infos.get(sql)
        if info is not None:
            return info
    else:
        # psycopg.sql.Composed and friends: not cached by object, the text is.
        as_string = getattr(sql, "as_string", None)
        try:
            sql = as_string(None) if as_string is not None else str(sql)
        except Exception:
            sql = str(sql)
        return sql_info(sql)
    info = _build(sql)
    if len(_infos) >= _CACHE_LIMIT:
        _infos.clear()
    _infos[sql] = info
    return info


def fingerprint(sql: str) -> str:
    """The normalised SQL shape of ``sql`` (literals, IN lists, savepoint names folded)."""
    return sql_info(sql).shape.text


def display_sql(text: str, *, limit: int = 240) -> str:
    """A short, readable form of a shape: the select list collapsed, long text cut."""
    text = _SELECT_LIST.sub(
        lambda m: (
            m.group(1) + ("…" if len(m.group(2)) > 40 else m.group(2)) + m.group(3)
        ),
        text,
        count=1,
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"
