"""System checks over DATABASES: each known pitfall of pool and connection settings has an id."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import django
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_dbtuning.embedded import EmbeddedPostgres
from django_dbtuning.pool import conninfo, database
from django_dbtuning.pool.checks import check_databases

URL = "postgres://app:s3cret@db.example.com:5432/shop"
BASE = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": "shop",
    "USER": "app",
    "PASSWORD": "s3cret",
    "HOST": "db.example.com",
    "PORT": "5432",
}


def messages_for(entry, **dbtuning):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES")
        with override_settings(DATABASES={"default": entry}, DBTUNING=dbtuning):
            return check_databases()


def ids(entry, **dbtuning):
    return [message.id for message in messages_for(entry, **dbtuning)]


def pooled(pool, **extra):
    return {**BASE, "CONN_MAX_AGE": 0, "OPTIONS": {"pool": pool}, **extra}


GOOD_POOL = {"min_size": 2, "max_size": 4, "timeout": 5.0}


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (pooled("true"), ["dbtuning.E010"]),
        (pooled(1), ["dbtuning.E010"]),
        (pooled(GOOD_POOL, CONN_MAX_AGE=60), ["dbtuning.E011"]),
        (pooled(GOOD_POOL, CONN_MAX_AGE=None), ["dbtuning.E011"]),
        (pooled({**GOOD_POOL, "kwargs": {"sslmode": "require"}}), ["dbtuning.E012"]),
        (pooled({**GOOD_POOL, "open": True, "configure": print}), ["dbtuning.E012"]),
        (pooled({**GOOD_POOL, "max_lifetme": 60}), ["dbtuning.E013"]),
        (pooled({"min_size": 5, "max_size": 2, "timeout": 5.0}), ["dbtuning.E014"]),
        (pooled({"min_size": 0, "max_size": 0, "timeout": 5.0}), ["dbtuning.E014"]),
        (pooled({**GOOD_POOL, "timeout": "5"}), ["dbtuning.E020"]),
        (pooled({}), ["dbtuning.W010"]),
        (pooled(True), ["dbtuning.W014", "dbtuning.W013"]),
        (pooled({**GOOD_POOL, "timeout": 30.0}), ["dbtuning.W013"]),
        (pooled(GOOD_POOL), []),
    ],
)
def test_pool_pitfalls(entry, expected):
    assert ids(entry) == expected


def test_pool_check_messages_name_the_alias_key_and_fix():
    (message,) = messages_for(pooled({**GOOD_POOL, "max_lifetme": 60}))
    assert message.msg.startswith(
        "DATABASES['default']['OPTIONS']['pool'] has 'max_lifetme'"
    )
    assert message.hint == "Did you mean 'max_lifetime'?"
    (message,) = messages_for(pooled(GOOD_POOL, CONN_MAX_AGE=60))
    assert "max_lifetime" in message.hint
    assert "s3cret" not in message.msg + message.hint


def test_check_key_is_owned_by_django_before_6_1():
    expected = [] if django.VERSION >= (6, 1) else ["dbtuning.E012"]
    assert ids(pooled({**GOOD_POOL, "check": None})) == expected


def test_worker_timeout_setting_moves_the_pool_timeout_limit():
    entry = pooled({**GOOD_POOL, "timeout": 20.0})
    assert ids(entry) == []
    assert ids(entry, WORKER_TIMEOUT=15) == ["dbtuning.W013"]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({**BASE}, ["dbtuning.W011"]),
        ({**BASE, "CONN_MAX_AGE": 0}, ["dbtuning.W011"]),
        ({**BASE, "CONN_MAX_AGE": None}, ["dbtuning.W012"]),
        ({**BASE, "CONN_MAX_AGE": None, "CONN_HEALTH_CHECKS": True}, []),
        ({**BASE, "CONN_MAX_AGE": 600}, []),
    ],
)
def test_persistent_connection_pitfalls(entry, expected):
    assert ids(entry) == expected


def test_persistent_connections_under_asgi_warn(settings):
    settings.ASGI_APPLICATION = "config.asgi.application"
    settings.WSGI_APPLICATION = None
    assert ids({**BASE, "CONN_MAX_AGE": 600}) == ["dbtuning.W015"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"conn_max_age": 600}, ["dbtuning.E016"]),
        ({"sslmode": "require", "application_name": "web", "options": "-c x=1"}, []),
        ({"isolation_level": 99}, ["dbtuning.E019"]),
        ({"isolation_level": 2}, []),
    ],
)
def test_options_pitfalls(options, expected):
    assert ids({**BASE, "CONN_MAX_AGE": 600, "OPTIONS": options}) == expected


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({**BASE, "PORT": "6432", "CONN_MAX_AGE": 600}, ["dbtuning.E018"]),
        (
            {
                **BASE,
                "PORT": "6432",
                "CONN_MAX_AGE": 600,
                "DISABLE_SERVER_SIDE_CURSORS": True,
                "OPTIONS": {"prepare_threshold": 5},
            },
            ["dbtuning.W017"],
        ),
        (
            {
                **BASE,
                "PORT": "6432",
                "CONN_MAX_AGE": 600,
                "DISABLE_SERVER_SIDE_CURSORS": True,
                "OPTIONS": {"options": "-c statement_timeout=5s"},
            },
            ["dbtuning.W018"],
        ),
        (
            {
                **BASE,
                "CONN_MAX_AGE": 600,
                "DISABLE_SERVER_SIDE_CURSORS": True,
                "DBTUNING": {"pgbouncer": True},
            },
            [],
        ),
    ],
)
def test_pgbouncer_pitfalls(entry, expected):
    assert ids(entry) == expected


def test_a_pool_too_big_for_the_server_warns_with_the_arithmetic():
    entry = database(
        URL, instances=4, processes=4, server_max_connections=100, max_size=10
    )
    (message,) = messages_for(entry)
    assert message.id == "dbtuning.W016"
    assert (
        "10 x 16 processes = 160 connections, over the server budget of 77"
        in message.msg
    )
    assert "Lower max_size to 4" in message.hint


def test_third_party_pool_backend_with_a_native_pool():
    entry = {**pooled(GOOD_POOL), "ENGINE": "dj_db_conn_pool.backends.postgresql"}
    assert "dbtuning.W019" in ids(entry)


@pytest.mark.parametrize(
    "engine",
    [
        "django.db.backends.postgresql",
        "django_dbtuning.pool.postgresql",  # what database() sets for a pool
        "tests.pool.own_engine",  # a subclass of Django's backend, as PostGIS is
    ],
)
def test_every_postgresql_engine_gets_the_pool_checks(engine):
    assert ids({**pooled("true"), "ENGINE": engine}) == ["dbtuning.E010"]


def test_an_engine_that_does_not_import_is_left_to_django():
    assert ids({**pooled("true"), "ENGINE": "no.such.backend"}) == []


def test_other_engines_are_left_alone():
    assert (
        ids(
            {
                "ENGINE": "django.db.backends.mysql",
                "NAME": "x",
                "OPTIONS": {"pool": "true"},
            }
        )
        == []
    )


def test_the_pool_checks_are_registered_and_fail_manage_py_check():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES")
        with (
            override_settings(
                DATABASES={"default": pooled(GOOD_POOL, CONN_MAX_AGE=60)}
            ),
            pytest.raises(SystemCheckError, match=r"dbtuning\.E011"),
        ):
            # No database: Django 6.1's GeneratedField check would connect otherwise.
            call_command("check", databases=[])


# -- live checks: manage.py check --database ALIAS --------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_server():
    with EmbeddedPostgres(settings={"max_connections": "20"}) as server:
        yield server


def without_settings_module():
    # pytest-django exports DJANGO_SETTINGS_MODULE; the example project must use its own.
    return {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}


def manage_check(url, **env):
    return subprocess.run(
        [sys.executable, "example_project/manage.py", "check", "--database", "default"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**without_settings_module(), "DATABASE_URL": url, **env},
    )


def test_live_check_compares_the_pool_plan_with_the_servers_real_limit(small_server):
    # The example declares server_max_connections=100; this server has 20.
    result = manage_check(small_server.url, WEB_CONCURRENCY="8")
    assert "dbtuning.W020" in result.stderr
    assert (
        "4 (pool max_size) x 8 processes = 32 connections, but the server allows 17 "
        "(20 max_connections - 3 reserved)" in result.stderr
    )
    assert "server_max_connections=20" in result.stderr


def test_live_check_is_quiet_when_the_plan_fits(small_server):
    result = manage_check(small_server.url, WEB_CONCURRENCY="1")
    assert result.returncode == 0, result.stderr
    assert "dbtuning.W02" not in result.stderr


def test_live_check_reports_an_unreachable_server_without_the_password():
    result = manage_check("postgres://app:hunter2@127.0.0.1:1/shop")
    assert "dbtuning.W021" in result.stderr
    assert "cannot read the server's connection limits" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


# -- one id, one meaning; values libpq, psycopg_pool and the server refuse ---------------------


def options_entry(**options):
    return {**BASE, "CONN_MAX_AGE": 600, "OPTIONS": options}


@pytest.mark.parametrize(
    ("pool", "expected"),
    [
        ({"min_size": 2, "max_size": None, "timeout": 5.0}, []),
        ({"max_size": None, "timeout": 5.0}, []),
        ({"min_size": 0, "max_size": None, "timeout": 5.0}, ["dbtuning.E014"]),
        ({"min_size": "2", "timeout": 5.0}, ["dbtuning.E014"]),
        ({**GOOD_POOL, "max_waiting": -1}, ["dbtuning.E020"]),
        ({**GOOD_POOL, "num_workers": 0}, ["dbtuning.E020"]),
        ({**GOOD_POOL, "num_workers": 2}, []),
        ({**GOOD_POOL, "timeout": float("inf")}, ["dbtuning.E020"]),
        ({**GOOD_POOL, "reconnect_timeout": 0}, ["dbtuning.E020"]),
        ({**GOOD_POOL, "max_waiting": True}, ["dbtuning.E020"]),
    ],
)
def test_pool_sizes_are_e014_and_other_pool_values_e020(pool, expected):
    assert ids(pooled(pool)) == expected


def test_e020_names_the_key_and_the_value():
    (message,) = messages_for(pooled({**GOOD_POOL, "max_waiting": -1}))
    assert message.msg == (
        "DATABASES['default']['OPTIONS']['pool']['max_waiting'] is -1; it must be an "
        "int >= 0."
    )
    assert "0 lets any number of requests wait" in message.hint


def test_options_that_are_not_a_dict_are_e021():
    assert ids({**BASE, "CONN_MAX_AGE": 600, "OPTIONS": "sslmode=require"}) == [
        "dbtuning.E021"
    ]


@pytest.mark.parametrize("keyword", sorted(conninfo.libpq_keywords()))
def test_every_keyword_of_the_installed_libpq_passes_e016(keyword):
    assert "dbtuning.E016" not in ids(options_entry(**{keyword: "1"}))


@pytest.mark.parametrize(
    ("entry", "where", "fragment"),
    [
        (
            options_entry(connect_timeout="abc"),
            "['OPTIONS']['connect_timeout']: libpq refuses it",
            "seconds",
        ),
        (
            options_entry(sslmode="bogus"),
            "['OPTIONS']['sslmode']: libpq refuses it (invalid sslmode value)",
            "sslmode",
        ),
        (
            options_entry(keepalives_idle="soon"),
            "['OPTIONS']['keepalives_idle']",
            "integer",
        ),
        (
            options_entry(hostaddr="db.example.com"),
            "['OPTIONS']['hostaddr']",
            "numeric",
        ),
        (
            options_entry(target_session_attrs="any-old"),
            "['OPTIONS']['target_session_attrs']",
            "target_session_attrs",
        ),
        ({**BASE, "CONN_MAX_AGE": 600, "PORT": "-1"}, "['PORT']: libpq", "port"),
        ({**BASE, "CONN_MAX_AGE": 600, "PORT": 70000}, "['PORT']: libpq", "port"),
    ],
)
def test_values_libpq_or_psycopg_refuse_are_e022_naming_alias_and_key_not_value(
    entry, where, fragment
):
    (message,) = messages_for(entry)
    assert message.id == "dbtuning.E022"
    assert message.msg.startswith(f"DATABASES['default']{where}")
    assert fragment in message.msg + message.hint
    refused = [v for v in (*entry.get("OPTIONS", {}).values(), entry["PORT"]) if v]
    for value in refused:  # a value that failed validation is never echoed
        assert repr(value) not in message.msg and f'"{value}"' not in message.msg


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("-c x", ["dbtuning.E023"]),
        ("statement_timeout=5s", ["dbtuning.E023"]),
        (["-c", "x=1"], ["dbtuning.E023"]),
        ("-c statement_timeout=30d", ["dbtuning.E024"]),
        ("-c lock_timeout=2592000000", ["dbtuning.E024"]),
        ("-c statement_timeout=24d -c lock_timeout=2147483647ms", []),
        ("-cstatement_timeout=5s --lock-timeout=1s", []),
        ("-c my.custom=anything\\ at\\ all", []),
    ],
)
def test_startup_options_the_server_refuses_are_e023_or_e024(options, expected):
    assert ids(options_entry(options=options)) == expected


def test_e024_says_what_the_limit_is():
    (message,) = messages_for(options_entry(options="-c statement_timeout=30d"))
    assert "statement_timeout=30d" in message.msg
    assert "2147483647" in message.msg + message.hint


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("600", ["dbtuning.E025"]),
        ([600], ["dbtuning.E025"]),
        (True, ["dbtuning.E025"]),
        (float("nan"), ["dbtuning.E025"]),
        (600, []),
        (1.5, []),
        (None, ["dbtuning.W012"]),
    ],
)
def test_conn_max_age_that_is_not_a_number_is_e025(value, expected):
    assert ids({**BASE, "CONN_MAX_AGE": value}) == expected


@pytest.mark.parametrize(
    "options",
    [
        "-cstatement_timeout=5s",
        "--statement-timeout=5s",
        "-c\tstatement_timeout=5s",
        "-e",
    ],
)
def test_w018_sees_every_spelling_of_startup_options(options):
    entry = {
        **BASE,
        "PORT": "6432",
        "CONN_MAX_AGE": 600,
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "OPTIONS": {"options": options},
    }
    assert ids(entry) == ["dbtuning.W018"]


def test_w018_hint_quotes_the_role():
    entry = {
        **BASE,
        "USER": 'App "x"; DROP TABLE t; --',
        "CONN_MAX_AGE": 600,
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "DBTUNING": {"pgbouncer": True},
        "OPTIONS": {"options": "-c statement_timeout=5s"},
    }
    (message,) = messages_for(entry)
    assert message.hint == (
        """Set them on the server: ALTER ROLE "App ""x""; DROP TABLE t; --" SET """
        "statement_timeout = '5s'."
    )


def test_a_password_in_the_wrong_setting_is_not_echoed():
    entry = {**BASE, "PASSWORD": "hunter2x", "PORT": "hunter2x", "CONN_MAX_AGE": 600}
    (message,) = messages_for(entry)
    assert message.id == "dbtuning.E022"
    assert message.msg.startswith("DATABASES['default']['PORT']: libpq refuses it")
    assert "hunter2x" not in message.msg + message.hint


def test_manage_py_check_database_reports_bad_settings_instead_of_a_traceback(tmp_path):
    db = settings.DATABASES["default"]
    server = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": db["USER"],
        "PASSWORD": db["PASSWORD"],
        "HOST": db["HOST"],
        "PORT": db["PORT"],
        "CONN_MAX_AGE": 600,
    }
    databases = {
        "default": {**server, "OPTIONS": {"connect_timeout": "abc"}},
        "typo": {**server, "OPTIONS": {"options": "-c statment_timeout=5s"}},
        "value": {**server, "OPTIONS": {"options": "-c work_mem=lots"}},
        "late": {**server, "OPTIONS": {"options": "-c shared_buffers=1MB"}},
        "fine": {**server, "OPTIONS": {"options": "-c statement_timeout=5s"}},
        # A backend-context setting; the server repeats the value in its text
        "backend": {
            **server,
            "OPTIONS": {"options": "-c log_connections=ZQX111secret"},
        },
        "nodb": {**server, "NAME": "ZQX222secret", "OPTIONS": {"options": "-c x=1"}},
    }
    (tmp_path / "check_settings.py").write_text(
        f"SECRET_KEY = 'x'\nINSTALLED_APPS = ['django_dbtuning']\nDATABASES = {databases!r}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "django", "check"]
        + [arg for alias in databases for arg in ("--database", alias)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={
            **without_settings_module(),
            "DJANGO_SETTINGS_MODULE": "check_settings",
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
        },
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert result.returncode == 1
    assert (
        "DATABASES['default']['OPTIONS']['connect_timeout']: libpq refuses it" in output
    )
    assert "sets statment_timeout, which the server refuses: no such setting" in output
    assert "Did you mean 'statement_timeout'?" in output
    assert "sets work_mem, which the server refuses: an invalid value." in output
    assert "lots" not in output  # a value the server refused is not echoed
    # A boolean up to PostgreSQL 17, a list from 18: the reason depends on the version.
    assert re.search(
        r"sets log_connections, which the server refuses: "
        r"(an invalid value|it needs a Boolean value)\.",
        output,
    )
    assert "HINT: Use a number from 64 to 2147483647 (unit kB)." in output
    # W021 names the condition, not the server's text (which quotes the database name)
    assert (
        "DATABASES['nodb']: cannot read the server's connection limits (the database "
        "does not exist)." in output
    )
    assert "ZQX" not in output
    assert (
        "sets shared_buffers, which the server refuses: it cannot be set when connecting"
        in output
    )
    assert "'fine'" not in output
    assert output.count("dbtuning.E024") == 4
