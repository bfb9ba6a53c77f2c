"""The pooled ENGINE's pool hands out the connection returned last first (pool/postgresql/lifo.py).

Live scenarios in a subprocess each (tests/pool/lifo_scenarios.py), like test_live.py's.
"""

from __future__ import annotations

import pytest
from psycopg_pool import ConnectionPool

from django_dbtuning.pool.postgresql.lifo import LastInFirstOutPool, last_in_first_out
from tests.pool.test_live import run, scenario_url  # noqa: F401 (the fixture)


def lifo(name, url, config):
    return run(name, url, config, script="lifo_scenarios.py")


def test_a_thread_gets_back_the_connection_it_returned(scenario_url):  # noqa: F811
    outcome = lifo(
        "own_connection",
        scenario_url,
        {"database": {"min_size": 3, "max_size": 3, "timeout": 10}},
    )
    assert outcome["pool_class"] == (
        "django_dbtuning.pool.postgresql.lifo.LastInFirstOutPool"
    )
    # Three idle connections, yet every request one after another gets the same one.
    assert len(set(outcome["pids"])) == 1, outcome
    assert outcome["idle_after"] == 3


def test_djangos_engine_keeps_psycopg_pools_order(scenario_url):  # noqa: F811
    outcome = lifo(
        "own_connection",
        scenario_url,
        {
            "database": {"min_size": 3, "max_size": 3, "timeout": 10},
            "entry": {"ENGINE": "django.db.backends.postgresql"},
        },
    )
    assert outcome["pool_class"] == "psycopg_pool.pool.ConnectionPool"
    # First in, first out: the requests go round the three connections.
    assert len(set(outcome["pids"])) == 3, outcome


def test_a_waiting_client_gets_a_returned_connection_before_its_holder(
    scenario_url,  # noqa: F811
):
    outcome = lifo(
        "waiter_first",
        scenario_url,
        {"database": {"min_size": 1, "max_size": 1, "timeout": 20}},
    )
    assert outcome["order"] == ["holder", "waiter", "holder again"]
    assert outcome["size"] == 1


@pytest.mark.parametrize("max_size", [1, 3])
def test_many_threads_never_share_a_connection(scenario_url, max_size):  # noqa: F811
    outcome = lifo(
        "no_sharing",
        scenario_url,
        {
            "database": {"min_size": 1, "max_size": max_size, "timeout": 30},
            "threads": 16,
            "requests": 25,
        },
    )
    assert outcome["errors"] == []
    assert outcome["overlaps"] == []
    assert 1 <= outcome["backends"] <= max_size
    # Every connection came back to the pool.
    assert outcome["idle"] == outcome["size"]


def test_only_psycopg_pools_own_class_is_changed():
    pool = ConnectionPool("", open=False)
    last_in_first_out(pool)
    assert type(pool) is LastInFirstOutPool

    class Custom(ConnectionPool):
        pass

    custom = Custom("", open=False)
    last_in_first_out(custom)
    assert type(custom) is Custom


def test_the_newest_idle_connection_is_taken_and_the_oldest_left_to_max_idle():
    pool = LastInFirstOutPool("", open=False)
    pool._pool.extend(["oldest", "older", "newest"])
    pool._nconns_min = 3
    assert pool._get_ready_connection(None) == "newest"
    # psycopg_pool's own accounting of the fewest idle connections (for max_idle) ran.
    assert pool._nconns_min == 2
    # What psycopg_pool's max_idle shrink closes first (the front) idled longest.
    assert list(pool._pool) == ["oldest", "older"]


@pytest.mark.parametrize("autocommit", [True, False])
def test_a_pooled_checkout_sends_connection_created_and_guards_async(
    scenario_url,  # noqa: F811
    autocommit,
):
    outcome = lifo(
        "checkout",
        scenario_url,
        {
            "database": {"min_size": 1, "max_size": 2, "timeout": 10},
            "entry": {"AUTOCOMMIT": autocommit},
        },
    )
    assert outcome["created"] == ["default"] * 3  # one per checkout
    assert outcome["autocommit"] == [autocommit] * 3
    assert outcome["refused"] == ["SynchronousOnlyOperation"] * 2
    assert outcome["allowed"] == ["allowed"] * 2
    assert outcome["created_after"] == ["default"] * 4  # the allowed connect()
    assert outcome["connection"] == "None"  # returned to the pool
