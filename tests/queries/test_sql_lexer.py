"""The masking lexer against PostgreSQL's own scanner (libpg_query, through pglast).

django_dbtuning.sqllex is pure Python so that the query recorder has no compiled dependency;
these tests are what lets it claim "the server's boundaries": for generated statements full
of hostile literal and comment contents, every literal and comment it finds starts and ends
where ``pglast.parser.scan`` says, with the same kind, and both refuse the same texts.

The strategies here are shared with test_sql_masking.py and test_sql_fingerprints.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pglast.parser import ParseError, scan

from django_dbtuning.sqllex import (
    COMMENTS,
    LITERALS,
    NAME_CHAR,
    NAME_START,
    Token,
    mask,
    tokens,
)

# --- literal and comment forms, each holding arbitrary text -------------------------------


def standard(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def national(text: str) -> str:
    return "N" + standard(text)


def escaped(text: str) -> str:
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unicode_escaped(text: str) -> str:
    return "U&'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def unicode_uescape(text: str) -> str:
    return "U&'" + text.replace("!", "!!").replace("'", "''") + "' UESCAPE '!'"


def dollar(text: str, tag: str = "") -> str:
    close = f"${tag}$"
    if (text + close).find(close) != len(text):
        text = text.replace("$", "S")
    return close + text + close


def tagged(text: str) -> str:
    return dollar(text, "q_1")


def continued(text: str) -> str:
    half = len(text) // 2
    while half and text[half - 1] == "\\":
        half -= 1  # keep a run of backslashes in one piece
    return standard(text[:half]) + "\n  -- continued\n" + standard(text[half:])


def typed(text: str) -> str:
    return "text " + standard(text)


def cast(text: str) -> str:
    return standard(text) + "::text"


def _defuse(text: str) -> str:
    while "/*" in text or "*/" in text:
        text = text.replace("/*", "/ *").replace("*/", "* /")
    return text


def line_comment(text: str) -> str:
    return "-- " + text.replace("\n", " ").replace("\r", " ") + "\n"


def block_comment(text: str) -> str:
    return "/* " + _defuse(text) + " */"


def nested_comment(text: str) -> str:
    return "/* outer /* " + _defuse(text) + " */ still a comment */"


def bits(text: str) -> str:
    return "B'" + "".join("1" if ord(c) % 2 else "0" for c in text) + "'"


def hex_bits(text: str) -> str:
    return "X'" + text.encode().hex() + "'"


STRING_FORMS: dict[str, Callable[[str], str]] = {
    "standard": standard,
    "national": national,
    "escaped": escaped,
    "unicode": unicode_escaped,
    "uescape": unicode_uescape,
    "dollar": dollar,
    "tagged dollar": tagged,
    "continued": continued,
    "typed": typed,
    "cast": cast,
}
COMMENT_FORMS: dict[str, Callable[[str], str]] = {
    "line comment": line_comment,
    "block comment": block_comment,
    "nested comment": nested_comment,
}
FORMS = {**STRING_FORMS, **COMMENT_FORMS}

DELIMITERS = [
    "'", "''", '"', "\\", "\\'", "$", "$$", "$q_1$", "$1", "--", "/*", "*/", "\n", "\r\n",
    ";", "%s", "%(x)s", "%%", "%", "?", "E'", "U&'", "::", "é", "😀", "\u2028", "\t",
    "\x0b", "!",
]  # fmt: skip
# Any text a value may hold (no NUL and no lone surrogate: PostgreSQL stores neither).
hostile_text = st.lists(
    st.one_of(
        st.sampled_from(DELIMITERS),
        st.text(
            st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
            max_size=4,
        ),
    ),
    max_size=6,
).map("".join)


def number_literal(value: int, style: int) -> str:
    return [
        str(value),
        f"{value:_}",
        hex(value),
        oct(value),
        bin(value),
        f"{value}.{value % 97}",
        f".{value}",
        f"{value}e-{value % 9}",
        f"{value}.5E+3",
    ][style % 9]


numbers = st.builds(number_literal, st.integers(0, 10**12), st.integers(0, 8))

KEYWORDS = [
    "SELECT", "FROM", "WHERE", "AND", "OR", "IN", "LIMIT", "OFFSET", "ORDER BY", "VALUES",
    "INSERT INTO", "UPDATE", "SET", "CASE", "WHEN", "THEN", "ELSE", "END", "AS", "IS NULL",
    "UESCAPE", "DATE", "interval", "e", "b", "x", "n", "u", "U", "ne", "t1", "a$b$",
]  # fmt: skip
OPERATORS = [
    "=", "-", "+", "<>", "::", ",", ".", "..", ";", "*", "/", "@", "!=", "|", "&", "#",
    "~", "`", "^", "<", ">=", ":=", "=>", "[", "]", "%", "?", "$1", "$12", "%s",
    "%(name)s", "%%",
]  # fmt: skip
identifiers = st.from_regex(r"[a-z_][a-z0-9_$]{0,6}", fullmatch=True)
quoted_identifiers = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=1,
    max_size=8,
).map(lambda name: '"' + name.replace('"', '""') + '"')


@st.composite
def literals(draw: st.DrawFn) -> str:
    form = draw(st.sampled_from(sorted(FORMS)))
    return FORMS[form](draw(hostile_text))


atoms = st.one_of(
    st.sampled_from(KEYWORDS),
    st.sampled_from(OPERATORS),
    identifiers,
    quoted_identifiers,
    quoted_identifiers.map(lambda q: "U&" + q),
    numbers,
    literals(),
    hostile_text.map(lambda t: "B'" + t.replace("'", "") + "'"),
    hostile_text.map(lambda t: "X'" + t.replace("'", "") + "'"),
)
SEPARATORS = st.sampled_from(["", " ", " ", "\n", "\t", " \n ", "\r\n"])


def _joined(parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(st.tuples(parts, SEPARATORS), min_size=1, max_size=6).map(
        lambda pairs: "".join(part + sep for part, sep in pairs)
    )


# Keywords, names, operators, literals and comments, nested in parentheses.
statements = st.recursive(
    _joined(atoms),
    lambda inner: _joined(st.one_of(atoms, inner.map(lambda text: f"({text})"))),
    max_leaves=20,
)

# Characters that make the lexer's decisions, for texts built one character at a time.
# NBSP, em space and U+3000 are name characters to the server, not whitespace.
SCANNER_CHARS = (
    "'\"$\\-/*\n\r\t\x0b 019._eEbBxXnNuUoO&aé%;:()+=<>!@#`~^|[],{?\x01\xa0\u2003\u3000"
)

# --- the comparison ------------------------------------------------------------------------

PG_KINDS = {
    "USCONST": "ustring",
    "BCONST": "bits",
    "XCONST": "xbits",
    "ICONST": "integer",
    "FCONST": "float",
    "C_COMMENT": "block_comment",
    "SQL_COMMENT": "line_comment",
}
# Errors the server raises about a literal's *contents* (bad escapes in E'' strings); the
# boundaries are not in question, and the lexer does not validate contents.
CONTENT_ERRORS = ("Unicode", "invalid byte sequence", "escape")
SHOWN = LITERALS | COMMENTS


def pglast_tokens(sql: str) -> list[tuple[str, int, int]]:
    """pglast's tokens as (kind, start, end), in the lexer's kind names where they match."""
    found = scan(sql)
    out: list[tuple[str, int, int]] = []
    index = 0
    while index < len(found):
        token = found[index]
        start, end = token.start, token.end + 1
        after = found[index + 1] if index + 1 < len(found) else None
        if (
            token.name == "NCHAR"
            and end - start == 1
            and after is not None
            and after.name == "SCONST"
            and after.start == end
        ):
            # N'…' is scanned as the keyword NCHAR and a string; it is one literal.
            out.append(("string", start, after.end + 1))
            index += 2
            continue
        if token.name == "SCONST":
            first = sql[start]
            kind = (
                "dollar" if first == "$" else "estring" if first in "eE" else "string"
            )
        elif token.name in ("IDENT", "UIDENT") and sql[end - 1] == '"':
            kind = "quoted"
        else:
            kind = PG_KINDS.get(token.name, "other:" + token.name)
        out.append((kind, start, end))
        index += 1
    return out


def assert_same_as_pglast(sql: str) -> None:
    mine = tokens(sql)
    if mine and mine[-1].kind == "other":
        # The lexer stops at a character PostgreSQL has no token for; the server's
        # scanner returns it as a one-character token. Everything before must agree.
        at = mine[-1].start
        (alone,) = pglast_tokens(sql[at])
        assert alone[0].startswith("other:") and alone[2] == 1, (sql, alone)
        assert_same_as_pglast(sql[:at])
        return
    try:
        theirs = pglast_tokens(sql)
    except ParseError as error:
        message = str(error)
        if any(part in message for part in CONTENT_ERRORS):
            return
        assert mine, (sql, message)
        assert mine[-1].kind in ("unterminated", "bad_number"), (sql, message, mine)
        index = int(message.rsplit("at index ", 1)[1])
        # pglast places an unterminated N'… at its quote, after the NCHAR keyword.
        assert mine[-1].start in (index, index - (sql[index - 1 : index] in "nN")), (
            sql,
            message,
            mine,
        )
        return
    assert not mine or mine[-1].kind not in ("unterminated", "bad_number"), (
        sql,
        mine,
        theirs,
    )
    assert [(t.kind, t.start, t.end) for t in mine if t.kind in SHOWN] == [
        t for t in theirs if t[0] in SHOWN
    ], sql
    for kind, start, end in theirs:
        if kind in SHOWN:
            continue
        (cover,) = [t for t in mine if t.start <= start and end <= t.end]
        if kind == "quoted" and cover.kind in ("ident", "uident"):
            assert (cover.start, cover.end) == (start, end), sql
        else:
            assert cover.kind == "plain", (sql, kind, start, end, cover)


# --- properties ----------------------------------------------------------------------------

PROPERTY = settings(
    max_examples=200, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY
@given(statements)
def test_literal_and_comment_boundaries_match_postgresql(sql: str) -> None:
    assert_same_as_pglast(sql)
    found = tokens(sql)  # and the tokens cover the text, without gaps or overlaps
    assert [t.start for t in found] == [0] + [t.end for t in found[:-1]]
    assert (found[-1].end if found else 0) == len(sql)


@PROPERTY
@given(st.text(st.sampled_from(SCANNER_CHARS), max_size=40))
def test_character_soup_boundaries_match_postgresql(sql: str) -> None:
    assert_same_as_pglast(sql)


@settings(max_examples=100, database=None)
@given(statements)
def test_masking_a_masked_text_changes_nothing(sql: str) -> None:
    once = mask(sql).restore()
    assert mask(once).restore() == once


# --- one case per lexical form -------------------------------------------------------------


def kinds(sql: str) -> list[tuple[str, str]]:
    return [(t.kind, sql[t.start : t.end]) for t in tokens(sql) if t.kind != "plain"]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 'it''s'", [("string", "'it''s'")]),
        ("SELECT E'it\\'s', e'\\\\'", [("estring", "E'it\\'s'"), ("estring", "e'\\\\'")]),
        ("SELECT N'x''y'", [("string", "N'x''y'")]),
        ("SELECT U&'d\\0061t'", [("ustring", "U&'d\\0061t'")]),
        (
            "SELECT U&'d!0061t' UESCAPE '!'",
            [("ustring", "U&'d!0061t'"), ("string", "'!'")],
        ),
        ("SELECT B'0101', X'1F'", [("bits", "B'0101'"), ("xbits", "X'1F'")]),
        ("SELECT $$it's$$", [("dollar", "$$it's$$")]),
        ("SELECT $a$ $$ $b$ $a$", [("dollar", "$a$ $$ $b$ $a$")]),
        ("SELECT $é_1$x$é_1$", [("dollar", "$é_1$x$é_1$")]),
        ("SELECT 'a'\n'b', 'c' 'd'", [("string", "'a'\n'b'"), ("string", "'c'"), ("string", "'d'")]),
        ("SELECT 'a' -- note\n  'b'", [("string", "'a' -- note\n  'b'")]),
        ("SELECT 'a' /* no */\n'b'", [("string", "'a'"), ("block_comment", "/* no */"), ("string", "'b'")]),
        ('SELECT "a""b", U&"c"', [("ident", '"a""b"'), ("uident", 'U&"c"')]),
        ("SELECT 1 /* a /* b */ c */", [("integer", "1"), ("block_comment", "/* a /* b */ c */")]),
        ("SELECT 1 -- x\n", [("integer", "1"), ("line_comment", "-- x")]),
        (
            "SELECT 42, 1_000, 0x1F, 0o17, 0b101, 1.5, .5, 1., 1e-3, 1.5E+10",
            [("integer", "42"), ("integer", "1_000"), ("integer", "0x1F"), ("integer", "0o17"),
             ("integer", "0b101"), ("float", "1.5"), ("float", ".5"), ("float", "1."),
             ("float", "1e-3"), ("float", "1.5E+10")],
        ),
        ("SELECT DATE '2024-01-01', interval '1 day'", [("string", "'2024-01-01'"), ("string", "'1 day'")]),
        ("SELECT 'x'::text", [("string", "'x'")]),
        ("SELECT 1..2", [("integer", "1"), ("integer", "2")]),
    ],
)  # fmt: skip
def test_every_lexical_form(sql: str, expected: list[tuple[str, str]]) -> None:
    assert kinds(sql) == expected
    assert_same_as_pglast(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT $1, $12::int",  # parameters, not dollar quotes
        "SELECT a$b$, x$$",  # "$" inside a name
        'SELECT "t"."id", "T 1"',
        "SELECT * FROM t WHERE a = %s AND b IN (%(name)s) AND c %% d = e",
        "SELECT a <-> b, c !~~ d, e @> f",
    ],
)
def test_names_parameters_and_placeholders_are_not_literals(sql: str) -> None:
    assert not [k for k in kinds(sql) if k[0] in SHOWN]


@pytest.mark.parametrize(
    ("sql", "kind", "at"),
    [
        ("SELECT 'open", "unterminated", 7),
        ("SELECT E'open\\'", "unterminated", 7),
        ("SELECT 'a'\n'open", "unterminated", 7),
        ("SELECT $$open", "unterminated", 7),
        ("SELECT $q$open$Q$", "unterminated", 7),
        ('SELECT "open', "unterminated", 7),
        ('SELECT ""', "unterminated", 7),
        ("SELECT /* /* */", "unterminated", 7),
        ("SELECT 1abc", "bad_number", 7),
        ("SELECT 0x", "bad_number", 7),
        ("SELECT 1_000_", "bad_number", 7),
        ("SELECT 1e3$", "bad_number", 7),
        ("SELECT \\", "other", 7),
        ("SELECT {", "other", 7),
        ("SELECT $", "other", 7),
    ],
)
def test_what_cannot_be_read_ends_the_scan(sql: str, kind: str, at: int) -> None:
    last = tokens(sql)[-1]
    assert last == Token(kind, at, len(sql))  # type: ignore[arg-type]
    assert_same_as_pglast(sql)


def test_name_characters_are_the_servers() -> None:
    """NAME_START / NAME_CHAR, written as negated ASCII sets, are scan.l's ident_start and
    ident_cont: ASCII letters, "_" (and digits and "$"), and every non-ASCII character."""
    every = "".join(map(chr, range(0x110000)))
    ascii_letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
    not_start = "".join(c for c in every[:0x80] if c not in ascii_letters)
    not_cont = "".join(c for c in not_start if c not in "0123456789$")
    assert re.sub(NAME_START, "", every) == not_start
    assert re.sub(NAME_CHAR, "", every) == not_cont
    # So a run of NBSP or em spaces is part of a name, never whitespace.
    assert (
        mask("SELECT a\u00a0\u2003\u3000b, 1").text == "SELECT a\u00a0\u2003\u3000b, ?"
    )
