"""System checks over DATABASES: each pitfall from research/pool.md §3 has an id."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import django
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_dbtuning.checks import check_databases
from django_dbtuning.embedded import EmbeddedPostgres
from django_dbtuning.pool import database

URL = "postgres://app:s3cret@db.example.com:5432/shop"
BASE = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": "shop",
    "USER": "app",
    "PASSWORD": "s3cret",
    "HOST": "db.example.com",
    "PORT": "5432",
}
needs_pool = pytest.mark.skipif(
    django.VERSION < (5, 1), reason="native pool needs Django 5.1+"
)


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


@needs_pool
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


@needs_pool
def test_pool_check_messages_name_the_alias_key_and_fix():
    (message,) = messages_for(pooled({**GOOD_POOL, "max_lifetme": 60}))
    assert message.msg.startswith(
        "DATABASES['default']['OPTIONS']['pool'] has 'max_lifetme'"
    )
    assert message.hint == "Did you mean 'max_lifetime'?"
    (message,) = messages_for(pooled(GOOD_POOL, CONN_MAX_AGE=60))
    assert "max_lifetime" in message.hint
    assert "s3cret" not in message.msg + message.hint


@needs_pool
def test_check_key_is_owned_by_django_before_6_1():
    expected = [] if django.VERSION >= (6, 1) else ["dbtuning.E012"]
    assert ids(pooled({**GOOD_POOL, "check": None})) == expected


@needs_pool
def test_worker_timeout_setting_moves_the_pool_timeout_limit():
    entry = pooled({**GOOD_POOL, "timeout": 20.0})
    assert ids(entry) == []
    assert ids(entry, WORKER_TIMEOUT=15) == ["dbtuning.W013"]


@pytest.mark.skipif(django.VERSION >= (5, 1), reason="Django 4.2 only")
def test_a_pool_on_django_42_is_an_error():
    assert "dbtuning.E015" in ids(pooled(GOOD_POOL))


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


@needs_pool
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


@needs_pool
def test_the_pool_checks_are_registered_and_fail_manage_py_check():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES")
        with (
            override_settings(
                DATABASES={"default": pooled(GOOD_POOL, CONN_MAX_AGE=60)}
            ),
            pytest.raises(SystemCheckError, match=r"dbtuning\.E011"),
        ):
            call_command("check")


# -- live checks: manage.py check --database ALIAS --------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


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


@needs_pool
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
