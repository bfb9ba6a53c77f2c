"""database() and pool_size(): the settings a user pastes into settings.py."""

from __future__ import annotations

import warnings
from datetime import timedelta

import django
import pytest
from django.test import override_settings

from django_dbtuning import InvalidDatabaseURL
from django_dbtuning.pool import (
    database,
    health,
    pool_size,
    redact_url,
)
from django_dbtuning.pool.checks import check_databases

URL = "postgres://app:s3cret@db.example.com:5432/shop"


# -- URL parsing --------------------------------------------------------------------------


def test_a_url_becomes_a_complete_entry():
    entry = database(URL)
    # Django's backend minus the per-checkout work the pool makes moot.
    assert entry["ENGINE"] == "django_dbtuning.pool.postgresql"
    assert (entry["NAME"], entry["USER"], entry["PASSWORD"]) == (
        "shop",
        "app",
        "s3cret",
    )
    assert (entry["HOST"], entry["PORT"]) == ("db.example.com", "5432")
    assert entry["CONN_HEALTH_CHECKS"] is True
    assert entry["OPTIONS"]["connect_timeout"] == 5


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("postgresql://u@%2Fvar%2Frun%2FPostgreSQL/db", "/var/run/PostgreSQL", ""),
        ("postgres://u@/db?host=/run/postgresql", "/run/postgresql", ""),
        ("postgres://u@/db?host=/run/postgresql&port=6000", "/run/postgresql", "6000"),
        ("postgres://u@[::1]:5433/db", "::1", "5433"),
        ("pgsql://u@localhost/db", "localhost", ""),
    ],
)
def test_hosts_sockets_and_ports(url, host, port):
    entry = database(url)
    assert (entry["HOST"], entry["PORT"]) == (host, port)


def test_percent_encoded_credentials_and_names_are_decoded():
    entry = database("postgres://m%40x:p%2Fw%3Ad@h/my%20db")
    assert (entry["USER"], entry["PASSWORD"], entry["NAME"]) == (
        "m@x",
        "p/w:d",
        "my db",
    )


def test_libpq_keywords_in_the_query_go_to_options():
    entry = database(URL + "?sslmode=require&target_session_attrs=read-write")
    assert entry["OPTIONS"]["sslmode"] == "require"
    assert entry["OPTIONS"]["target_session_attrs"] == "read-write"


def test_url_from_the_environment(monkeypatch):
    monkeypatch.setenv("SHOP_DB", URL)
    assert database(env="SHOP_DB")["NAME"] == "shop"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://u:s3cret@h/db",
            "must start with postgres:// or postgresql://, not mysql://",
        ),
        ("db.example.com/shop", "must start with postgres://"),
        (
            "postgres://u:s3cret@h:99999/db",
            "cannot parse database URL postgres://u:***@h:99999/db: a port must be a "
            "number from 1 to 65535",
        ),
        ("postgres://u:s3cret@h/", "names no database"),
        ("postgres://u:s3cret@h/db?sslmod=require", "unknown parameter 'sslmod'"),
        (
            "postgres://u:s3cret@h/db?conn_max_age=forever",
            "?conn_max_age=***: parameter conn_max_age must be an integer >= 0 or none",
        ),
        (
            "postgres://u:s3cret@h/db?pool=maybe",
            "?pool=***: parameter pool must be true or false",
        ),
        ("postgres://u:s3cret@h/db?password=x", "put password in the URL itself"),
    ],
)
def test_bad_urls_name_the_problem_and_never_the_password(url, message):
    with pytest.raises(InvalidDatabaseURL) as excinfo:
        database(url)
    assert message in str(excinfo.value)
    assert "s3cret" not in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_a_missing_environment_variable_says_what_to_export(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(
        InvalidDatabaseURL, match="DATABASE_URL is not set: export DATABASE_URL="
    ):
        database()


def test_url_of_the_wrong_type():
    with pytest.raises(TypeError, match="url must be a str, not bytes"):
        database(URL.encode())  # type: ignore[arg-type]


def test_redact_url():
    assert redact_url(URL) == "postgres://app:***@db.example.com:5432/shop"
    assert redact_url("postgres://app@h/db") == "postgres://app@h/db"


# -- pool or persistent connections ------------------------------------------------------
def test_pool_is_on_by_default_with_explicit_values_and_conn_max_age_zero():
    entry = database(URL, processes=4, threads=4)
    pool = entry["OPTIONS"]["pool"]
    assert set(pool) - {"check", "connection_class"} == {
        "min_size",
        "max_size",
        "timeout",
        "max_idle",
        "max_lifetime",
        "max_waiting",
    }
    assert pool["max_size"] == 4
    assert pool["min_size"] == 2
    assert pool["timeout"] == 10.0
    assert entry["CONN_MAX_AGE"] == 0


@pytest.mark.skipif(
    django.VERSION < (6, 1), reason="Django 6.1+ takes OPTIONS['pool']['check']"
)
def test_on_django_61_the_pool_check_skips_recently_verified_connections():
    entry = database(URL)
    pool = entry["OPTIONS"]["pool"]
    assert pool["check"] is health.check_unless_recent
    assert pool["connection_class"] is health.PooledConnection
    assert entry["CONN_HEALTH_CHECKS"] is True


@pytest.mark.skipif(
    django.VERSION >= (6, 1),
    reason="Django 5.2/6.0 pass their own pool check",
)
def test_before_django_61_the_connection_class_answers_djangos_probe():
    entry = database(URL)
    pool = entry["OPTIONS"]["pool"]
    assert "check" not in pool  # Django 5.2/6.0: "got multiple values for 'check'"
    assert pool["connection_class"] is health.ProbedConnection
    assert entry["CONN_HEALTH_CHECKS"] is True  # Django then passes check_connection


def test_without_health_checks_the_pool_gets_no_check_hooks():
    pool = database(URL, health_checks=False)["OPTIONS"]["pool"]
    assert "check" not in pool
    assert "connection_class" not in pool


def test_pool_false_gives_persistent_connections():
    entry = database(URL, pool=False, conn_max_age=120)
    assert entry["ENGINE"] == "django.db.backends.postgresql"
    assert "pool" not in entry["OPTIONS"]
    assert entry["CONN_MAX_AGE"] == 120
    assert entry["CONN_HEALTH_CHECKS"] is True


def test_url_parameters_set_the_pool_and_explicit_arguments_win():
    entry = database(
        URL + "?pool_max_size=8&pool_min_size=1&pool_timeout=3", max_size=6
    )
    pool = entry["OPTIONS"]["pool"]
    assert (pool["min_size"], pool["max_size"], pool["timeout"]) == (1, 6, 3.0)


def test_url_can_turn_the_pool_off_and_set_conn_max_age():
    entry = database(URL + "?pool=false&conn_max_age=60&health_checks=no")
    assert entry["CONN_MAX_AGE"] == 60
    assert entry["CONN_HEALTH_CHECKS"] is False


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"min_size": 5, "max_size": 2},
            ValueError,
            "min_size (5) must not exceed max_size (2)",
        ),
        ({"max_size": 0}, ValueError, "max_size must be >= 1, got 0"),
        ({"max_size": "10"}, TypeError, "max_size must be an int, not str"),
        ({"timeout": 0}, ValueError, "timeout must be > 0"),
        ({"timeout": "10"}, TypeError, "timeout must be a number, not str"),
        ({"max_waiting": -1}, ValueError, "max_waiting must be >= 0"),
        (
            {"role": "leader"},
            ValueError,
            "role must be one of primary, replica, bulkhead",
        ),
    ],
)
def test_bad_pool_arguments_are_refused_with_the_argument_named(kwargs, error, message):
    with pytest.raises(error) as excinfo:
        database(URL, **kwargs)
    assert message in str(excinfo.value)


# -- timeouts, application name, PgBouncer ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5s", "5000ms"),
        ("250ms", "250ms"),
        (1500, "1500ms"),
        (2.5, "2500ms"),
        (timedelta(minutes=1), "60000ms"),
        ("2min", "120000ms"),
        ("1 h", "3600000ms"),
    ],
)
def test_timeouts_become_libpq_options_in_milliseconds(value, expected):
    entry = database(URL, statement_timeout=value)
    assert entry["OPTIONS"]["options"] == f"-c statement_timeout={expected}"


def test_all_three_timeouts_and_existing_options_are_merged():
    entry = database(
        URL + "?options=-c%20search_path%3Dshop",
        statement_timeout="5s",
        lock_timeout="1s",
        idle_in_transaction_session_timeout="30s",
    )
    assert entry["OPTIONS"]["options"] == (
        "-c search_path=shop -c statement_timeout=5000ms -c lock_timeout=1000ms "
        "-c idle_in_transaction_session_timeout=30000ms"
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("5 seconds", ValueError),
        ("-5s", ValueError),
        (True, TypeError),
        ([5], TypeError),
        (-1, ValueError),
    ],
)
def test_bad_timeouts_are_refused(value, error):
    with pytest.raises(error, match="statement_timeout"):
        database(URL, statement_timeout=value)


def test_timeouts_from_the_url():
    entry = database(URL + "?statement_timeout=3s")
    assert entry["OPTIONS"]["options"] == "-c statement_timeout=3000ms"


def test_application_name_and_connect_timeout():
    entry = database(URL, application_name="web", connect_timeout=2)
    assert entry["OPTIONS"]["application_name"] == "web"
    assert entry["OPTIONS"]["connect_timeout"] == 2


def test_pgbouncer_mode_disables_what_transaction_pooling_breaks():
    entry = database(URL.replace("5432", "6432"), pgbouncer=True)
    assert entry["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert entry["OPTIONS"]["prepare_threshold"] is None
    assert "options" not in entry["OPTIONS"]
    assert check_databases_for(entry) == []


def test_pgbouncer_mode_refuses_startup_timeouts_and_says_what_to_do_instead():
    with pytest.raises(ValueError) as excinfo:
        database(URL, pgbouncer=True, statement_timeout="5s")
    assert """ALTER ROLE "app" SET statement_timeout = '5000ms'""" in str(excinfo.value)
    with pytest.raises(ValueError, match="PgBouncer rejects the libpq 'options'"):
        database(URL + "?options=-c%20work_mem%3D64MB&pgbouncer=true")


# -- roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["replica", "bulkhead"])
def test_replica_and_bulkhead_mirror_the_primary_in_tests(role):
    entry = database(URL, role=role, primary="main")
    assert entry["TEST"] == {"MIRROR": "main"}
    assert entry["DBTUNING"]["role"] == role


# -- sizing ----------------------------------------------------------------------------------


def test_the_contract_example_is_sized_from_the_deployment():
    sizing = pool_size(server_max_connections=100, instances=3, processes=4)
    # (100 - 3) * 0.8 = 77 connections for 12 processes
    assert sizing.server_budget == 77
    assert sizing.per_process_budget == 6
    assert sizing.max_size == 6
    assert sizing.min_size == 3
    assert sizing.total_max == 72
    assert "77 // (3 instances x 4 processes x 1 aliases = 12) = 6" in sizing.rationale


def test_threads_cap_the_pool_and_more_threads_than_budget_is_explained():
    assert pool_size(processes=2, threads=4).max_size == 4
    sizing = pool_size(server_max_connections=20, processes=4, threads=8)
    assert sizing.max_size == 3
    assert "8 threads share 3 connections" in sizing.warnings[0]


def test_unknown_concurrency_is_capped_and_says_how_to_be_precise():
    sizing = pool_size(server_max_connections=500)
    assert sizing.max_size == 10
    assert "pass threads= or throughput=" in sizing.rationale


def test_littles_law_sizes_for_throughput_with_a_burst_factor():
    sizing = pool_size(processes=4, throughput=400, hold_time=0.05)
    # 400 req/s x 0.05 s / 4 processes = 5 busy per process; x 2 burst = 10
    assert sizing.demand == 10
    assert sizing.max_size == 10
    assert sizing.min_size == 5
    assert (
        "Little's law: 400 req/s x 0.05 s / 4 processes = 5.00 busy" in sizing.rationale
    )


def test_demand_over_budget_warns():
    sizing = pool_size(
        server_max_connections=20, processes=4, throughput=1000, hold_time=0.1
    )
    assert sizing.max_size == sizing.per_process_budget == 3
    assert "exceeds the budget" in sizing.warnings[0]


def test_reserved_and_other_clients_come_off_the_top():
    sizing = pool_size(
        server_max_connections=100,
        reserved_connections=10,
        other_clients=20,
        headroom=1,
    )
    assert sizing.server_budget == 70


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"server_max_connections": 10, "instances": 20},
            ValueError,
            "20 processes x aliases cannot share 5 connections",
        ),
        ({"headroom": 1.5}, ValueError, "headroom is a share"),
        ({"headroom": 0}, ValueError, "headroom must be > 0"),
        ({"processes": 0}, ValueError, "processes must be >= 1"),
        ({"processes": 2.5}, TypeError, "processes must be an int"),
        ({"threads": True}, TypeError, "threads must be an int"),
        ({"throughput": 100}, ValueError, "give both throughput and hold_time"),
        ({"burst": 0.5}, ValueError, "burst must be >= 1"),
    ],
)
def test_pool_size_refuses_impossible_input(kwargs, error, message):
    with pytest.raises(error) as excinfo:
        pool_size(**kwargs)
    assert message in str(excinfo.value)


# -- a database()-built entry passes every check ---------------------------------------------


def check_databases_for(entry):
    # The check only reads settings.DATABASES; no connection is made from the override.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES")
        with override_settings(DATABASES={"default": entry}):
            return [m.id for m in check_databases()]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"processes": 4, "threads": 8, "statement_timeout": "5s"},
        {"pool": False},
        {"health_checks": False},
        {"role": "replica"},
        {"pgbouncer": True},
        {"instances": 3, "processes": 4, "server_max_connections": 100},
    ],
)
def test_database_built_entries_produce_no_check_messages(kwargs):
    assert check_databases_for(database(URL, **kwargs)) == []


def test_entries_are_independent_copies():
    first, second = database(URL), database(URL)
    first["OPTIONS"]["sslmode"] = "disable"
    assert "sslmode" not in second["OPTIONS"]
    assert django.VERSION  # the helper imported no settings
