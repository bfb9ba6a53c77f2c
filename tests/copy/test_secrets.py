"""No value from the rows in a COPY error's message, repr, args, traceback or the logs.

Issue 9: "Passwords and query parameters never appear in logs, errors or reports." A
generated secret is the offending value (or sits in another column of the failing row)
for every kind of failure, from dicts, CSV and PostgreSQL's text format, on plain loads
and upserts; it must appear in none of ``str``, ``repr``, ``args``, the formatted
traceback (``__cause__`` / ``__context__`` included), the log records or the SQL Django
records. The messages still name the row, the column, the constraint and the condition,
and the server's own texts stay reachable on attributes.

Each test runs in a transaction (the constraints and triggers it adds are rolled back);
every failing load rolls back to its savepoint, so the examples share a clean table.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json
import logging
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from django.db import (
    DataError,
    ProgrammingError,
    connection,
    transaction,
)
from django.db.models import IntegerField, Value
from django.db.models.functions import Cast
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from django_dbtuning import CopyDataError, CopyError, CopyIntegrityError
from django_dbtuning.copy import redact
from django_dbtuning.exceptions import CopyConcurrencyError
from django_dbtuning.pool import connection_kwargs
from tests.copyapp.models import Custom, Item, Sample, Tally

pytestmark = pytest.mark.django_db

# Printable text from every script: letters, marks, digits, punctuation, symbols, spaces.
SECRETS = st.text(
    st.characters(whitelist_categories=("L", "M", "N", "P", "S", "Zs")),
    min_size=8,
    max_size=10,  # fits Item.sku (varchar(10)), so a unique key can be the secret
)
NUMBERS = st.integers(10**8, 2**31 - 1)
PROBE = "Pr0beZ\u00e9\u4e2d!"  # a first, fixed secret: its run gives the vocabulary


@dataclass
class Ctx:
    """What a failure kind may need besides the secret: a second connection."""

    others: list[psycopg.Connection[Any]] = field(default_factory=list)

    def other(self) -> psycopg.Connection[Any]:
        if not self.others:
            self.others.append(
                psycopg.connect(**connection_kwargs(connection.settings_dict))
            )
        return self.others[0]


def csv_file(*rows: tuple[Any, ...]) -> io.StringIO:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    buffer.seek(0)
    return buffer


def text_cell(value: str) -> str:
    """A value in PostgreSQL's text COPY format (the alphabet has no tab or newline)."""
    return value.replace("\\", "\\\\")


def item(secret: str, **extra: Any) -> dict[str, Any]:
    return {"name": secret, "quantity": 1, "price": 1, "sku": secret, **extra}


def _held_key(ctx: Ctx, key: str) -> None:
    """Another transaction inserts ``key`` and keeps it uncommitted: a load of the same
    key waits for it, then its lock_timeout fires."""
    ctx.other().execute(
        "INSERT INTO copyapp_tally (key, value, writer) VALUES (%s, 0, 0)", [key]
    )


def lock_plain(secret: str, number: int, ctx: Ctx) -> None:
    _held_key(ctx, secret)
    try:
        Tally.objects.copy_from([{"key": secret, "value": number}])
    finally:
        ctx.other().rollback()


def lock_upsert(secret: str, number: int, ctx: Ctx) -> None:
    _held_key(ctx, secret)
    try:
        Tally.objects.copy_from(
            [{"key": secret, "value": number}],
            on_conflict="update",
            unique_fields=["key"],
        )
    finally:
        ctx.other().rollback()


Run = Callable[[str, int, Ctx], Any]

# kind -> (load that fails, error class, SQL run first in the test's transaction)
KINDS: dict[str, tuple[Run, type[Exception], list[str]]] = {
    # Refused in Python by the field's own conversion.
    "int from csv": (
        lambda s, n, c: Sample.objects.copy_from(
            csv_file(("text", "number"), (s, "!" + s))
        ),
        CopyDataError,
        [],
    ),
    "int from dicts": (
        lambda s, n, c: Sample.objects.copy_from([{"text": s, "number": "!" + s}]),
        CopyDataError,
        [],
    ),
    "decimal from csv": (
        lambda s, n, c: Sample.objects.copy_from(
            csv_file(("text", "amount"), (s, "!" + s))
        ),
        CopyDataError,
        [],
    ),
    "decimal from dicts": (
        lambda s, n, c: Sample.objects.copy_from([{"text": s, "amount": "!" + s}]),
        CopyDataError,
        [],
    ),
    "date from csv": (
        lambda s, n, c: Sample.objects.copy_from(
            csv_file(("text", "day"), (s, "!" + s))
        ),
        CopyDataError,
        [],
    ),
    "date from dicts": (
        lambda s, n, c: Sample.objects.copy_from([{"text": s, "day": "!" + s}]),
        CopyDataError,
        [],
    ),
    "uuid from csv": (
        lambda s, n, c: Sample.objects.copy_from(
            csv_file(("text", "ident"), (s, "!" + s))
        ),
        CopyDataError,
        [],
    ),
    "uuid from dicts": (
        lambda s, n, c: Sample.objects.copy_from([{"text": s, "ident": "!" + s}]),
        CopyDataError,
        [],
    ),
    "NaN decimal from dicts": (
        lambda s, n, c: Sample.objects.copy_from(
            [{"text": s, "amount": decimal.Decimal("NaN")}]
        ),
        CopyDataError,
        [],
    ),
    "NaN decimal from csv": (
        lambda s, n, c: Sample.objects.copy_from(
            csv_file(("text", "amount"), (s, "NaN"))
        ),
        CopyDataError,
        [],
    ),
    "NUL byte from dicts": (
        lambda s, n, c: Sample.objects.copy_from([{"text": s + "\x00" + s}]),
        CopyDataError,
        [],
    ),
    "NUL byte from csv": (
        lambda s, n, c: Sample.objects.copy_from(csv_file(("text",), (s + "\x00",))),
        CopyDataError,
        [],
    ),
    # Refused by the server while parsing (the value is in its message and CONTEXT).
    "json from csv": (
        lambda s, n, c: Sample.objects.copy_from(
            csv_file(("text", "doc"), (s, "!" + s))
        ),
        CopyDataError,
        [],
    ),
    "json from dicts": (
        lambda s, n, c: Sample.objects.copy_from([{"doc": {s: float("nan")}}]),
        CopyDataError,
        [],
    ),
    "int from a text-format file": (
        lambda s, n, c: Sample.objects.copy_from(
            io.BytesIO(f"text\tnumber\n{text_cell(s)}\t!{text_cell(s)}\n".encode()),
            format="text",
        ),
        CopyDataError,
        [],
    ),
    "too long varchar": (
        lambda s, n, c: Sample.objects.copy_from([{"text": s, "short": s * 4}]),
        CopyDataError,
        [],
    ),
    "too long varchar, text COPY": (
        lambda s, n, c: Custom.objects.copy_from([{"shout": s * 3}]),
        CopyDataError,
        [],
    ),
    # Constraints: DETAIL says "Key (...)=(secret)" or "Failing row contains (...)".
    "unique, plain load": (
        lambda s, n, c: Tally.objects.copy_from(
            [{"key": s, "value": 1}, {"key": s, "value": 2}]
        ),
        CopyIntegrityError,
        [],
    ),
    "unique, upsert": (
        lambda s, n, c: Item.objects.copy_from(
            [item(s, reference=uuid.uuid4()), item(s, reference=uuid.uuid4())],
            on_conflict="update",
            unique_fields=["reference"],
        ),
        CopyIntegrityError,
        [],
    ),
    "foreign key, plain load": (
        lambda s, n, c: Item.objects.copy_from([item(s, publisher_id=n)]),
        CopyIntegrityError,
        [],
    ),
    "foreign key, upsert": (
        lambda s, n, c: Item.objects.copy_from(
            [item(s, publisher_id=n)], on_conflict="update", unique_fields=["sku"]
        ),
        CopyIntegrityError,
        [],
    ),
    "not null, plain load": (
        lambda s, n, c: Item.objects.copy_from([item(s, name=None, notes=s)]),
        CopyIntegrityError,
        [],
    ),
    "not null, upsert": (
        lambda s, n, c: Item.objects.copy_from(
            [item(s, name=None, notes=s)], on_conflict="update", unique_fields=["sku"]
        ),
        CopyIntegrityError,
        [],
    ),
    "check, plain load": (
        lambda s, n, c: Item.objects.copy_from([item(s, stock=-n)]),
        CopyIntegrityError,
        [],
    ),
    "check, upsert": (
        lambda s, n, c: Item.objects.copy_from(
            [item(s, stock=-n)], on_conflict="update", unique_fields=["sku"]
        ),
        CopyIntegrityError,
        [],
    ),
    "exclusion constraint": (
        lambda s, n, c: Sample.objects.copy_from([{"short": s}, {"short": s}]),
        CopyIntegrityError,
        [
            "ALTER TABLE copyapp_sample ADD CONSTRAINT copyapp_sample_short_excl "
            "EXCLUDE USING btree (short WITH =)"
        ],
    ),
    # A trigger's own RAISE: no server template, so only the SQLSTATE's words.
    "trigger raise exception": (
        lambda s, n, c: Sample.objects.copy_from([{"text": s}]),
        ProgrammingError,
        [
            "CREATE FUNCTION copyapp_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused: %', NEW.text USING DETAIL = NEW.text, "
            "HINT = NEW.text; END $$",
            "CREATE TRIGGER copyapp_refuse BEFORE INSERT ON copyapp_sample "
            "FOR EACH ROW EXECUTE FUNCTION copyapp_refuse()",
        ],
    ),
    "trigger raising check_violation": (
        lambda s, n, c: Sample.objects.copy_from([{"text": s}]),
        CopyIntegrityError,
        [
            "CREATE FUNCTION copyapp_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION USING ERRCODE = 'check_violation', "
            "MESSAGE = 'invalid input syntax for type integer: ' || NEW.text, "
            "DETAIL = 'Failing row contains (' || NEW.text || ')', "
            "CONSTRAINT = 'copyapp_sample_vetted'; END $$",
            "CREATE TRIGGER copyapp_refuse BEFORE INSERT ON copyapp_sample "
            "FOR EACH ROW EXECUTE FUNCTION copyapp_refuse()",
        ],
    ),
    # Another transaction holds the secret key.
    "lock timeout, plain load": (
        lock_plain,
        CopyConcurrencyError,
        ["SET LOCAL lock_timeout = '20ms'"],
    ),
    "lock timeout, upsert": (
        lock_upsert,
        CopyConcurrencyError,
        ["SET LOCAL lock_timeout = '20ms'"],
    ),
    # copy_to: the secret is a query parameter the server quotes.
    "copy_to query parameter": (
        lambda s, n, c: Sample.objects.filter(
            number=Cast(Value("!" + s), output_field=IntegerField())
        ).copy_to(),
        DataError,
        [],
    ),
}


@pytest.fixture
def ctx() -> Iterator[Ctx]:
    context = Ctx()
    yield context
    for other in context.others:
        other.close()


def everything_shown(
    run: Run,
    expected: type[Exception],
    secret: str,
    number: int,
    ctx: Ctx,
    caplog: pytest.LogCaptureFixture,
) -> tuple[Exception, str]:
    """Run one failing load; the error and all the text it or the load put out."""
    caplog.clear()
    # Django logs every statement while queries are captured; copy_to needs a
    # savepoint of the test's own (it runs no transaction).
    with (
        CaptureQueriesContext(connection) as queries,
        pytest.raises(expected) as info,
        transaction.atomic(),
    ):
        run(secret, number, ctx)
    exc = info.value
    texts = [
        str(exc),
        repr(exc),
        repr(exc.args),
        "".join(traceback.format_exception(exc)),
        caplog.text,
        *(record.getMessage() for record in caplog.records),
        *(str(q) for q in queries.captured_queries),
    ]
    return exc, "\n".join(texts)


def needles(secret: str, number: int) -> set[str]:
    """The secret as any output could spell it."""
    return {
        secret,
        secret.upper(),  # Custom's field shouts
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        str(number),
    }


@pytest.mark.parametrize("kind", list(KINDS))
def test_no_row_value_in_any_output(
    kind: str, ctx: Ctx, caplog: pytest.LogCaptureFixture
) -> None:
    run, expected, setup = KINDS[kind]
    with connection.cursor() as cursor:
        for statement in setup:
            cursor.execute(statement)
    caplog.set_level(logging.DEBUG)
    probe_number = 987654321
    _, vocabulary = everything_shown(run, expected, PROBE, probe_number, ctx, caplog)
    for needle in needles(PROBE, probe_number):
        assert needle not in vocabulary, (kind, needle)

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
        database=None,
    )
    @given(secret=SECRETS, number=NUMBERS)
    def check(secret: str, number: int) -> None:
        # A secret the messages always contain anyway ("integer ") says nothing.
        assume(not any(n in vocabulary for n in needles(secret, number)))
        exc, shown = everything_shown(run, expected, secret, number, ctx, caplog)
        for needle in needles(secret, number):
            assert needle not in shown, (kind, needle, shown)
        # The original stays reachable for the user's own code.
        original = getattr(exc, "pg_error", None) or getattr(exc, "original", None)
        assert original is not None
        # ... but nothing chains to it: a traceback, or a tool that walks __context__
        # whatever __suppress_context__ says, prints none of its text.
        assert exc.__cause__ is None and exc.__context__ is None

    check()


# -- the messages still say where and what ----------------------------------------------


def test_python_side_error_names_row_column_and_type_and_keeps_the_value() -> None:
    rows = [{"text": "a", "number": 1}, {"text": "b", "number": "12a"}]
    with pytest.raises(CopyDataError) as info:
        Sample.objects.copy_from(rows)
    error = info.value
    assert str(error) == (
        "COPY into copyapp.Sample failed at row 1, column 'number': cannot convert "
        "the value (ValueError): expected an integer"
    )
    assert (error.row, error.column, error.value) == (1, "number", "12a")
    assert isinstance(error.original, ValueError) and "12a" in str(error.original)
    assert error.pg_error is None


def test_django_validation_message_is_kept_without_the_value() -> None:
    text = "Title,Day\nfirst,2024-01-01\nsecond,2024-02-31x\n"
    with pytest.raises(CopyDataError) as info:
        Sample.objects.copy_from(
            io.StringIO(text), mapping={"Title": "text", "Day": "day"}
        )
    message = str(info.value)
    assert "row 1 (CSV line 3), column 'Day' (field 'day')" in message
    assert "value has an invalid date format" in message and "YYYY-MM-DD" in message
    assert "2024-02-31x" not in message
    assert info.value.value == "2024-02-31x"


def test_server_parse_error_keeps_the_condition_and_the_server_text_on_attributes() -> (
    None
):
    with pytest.raises(CopyDataError) as info:
        Sample.objects.copy_from(csv_file(("text", "doc"), ("a", "{oops")))
    error = info.value
    assert str(error) == (
        "COPY into copyapp.Sample failed at row 0 (CSV line 2), column 'doc': "
        "invalid input syntax for type json"
    )
    assert error.sqlstate == "22P02"
    assert isinstance(error.pg_error, psycopg.errors.InvalidTextRepresentation)
    assert error.detail is not None and "oops" in str(error.pg_error)


def test_unique_violation_names_constraint_and_key_columns() -> None:
    rows = [{"key": "k1", "value": 1}, {"key": "hunter2", "value": 1}]
    Tally.objects.copy_from(rows[1:])
    with pytest.raises(CopyIntegrityError) as info:
        Tally.objects.copy_from(rows)
    error = info.value
    assert (error.row, error.column) == (1, "key")
    assert error.constraint is not None
    assert str(error) == (
        f"COPY into copyapp.Tally failed at row 1, column 'key': duplicate key value "
        f'violates unique constraint "{error.constraint}": key (key) already exists'
    )
    assert error.detail == "Key (key)=(hunter2) already exists."


def test_upsert_violations_name_the_input_row() -> None:
    rows = [item("ok1"), item("ok2", stock=-1), item("ok3")]
    with pytest.raises(CopyIntegrityError) as info:
        Item.objects.copy_from(rows, on_conflict="update", unique_fields=["sku"])
    assert info.value.row == 1
    assert 'new row violates check constraint "copyapp_item_stock_check"' in str(
        info.value
    )
    assert "Failing row contains" in (info.value.detail or "")
    rows = [item("ok1"), item("ok2", name=None)]
    with pytest.raises(CopyIntegrityError) as info:
        Item.objects.copy_from(rows, on_conflict="update", unique_fields=["sku"])
    assert (info.value.row, info.value.column) == (1, "name")
    assert str(info.value).endswith(
        "at row 1, column 'name': null value in column \"name\" violates not-null "
        "constraint"
    )


def test_foreign_key_violation_names_the_referenced_table() -> None:
    with pytest.raises(CopyIntegrityError) as info:
        Item.objects.copy_from([item("a"), item("b", publisher_id=424242)])
    message = str(info.value)
    assert (info.value.row, info.value.column) == (1, "publisher")
    assert 'key (publisher_id) is not present in table "copyapp_publisher"' in message
    assert "424242" not in message and "424242" in (info.value.detail or "")


def test_nan_decimal_says_nan_is_not_allowed() -> None:
    with pytest.raises(CopyDataError) as info:
        Sample.objects.copy_from([{"amount": decimal.Decimal("1")}, {"amount": "-inf"}])
    assert (info.value.row, info.value.column) == (1, "amount")
    assert "Decimal NaN and infinities are not allowed" in str(info.value)


def test_trigger_raise_shows_only_the_sqlstate() -> None:
    with connection.cursor() as cursor:
        cursor.execute(KINDS["trigger raise exception"][2][0])
        cursor.execute(KINDS["trigger raise exception"][2][1])
    with pytest.raises(ProgrammingError) as info:
        Sample.objects.copy_from([{"text": "hunter2"}])
    assert str(info.value) == (
        "COPY into copyapp.Sample failed while copying batch 0 (rows 0-0): raise "
        "exception (SQLSTATE P0001). The load was rolled back and wrote nothing."
    )
    assert isinstance(info.value, CopyError)
    assert isinstance(info.value.pg_error, psycopg.errors.RaiseException)  # type: ignore[attr-defined]
    assert "hunter2" in str(info.value.pg_error)  # type: ignore[attr-defined]


def test_lock_timeout_says_what_happened(ctx: Ctx) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '20ms'")
    with pytest.raises(CopyConcurrencyError) as info, transaction.atomic():
        lock_plain("hunter2", 1, ctx)
    assert "canceling statement due to lock timeout" in str(info.value)
    assert info.value.sqlstate == "55P03"


MOMENT = datetime.datetime(2031, 7, 5, 10, 11, 12)


@pytest.mark.parametrize(
    ("rows", "stored"),
    [
        (lambda: csv_file(("moment",), ("2031-07-05 10:11:12",)), MOMENT),
        (lambda: [{"moment": MOMENT}], MOMENT),
        (lambda: [{"moment": MOMENT.date()}], datetime.datetime(2031, 7, 5)),
    ],
    ids=["csv", "naive datetime", "date"],
)
def test_naive_datetime_warning_quotes_no_value(
    rows: Callable[[], Any], stored: datetime.datetime
) -> None:
    """Django's own warning prints the datetime; warnings often end up in logs."""
    with pytest.warns(RuntimeWarning, match="naive datetime") as record:
        Sample.objects.copy_from(rows())
    assert all("2031" not in str(w.message) for w in record)
    # Read in TIME_ZONE (UTC in the tests), as save() does.
    assert Sample.objects.get().moment == stored.replace(tzinfo=datetime.UTC)


def test_key_lookup_of_an_upsert_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Finding the failing row runs a query whose parameter is a key value."""
    caplog.set_level(logging.DEBUG)
    rows = [
        item("hunter2", reference=uuid.uuid4()),
        item("hunter2", reference=uuid.uuid4()),
    ]
    with (
        CaptureQueriesContext(connection) as queries,
        pytest.raises(CopyIntegrityError) as info,
    ):
        Item.objects.copy_from(rows, on_conflict="update", unique_fields=["reference"])
    assert info.value.row == 1  # found by the lookup
    assert "hunter2" not in caplog.text
    assert all("hunter2" not in str(q) for q in queries.captured_queries)


# -- the server templates, against adversarial values ------------------------------------


@dataclass
class _Diag:
    message_primary: str


@dataclass
class _ServerError:
    """What server_condition reads of a psycopg error (a real one cannot be built)."""

    sqlstate: str
    diag: _Diag


TEMPLATES = [
    ("22P02", 'invalid input syntax for type integer: "{v}"'),
    ("22007", 'invalid input syntax for type timestamp with time zone: "{v}"'),
    ("22P02", 'invalid input value for enum mood: "{v}"'),
    ("22P02", 'malformed array literal: "{v}"'),
    ("22003", 'value "{v}" is out of range for type integer'),
    ("22008", 'date/time field value out of range: "{v}"'),
    ("22023", 'time zone "{v}" not recognized'),
    ("22023", 'invalid hexadecimal digit: "{v}"'),
    # A trigger's RAISE: its own code, or a server's words under another code.
    ("P0001", "{v}"),
    ("P0001", "value too long for type {v}"),
    ("23514", 'invalid input syntax for type integer: "{v}"'),
]


@settings(max_examples=300, deadline=None)
@given(
    template=st.sampled_from(TEMPLATES),
    value=st.text(min_size=4)
    | st.sampled_from(['" is out of range for type x', '": "', '"\n"', "integer"]),
)
def test_server_condition_never_repeats_the_value(
    template: tuple[str, str], value: str
) -> None:
    sqlstate, text = template

    def condition(v: str) -> str:
        error = _ServerError(sqlstate, _Diag(text.replace("{v}", v)))
        return redact.server_condition(error)  # type: ignore[arg-type]

    # Only what the message says whatever the value ("integer") may match.
    assert value not in condition(value) or value in condition("\x01")
