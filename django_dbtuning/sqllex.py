"""A PostgreSQL lexer for showing SQL safely: where every literal and comment starts and ends.

The boundaries are the server's own (``src/backend/parser/scan.l``): standard strings with
doubled quotes, ``E''`` strings with backslash escapes, ``N''``, ``U&''``, ``B''``/``X''``,
dollar quoting with tags, string continuation across a newline, quoted identifiers (``""``
doubled, ``U&""``), nested ``/* */`` and ``--`` comments, and PostgreSQL 16's numbers
(``0x1F``, ``0o17``, ``0b101``, ``1_000``). ``tests/test_sql_lexer.py`` holds the boundaries
against libpg_query's scanner (pglast) over generated statements; at run time this is pure
Python, so the query recorder carries no compiled dependency.

Text runs that hold no literal (keywords, names, operators, ``$1``, psycopg's ``%s``,
``%(name)s`` and ``%%``, quoted identifiers of word characters) come back as one ``plain``
token, which keeps the scan to a few regex calls for an ORM statement. Scanning stops at the
first thing it cannot classify (an unterminated string, comment or dollar quote, a malformed
number, a character that is no SQL token): that token runs to the end of the text, and
:func:`mask` shows ``?…`` from there instead of text it cannot vouch for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

TokenKind = Literal[
    "plain",
    "string",  # '…' and N'…'
    "estring",  # E'…'
    "dollar",  # $$…$$, $tag$…$tag$
    "ustring",  # U&'…'
    "bits",  # B'…'
    "xbits",  # X'…'
    "integer",
    "float",
    "ident",  # a quoted identifier that is not plain word characters
    "uident",  # U&"…"
    "line_comment",
    "block_comment",
    "unterminated",  # error: a string, identifier, dollar quote or comment never closed
    "bad_number",  # error: trailing junk after a number (1abc, 0x, 1_)
    "other",  # error: a character PostgreSQL has no token for
]

LITERALS: Final = frozenset(
    ["string", "estring", "dollar", "ustring", "bits", "xbits", "integer", "float"]
)
COMMENTS: Final = frozenset(["line_comment", "block_comment"])
ERRORS: Final = frozenset(["unterminated", "bad_number", "other"])


class Token(NamedTuple):
    kind: TokenKind
    start: int
    end: int  # exclusive


# PostgreSQL reads bytes: every byte >= 0x80 (so every non-ASCII character, NBSP and U+3000
# included) is a letter; its only whitespace is [ \t\n\r\f\v]. Outside quotes, every
# pattern here and in sql.py reads names and whitespace with these sets, never \s, \w or
# \b, whose Unicode meaning the server does not share (a run of NBSP matched by \s but kept
# by the whitespace collapse made two patterns quadratic). Written as negated ASCII sets: [A-Za-z_\x80-\U0010ffff] means the same but
# costs ~10 ms to compile at each use (sre maps the range up to U+10FFFF).
NAME_START: Final = r"[^\x00-\x40\x5b-\x5e\x60\x7b-\x7f]"  # A-Z a-z _ and non-ASCII
NAME_CHAR: Final = r"[^\x00-\x23\x25-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"  # and 0-9 $
_TAG_CHAR = r"[^\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"  # a dollar tag: no $
_WORD = rf"(?![bBeEnNxX]'|[uU]&['\"]){NAME_START}{NAME_CHAR}*+"
# A quoted identifier of word characters cannot hide a literal or a comment, so it stays in
# the plain run (Django quotes every name); the lookahead leaves "a""b" to the full rule.
_SIMPLE_IDENT = r'"[\w$]++"(?!")'
_OPERATOR = r"(?:(?!--|/\*)[~!@#^&|`?+\-*/%<>=])++"
_PUNCT = r"[,()\[\];:]|\.\.|\.(?![0-9])"
_SPACE = r"[ \t\n\r\f\v]++"
_PARAM = r"\$[0-9]++"
_PLAIN = rf"(?:{_WORD}|{_SIMPLE_IDENT}|{_SPACE}|{_OPERATOR}|{_PUNCT}|{_PARAM})++"

# Two string pieces separated by whitespace that holds a newline are one literal ('a'\n'b');
# only -- comments may sit in that whitespace. Possessive throughout: no backtracking.
_CONTINUE = r"(?:[ \t\f\v]|--[^\n\r]*+)*+[\n\r](?:[ \t\n\r\f\v]|--[^\n\r]*+[\n\r])*+'"
_BODY = r"(?:[^']++|'')*+'"
_E_BODY = r"(?:[^'\\]++|\\[\s\S]|'')*+'"
_B_BODY = r"[^']*+'"
_TAG = rf"(?:{NAME_START}{_TAG_CHAR}*+)?"
_DEC = r"[0-9](?:_?[0-9])*+"
_NUMERIC = rf"{_DEC}\.(?!\.)(?:{_DEC})?|\.{_DEC}"

_MASTER = re.compile(
    "|".join(
        [
            rf"(?P<plain>{_PLAIN})",
            rf"(?P<string>[nN]?'{_BODY}(?:{_CONTINUE}{_BODY})*+)",
            rf"(?P<estring>[eE]'{_E_BODY}(?:{_CONTINUE}{_E_BODY})*+)",
            rf"(?P<ustring>[uU]&'{_BODY}(?:{_CONTINUE}{_BODY})*+)",
            rf"(?P<bits>[bB]'{_B_BODY}(?:{_CONTINUE}{_B_BODY})*+)",
            rf"(?P<xbits>[xX]'{_B_BODY}(?:{_CONTINUE}{_B_BODY})*+)",
            rf"(?P<dollar>\$(?P<tag>{_TAG})\$[\s\S]*?\$(?P=tag)\$)",
            r'(?P<ident>"(?:[^"]++|"")++")',
            r'(?P<uident>[uU]&"(?:[^"]++|"")++")',
            r"(?P<line_comment>--[^\n\r]*+)",
            r"(?P<block_comment>/\*)",
            r"(?P<number>\.?[0-9])",
            rf"(?P<unterminated>[eEbBxXnN]?'|[uU]&['\"]|\"|\${_TAG}\$)",
            r"(?P<other>[\s\S])",
        ]
    )
)
_CONTINUE_OPEN = re.compile(_CONTINUE)
_INT4_MAX = 2**31 - 1
# The longest valid number at a position (real, then numeric, then based, then decimal);
# "1..2" is the integer 1 followed by "..", as the server reads it.
_NUMBER = re.compile(
    rf"(?P<float>(?:{_DEC}|{_NUMERIC})[eE][-+]?{_DEC}|{_NUMERIC})"
    rf"|(?P<integer>0[xX](?:_?[0-9A-Fa-f])++|0[oO](?:_?[0-7])++|0[bB](?:_?[01])++|{_DEC})"
)
# The server also matches "a number, then an identifier" (1abc, 0x1g, 1_000_, 1e3$) and
# refuses the text when that runs longer than the number: the identifier may start after
# the leading digits, after the digits of a fraction or after those of an exponent.
_ID_RUN = rf"{NAME_START}{NAME_CHAR}*+"
_JUNK = (
    re.compile(rf"[0-9]++{_ID_RUN}"),
    re.compile(rf"(?:{_DEC}\.[0-9]*+|\.[0-9]++){_ID_RUN}"),
    re.compile(rf"(?:{_DEC}|{_DEC}\.(?:{_DEC})?|\.{_DEC})[eE][-+]?[0-9]++{_ID_RUN}"),
)
_COMMENT_MARK = re.compile(r"/\*|\*/")
_STRINGS = frozenset(["string", "estring", "ustring", "bits", "xbits"])
_CONTINUE_FIRST = frozenset(" \t\n\r\f\v-")
_NAME_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789$"
)


def _int_value(text: str) -> int:
    base = 0 if text[:2].lower() in ("0x", "0o", "0b") else 10
    return int(text, base)


def _number(sql: str, pos: int) -> tuple[str, int]:
    found = _NUMBER.match(sql, pos)
    assert found is not None  # called at a digit or at "." before a digit
    end = found.end()
    # Junk runs on through the number's end, so only a name character there can start it.
    if end < len(sql) and (sql[end] in _NAME_CHARS or sql[end] >= "\x80"):
        for junk in _JUNK:
            longer = junk.match(sql, pos)
            if longer is not None and longer.end() > end:
                return "bad_number", end
    kind = found.lastgroup
    assert kind is not None
    if kind == "integer" and end - pos >= 10 and _int_value(found.group()) > _INT4_MAX:
        return "float", end  # the server keeps what int4 cannot hold as a numeric
    return kind, end


def _block_end(sql: str, pos: int) -> int:
    """End of the (nested) block comment opened at ``pos``; -1 when it never closes."""
    depth = 1
    pos += 2
    search = _COMMENT_MARK.search
    while True:
        mark = search(sql, pos)
        if mark is None:
            return -1
        pos = mark.end()
        depth += 1 if mark.group() == "/*" else -1
        if depth == 0:
            return pos


def _scan(sql: str) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    pos = 0
    size = len(sql)
    match = _MASTER.match
    append = out.append
    while pos < size:
        found = match(sql, pos)
        assert found is not None  # "other" matches any character
        kind = found.lastgroup
        assert kind is not None
        end = found.end()
        if kind == "plain":
            append((kind, pos, end))
            pos = end
            continue
        if kind == "number":
            kind, end = _number(sql, pos)
        elif kind == "block_comment":
            end = _block_end(sql, pos)
            if end < 0:
                kind = "unterminated"
        elif (
            kind in _STRINGS
            and sql[end : end + 1] in _CONTINUE_FIRST
            and _CONTINUE_OPEN.match(sql, end)
        ):
            # A continuation quote whose piece never closes: the literal is unterminated
            # from its start, as the server reports it.
            kind = "unterminated"
        if kind in ERRORS:
            append((kind, pos, size))
            break
        append((kind, pos, end))
        pos = end
    return out


def tokens(sql: str) -> list[Token]:
    """``sql`` cut into tokens; an error token, if any, is the last and runs to the end."""
    return [Token(*token) for token in _scan(sql)]  # type: ignore[arg-type]


# --- masking -------------------------------------------------------------------------------

_COLLAPSE = re.compile(r"[ \t\n\r\f\v]+")
_SENTINEL = re.compile('"\x00([0-9]+)"')
_UESCAPE = re.compile(r"\? ?UESCAPE ?\?", re.I)
# With standard_conforming_strings off, a backslash escapes a quote in '…' too.
_LEGACY_STRING = re.compile(rf"[nN]?'{_E_BODY}(?:{_CONTINUE}{_E_BODY})*+")
_OPERATOR_CHARS = frozenset("~!@#^&|`?+-*/%<>=")
_OPERATOR_WHOLE = frozenset(
    "~!@#^&|`?%"
)  # an operator holding one keeps a trailing - / +
# After these a "-" starts a negative number rather than subtracting.
_UNARY_AFTER = frozenset(
    [
        "ALL",
        "AND",
        "ANY",
        "ARRAY",
        "AS",
        "BETWEEN",
        "BY",
        "CASE",
        "DEFAULT",
        "DISTINCT",
        "ELSE",
        "EXISTS",
        "FETCH",
        "FIRST",
        "HAVING",
        "ILIKE",
        "IN",
        "INTERVAL",
        "IS",
        "LIKE",
        "LIMIT",
        "NOT",
        "OFFSET",
        "ON",
        "OR",
        "RETURN",
        "RETURNING",
        "SELECT",
        "SET",
        "SIMILAR",
        "SOME",
        "THEN",
        "TO",
        "USING",
        "VALUES",
        "WHEN",
        "WHERE",
        "WITH",
    ]
)
_OPERAND = "\x00"  # the previous significant token was a literal or a quoted identifier
FAIL: Final = "?…"


# TRUE, FALSE and NULL where a value stands are literals like 1 and 'x' (pg_stat_statements
# folds them too), and LIMIT ALL is LIMIT with no number. After IS, NOT, AS, SET, FROM or a
# name they are syntax: IS [NOT] NULL, IS TRUE, NOT NULL, ON DELETE SET NULL,
# IS DISTINCT FROM NULL, a column labelled "true", the type in "c int NULL", t.null.
_VALUE_WORD = re.compile(
    rf"[TtFfNnLl](?i:(?<=T)RUE|(?<=F)ALSE|(?<=N)ULL|(?<=L)IMIT ALL)(?!{NAME_CHAR}|\")"
)
_VALUE_AFTER = frozenset(
    [
        "AND",
        "BETWEEN",
        "BY",
        "CASE",
        "DEFAULT",
        "ELSE",
        "HAVING",
        "ILIKE",
        "LIKE",
        "LIMIT",
        "OFFSET",
        "ON",
        "OR",
        "RETURN",
        "RETURNING",
        "SELECT",
        "THEN",
        "TO",
        "WHEN",
        "WHERE",
    ]
)
_VALUE_PUNCT = frozenset("~!@#^&|`?+-*/%<>=([,")
# Longer than every keyword a fold asks about ("RETURNING" and a space).
_LOOKBACK = 12


def token_before(text: str, pos: int) -> str:
    """The significant token before ``pos`` in a masked text (single spaces only).

    A word comes back upper-cased (a name too long to be a keyword comes back cut, never
    equal to one), any other character as itself, and "" at the start of the text.
    """
    head = text[max(0, pos - _LOOKBACK) : pos]
    if head.endswith(" "):
        head = head[:-1]
    if not head:
        return ""
    last = head[-1]
    if last in _NAME_CHARS or last >= "\x80":
        return _trailing_word(head).upper()
    return last


def _value_word(match: re.Match[str]) -> str:
    word = match.group()
    start = match.start()
    text = match.string
    if start:
        glued = text[start - 1]
        if glued in _NAME_CHARS or glued >= "\x80" or glued in '".':
            return word  # part of a name (a$null, "x"null, t.null)
        if glued == "(" and text[start - 2 : start] == "%(":
            return word  # psycopg's %(null)s
    if word[0] in "Ll":
        return word[:-3] + "?"  # LIMIT ALL
    before = token_before(text, start)
    if before in _VALUE_AFTER or before in _VALUE_PUNCT or not before:
        return "?"
    return word


@dataclass(slots=True)
class Masked:
    """``sql`` with literals as ``?``, comments dropped and whitespace collapsed.

    Quoted identifiers that are not plain word characters stand in ``text`` as ``"\\0<n>"``
    (``idents[n]`` holds the original), so pattern rules run over ``text`` can never match
    inside one; :meth:`restore` puts them back.
    """

    text: str
    idents: list[str]
    # The first OFFSET / LIMIT read from a real integer token, not from inside a string.
    offset: int | None = None
    limit: int | None = None
    # False when the scan met something it could not classify and the text stops at "?…".
    complete: bool = True

    def restore(self, text: str | None = None) -> str:
        text = self.text if text is None else text
        if not self.idents:
            return text
        idents = self.idents
        return _SENTINEL.sub(lambda m: idents[int(m.group(1))], text)


def _trailing_word(text: str) -> str:
    start = len(text)
    while start and (text[start - 1] in _WORD_CHARS or text[start - 1] >= "\x80"):
        start -= 1
    return text[start:]


_WORD_CHARS = _NAME_CHARS
_SPACE_CHARS = frozenset(" \t\n\r\f\v")


def _is_sign(head: str, before: str) -> bool:
    """Whether the ``-`` / ``+`` ending ``head`` is a sign (``= -1``) rather than ``a - 1``."""
    head = head[:-1]
    start = len(head)
    while start and head[start - 1] in _OPERATOR_CHARS:
        start -= 1
    operator = head[start:]
    if any(c in _OPERATOR_WHOLE for c in operator):
        return False  # "@-" is one operator, as the server scans it
    if operator:
        return True  # "=-1": the server splits a trailing "-" off the operator
    head = head.rstrip(" \t\n\r\f\v") or before.rstrip(" \t\n\r\f\v")
    if not head:
        return True
    last = head[-1]
    if last == _OPERAND or last in ')]".':
        return False
    if last in _OPERATOR_CHARS or last in "(,[;:":
        return True
    return _trailing_word(head).upper() in _UNARY_AFTER


def _drop_sign(parts: list[str], plain: str, before: str) -> str:
    """Fold a sign into the number after it (``= -1``, ``= +1``, ``= - 1`` are all ``= ?``).

    Returns the plain run as it now ends (for the LIMIT / OFFSET rule); a ``-`` sign returns
    "" so that a negative number is never read as a LIMIT or OFFSET value.
    """
    head = plain.rstrip(" \t\n\r\f\v")
    sign = head[-1:]
    if sign not in ("-", "+") or not _is_sign(head, before):
        return plain
    parts[-1] = head[:-1]
    return head[:-1] + " " if sign == "+" else ""


def _is_ambiguous(sql: str, start: int, end: int) -> bool:
    """A '…' string whose end moves when backslashes escape (standard_conforming_strings off)."""
    legacy = _LEGACY_STRING.match(sql, start)
    return legacy is None or legacy.end() != end


def _note_limit(result: Masked, plain: str, number: str) -> None:
    if plain[-1] not in _SPACE_CHARS:
        return
    tail = plain.rstrip(" \t\n\r\f\v")
    if tail[-1:] not in ("T", "t"):  # LIMIT, OFFSET
        return
    word = _trailing_word(tail).upper()
    if word == "OFFSET" and result.offset is None:
        result.offset = _int_value(number)
    elif word == "LIMIT" and result.limit is None:
        result.limit = _int_value(number)


def mask(sql: str) -> Masked:
    """Scan ``sql`` once: the masked text plus what the fingerprint needs from real tokens."""
    parts: list[str] = []
    idents: list[str] = []
    result = Masked("", idents)
    plain = ""  # the plain run right before this token ("" when it was something else)
    before = ""  # the last significant output before that run: the sign rule reads it
    last = (
        ""  # the last significant output so far (_OPERAND for a literal or identifier)
    )
    uescape = False
    for kind, start, end in _scan(sql):
        if kind == "plain":
            before, plain = last, sql[start:end]
            last = plain
            parts.append(plain)
            continue
        if kind in LITERALS:
            if (
                kind == "string"
                and "\\" in sql[start:end]
                and _is_ambiguous(sql, start, end)
            ):
                parts.append(FAIL)
                result.complete = False
                break
            if plain and kind in ("integer", "float"):
                plain = _drop_sign(parts, plain, before)
                if plain and kind == "integer":
                    _note_limit(result, plain, sql[start:end])
            uescape = uescape or kind == "ustring"
            parts.append("?")
            last = _OPERAND
        elif kind in ("ident", "uident"):
            parts.append(f'"\x00{len(idents)}"')
            idents.append(sql[start:end])
            last = _OPERAND
        elif kind in COMMENTS:
            parts.append(" ")
        else:
            parts.append(FAIL)
            result.complete = False
            break
        plain = ""
    text = _COLLAPSE.sub(" ", "".join(parts)).strip()
    if uescape:
        text = _UESCAPE.sub("?", text)
    upper = text.upper()
    if "NULL" in upper or "TRUE" in upper or "FALSE" in upper or "LIMIT ALL" in upper:
        text = _VALUE_WORD.sub(_value_word, text)
    result.text = text
    return result


def masked_text(sql: str) -> str:
    """``sql`` as it may be shown: literals ``?``, comments dropped, whitespace collapsed."""
    return mask(sql).restore()
