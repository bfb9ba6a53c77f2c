"""Value-free descriptions of a failed load: what went wrong and where, never the value.

PostgreSQL quotes the offending value in many messages (``invalid input syntax for type
integer: "12a"``), in DETAIL (``Key (email)=(a@b.c) already exists``, ``Failing row
contains (...)``) and in CONTEXT (``COPY t, line 3, column c: "..."``); Django's field
conversions do too (``“12a” value must be an integer``). A message of ours is built only
from parts known to hold no row value:

* server errors: the primary message is shown only when it matches a server template
  known here, with the value cut out (the templates below); any other message is replaced
  by its SQLSTATE's condition name (``raise exception (SQLSTATE P0001)``). Constraint
  errors are rebuilt from the structured fields (``diag.constraint_name``, ``column_name``)
  and never from the message text. DETAIL, HINT and CONTEXT are never shown.
* Python conversions: a ``ValidationError`` of one of Django's own fields is rendered with
  its parameters (where Django puts the value) replaced by ``…``; any other exception is
  named by its type and the type the field expects. Our own converters raise
  :class:`ValueFreeError`, whose text is shown as it is.

The full texts stay on the exception (``pg_message``, ``detail``, ``pg_error``,
``original``, ``value``) for code that wants them.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Collection
from typing import Any

import psycopg
from django.core.exceptions import ValidationError
from psycopg import errors as pg_errors

from django_dbtuning.copy.names import shown

# What a hidden value is replaced with in a rendered Django message.
HIDDEN = "…"


class ValueFree(Exception):
    """An exception of ours whose message never contains the value it is about."""


class ValueFreeError(ValueFree, ValueError):
    """A value was refused; the message names the condition, not the value."""


class ValueFreeTypeError(ValueFree, TypeError):
    """A value of the wrong kind; the message names its type, not the value."""


_SQLSTATE = re.compile(r"[0-9A-Z]{5}")
_WORD = re.compile(r"[A-Z][a-z0-9]*|[a-z0-9]+")


def sqlstate_words(sqlstate: str | None) -> str:
    """``22P02`` -> ``invalid text representation (SQLSTATE 22P02)``, from psycopg."""
    code = sqlstate or ""
    if not _SQLSTATE.fullmatch(code):
        return "database error"
    try:
        name = pg_errors.lookup(code).__name__.rstrip("_")
    except KeyError:
        return f"database error (SQLSTATE {code})"
    return f"{' '.join(w.lower() for w in _WORD.findall(name))} (SQLSTATE {code})"


# -- server messages ----------------------------------------------------------------------

# A type as PostgreSQL's format_type writes it: words, a schema, quotes, a typmod, [].
_TYPE = r"(?P<type>[\w$ .\"]{1,200}?(?:\(\d+(?:,\d+)?\))?(?:\[\])*)"
_IDENT = r"(?P<name>\"?[\w$ .]{1,200}\"?)"

# (SQLSTATEs, template, condition): a server message with one of these SQLSTATEs that
# fully matches the template is shown as the condition, with the template's named groups
# (never the value) filled in; the quoted value, where there is one, is the ".*" part.
# Keyed by SQLSTATE too, so that a trigger's RAISE must both use the code and imitate the
# server's words before any of its text is shown.
_TABLE: list[tuple[str, str, str]] = [
    # invalid_text_representation, invalid_datetime_format
    (
        "22P02 22007",
        rf"invalid input syntax for type {_TYPE}(?:: \".*\")?",
        "invalid input syntax for type {type}",
    ),
    (
        "22P02",
        rf"invalid input value for enum {_TYPE}: \".*\"",
        "invalid input value for enum {type}",
    ),
    (
        "22P02",
        r"malformed (?P<kind>array|record|range|multirange) literal: \".*\"",
        "malformed {kind} literal",
    ),
    (
        "22P02 22P05",
        r"unsupported Unicode escape sequence",
        "unsupported Unicode escape sequence",
    ),
    # numeric_value_out_of_range. Greedy: the type is what follows the last "is out of
    # range for type", which the server wrote after the value.
    (
        "22003",
        rf"value \".*\" is out of range for type {_TYPE}",
        "value out of range for type {type}",
    ),
    ("22003", r"(?P<type>integer|smallint|bigint) out of range", "{type} out of range"),
    ("22003", r"numeric field overflow", "numeric field overflow"),
    ("22003", r"value overflows numeric format", "value overflows numeric format"),
    (
        "22003 0A000",
        r"cannot convert (?P<what>NaN|infinity) to (?P<type>integer|smallint|bigint)",
        "cannot convert {what} to {type}",
    ),
    # string_data_right_truncation, string_data_length_mismatch
    ("22001", rf"value too long for type {_TYPE}", "value too long for type {type}"),
    (
        "22001",
        rf"bit string too long for type {_TYPE}",
        "bit string too long for type {type}",
    ),
    (
        "22026",
        rf"bit string length \d+ does not match type {_TYPE}",
        "bit string length does not match type {type}",
    ),
    # datetime_field_overflow, invalid_time_zone_displacement_value,
    # interval_field_overflow
    (
        "22008 22009 22015",
        r"(?P<what>date/time field value|date|time|timestamp|interval field value|"
        r"interval|time zone displacement) out of range(?:: \".*\")?",
        "{what} out of range",
    ),
    ("22008", r"date out of range for timestamp", "date out of range for timestamp"),
    # invalid_parameter_value
    ("22023", r"time zone \".*\" not recognized", "time zone not recognized"),
    ("22023", r"invalid hexadecimal digit: \".*\"", "invalid hexadecimal digit"),
    (
        "22023",
        r"invalid hexadecimal data: odd number of digits",
        "invalid hexadecimal data: odd number of digits",
    ),
    # invalid_binary_representation
    (
        "22P03",
        r"incorrect binary data format(?P<where> in array)?",
        "incorrect binary data format{where}",
    ),
    # character_not_in_repertoire, untranslatable_character (the bytes are the value's)
    (
        "22021",
        r"invalid byte sequence for encoding \"(?P<encoding>[\w-]{1,40})\": 0x00",
        'invalid byte sequence for encoding "{encoding}" (a NUL byte)',
    ),
    (
        "22021",
        r"invalid byte sequence for encoding \"(?P<encoding>[\w-]{1,40})\": "
        r"0x[0-9a-f]{2}(?: 0x[0-9a-f]{2})*",
        'invalid byte sequence for encoding "{encoding}"',
    ),
    (
        "22P05",
        r"character with byte sequence 0x[0-9a-f]{2}(?: 0x[0-9a-f]{2})* in encoding "
        r"\"(?P<source>[\w-]{1,40})\" has no equivalent in encoding "
        r"\"(?P<target>[\w-]{1,40})\"",
        'a character in encoding "{source}" has no equivalent in encoding "{target}"',
    ),
    # bad_copy_file_format, protocol_violation
    (
        "22P04 08P01",
        r"(?P<text>extra data after last expected column|unterminated CSV quoted field"
        r"|(?:literal|unquoted) (?:carriage return|newline) found in data"
        r"|end-of-copy marker corrupt|end-of-copy marker does not match previous "
        r"newline style|invalid field size|row field count is \d+, expected \d+"
        r"|COPY file signature not recognized|invalid COPY file header \([\w ]+\)"
        r"|unexpected EOF in COPY data|received copy data after EOF marker)",
        "{text}",
    ),
    ("22P04", rf"missing data for column {_IDENT}", "missing data for column {name}"),
    ("22012", r"division by zero", "division by zero"),
    # Statement-level errors (the load's own statements carry no row values).
    (
        "42501",
        rf"permission denied for (?P<kind>table|schema|sequence|relation) {_IDENT}",
        "permission denied for {kind} {name}",
    ),
    ("42P01", rf"relation {_IDENT} does not exist", "relation {name} does not exist"),
    (
        "25P02",
        r"(?P<text>current transaction is aborted, commands ignored until end of "
        r"transaction block)",
        "{text}",
    ),
    (
        "25006",
        r"cannot execute (?P<what>COPY FROM|INSERT|UPDATE|CREATE TABLE AS|"
        r"CREATE TABLE) in a read-only transaction",
        "cannot execute {what} in a read-only transaction",
    ),
    (
        "54000",
        rf"index row size \d+ exceeds (?P<limit>[\w .]{{1,60}}) for index {_IDENT}",
        "index row size exceeds {limit} for index {name}",
    ),
    # Another transaction or a timeout stopped the load: value-free, shown as they are.
    (
        "40P01 40001 55P03 57014",
        r"(?P<text>deadlock detected|canceling statement due to (?:lock timeout|"
        r"statement timeout|user request|conflict with recovery)|could not serialize "
        r"access due to (?:concurrent update|concurrent delete|read/write "
        r"dependencies among transactions))",
        "{text}",
    ),
]
_TEMPLATES: dict[str, list[tuple[re.Pattern[str], str]]] = {}
for _codes, _pattern, _condition in _TABLE:
    for _code in _codes.split():
        _TEMPLATES.setdefault(_code, []).append(
            (re.compile(_pattern, re.DOTALL), _condition)
        )


def server_condition(exc: psycopg.Error) -> str:
    """The condition of a server error, without the value it may quote."""
    primary = exc.diag.message_primary or ""
    for template, condition in _TEMPLATES.get(exc.sqlstate or "", ()):
        match = template.fullmatch(primary)
        if match:
            parts = {k: v or "" for k, v in match.groupdict().items()}
            return condition.format(**parts)
    return sqlstate_words(exc.sqlstate)


# "Key (cols)=(values) ...": the columns end at the first ")=(", written by the server
# from the index definition before any value.
_KEY_COLUMNS = re.compile(r"Key \((?P<cols>.+?)\)=\(", re.DOTALL)
# The referenced table ends the detail; a value earlier cannot end with it (no quotes).
_REFERENCED = re.compile(r"is not present in table \"(?P<table>[^\"]{1,200})\"\.\Z")


def key_columns_of(detail: str | None, known: Collection[str]) -> str | None:
    """The key's columns from a ``Key (cols)=(values)`` detail, if all are ``known``.

    An expression key (``lower(email::text)``) or anything else is left out.
    """
    match = _KEY_COLUMNS.match(detail or "")
    if not match:
        return None
    names = [n.strip() for n in match["cols"].split(",")]
    plain = [n[1:-1].replace('""', '"') if n.startswith('"') else n for n in names]
    return match["cols"] if all(n in known for n in plain) else None


# A constraint violation's words, and what follows the key when the detail names one.
_VIOLATIONS: dict[str, tuple[str, str | None]] = {
    "23505": ('duplicate key value violates unique constraint "{}"', "already exists"),
    "23503": (
        'new row violates foreign key constraint "{}"',
        "is not present in table",
    ),
    "23514": ('new row violates check constraint "{}"', None),
    "23P01": (
        'conflicting key value violates exclusion constraint "{}"',
        "conflicts with an existing key",
    ),
}


def integrity_condition(exc: psycopg.Error, known: Collection[str]) -> str:
    """A constraint violation, built from the structured fields, never the message.

    ``known``: the column and table names the message may repeat. The constraint name
    is the server's ``diag.constraint_name``.
    """
    diag = exc.diag
    sqlstate = exc.sqlstate or ""
    # Names may hold a newline or a bidirectional override: shown escaped.
    constraint = None if diag.constraint_name is None else shown(diag.constraint_name)
    keys = key_columns_of(diag.message_detail, known)
    keys = None if keys is None else shown(keys)
    if sqlstate == "23502" and diag.column_name in known:
        column = shown(diag.column_name or "")
        return f'null value in column "{column}" violates not-null constraint'
    if constraint is None:
        return sqlstate_words(sqlstate)
    violation = _VIOLATIONS.get(sqlstate)
    if violation is None:
        return f'{sqlstate_words(sqlstate)}, constraint "{constraint}"'
    text, after_key = violation
    text = text.format(constraint)
    if not keys or after_key is None:
        return text
    if sqlstate == "23503":
        referenced = _REFERENCED.search(diag.message_detail or "")
        table = referenced["table"] if referenced else ""
        after_key += f' "{shown(table)}"' if table in known else ""
    return f"{text}: key ({keys}) {after_key}"


# -- Python conversions -------------------------------------------------------------------

_EXPECTED = {
    "AutoField": "an integer",
    "BigAutoField": "an integer",
    "SmallAutoField": "an integer",
    "IntegerField": "an integer",
    "BigIntegerField": "an integer",
    "SmallIntegerField": "an integer",
    "PositiveIntegerField": "an integer",
    "PositiveBigIntegerField": "an integer",
    "PositiveSmallIntegerField": "an integer",
    "FloatField": "a number",
    "DecimalField": "a decimal number",
    "BooleanField": "true or false",
    "DateField": "a date (YYYY-MM-DD)",
    "DateTimeField": "a date and time (YYYY-MM-DD HH:MM[:ss[.uuuuuu]][TZ])",
    "TimeField": "a time (HH:MM[:ss[.uuuuuu]])",
    "DurationField": "a duration ([DD] [[HH:]MM:]ss[.uuuuuu])",
    "UUIDField": "a UUID",
    "JSONField": "JSON-serialisable data",
    "GenericIPAddressField": "an IP address",
    "BinaryField": "bytes",
    "ArrayField": "a list",
}


def expected(field: Any) -> str:
    """What ``field`` takes, in words (a foreign key takes its target's values)."""
    target = getattr(field, "target_field", None)
    if target is not None and getattr(field, "is_relation", False):
        field = target
    try:
        internal = field.get_internal_type()
    except Exception:  # pragma: no cover - any Field has it
        internal = ""
    return _EXPECTED.get(internal, f"a value for {type(field).__name__}")


def _is_django_field(field: Any) -> bool:
    module = type(field).__module__
    return module.startswith(("django.db.models", "django.contrib.postgres"))


def _rendered(error: ValidationError) -> str | None:
    """A Django message with every parameter (the value among them) shown as ``…``."""
    message = str(error.message)
    params = error.params
    if not params:
        return message
    try:
        return message % dict.fromkeys(params, HIDDEN)
    except (TypeError, ValueError, KeyError):
        return None


def conversion_reason(exc: BaseException, field: Any) -> str:
    if isinstance(exc, ValueFree):
        return str(exc)
    if isinstance(exc, ValidationError) and hasattr(exc, "error_list"):
        if _is_django_field(field):
            # Django's own messages keep the value in their params: hide those.
            texts = [_rendered(e) for e in exc.error_list]
            if texts and all(texts):
                return "; ".join(t for t in texts if t)
        codes = sorted({str(e.code) for e in exc.error_list if e.code})
        code = f" (code {', '.join(codes)})" if codes else ""
        return f"invalid value{code}: expected {expected(field)}"
    return (
        f"cannot convert the value ({type(exc).__name__}): expected {expected(field)}"
    )


# psycopg's and Python's messages for a value that cannot be dumped that quote no value
# (a fixed text, or a type name); any other is named by its exception type.
_DUMPER_MESSAGES = re.compile(
    r"PostgreSQL text fields cannot contain NUL \(0x00\) bytes"
    r"|int too big to convert|Python int too large to convert to C \w+"
    r"|[\w ]{1,60} expected, got <class '[\w.]{1,100}'>"
)


def dumper_reason(exc: BaseException) -> str:
    text = str(exc)
    if _DUMPER_MESSAGES.fullmatch(text):
        return f"{text} ({type(exc).__name__})"
    return type(exc).__name__


def unchained(error: BaseException) -> BaseException:
    """``error`` without ``__cause__`` / ``__context__``, to be raised outside any
    ``except`` block: tracebacks (and tools that walk the chain regardless of
    ``__suppress_context__``) then print nothing of the psycopg error or the converter's
    exception, whose texts quote the value."""
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = True
    return error


def is_not_finite(value: Any) -> bool:
    """A NaN or infinity, as a Decimal, a float or the text of one."""
    if isinstance(value, decimal.Decimal):
        return not value.is_finite()
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        try:
            return not decimal.Decimal(value.strip()).is_finite()
        except (decimal.InvalidOperation, ValueError):
            return False
    return False
