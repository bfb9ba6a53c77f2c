"""SQL fingerprints: one shape key per statement, cached per SQL string.

Django hands the database ``%s`` templates, so two executions of one ORM query differ only in
their parameters; what still varies between executions of "the same" query is folded here:
``IN (%s, %s, ...)`` lists and multi-row ``VALUES``, ``bulk_update``'s ``CASE WHEN`` ladders,
literals in raw SQL, savepoint names and SQL comments (sqlcommenter trace ids). The result is
computed once per distinct SQL string; after that, :func:`sql_info` is one dict lookup.

The shape is built from :func:`django_dbtuning.sqllex.mask` (every literal ``?``, comments
dropped), and every pattern below runs over that masked text, never over raw SQL: a shape,
and so every log line, warning, exception and finding that shows one, holds no literal.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from django_dbtuning.sqllex import Masked, mask, masked_text

__all__ = ["Shape", "SqlInfo", "display_sql", "fingerprint", "sql_info"]

Kind = Literal["read", "write", "transaction", "other"]

_CACHE_LIMIT = 10_000

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
_RANGE = re.compile(r"[<>]=?\s*(?:%s|\?)")
_TABLE = re.compile(
    r'\b(?:FROM|INTO|UPDATE|JOIN)\s+((?:"(?:[^"]++|"")++"|\w+)(?:\.(?:"(?:[^"]++|"")++"|\w+))?)',
    re.I,
)
# Possessive inside quotes: "a""b" is one identifier, never "a" then "b" (no backtracking).
_SELECT_LIST = re.compile(
    r'^(SELECT\s+(?:DISTINCT\s+)?)((?:"(?:[^"]++|"")*+"|[^"])+?)(\s+FROM\s)',
    re.I | re.S,
)
_QUOTED = re.compile(r'"(?:[^"]++|"")*+"')
_WRITE_WORD = re.compile(r"\b(?:INSERT|UPDATE|DELETE)\b", re.I)

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
        if word == "WITH" and _WRITE_WORD.search(_QUOTED.sub("", text)):
            return "write"
        return "read"
    return "other"


def _normalise(masked: Masked) -> tuple[str, bool]:
    """The shape text (quoted identifiers still as sentinels) and whether it is a batch."""
    text = masked.text.rstrip(";").strip()
    savepoint = _SAVEPOINT.match(text)
    if savepoint:
        return f"{_SPACE.sub(' ', savepoint.group(1)).upper()} ?", False
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


def _table(text: str, masked: Masked) -> str | None:
    match = _TABLE.search(text)
    if not match:
        return None
    name = masked.restore(match.group(1).split(".")[-1])
    if name.startswith('"'):
        return name[1:-1].replace('""', '"')
    return name


def _digest(text: str) -> str:
    # surrogatepass: a lone surrogate in hostile SQL must not make the recorder fail.
    data = text.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=6).hexdigest()


def _build(sql: str) -> SqlInfo:
    masked = mask(sql)
    folded, batch = _normalise(masked)
    text = masked.restore(folded)
    shape = _shapes.get(text)
    if shape is None:
        shape = Shape(
            text=text,
            digest=_digest(text),
            kind=_kind(folded),
            table=_table(folded, masked),
        )
        if len(_shapes) >= _CACHE_LIMIT:
            _shapes.clear()
        _shapes[text] = shape
    keyset_limit = None
    if (
        shape.kind == "read"
        and masked.limit is not None
        and masked.limit > 1
        and "ORDER BY" in folded.upper()
        and _RANGE.search(folded)
    ):
        keyset_limit = masked.limit
    return SqlInfo(
        shape=shape,
        batch=batch,
        offset=masked.offset if shape.kind == "read" else None,
        keyset_limit=keyset_limit,
    )


def _text_of(sql: Any) -> str:
    """The SQL text of a non-str statement, never a repr that could quote its literals."""
    if isinstance(sql, bytes | bytearray | memoryview):
        # str(b"...") is a repr: its quotes would turn literals into an "identifier".
        return bytes(sql).decode("utf-8", "replace")
    # psycopg.sql.Composed and friends: not cached by object, the text is.
    as_string = getattr(sql, "as_string", None)
    if as_string is None:
        return str(sql)
    try:
        return str(as_string(None))
    except Exception:
        return f"<{type(sql).__name__}>"  # its repr would show the values


def sql_info(sql: Any) -> SqlInfo:
    """Everything the recorder needs about ``sql``; a dict lookup after the first call."""
    if isinstance(sql, str):
        info = _infos.get(sql)
        if info is not None:
            return info
    else:
        return sql_info(_text_of(sql))
    info = _build(sql)
    if len(_infos) >= _CACHE_LIMIT:
        _infos.clear()
    _infos[sql] = info
    return info


def fingerprint(sql: str) -> str:
    """The normalised SQL shape of ``sql`` (literals, IN lists, savepoint names folded)."""
    return sql_info(sql).shape.text


def display_sql(text: str, *, limit: int = 240) -> str:
    """A short, readable form of a shape: the select list collapsed, long text cut.

    The text is masked again on the way (a shape comes back unchanged), so raw SQL handed
    here by mistake still shows no literal and no comment.
    """
    text = _SELECT_LIST.sub(
        lambda m: (
            m.group(1) + ("…" if len(m.group(2)) > 40 else m.group(2)) + m.group(3)
        ),
        masked_text(text),
        count=1,
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"
