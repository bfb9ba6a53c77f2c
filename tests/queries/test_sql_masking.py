"""No literal or comment of a user's SQL leaves the package (issue 9, "SQL literals").

A secret is written into every literal and comment form PostgreSQL has, the statements run
on the real server through every path that shows SQL — ``track_queries()``,
``query_budget()``, ``QueryCountMiddleware`` with each reaction, ``dbreport``'s session
findings and ``strip_literals`` — and the secret must appear in no log line, warning,
exception, finding or report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from io import StringIO
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtuning import NPlusOneError, QueryBudgetExceeded, track_queries
from django_dbtuning.middleware import QueryCountMiddleware
from django_dbtuning.queries import query_budget
from django_dbtuning.queries.fingerprint import (
    display_sql,
    fingerprint,
    sql_info,
    sql_text,
)
from django_dbtuning.report.probe import connection_kwargs
from django_dbtuning.report.sqltext import strip_literals
from django_dbtuning.sqllex import masked_text, tokens
from tests.queries.test_sql_lexer import (
    block_comment,
    continued,
    dollar,
    escaped,
    hex_bits,
    hostile_text,
    line_comment,
    national,
    nested_comment,
    standard,
    statements,
    tagged,
    typed,
    unicode_escaped,
    unicode_uescape,
)

pytestmark = pytest.mark.django_db

# Every secret is cut by this marker, so a leaked fragment of one is found too; nothing else
# the package writes contains it.
MARK = "Zq"


@st.composite
def secrets(draw: st.DrawFn) -> str:
    chunks = draw(st.lists(hostile_text, min_size=1, max_size=3))
    return "".join(f"{MARK}{i}{chunk}" for i, chunk in enumerate(chunks)) + MARK


def leaks(secret: str, number: int) -> list[str]:
    """What must not appear: the marker, the number, the secret's bytes as hex."""
    return [MARK, str(number), secret.encode().hex()[:24]]


def hostile_select(secret: str, number: int, *, placeholder: bool) -> str:
    """One valid statement holding ``secret`` in every literal and comment form."""
    values = [
        standard(secret),
        national(secret),
        escaped(secret),
        unicode_escaped(secret),
        unicode_uescape(secret),
        dollar(secret),
        tagged(secret),
        continued(secret),
        typed(secret),
    ]
    columns = ", ".join(f"{value}::text AS c{i}" for i, value in enumerate(values))
    head = (
        f"SELECT {columns}, {number} AS n, -{number} AS m, {hex_bits(secret)} AS b "
        f"{block_comment(secret)} {nested_comment(secret)} "
    )
    tail = f" {line_comment(secret)}"
    if placeholder:
        # psycopg reads every % of a template before the server sees it.
        head, tail = head.replace("%", "%%"), tail.replace("%", "%%")
    return f"{head}WHERE {'%s' if placeholder else '0'}::int >= 0{tail}"


@contextmanager
def captured() -> Iterator[list[str]]:
    """Everything the package logs or warns while the block runs, as text."""
    out: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            out.append(record.getMessage())
            out.append(repr(record.__dict__))

    handler = Keep(logging.DEBUG)
    logger = logging.getLogger("django_dbtuning")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield out
        out.extend(f"{w.category.__name__}: {w.message}" for w in caught)
    finally:
        logger.removeHandler(handler)


def finding_texts(findings: list[Any]) -> list[str]:
    return [
        text
        for f in findings
        for text in (f.message, str(f), repr(f), json.dumps(dataclasses.asdict(f)))
    ]


def run_loops(secret: str, number: int) -> None:
    """An N+1 (one line, varying parameters) and duplicates (identical statements)."""
    with_parameter = hostile_select(secret, number, placeholder=True)
    without = hostile_select(secret, number, placeholder=False)
    with connection.cursor() as cursor:
        for i in range(4):
            cursor.execute(with_parameter, [i])
        for _ in range(4):
            cursor.execute(without)


def assert_clean(texts: list[str], secret: str, number: int) -> None:
    joined = "\n".join(texts)
    for leak in leaks(secret, number):
        assert leak not in joined, (leak, joined)


DB_PROPERTY = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
numbers = st.integers(10**11, 10**15)


@DB_PROPERTY
@given(secrets(), numbers)
def test_no_secret_in_track_queries_findings(secret, number):
    with track_queries(threshold=3) as report:
        run_loops(secret, number)
    assert report.count == 8
    assert report.n_plus_one
    # A '…' string whose end would move under standard_conforming_strings=off ends the
    # shape ("SELECT ?…"); both loops then share it, and the N+1 holds all eight.
    shape = fingerprint(hostile_select(secret, number, placeholder=False))
    assert report.duplicates or shape.endswith("?…")
    texts = [repr(report), *finding_texts(report.n_plus_one + report.duplicates)]
    texts += [q.fingerprint for q in report.queries]
    assert_clean(texts, secret, number)


@DB_PROPERTY
@given(secrets(), numbers)
def test_no_secret_in_query_budget_errors_logs_and_warnings(secret, number):
    texts: list[str] = []
    # N+1s are enforced before the budget (one reaction path): ignore them to reach it.
    with (
        pytest.raises(QueryBudgetExceeded) as budget,
        query_budget(max_queries=2, n_plus_one="ignore"),
    ):
        run_loops(secret, number)
    with (
        pytest.raises(NPlusOneError) as n_plus_one,
        query_budget(n_plus_one="raise", threshold=3),
    ):
        run_loops(secret, number)
    with (
        captured() as logged,
        query_budget(n_plus_one="warn", duplicates="log", threshold=3),
    ):
        run_loops(secret, number)
    assert any("N+1" in line for line in logged)
    for error in (budget.value, n_plus_one.value):
        texts += [str(error), repr(error)]
    texts += finding_texts(n_plus_one.value.findings)
    assert_clean(texts + logged, secret, number)


def hostile_view(secret: str, number: int) -> Any:
    def view(request: Any) -> HttpResponse:
        run_loops(secret, number)
        return HttpResponse("ok")

    return view


@DB_PROPERTY
@given(secrets(), numbers)
def test_no_secret_from_the_middleware(secret, number):
    middleware = QueryCountMiddleware(hostile_view(secret, number))
    request = RequestFactory().get("/hostile/")
    config = {
        "N_PLUS_ONE_THRESHOLD": 3,
        "ON_N_PLUS_ONE": "warn",
        "ON_DUPLICATE": "log",
        "QUERY_BUDGET": 2,
        "ON_QUERY_BUDGET": "log",
    }
    with override_settings(DBTUNING=config), captured() as logged:
        response = middleware(request)
    assert response["X-DB-Query-Count"] == "8"
    assert any("over the budget" in line for line in logged)
    with (
        override_settings(DBTUNING={**config, "ON_N_PLUS_ONE": "raise"}),
        pytest.raises(NPlusOneError) as raised,
    ):
        middleware(request)
    texts = [str(raised.value), *finding_texts(raised.value.findings)]
    assert_clean(texts + logged, secret, number)


# --- pure paths: many more examples --------------------------------------------------------

PURE_PROPERTY = settings(max_examples=150, database=None)


@PURE_PROPERTY
@given(secrets(), numbers, st.booleans())
def test_no_secret_in_shapes_displays_and_strip_literals(secret, number, placeholder):
    sql = hostile_select(secret, number, placeholder=placeholder)
    texts = [fingerprint(sql), display_sql(sql), strip_literals(sql), masked_text(sql)]
    assert_clean(texts, secret, number)
    assert "?" in texts[0]


@st.composite
def secret_in_statement(draw: st.DrawFn) -> tuple[str, str]:
    """A generated statement with a secret in one literal or comment, anywhere in it."""
    secret = draw(secrets())
    form = draw(
        st.sampled_from(
            [
                standard,
                national,
                escaped,
                unicode_escaped,
                unicode_uescape,
                dollar,
                tagged,
                continued,
                typed,
                line_comment,
                block_comment,
                nested_comment,
            ]
        )
    )
    # The surroundings are shown as they are (a quoted identifier too): they must not hold
    # the marker themselves, or a shown name would read as a leak.
    # They are whole statements: a text that leaves a string open (``SELECT$q$'$q$`` is a
    # name and a quote to the server, not a dollar quote) would close it at the secret's
    # opening quote and make the secret a name, which is shown.
    surrounding = statements.filter(
        lambda text: (
            MARK not in text
            and all(token.kind != "unterminated" for token in tokens(text))
        )
    )
    before, after = draw(surrounding), draw(surrounding)
    return before + " " + form(secret) + " " + after, secret


@PURE_PROPERTY
@given(secret_in_statement())
def test_no_secret_whatever_surrounds_it(case):
    """Whatever comes before and after, the secret's literal is masked or the text stops.

    The surrounding text may open a string or comment that swallows the secret's opening
    quote, and a name next to a quote may turn it into another literal form: the lexer
    follows the server there too, so the secret still never shows.
    """
    sql, secret = case
    for text in (fingerprint(sql), display_sql(sql), strip_literals(sql, limit=10**6)):
        assert MARK not in text, (sql, text)


# --- dbreport: sessions are shown through strip_literals -----------------------------------


def admin_connection() -> psycopg.Connection:
    return psycopg.connect(**connection_kwargs(connections.settings["default"]))


def report_document() -> dict[str, Any]:
    out = StringIO()
    call_command(
        "dbreport",
        "--format",
        "json",
        "--database",
        "default",
        "--section",
        "connections",
        stdout=out,
        stderr=StringIO(),
    )
    return json.loads(out.getvalue())


SECRET = f"{MARK}-pw'\"\\ $$ $a$ -- /* */ \n é"
NUMBER = 4111111111111111


def test_dbreport_sessions_show_no_literal_or_comment(dbtuning):
    dbtuning(
        REPORT_THRESHOLDS={
            "idle_in_transaction_seconds": 0,
            "long_running_query_seconds": 0,
        }
    )
    idle = admin_connection()
    busy = admin_connection()
    busy.autocommit = True
    idle.execute(hostile_select(SECRET, NUMBER, placeholder=False))
    running = hostile_select(SECRET, NUMBER, placeholder=False).replace(
        "SELECT ", "SELECT pg_sleep(30), ", 1
    )
    thread = threading.Thread(target=_run_cancelled, args=(busy, running))
    thread.start()
    try:
        _wait_until_active(busy.info.backend_pid)
        document = report_document()
    finally:
        with admin_connection() as admin:
            admin.execute("SELECT pg_cancel_backend(%s)", [busy.info.backend_pid])
        thread.join(timeout=10)
        idle.rollback()
        idle.close()
        busy.close()
    codes = {f["code"] for f in document["findings"]}
    assert {"idle_in_transaction", "long_running_query"} <= codes
    shown = json.dumps(document, ensure_ascii=False)
    assert "?::text AS c0" in shown
    for leak in leaks(SECRET, NUMBER):
        assert leak not in shown


def _run_cancelled(conn: psycopg.Connection, sql: str) -> None:
    with suppress(psycopg.errors.QueryCanceled):
        conn.execute(sql)


def _wait_until_active(pid: int) -> None:
    deadline = time.monotonic() + 20
    with admin_connection() as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT state FROM pg_stat_activity WHERE pid = %s", [pid]
            ).fetchone()
            if row and row[0] == "active":
                return
            time.sleep(0.02)
    raise AssertionError("the long-running session never became active")


def test_strip_literals_is_the_shared_masker():
    sql = f"SELECT a, $$x$$, E'\\'' /* {MARK} */ FROM t WHERE b = 'c'"
    assert (
        strip_literals(sql) == masked_text(sql) == "SELECT a, ?, ? FROM t WHERE b = ?"
    )
    assert strip_literals("SELECT " + "a, " * 200 + "b", limit=20) == (
        "SELECT a, a, a, a, …"
    )
    # dbreport's texts fold value keywords like the fingerprint does; IS NULL is syntax.
    assert strip_literals(
        "UPDATE t SET a = NULL, b = +1 WHERE c IS NULL AND d = TRUE"
    ) == ("UPDATE t SET a = ?, b = ? WHERE c IS NULL AND d = ?")


# --- statements as bytes: read as the server reads them, or not past the doubt ------------

# In SJIS, BIG5, GBK, UHC and GB18030 the second byte of a character may be 0x5C, a
# backslash in ASCII: b"E'\x83\x5c'" is E'ソ' to the server, an escaped quote to UTF-8.
SJIS_SECRET = b"SELECT E'\x83\x5c' AS a, 'SECRETVALUE' AS b"


@pytest.mark.parametrize(
    ("sql", "shape"),
    [
        (SJIS_SECRET, "SELECT ?…"),
        # Valid UTF-8 (Á = C3 81), yet in SJIS 81 5C is one character: the backslash an
        # E-string would read is not there for the server.
        (b"SELECT E'\xc3\x81\\', 'SECRETVALUE' AS b", "SELECT ?…"),
        (b"SELECT 'ok', 1 -- \xff\n, 'SECRETVALUE'", "SELECT ?, ? ?…"),
        (b"SELECT $$\xff SECRETVALUE $$, 1", "SELECT ?…"),
        (bytearray(b"SELECT '\xc3\xa9' AS \xc3\xa9"), "SELECT ? AS \xe9"),
    ],
)
def test_bytes_are_read_as_utf8_up_to_the_first_doubtful_byte(sql, shape):
    assert fingerprint(sql) == shape
    assert "SECRET" not in sql_info(sql).shape.text


def test_bytes_are_read_in_the_connection_encoding_when_given():
    assert sql_info(sql_text(SJIS_SECRET, encoding="shift_jis")).shape.text == (
        "SELECT ? AS a, ? AS b"
    )
    assert sql_info(
        sql_text(b"SELECT E'\xc3\xa9\\'', 1", encoding="utf-8")
    ).shape.text == ("SELECT ?, ?")
    # Not a text codec Python knows: read as UTF-8, with the same doubts.
    for unknown in ("mule_internal", "rot13"):
        assert (
            sql_info(sql_text(SJIS_SECRET, encoding=unknown)).shape.text == "SELECT ?…"
        )
    # A byte the encoding cannot read ends the text there too.
    assert sql_info(
        sql_text(b"SELECT 1, '\x80SECRET'", encoding="shift_jis")
    ).shape.text == ("SELECT ?, ?…")


# Characters whose last byte is 0x5C in one of the encodings (in SJIS, "ﾃ―" is C3 81 5C:
# valid UTF-8 for "Á\\"), and the bytes around them.
CJK = [
    "ﾃ―",
    "ソ",
    "表",
    "能",
    "許",
    "功",
    "乗",
    "\\",
    "'",
    "$",
    "-",
    "\n",
    "é",
    "a",
    MARK,
]
ENCODINGS = ["utf-8", "shift_jis", "big5", "gbk", "cp949", "gb18030"]


@st.composite
def encoded_secrets(draw: st.DrawFn) -> tuple[bytes, str]:
    """A statement with a secret literal or comment, as bytes in a client encoding."""
    encoding = draw(st.sampled_from(ENCODINGS))
    secret = MARK + "".join(draw(st.lists(st.sampled_from(CJK), max_size=8))) + MARK
    form = draw(
        st.sampled_from([standard, escaped, dollar, block_comment, line_comment])
    )
    if form is standard:
        secret = secret.replace("\\", "\\\\")  # even runs: no doubt about the end
    # E-strings that end in such a character, right before the secret.
    before = draw(
        st.lists(st.sampled_from(CJK[:7]).map(escaped), min_size=1, max_size=2)
    )
    sql = f"SELECT {', '.join([*before, form(secret)])}, 'tail'"
    try:
        return sql.encode(encoding), encoding
    except UnicodeEncodeError:
        return sql.encode("utf-8"), "utf-8"


@PURE_PROPERTY
@given(encoded_secrets())
def test_no_secret_from_bytes_in_any_client_encoding(case):
    data, encoding = case
    for shape in (
        sql_info(data).shape.text,
        sql_info(sql_text(data, encoding=encoding)).shape.text,
    ):
        assert MARK not in shape, (data, encoding, shape)


@pytest.mark.django_db
def test_sjis_bytes_on_postgresql_show_no_literal():
    with connection.cursor() as cursor:
        cursor.execute("SET client_encoding TO 'SJIS'")
        try:
            with track_queries(threshold=3) as report:
                for _ in range(4):
                    cursor.execute(SJIS_SECRET)
                    row = cursor.fetchone()
        finally:
            cursor.execute("SET client_encoding TO 'UTF8'")
    assert row == ("ソ", "SECRETVALUE")  # the server read E'ソ' and the secret apart
    assert report.duplicates or report.n_plus_one
    texts = [repr(report), *finding_texts(report.n_plus_one + report.duplicates)]
    texts += [q.fingerprint for q in report.queries]
    assert not [text for text in texts if "SECRET" in text]
