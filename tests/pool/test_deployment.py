"""The Deployment record: written by database(), read back the same way by the checks,
dbreport and the router; and None means "not given" for every database() argument."""

from __future__ import annotations

import inspect
import re
import warnings

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from django_dbtuning.pool import Deployment, database
from django_dbtuning.pool.checks import check_databases
from django_dbtuning.pool.live_checks import check_live_budget
from django_dbtuning.report.runner import run_report
from django_dbtuning.routers import PrimaryReplicaRouter

URL = "postgres://app:s3cret@db.example.com:5432/shop"

deployments = st.builds(
    Deployment,
    instances=st.integers(1, 50),
    processes=st.integers(1, 50),
    threads=st.none() | st.integers(1, 64),
    aliases=st.integers(1, 4),
    server_max_connections=st.none() | st.integers(1, 10_000),
    reserved_connections=st.integers(0, 10),
    other_clients=st.integers(0, 50),
    headroom=st.floats(0.01, 1.0),
    role=st.sampled_from(["primary", "replica", "bulkhead"]),
    primary=st.none() | st.sampled_from(["default", "main"]),
    pgbouncer=st.booleans(),
    rationale=st.text(max_size=20),
)


@given(deployments)
def test_a_record_reads_back_as_the_same_deployment(deployment):
    entry = {"DBTUNING": deployment.as_dict()}
    assert Deployment.from_entry(entry) == deployment


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"instances": 3, "processes": 4, "threads": 8, "other_clients": 5},
        {"throughput": 200, "hold_time": 0.05, "processes": 4},
        {"role": "replica", "primary": "main", "pgbouncer": True},
    ],
)
def test_database_writes_the_record_its_readers_read(kwargs):
    entry = database(URL, **kwargs)
    deployment = Deployment.from_entry(entry)
    assert deployment is not None
    assert deployment.as_dict() == entry["DBTUNING"]
    for key, value in kwargs.items():
        assert getattr(deployment, key) == value


def test_existing_records_keep_their_keys():
    # Entries built by earlier versions (and hand-written ones) read the same way.
    record = database(URL, processes=2)["DBTUNING"]
    assert set(record) == {
        "role",
        "primary",
        "pgbouncer",
        "rationale",
        "instances",
        "processes",
        "threads",
        "aliases",
        "server_max_connections",
        "reserved_connections",
        "other_clients",
        "headroom",
    }


def test_missing_keys_take_database_defaults_and_no_record_is_none():
    assert Deployment.from_entry({}) is None
    assert Deployment.from_entry({"DBTUNING": "replica"}) is None
    partial = Deployment.from_entry({"DBTUNING": {"processes": 2, "future_key": 1}})
    assert partial == Deployment(processes=2)
    assert partial.server_max_connections is None  # not declared: W016 stays quiet
    assert partial.budget is None


@pytest.mark.parametrize(
    ("record", "error", "message"),
    [
        ({"instances": "4"}, TypeError, "instances must be an int"),
        ({"processes": 0}, ValueError, "processes must be >= 1"),
        ({"headroom": 2}, ValueError, "headroom is a share"),
        ({"role": "leader"}, ValueError, "role must be one of"),
        ({"throughput": 10}, ValueError, "give both throughput and hold_time"),
    ],
)
def test_a_malformed_record_is_refused_naming_the_key(record, error, message):
    with pytest.raises(error, match=message):
        Deployment.from_entry({"DBTUNING": record})


def test_the_router_names_the_alias_of_a_malformed_record():
    entry = {**database(URL), "DBTUNING": {"role": "leader"}}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES")
        with (
            override_settings(DATABASES={"default": entry}),
            pytest.raises(ImproperlyConfigured, match=r"DATABASES\['default'\]"),
        ):
            PrimaryReplicaRouter().allow_migrate("default", "app")


def test_connections_per_process_follow_the_pool_or_the_threads():
    deployment = Deployment(instances=2, processes=3, threads=4)
    pooled = {"OPTIONS": {"pool": {"min_size": 1, "max_size": 6}}}
    assert deployment.connections_per_process(pooled) == (6, "pool max_size")
    assert deployment.connections_per_process({"OPTIONS": {"pool": True}})[0] == 4
    assert deployment.connections_per_process({"OPTIONS": {}}) == (4, "threads")
    assert Deployment().connections_per_process({})[0] == 1
    assert deployment.peak_connections(pooled) == 6 * 2 * 3


# -- one peak figure for the check, the live check and dbreport ----------------------------
def test_the_peak_is_the_same_number_in_the_checks_and_the_report():
    default = connections.settings["default"]
    entry = {
        **database(
            URL, instances=4, processes=4, server_max_connections=100, max_size=10
        ),
        **{key: default[key] for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT")},
    }
    entry["OPTIONS"] = {**default["OPTIONS"], "pool": entry["OPTIONS"]["pool"]}
    peak = Deployment.from_entry(entry).peak_connections(entry)
    assert peak == 160

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES")
        with override_settings(DATABASES={"default": entry}):
            (static,) = check_databases()
    assert static.id == "dbtuning.W016"
    assert f"= {peak} connections" in static.msg

    (live,) = check_live_budget(
        "crowded", entry, {"max_connections": 100, "superuser_reserved_connections": 3}
    )
    assert live.id == "dbtuning.W020"
    assert f"= {peak} connections" in live.msg

    connections.settings["crowded"] = entry
    try:
        report = run_report(["crowded"], sections=["pool"])
    finally:
        del connections.settings["crowded"]
    section = report.databases["crowded"].sections["pool"]
    assert section["deployment_max_connections"] == peak
    figures = [int(n) for n in re.findall(r"= (\d+) connections", static.msg)]
    assert figures == [section["deployment_max_connections"]]


# -- None means "not given" -------------------------------------------------------------------

ARGUMENTS = [
    name
    for name, parameter in inspect.signature(database).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
]
SOME_VALUES = {
    "pool": st.booleans(),
    "processes": st.integers(1, 8),
    "threads": st.integers(1, 16),
    "timeout": st.floats(0.5, 20),
    "statement_timeout": st.sampled_from(["5s", "250ms", 1500]),
    "conn_max_age": st.integers(0, 900),
    "health_checks": st.booleans(),
    "application_name": st.sampled_from(["web", "worker"]),
    "role": st.sampled_from(["primary", "replica"]),
}
QUERIES = [
    "",
    "?pool_timeout=3",
    "?conn_max_age=60&pool=false",
    "?statement_timeout=2s",
]


def test_every_argument_but_url_defaults_to_none():
    assert all(
        inspect.signature(database).parameters[name].default is None
        for name in ARGUMENTS
    )


@given(
    query=st.sampled_from(QUERIES),
    given_values=st.fixed_dictionaries({}, optional=SOME_VALUES),
    nones=st.sets(st.sampled_from(ARGUMENTS)),
)
def test_none_for_an_argument_equals_not_passing_it(query, given_values, nones):
    with_nones = {**dict.fromkeys(nones), **given_values}
    assert database(URL + query, **with_nones) == database(URL + query, **given_values)
