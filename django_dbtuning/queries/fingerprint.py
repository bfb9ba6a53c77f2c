"""SQL fingerprints: one shape key per statement, cached per SQL string.

Django hands the database ``%s`` templates, so two executions of one ORM query differ only in
their parameters; what still varies between executions of "the same" query is folded here:
lists of values of any length (``IN (...)``, multi-row ``VALUES``, ``ARRAY[...]``,
``ROW(...)``, ``(...)`` rows and row-value ``IN`` lists, of literals or placeholders;
:mod:`.folding` does these, whatever casts or wrappers a column's values carry),
``bulk_update``'s ``CASE WHEN`` ladders, literals in raw SQL (numbers with their sign,
strings, and TRUE / FALSE / NULL where a value stands; ``LIMIT ALL`` is ``LIMIT ?``),
savepoint names and SQL comments (sqlcommenter trace ids). The result is computed once per
distinct SQL string; after that, :func:`sql_info` is one dict lookup.

The shape is built from :func:`django_dbtuning.sqllex.mask` (every literal ``?``, comments
dropped), and every pattern here and in :mod:`.folding` runs over that masked text, never
over raw SQL: a shape, and so every log line, warning, exception and finding that shows
one, holds no literal.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from django_dbtuning.queries.folding import (
    NAME,
    NAME_END,
    fold_ladders,
    fold_lists,
    fold_values,
)
from django_dbtuning.sqllex import NAME_CHAR, NAME_START, Masked, mask, masked_text

Kind = Literal["read", "write", "transaction", "other"]

_CACHE_LIMIT = 10_000

_SAVEPOINT = re.compile(
    r"^(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT) [^ ]", re.I
)
_OPERATOR = r"~!@#^&|`?+\-*/%<>="
# id > %s, id <= ?: a lone comparison operator (not <>, ->, >>) before a value.
# (Each pattern starts with a character set, which sre scans for quickly; the context
# checks come after it, as look-behinds.)
_RANGE = re.compile(
    rf"[<>](?<![{_OPERATOR}].)=?(?![{_OPERATOR.replace('?', '')}]) ?(?:%s|\?)"
)
_TABLE = re.compile(
    rf"[FfIiJjUu](?<!{NAME_CHAR}.)(?<!\".)(?i:(?<=F)ROM|(?<=I)NTO|(?<=J)OIN|(?<=U)PDATE)"
    rf" ({NAME}(?:\.{NAME})?)"
)
_LEAD = re.compile(rf"[( ]*+({NAME_START}{NAME_CHAR}*+)")
# Possessive inside quotes: "a""b" is one identifier, never "a" then "b" (no backtracking).
_SELECT_LIST = re.compile(
    r'^(SELECT (?:DISTINCT )?)((?:"(?:[^"]++|"")*+"|[^"])+?)( FROM )', re.I
)
_QUOTED = re.compile(r'"(?:[^"]++|"")*+"')
_WRITE_WORD = re.compile(rf"(?<!{NAME_CHAR})(?i:INSERT|UPDATE|DELETE){NAME_END}")
# Bytes: the server reads them in the connection's client_encoding. Where that is not known
# they are read as UTF-8 (Django's and psycopg's default), and a byte that UTF-8 cannot read
# or a backslash right after a non-ASCII byte (in SJIS, BIG5, GBK, UHC, GB18030 and JOHAB
# the second byte of a character may be 0x5C, so E'\x83\x5c' is a whole string there) ends
# the text: "\n" closes a -- comment, and NUL is no SQL token, so the shape stops at "?…".
_CUT = "\n\x00"
_HIDDEN_BACKSLASH = re.compile(rb"[\x80-\xff]\\")

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
    # A table of a developer tool (the toolbar's DatabaseStore, silk): never counted.
    tool_owned: bool = False
    # What the recorder does with it, read without touching the shape: 0 never counted
    # (plumbing, a tool's own tables), 1 counted, 2 counted and grouped by call site.
    role: int = 2
    # No batch, offset or keyset page to note: the grouped path skips those checks.
    plain: bool = False
    # Learned distance from the recorder to the first frame of user code (see callsite).
    site_depth: int = 0
    # The code object of the ORM frame right below that user frame (see callsite.site_key).
    site_below: Any = None
    # (depth, code) of the ORM's outermost frame above the cursor (callsite.site_key).
    site_entry: Any = None


# Tables of developer tools whose own bookkeeping runs inside a request (the debug
# toolbar's DatabaseStore saves each panel, django-silk's middleware saves the request,
# its response and each query): the toolbar's SQL panel skips its own tables too.
TOOL_TABLES = ("debug_toolbar_", "silk_")

_shapes: dict[str, Shape] = {}
_infos: dict[str, SqlInfo] = {}

# The SqlInfo of an SQL string seen before, or None: the recorder's per-query lookup. A
# bound dict method costs no Python call; _infos is only cleared in place, so it stays live.
cached_sql_info: Callable[[str], SqlInfo | None] = _infos.get


def _kind(text: str) -> Kind:
    lead = _LEAD.match(text)
    word = lead.group(1).upper() if lead else ""
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
        return f"{savepoint.group(1).upper()} ?", False
    batch = ladder = False
    upper = text.upper()
    # Rows first, in one pass, so that a long VALUES list is not read again by every round
    # of fold_lists; rows holding an ARRAY[…] or a ROW(…) again once those are folded.
    has_values = "VALUES" in upper
    if has_values:
        text, batch = fold_values(text)
    text, in_batch, nested = fold_lists(text)
    if has_values and nested:
        text, again = fold_values(text)
        batch = batch or again
    if "WHEN (" in upper:
        text, ladder = fold_ladders(text)
    if "UNNEST(" in upper:
        batch = True
    return text, batch or in_batch or ladder


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
    offset = masked.offset if shape.kind == "read" else None
    tool_owned = shape.table is not None and shape.table.startswith(TOOL_TABLES)
    return SqlInfo(
        shape=shape,
        batch=batch,
        offset=offset,
        keyset_limit=keyset_limit,
        tool_owned=tool_owned,
        role=0
        if shape.kind == "transaction" or tool_owned
        else 1
        if shape.kind == "other"
        else 2,
        plain=not batch and offset is None and keyset_limit is None,
    )


def _decode(data: bytes, encoding: str | None) -> str:
    """Bytes as the server reads them, or up to the first byte that cannot be vouched for."""
    if data.isascii():
        return data.decode("ascii")
    if encoding is not None:
        try:
            return _decode_as(data, encoding, doubt_backslashes=False)
        except LookupError:
            pass  # not a text codec Python knows: read as UTF-8, with UTF-8's doubts
    return _decode_as(data, "utf-8", doubt_backslashes=True)


def _decode_as(data: bytes, codec: str, *, doubt_backslashes: bool) -> str:
    try:
        text, end = data.decode(codec), len(data)
    except UnicodeDecodeError as error:
        text, end = "", error.start
    if doubt_backslashes:
        hidden = _HIDDEN_BACKSLASH.search(data, 0, end)
        if hidden is not None:
            end = hidden.start() + 1
    if end == len(data):
        return text
    # "replace": the prefix is readable, and the recorder must never raise.
    return data[:end].decode(codec, "replace") + _CUT


def sql_text(sql: Any, *, encoding: str | None = None) -> str:
    """The SQL text of a statement that may not be a str, never a repr of its literals.

    ``bytes`` are read in ``encoding`` (a Python codec name: the connection's
    client_encoding, ``connection.info.encoding`` in psycopg) or, without one, as UTF-8,
    what Django and psycopg send by default. A byte that cannot be read that way ends the
    text so that its shape ends with ``?…``; so does, without an encoding, a backslash byte
    right after a non-ASCII one (the second byte of an SJIS, BIG5, GBK, UHC or GB18030
    character may be 0x5C, which UTF-8 would read as an escape inside E'…').
    """
    if isinstance(sql, str):
        return sql
    if isinstance(sql, bytes | bytearray | memoryview):
        # str(b"...") is a repr: its quotes would turn literals into an "identifier".
        return _decode(bytes(sql), encoding)
    # psycopg.sql.Composed and friends: not cached by object, the text is.
    as_string = getattr(sql, "as_string", None)
    if as_string is None:
        return str(sql)
    try:
        return str(as_string(None))
    except Exception:
        return f"<{type(sql).__name__}>"  # its repr would show the values


def sql_info(sql: Any) -> SqlInfo:
    """Everything the recorder needs about ``sql``; a dict lookup after the first call.

    A statement that is not a str is read through :func:`sql_text` (bytes as UTF-8).
    """
    if not isinstance(sql, str):
        return sql_info(sql_text(sql))
    info = _infos.get(sql)
    if info is None:
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
