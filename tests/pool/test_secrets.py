"""Secrets after the hostile pass: no message is built from a secret or from a value that
failed validation, and scrubbing, the backstop, never reveals a password by what it masks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import traceback
import warnings
from pathlib import Path
from urllib.parse import quote

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtuning import InvalidDatabaseURL
from django_dbtuning.pool import (
    conninfo,
    database,
    library_text,
    live_checks,
    messages,
    redact_url,
    startup,
)
from django_dbtuning.pool.checks import check_databases
from django_dbtuning.pool.url import parse_url

ROOT = Path(__file__).resolve().parents[2]


def exception_texts(exc: BaseException) -> list[str]:
    texts = ["".join(traceback.format_exception(exc))]
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is not None:
            texts += [str(current), repr(current), repr(current.args)]
            pending += [current.__cause__, current.__context__]
    return texts


def outputs(url: str) -> list[str]:
    """Everything database() and redact_url() can show for ``url``."""
    texts = [redact_url(url)]
    try:
        database(url)
    except (ValueError, TypeError) as exc:
        texts += exception_texts(exc)
    else:
        texts.append(repr(parse_url(url)))
    return texts


def check_messages(entry, alias="default"):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES")
        with override_settings(DATABASES={alias: entry}):
            return [(m.id, m.msg, m.hint) for m in check_databases()]


# -- a raw '&' in a query-string secret ----------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "named"),
    [
        ("pool=cret", "parameter pool must be true or false"),
        ("pool_timeout=cret", "parameter pool_timeout must be a finite number"),
        ("statement_timeout=cret", "parameter statement_timeout must be a duration"),
        ("connect_timeout=cret", "connect_timeout is not a number of seconds"),
        ("sslmode=cret", "invalid sslmode value"),
        ("hostaddr=cret", "hostaddr is not a numeric IP address"),
        ("keepalives_idle=cret", "invalid integer value for keepalives_idle"),
        ("options=cret", "options is not valid server startup options: word #1"),
        ("target_session_attrs=cret", "invalid target_session_attrs value"),
        ("cret=x", "unknown parameter #2"),
        ("x=cret", "unknown parameter #2"),
        ("port=cret", "a port must be a number"),
    ],
)
def test_a_secrets_tail_after_a_raw_ampersand_is_never_quoted(tail, named):
    url = f"postgres://app:pw@db/shop?sslpassword=s3&{tail}"
    with pytest.raises(InvalidDatabaseURL) as excinfo:
        database(url)
    assert named in str(excinfo.value)
    assert str(excinfo.value).startswith(
        "database URL postgres://app:***@db/shop?sslpassword=***: "
    ) or str(excinfo.value).startswith("cannot parse database URL")
    for text in outputs(url):
        assert "cret" not in text.replace("secret", "")


@pytest.mark.parametrize("tail", ["host=cret", "application_name=cret"])
def test_a_secrets_tail_that_is_a_valid_parameter_is_accepted_but_not_shown(tail):
    # Legal (a secret followed by parameters is common): the '&' splits, as in libpq.
    url = f"postgres://app:pw@db/shop?sslpassword=s3&{tail}"
    entry = database(url)
    assert entry["OPTIONS"]["sslpassword"] == "s3"
    assert redact_url(url) == "postgres://app:***@db/shop?sslpassword=***"
    assert "cret" not in repr(parse_url(url))


def test_the_pgbouncer_hint_shows_url_values_only_before_any_secret():
    with pytest.raises(ValueError, match="SET statement_timeout = '5000ms'"):
        database("postgres://app:pw@db/shop?statement_timeout=5s&pgbouncer=true")
    with pytest.raises(ValueError) as excinfo:
        database(
            "postgres://app:pw@db/shop?sslpassword=s3&statement_timeout=5s&pgbouncer=1"
        )
    assert "SET statement_timeout = '...'" in str(excinfo.value)
    assert "5000" not in str(excinfo.value)
    with pytest.raises(ValueError) as excinfo:
        database(
            "postgres://app:pw@db/shop?options=-c%20work_mem%3Dcret&pgbouncer=true"
        )
    assert "cret" not in str(excinfo.value)
    assert "for each -c setting of the URL's options parameter" in str(excinfo.value)


def test_url_pool_values_out_of_range_name_the_parameter_not_the_value():
    with pytest.raises(
        InvalidDatabaseURL, match="pool_max_size must be an integer >= 1"
    ):
        database("postgres://app:pw@db/shop?pool_max_size=0")
    with pytest.raises(
        InvalidDatabaseURL, match="min_size must not exceed its max_size"
    ):
        database("postgres://app:pw@db/shop?pool_min_size=9&pool_max_size=2")
    with pytest.raises(ValueError, match=r"min_size \(9\) must not exceed max_size"):
        database("postgres://app:pw@db/shop", min_size=9, max_size=2)


# -- ';' and encoded separators inside a value ---------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgres://app:pw@db/shop?sslmode=require;password=s3cret",
            "postgres://app:***@db/shop?sslmode=***",
        ),
        (
            "postgres://app:pw@db/shop?sslmode=require%3Bpassword%3Ds3cret",
            "postgres://app:***@db/shop?sslmode=***",
        ),
        (
            "postgres://app:pw@db/shop?sslmode=require%26password%3Ds3cret",
            "postgres://app:***@db/shop?sslmode=***",
        ),
        (
            "postgres://app:ok@db/shop?application_name=x;sslpassword=s3cret#$Y&Qz",
            "postgres://app:***@db/shop?application_name=***",
        ),
        (
            "postgres://app:Qz Qz@db/shop?host=;sslpassword=s3cret/@ ~Qz",
            "postgres://app:***",
        ),
        ("postgres://app;password=s3cret@db/shop", "postgres://***@db/shop"),
        ("postgres://app:ok@db;password=@s3cret/shop", "postgres://app:***"),
        ("postgres://app:pw@db;password=s3cret/shop", "postgres://app:***@***"),
        ("postgres://app:pw@db/shop;password=s3cret", "postgres://app:***@db/***"),
        (
            "postgres://app:pw@db/shop?sslmode=require&connect_timeout=5&pool=true&"
            "statement_timeout=5s&application_name=s3cret",
            "postgres://app:***@db/shop?sslmode=require&connect_timeout=5&pool=true&"
            "statement_timeout=5s&application_name=***",
        ),
    ],
)
def test_a_secret_behind_a_semicolon_or_an_encoded_separator_is_hidden(url, shown):
    assert redact_url(url) == shown
    for text in outputs(url):
        assert "s3cret" not in text


def test_a_value_libpq_quotes_is_left_out_of_its_message_whatever_its_spaces():
    url = "postgres://app:pw@db/shop?service=x%3Bpassword%3Ds3%20%20cret%09%20x"
    with pytest.raises(InvalidDatabaseURL) as excinfo:
        database(url)
    assert str(excinfo.value) == (
        "database URL postgres://app:***@db/shop?service=***: definition of service "
        "not found"
    )


def test_only_validated_enum_members_and_numbers_are_shown_in_the_query():
    url = (
        "postgres://app:pw@db/shop?sslmode=verify-full&target_session_attrs=read-write"
        "&port=5433&keepalives=1&pool_max_size=8&conn_max_age=none&health_checks=off"
        "&sslrootcert=system&require_auth=scram-sha-256"
    )
    assert redact_url(url) == url.replace(":pw@", ":***@")
    assert redact_url("postgres://db/shop?sslmode=hunter2") == (
        "postgres://db/shop?sslmode=***"
    )


# -- a bad timeout in the URL -------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "999999999999", "-1s", "30d", "1e400"])
def test_a_bad_url_timeout_is_an_invalid_url_naming_the_parameter(value):
    url = f"postgres://app:pw@db/shop?lock_timeout={value}"
    with pytest.raises(InvalidDatabaseURL) as excinfo:
        database(url)
    assert str(excinfo.value) == (
        "database URL postgres://app:***@db/shop?lock_timeout=***: parameter "
        "lock_timeout must be a duration such as 500ms, 5s or 2min (an int is "
        "milliseconds), at most 2147483647 ms"
    )


def test_a_bad_url_timeout_is_one_line_from_manage_py():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["DATABASE_URL"] = (
        "postgres://app:hunter2@127.0.0.1:1/shop?statement_timeout=soon"
    )
    result = subprocess.run(
        [sys.executable, "example_project/manage.py", "check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "parameter statement_timeout must be a duration" in result.stderr
    assert "hunter2" not in result.stderr and "soon" not in result.stderr


# -- python -m django_dbtuning.embedded ----------------------------------------------------


def test_the_embedded_command_prints_a_url_from_the_environment_redacted():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["DATABASE_URL"] = "postgres://app:hunter2@127.0.0.1:1/shop?sslpassword=x2"
    process = subprocess.Popen(
        [sys.executable, "-m", "django_dbtuning.embedded"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert line == "postgres://app:***@127.0.0.1:1/shop?sslpassword=***\n"
    assert "hunter2" not in line + out + err and "x2" not in line + out + err


# -- scrubbing never reveals a password by what it masks -----------------------------------

BASE = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": "shop",
    "USER": "app",
    "HOST": "db.example.com",
    "PORT": "5432",
    "CONN_MAX_AGE": "600",
    "OPTIONS": {
        "sslmode": "bogus",
        "connect_timeout": "abc",
        "options": "-c statement_timeout=30d",
        "pool": {"min_size": 5, "max_size": 2, "timeout": "5", "max_waiting": -1},
    },
}
NEUTRAL = "\ue000neutral\ue001"


@pytest.mark.parametrize(
    "password",
    [
        "e",
        "a",
        "postgres",
        "5432",
        "default",
        "libpq",
        "sslmode",
        "shop",
        "refuses",
        "2147483647",
        "DATABASES",
        "OPTIONS",
    ],
)
def test_a_short_or_common_password_leaves_every_message_intact(password):
    assert check_messages({**BASE, "PASSWORD": password}) == check_messages(
        {**BASE, "PASSWORD": NEUTRAL}
    )


ENTRIES = [
    BASE,
    {**BASE, "HOST": "a,b", "PORT": "1,2,3", "CONN_MAX_AGE": None},
    {**BASE, "OPTIONS": {"sslrootcert": "system", "sslmode": "allow"}},
    {**BASE, "OPTIONS": {"service": "nosuch", "require_auth": "password,!md5"}},
    {**BASE, "OPTIONS": {"options": "foo", "hostaddr": "x", "isolation_level": 99}},
    {**BASE, "OPTIONS": {"pool": "x", "keepalives_idle": "soon"}, "CONN_MAX_AGE": 5},
]


@st.composite
def entries_and_pieces(draw: st.DrawFn) -> tuple[dict, str]:
    """An entry, and a piece of what the checks say about it: a word, or part of one."""
    entry = draw(st.sampled_from(ENTRIES))
    said = check_messages({**entry, "PASSWORD": NEUTRAL})
    words = sorted({w for m in said for w in re.findall(r"\w+", f"{m[1]} {m[2]}")})
    word = draw(st.sampled_from(words))
    start = draw(st.integers(0, len(word) - 1))
    return entry, word[start : draw(st.integers(start + 1, len(word)))]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=entries_and_pieces())
def test_no_password_changes_a_check_message(case):
    # Nothing is built from the password, so nothing may depend on it: masking a word the
    # message says anyway would tell the reader what the password is.
    entry, password = case
    assert check_messages({**entry, "PASSWORD": password}) == check_messages(
        {**entry, "PASSWORD": NEUTRAL}
    )


def test_the_backstop_still_masks_a_real_secret():
    text = 'connection failed: database "Zq8-Xv2" does not exist; s3cret-Pw'
    scrubbed = messages.scrub(text, ["s3cret-Pw", "Zq8-Xv2"], keep=["Zq8-Xv2"])
    assert scrubbed == 'connection failed: database "Zq8-Xv2" does not exist; ***'
    assert messages.scrub("port 5432 is open", ["5432"], keep=["5432"]) == (
        "port 5432 is open"
    )
    assert messages.scrub("invalid value", ["e", "val"]) == "invalid value"
    assert messages.scrub(
        "see postgresql.org", ["postgres"], vocabulary="postgresql"
    ) == ("see postgresql.org")


# -- property: a moderate fuzz of separators around secrets --------------------------------

KEYS = [
    "sslmode",
    "application_name",
    "connect_timeout",
    "pool",
    "pool_max_size",
    "statement_timeout",
    "options",
    "host",
    "port",
    "hostaddr",
    "bogus",
    "password",
    "sslpassword",
    "pgbouncer",
]
VALUES = ["require", "bogus", "x", "5", "true", "-c%20a=b", "1s", "", "127.0.0.1", "-1"]
SEPARATORS = ["&", ";", "%26", "%3B", "&amp;", "; "]
MARKERS = st.characters(min_codepoint=0xE000, max_codepoint=0xF8FF)
PIECES = st.one_of(
    st.sampled_from(list("aZ9@:/?#&=;%+[],. '\"\\$!*()~") + ["%40", "%3D", "%3B"]),
    st.builds(
        "{}{}={}".format,
        st.sampled_from(SEPARATORS),
        st.sampled_from(KEYS),
        st.sampled_from(VALUES),
    ),
)
PARAMETERS = st.lists(
    st.builds(
        "{}{}={}".format,
        st.sampled_from(SEPARATORS),
        st.sampled_from(KEYS),
        st.sampled_from(VALUES),
    ),
    max_size=3,
).map("".join)


@st.composite
def separated_secrets(draw: st.DrawFn) -> str:
    parts = draw(
        st.lists(
            st.tuples(st.lists(PIECES, max_size=3), MARKERS), min_size=1, max_size=3
        )
    )
    return "".join("".join(pieces) + marker for pieces, marker in parts)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=separated_secrets(),
    where=st.sampled_from(["password", "query", "user", "host", "path"]),
    key=st.sampled_from(sorted(conninfo.secret_keywords() - {"replication"})),
    before=PARAMETERS,
    after=PARAMETERS,
    encoded=st.booleans(),
)
def test_no_separator_lets_a_secret_out(secret, where, key, before, after, encoded):
    raw = quote(secret, safe="" if encoded else "@:/?#&=;+[],. '\"\\$!*()~")
    user, password, host, path = "app", "ok", "db", "shop"
    query = "sslmode=require" + before
    if where == "password":
        password = raw
    elif where == "query":
        query += f"&{key}={raw}"
    else:
        user, host, path = {
            "user": (f"app;password={raw}", host, path),
            "host": (user, f"db;password={raw}", path),
            "path": (user, host, f"shop;password={raw}"),
        }[where]
    url = f"postgres://{user}:{password}@{host}/{path}?{query}{after}"
    markers = [c for c in secret if 0xE000 <= ord(c) <= 0xF8FF]
    for text in outputs(url):
        for marker in markers:
            for form in (marker, repr(marker)[1:-1], quote(marker)):
                assert form.lower() not in text.lower(), (url, text)


# -- libpq's text about a value is never shown ----------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgres://app:pw@db/shop?require_auth=!ZQX9secret",
        "postgres://app:pw@db/shop?require_auth=!!ZQX9secret",
        "postgres://app:pw@db/shop?require_auth=ZQX9secret",
        "postgres://app:pw@db/shop?require_auth=password,!ZQX9secret",
    ],
)
def test_a_negated_require_auth_value_is_not_quoted_by_database(url):
    with pytest.raises(InvalidDatabaseURL) as excinfo:
        database(url)
    assert str(excinfo.value) == (
        "database URL postgres://app:***@db/shop?require_auth=***: "
        + (
            "negative require_auth methods (!method) cannot be mixed with "
            "non-negative ones"
            if url.endswith("password,!ZQX9secret")
            else "invalid require_auth value"
        )
    )
    assert not any("ZQX" in text for text in exception_texts(excinfo.value))


def test_a_negated_require_auth_value_in_options_is_not_quoted():
    value = (
        "!" + "ZQX9secret"
    )  # not on the raising line: the traceback quotes the source
    with pytest.raises(ValueError) as excinfo:
        database("postgres://app:pw@db/shop", options={"require_auth": value})
    assert str(excinfo.value).endswith("invalid require_auth value")
    assert not any("ZQX" in text for text in exception_texts(excinfo.value))


@pytest.mark.parametrize("value", ["!pw-x", "!password,!pw-x", "!!pw-x"])
def test_e022_names_require_auth_without_its_value(value):
    entry = {**BASE, "CONN_MAX_AGE": 600, "OPTIONS": {"require_auth": value}}
    (message,) = check_messages(entry)
    assert message[0] == "dbtuning.E022"
    assert message[1] == (
        "DATABASES['default']['OPTIONS']['require_auth']: libpq refuses it (invalid "
        "require_auth value), so the first connection fails."
    )


def test_a_libpq_text_of_unknown_shape_gives_no_words_of_its_own():
    # A translated or future wording is not read at all (fail closed).
    keywords = {"sslmode"}
    assert (
        library_text.libpq_phrase("valeur sslmode invalide : « x »", keywords) is None
    )
    assert (
        library_text.libpq_phrase('invalid sslmode value: "x"\nmore', keywords) is None
    )
    # A keyword slot naming a keyword that was not passed is not trusted.
    assert library_text.libpq_phrase('invalid port value: "x"', keywords) is None
    assert library_text.libpq_phrase('invalid sslmode value: "x"', keywords) == (
        "invalid sslmode value",
        "sslmode",
    )
    assert library_text.setting_phrase("work_mem", 'bad "work_mem" value x') == (
        "the server refuses it"
    )
    assert library_text.setting_phrase("work_mem", "x", "22023") == (
        "invalid parameter value (SQLSTATE 22023)"
    )


# Every libpq keyword, values in the formats libpq lists, negates, quotes or escapes.
LIBPQ_KEYWORDS = sorted(
    conninfo.libpq_keywords() - conninfo.secret_keywords() - {"host", "hostaddr"}
)
FORMATS = [
    "{}",
    "!{}",
    "!!{}",
    "{},x",
    "x,{}",
    "password,!{}",
    "!password,{}",
    "none,{}",
    '"{}"',
    "'{}'",
    " {} ",
    "{} x",
    "{}\\x",
    "\\{}",
    "x={}",
    "-{}",
    "{},",
    ",{}",
]
ASCII_SECRET = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{3,12}", fullmatch=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keyword=st.sampled_from(LIBPQ_KEYWORDS),
    form=st.sampled_from(FORMATS),
    secret=ASCII_SECRET,
    encoded=st.booleans(),
)
def test_no_libpq_keyword_echoes_a_value_in_any_format(keyword, form, secret, encoded):
    marker = f"ZQX{secret}"
    value = form.format(marker)
    url_value = quote(value, safe="" if encoded else "!,'\" \\=-")
    texts = outputs(f"postgres://app:pw@db/shop?{keyword}={url_value}")
    try:
        database("postgres://app:pw@db/shop", options={keyword: value})
    except (ValueError, TypeError) as exc:
        texts += exception_texts(exc)
    texts += [
        f"{msg} {hint}"
        for _, msg, hint in check_messages({**BASE, "OPTIONS": {keyword: value}})
    ]
    for text in texts:
        assert marker.lower() not in text.lower(), text


# -- check --database quotes nothing the server said about a value ---------

SERVER_SETTINGS = [
    "log_connections",
    "ignore_system_indexes",
    "log_disconnections",
    "work_mem",
    "session_replication_role",
    "log_min_messages",
    "default_transaction_isolation",
    "lc_messages",
    "timezone",
    "datestyle",
    "search_path",
    "default_tablespace",
    "temp_tablespaces",
    "role",
    "statement_timeout",
    "random_page_cost",
]


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(SERVER_SETTINGS),
    form=st.sampled_from(["{}", "!{}", "{},x", "{} x", "'{}'", "-{}", "{}kB"]),
    secret=ASCII_SECRET,
    second=st.booleans(),
)
def test_check_database_never_quotes_a_refused_server_value(name, form, secret, second):
    from django.conf import settings as django_settings

    db = django_settings.DATABASES["default"]
    marker = f"ZQX{secret}"
    options = startup.join_options(["-c", f"{name}={form.format(marker)}"])
    if second:  # a valid setting beside it: the refused one is still the one named
        options += " -c statement_timeout=5s"
    entry = {**db, "OPTIONS": {"options": options}}
    _, messages = live_checks.read_server("default", entry)
    for message in messages:
        text = f"{message.msg} {message.hint}".lower()
        assert marker.lower() not in text, text
        assert message.id in ("dbtuning.E024", "dbtuning.W021")


def test_check_database_names_a_refused_backend_setting_without_its_value():
    from django.conf import settings as django_settings

    db = django_settings.DATABASES["default"]
    entry = {**db, "OPTIONS": {"options": "-c log_connections=ZQX111secret"}}
    _, (message,) = live_checks.read_server("default", entry)
    assert message.id == "dbtuning.E024"
    # log_connections is a boolean up to PostgreSQL 17 and a list from 18: the server's
    # complaint (and so our phrase for it) depends on the version.
    assert message.msg in (
        "DATABASES['default']['OPTIONS']['options'] sets log_connections, which the "
        f"server refuses: {reason}."
        for reason in ("an invalid value", "it needs a Boolean value")
    )
    assert "zqx" not in (message.msg + (message.hint or "")).lower()


def test_w021_names_the_condition_not_the_servers_text():
    from django.conf import settings as django_settings

    db = django_settings.DATABASES["default"]
    entry = {**db, "NAME": "ZQX333secret", "OPTIONS": {}}
    _, (message,) = live_checks.read_server("default", entry)
    assert message.id == "dbtuning.W021"
    assert message.msg == (
        "DATABASES['default']: cannot read the server's connection limits (the "
        "database does not exist)."
    )
