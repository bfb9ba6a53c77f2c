"""Adversarial pass over "is this one data query?" (:func:`sqltext.shows_values`), which
decides both what ``--explain`` sends and which texts ``LOG_PARAMETERS`` may show with
their values: whatever a text holds, when it says yes, PostgreSQL reads the text as one
statement, with ``standard_conforming_strings`` on or off (the session that ran it may
have had either)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from django_dbtuning.report.sqltext import query_text, shows_values
from tests.report.test_report import admin_connection

pytestmark = pytest.mark.django_db

MULTIPLE = "cannot insert multiple commands into a prepared statement"
PASSWORD_TAIL = "; ALTER ROLE r PASSWORD 'pw-attack-1' --"

PIECES = st.sampled_from(
    [
        "'",
        "''",
        "\\",
        "\\'",
        "E'",
        "$$",
        "$t$",
        ";",
        "--",
        "\n",
        "/*",
        "*/",
        '"',
        " , ",
        "x",
        "1",
        "U&'",
        PASSWORD_TAIL,
        "; SELECT 1 --",
        "'x\\' , '",
        "; SELECT 1 --'",
    ]
)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), admin_connection() as conn:
        yield conn


def statements(conn, text: str, conforming: str) -> str:
    """ "many" when PostgreSQL's parser finds more than one statement in ``text`` (a Parse
    message only: nothing runs), else "one" (or another error, as long as it is not
    about several commands)."""
    conn.execute(f"SET standard_conforming_strings = {conforming}")
    result = conn.pgconn.prepare(b"", text.encode())
    message = (result.error_message or b"").decode()
    conn.execute("SET standard_conforming_strings = on")
    return "many" if MULTIPLE in message else "one"


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(PIECES, min_size=1, max_size=8))
@example(["'x\\' , '", "; SELECT 1 --'"])
@example(["'", "\\'", " , ", "'", "; SELECT 1 --", "'"])
@example(["1 , '\\\\'", "; SELECT 1 --", "'"])
def test_one_data_query_is_one_statement_to_the_server(server, pieces):
    text = "SELECT " + "".join(pieces)
    if not shows_values(text):
        return
    assert statements(server, text, "on") == "one", text
    assert statements(server, text, "off") == "one", text


def test_a_password_behind_a_legacy_string_is_never_shown():
    """Regression: with LOG_PARAMETERS, this text was shown whole: one SELECT to the
    lexer, a SELECT and an ALTER ROLE ... PASSWORD to a server whose
    standard_conforming_strings is off."""
    text = "SELECT 'x\\' , '" + PASSWORD_TAIL.replace("'", "''") + "'"
    assert not shows_values(text)
    assert "pw-attack-1" not in query_text(text, show_values=True)
    # Without a backslash, one string is one string however it is read: shown.
    plain = "SELECT 'x' , '" + PASSWORD_TAIL.replace("'", "''") + "'"
    assert shows_values(plain)
