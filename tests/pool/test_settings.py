"""database() arguments: explicit ones win, durations PostgreSQL can hold, startup options
tokenized as the server does, ALTER ROLE hints that are safe to paste."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from decimal import Decimal
from urllib.parse import quote

import pglast
import psycopg
import pytest
from django.conf import settings
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg import sql

from django_dbtuning import InvalidDatabaseURL
from django_dbtuning.pool import connection_kwargs, database, pool_size
from django_dbtuning.pool.startup import (
    StartupOptionsError,
    alter_role_sql,
    join_options,
    parse_options,
    quote_identifier,
    quote_literal,
    split_options,
)
from django_dbtuning.validation import INT_MAX

URL = "postgres://app:pw@db.example.com:5432/shop"


# -- explicit arguments win over the URL -------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "kwargs", "path", "expected"),
    [
        ("pool_timeout=3", {"timeout": 10.0}, ("OPTIONS", "pool", "timeout"), 10.0),
        ("pool_max_idle=5", {"max_idle": 300}, ("OPTIONS", "pool", "max_idle"), 300.0),
        (
            "pool_max_lifetime=5",
            {"max_lifetime": 1800},
            ("OPTIONS", "pool", "max_lifetime"),
            1800.0,
        ),
        (
            "pool_max_waiting=5",
            {"max_waiting": 0},
            ("OPTIONS", "pool", "max_waiting"),
            0,
        ),
        ("health_checks=false", {"health_checks": True}, ("CONN_HEALTH_CHECKS",), True),
        (
            "connect_timeout=2",
            {"connect_timeout": 5},
            ("OPTIONS", "connect_timeout"),
            5,
        ),
        (
            "connect_timeout=2",
            {"connect_timeout": 7},
            ("OPTIONS", "connect_timeout"),
            7,
        ),
        (
            "application_name=url",
            {"application_name": "arg"},
            ("OPTIONS", "application_name"),
            "arg",
        ),
        ("pool_timeout=3", {}, ("OPTIONS", "pool", "timeout"), 3.0),
        ("connect_timeout=2", {}, ("OPTIONS", "connect_timeout"), "2"),
    ],
)
def test_explicit_arguments_win_over_the_url_even_when_equal_to_the_default(
    query, kwargs, path, expected
):
    value = database(f"{URL}?{query}", **kwargs)
    for key in path:
        value = value[key]
    assert value == expected


def test_conn_max_age_passed_explicitly_wins_even_as_the_default_or_forever():
    assert (
        database(f"{URL}?conn_max_age=60", pool=False, conn_max_age=600)["CONN_MAX_AGE"]
        == 600
    )
    # None is "not given", as for every argument; math.inf is Django's None (forever).
    assert (
        database(f"{URL}?conn_max_age=60", pool=False, conn_max_age=math.inf)[
            "CONN_MAX_AGE"
        ]
        is None
    )
    assert (
        database(f"{URL}?conn_max_age=60", pool=False, conn_max_age=None)[
            "CONN_MAX_AGE"
        ]
        == 60
    )
    assert database(f"{URL}?conn_max_age=none", pool=False)["CONN_MAX_AGE"] is None
    assert database(f"{URL}?conn_max_age=60", pool=False)["CONN_MAX_AGE"] == 60
    assert database(URL, pool=False)["CONN_MAX_AGE"] == 600


def test_explicit_options_win_over_url_keywords_and_connect_timeout_over_both():
    entry = database(
        f"{URL}?sslmode=disable&connect_timeout=9",
        options={"sslmode": "require", "connect_timeout": 8},
        connect_timeout=3,
    )
    assert entry["OPTIONS"]["sslmode"] == "require"
    assert entry["OPTIONS"]["connect_timeout"] == 3


def test_an_explicit_timeout_replaces_the_same_setting_in_options():
    entry = database(
        f"{URL}?options=-c%20statement_timeout%3D1s%20-c%20work_mem%3D64MB",
        statement_timeout="5s",
    )
    assert entry["OPTIONS"]["options"] == "-c work_mem=64MB -c statement_timeout=5000ms"


def test_unknown_explicit_options_are_refused():
    with pytest.raises(ValueError, match="'conn_max_age': neither a libpq keyword"):
        database(URL, options={"conn_max_age": 60})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"options": {"sslmode": "bogus"}}, "invalid sslmode value"),
        ({"options": {"connect_timeout": "abc"}}, "connect_timeout is not a number"),
        ({"options": {"keepalives_idle": "soon"}}, "invalid integer value for keepal"),
        ({"options": {"hostaddr": "db.example.com"}}, "not a numeric IP address"),
        ({"options": {"target_session_attrs": "primary-ish"}}, "target_session_attrs"),
    ],
)
def test_values_libpq_refuses_are_refused_at_once(kwargs, message):
    with pytest.raises(ValueError, match=message):
        database(URL, **kwargs)


# -- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0001, "1ms"),
        ("0.5ms", "1ms"),
        ("10us", "1ms"),
        (timedelta(microseconds=1), "1ms"),
        ("1.5ms", "2ms"),
        (0.3, "300ms"),
        (0.1 + 0.2, "301ms"),
        (0, "0ms"),
        ("2147483647ms", "2147483647ms"),
        ("24d", "2073600000ms"),
    ],
)
def test_timeouts_round_up_to_a_whole_millisecond_and_zero_stays_zero(value, expected):
    entry = database(URL, statement_timeout=value)
    assert entry["OPTIONS"]["options"] == f"-c statement_timeout={expected}"


@pytest.mark.parametrize(
    "value",
    ["30d", 2_147_483_648, timedelta(days=30), 2_147_484.0, "2147483648ms", "1e400"],
)
def test_timeouts_postgresql_cannot_hold_are_refused(value):
    with pytest.raises(ValueError, match="statement_timeout"):
        database(URL, statement_timeout=value)


def test_a_timeout_over_the_limit_inside_options_is_refused_too():
    with pytest.raises(InvalidDatabaseURL, match="over PostgreSQL's limit"):
        database(f"{URL}?options=-c%20statement_timeout%3D30d")
    with pytest.raises(ValueError, match="over PostgreSQL's limit"):
        database(URL, options={"options": "-c lock_timeout=2592000000"})


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_timeouts_are_refused(value):
    with pytest.raises(ValueError, match="lock_timeout must be a finite number"):
        database(URL, lock_timeout=value)


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.integers(0, 2**40),
        st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False),
        st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40)),
        st.decimals(min_value=0, max_value=10**10, places=3).map(lambda d: f"{d}ms"),
    )
)
def test_every_accepted_timeout_is_at_least_what_was_asked_and_never_zero_by_rounding(
    value,
):
    try:
        entry = database(URL, statement_timeout=value)
    except ValueError as exc:
        assert "over PostgreSQL's limit" in str(exc)
        return
    ms = int(entry["OPTIONS"]["options"].rpartition("=")[2].removesuffix("ms"))
    if isinstance(value, timedelta):
        exact = Decimal(value // timedelta(microseconds=1)) / 1000
    elif isinstance(value, float):
        exact = Decimal(repr(value)) * 1000
    elif isinstance(value, int):
        exact = Decimal(value)
    else:
        exact = Decimal(value.removesuffix("ms"))
    assert 0 <= ms <= INT_MAX
    assert ms - 1 < exact <= ms  # the ceiling
    assert (ms == 0) == (exact == 0)


# -- non-finite numbers in the sizing arithmetic ---------------------------------------------


@pytest.mark.parametrize("name", ["throughput", "hold_time", "headroom", "burst"])
@pytest.mark.parametrize("value", [math.inf, math.nan, -math.inf])
def test_non_finite_numbers_get_a_clear_value_error(name, value):
    kwargs = {"throughput": 100.0, "hold_time": 0.05, name: value}
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        pool_size(**kwargs)


@pytest.mark.parametrize("name", ["timeout", "max_idle", "max_lifetime", "headroom"])
def test_non_finite_pool_arguments_get_a_clear_value_error(name):
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        database(URL, **{name: math.inf})


@pytest.mark.parametrize(
    "query", ["pool_timeout=inf", "pool_timeout=nan", "pool_max_idle=1e999"]
)
def test_non_finite_url_parameters_are_refused(query):
    with pytest.raises(InvalidDatabaseURL, match="must be a finite number of seconds"):
        database(f"{URL}?{query}")


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    throughput=st.floats(allow_nan=True, allow_infinity=True),
    hold_time=st.floats(allow_nan=True, allow_infinity=True),
    headroom=st.floats(allow_nan=True, allow_infinity=True),
    processes=st.integers(-2, 10**400),
    server_max_connections=st.integers(-2, 10**400),
)
@example(
    throughput=1.0,
    hold_time=1.0,
    headroom=0.5,
    processes=1,
    server_max_connections=10**400,
)
def test_pool_size_raises_only_value_or_type_errors(
    throughput, hold_time, headroom, processes, server_max_connections
):
    try:
        sizing = pool_size(
            throughput=throughput,
            hold_time=hold_time,
            headroom=headroom,
            processes=processes,
            server_max_connections=server_max_connections,
        )
    except (ValueError, TypeError):
        return
    assert 1 <= sizing.min_size <= sizing.max_size


# -- options tokenized as the server does; the PgBouncer guard --------------------------------


@pytest.mark.parametrize(
    ("options", "settings_found"),
    [
        ("-c statement_timeout=5s", [("statement_timeout", "5s")]),
        ("-cstatement_timeout=5s", [("statement_timeout", "5s")]),
        ("--statement-timeout=5s", [("statement_timeout", "5s")]),
        ("-c  statement_timeout=5s", [("statement_timeout", "5s")]),
        ("-c\tstatement_timeout=5s", [("statement_timeout", "5s")]),
        ("\n-c\x0bx.y=1\r", [("x.y", "1")]),
        (r"-c search_path=a\ b", [("search_path", "a b")]),
        ("-e -c a=1 -ec b=2", [("a", "1"), ("b", "2")]),
        ("", []),
    ],
)
def test_options_are_tokenized_as_the_server_does(options, settings_found):
    found = [
        s for option in parse_options(options) if (s := option.setting) is not None
    ]
    assert found == settings_found


@pytest.mark.parametrize(
    "options", ["-c x", "foo", "-c", "-Z", "-c 1x=2", "-- -c a=1", "-", "-c =1"]
)
def test_options_the_server_cannot_parse_are_refused(options):
    with pytest.raises(StartupOptionsError):
        parse_options(options)


@pytest.mark.parametrize(
    "options",
    [
        "-cstatement_timeout=5s",
        "--statement-timeout=5s",
        "-c  statement_timeout=5s",
        "-c\tstatement_timeout=5s",
        "\t-c statement_timeout=5s",
        "-e",
        "-ec statement_timeout=5s",
    ],
)
def test_the_pgbouncer_guard_cannot_be_bypassed(options):
    with pytest.raises(ValueError, match="PgBouncer rejects the libpq 'options'"):
        database(URL, pgbouncer=True, options={"options": options})


@pytest.mark.parametrize(
    "options",
    [
        "--",
        "-- -c a.b=1",
        "-c a.b=1 --",
        "-",
        "-c a.b=1 -- x",
        "-ec a.b=2",
        "-c a.b=1\\",
        "-c a.b=",
        "-c =1",
        "-c 1x.y=2",
        "-c A.B=1",
        "-c x.y.z=1",
        "-c x..y=1",
        "-c $x.y=1",
        "-c my-app.x=1",
        "-c a.b",
        "-Z",
    ],
)
def test_the_parser_refuses_exactly_what_the_server_refuses(server_kwargs, options):
    try:
        parse_options(options)
        ours = True
    except StartupOptionsError:
        ours = False
    try:
        psycopg.connect(**server_kwargs, options=options).close()
        theirs = True
    except psycopg.OperationalError:
        theirs = False
    assert ours == theirs


def test_whitespace_only_options_are_no_startup_options():
    entry = database(URL, pgbouncer=True, options={"options": " \t "})
    assert entry["DISABLE_SERVER_SIDE_CURSORS"] is True


ARG = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1)


@hypothesis_settings(max_examples=300, deadline=None)
@given(args=st.lists(ARG, max_size=6))
def test_split_options_undoes_join_options(args):
    assert split_options(join_options(args)) == args


@pytest.fixture(scope="module")
def server_kwargs():
    return {**connection_kwargs(settings.DATABASES["default"]), "dbname": "postgres"}


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    value=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
)
@example(value="a b\tc\\d\\")
@example(value="")
def test_the_server_reads_a_joined_setting_back_unchanged(server_kwargs, value):
    # The tokenizer proven against the real pg_split_opts: what we escape, the server reads.
    options = join_options(["-c", f"dbtuning.probe={value}"])
    assert parse_options(options)[0].setting == ("dbtuning.probe", value)
    with psycopg.connect(**server_kwargs, options=options) as conn:
        (seen,) = conn.execute("SELECT current_setting('dbtuning.probe')").fetchone()
    assert seen == value


# -- hints safe to paste ---------------------------------------------------------------------

HOSTILE = [
    'App "x"; DROP TABLE t; --',
    "app",
    "App",
    "all",
    "a b",
    "o'reilly",
    'x"y',
    "Zoë 数据库",
    "back\\slash",
    "semi;colon",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_quoting_follows_psycopg_sql_rules(name):
    assert quote_identifier(name) == sql.Identifier(name).as_string(None)
    # psycopg puts a space before E'' so that it never glues to a preceding token.
    assert quote_literal(name) == sql.Literal(name).as_string(None).strip()


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    # PostgreSQL truncates identifiers to 63 bytes and reserves the role names "public"
    # and "none" (even quoted): no role is called that.
    role=st.text(
        st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1
    ).filter(lambda r: len(r.encode()) <= 63 and r not in ("public", "none")),
    name=st.from_regex(
        r"[A-Za-z_][A-Za-z0-9_]{0,20}(\.[A-Za-z_][A-Za-z0-9_]{0,20})?", fullmatch=True
    ),
    value=st.text(st.characters(codec="utf-8", exclude_characters="\x00")),
)
def test_an_alter_role_hint_is_one_statement_for_exactly_that_role(role, name, value):
    # libpg_query (PostgreSQL's own parser) reads back exactly what was meant.
    (statement,) = pglast.parse_sql(alter_role_sql(role, [(name, value)]))
    stmt = statement.stmt
    assert type(stmt).__name__ == "AlterRoleSetStmt"
    assert stmt.role.rolename == role
    assert stmt.setstmt.name == name.lower()
    assert [arg.val.sval for arg in stmt.setstmt.args] == [value]


def test_pgbouncer_hint_quotes_a_hostile_role():
    url = "postgres://App%20%22x%22%3B%20DROP%20TABLE%20t%3B%20--:pw@db/shop"
    with pytest.raises(ValueError) as excinfo:
        database(url, pgbouncer=True, statement_timeout="5s")
    assert (
        """ALTER ROLE "App ""x""; DROP TABLE t; --" SET statement_timeout = '5000ms'"""
        in str(excinfo.value)
    )


def test_a_url_without_user_gets_a_current_user_hint():
    with pytest.raises(
        ValueError, match="ALTER ROLE CURRENT_USER SET lock_timeout = '1000ms'"
    ):
        database("postgres://db/shop", pgbouncer=True, lock_timeout="1s")


def test_pasting_the_hint_for_a_hostile_role_changes_only_that_role(server_kwargs):
    role = f'App{uuid.uuid4().hex[:6]} "x"; DROP TABLE t; --'
    schema = f"dbtuning_hint_{uuid.uuid4().hex[:8]}"
    url = f"postgres://{quote(role, safe='')}:pw@db/shop"
    with pytest.raises(ValueError) as excinfo:
        database(url, pgbouncer=True, statement_timeout="5s", lock_timeout="250ms")
    hint = str(excinfo.value).split("instead: ", 1)[1]
    with psycopg.connect(**server_kwargs, autocommit=True) as admin:
        try:
            admin.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test role cannot CREATE ROLE")
        try:
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            admin.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))
            )
            admin.execute("CREATE TABLE t (id int)")
            before = admin.execute(
                "SELECT setrole, setconfig FROM pg_db_role_setting ORDER BY 1"
            ).fetchall()
            result = admin.pgconn.exec_(
                hint.encode()
            )  # simple protocol, as psql sends it
            assert result.status == psycopg.pq.ExecStatus.COMMAND_OK, (
                result.error_message
            )
            assert admin.execute("SELECT to_regclass('t') IS NOT NULL").fetchone() == (
                True,
            )
            after = admin.execute(
                "SELECT setrole::regrole::text, setconfig FROM pg_db_role_setting "
                "WHERE setrole = to_regrole(%s)",
                [quote_identifier(role)],
            ).fetchall()
            assert after == [
                (
                    quote_identifier(role),
                    ["statement_timeout=5000ms", "lock_timeout=250ms"],
                )
            ]
            others = admin.execute(
                "SELECT setrole, setconfig FROM pg_db_role_setting "
                "WHERE setrole <> to_regrole(%s) ORDER BY 1",
                [quote_identifier(role)],
            ).fetchall()
            assert others == before
        finally:
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )
            admin.execute(
                sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role))
            )
