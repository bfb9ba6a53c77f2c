"""Scenarios for the order in which the pool hands out its idle connections (lifo.py).

Run like tests/pool/scenarios.py (whose settings and request helpers they use):

    python tests/pool/lifo_scenarios.py SCENARIO '{"database": {...}}'
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenarios import query, request, setup


def _full_pool() -> Any:
    from django.db import connection

    pool = connection.pool
    pool.open()
    pool.wait(timeout=30)  # min_size connections idle in the pool
    return pool


def own_connection(config: dict[str, Any]) -> dict[str, Any]:
    """One thread, requests one after another, several idle connections in the pool."""
    pool = _full_pool()
    pids = [request(lambda: query("SELECT pg_backend_pid()")) for _ in range(8)]
    return {
        "pool_class": f"{type(pool).__module__}.{type(pool).__name__}",
        "idle_before": config["database"]["min_size"],
        "pids": pids,
        "idle_after": pool.get_stats().get("pool_available"),
    }


def waiter_first(config: dict[str, Any]) -> dict[str, Any]:
    """A pool of one: a client waiting when the holder returns gets the connection first.

    The holder asks again right after returning it, when last in, first out would hand it
    its own connection back: it must wait for the waiting client's request to end.
    """
    from django.db import connection

    pool = _full_pool()
    order: list[str] = []
    lock = threading.Lock()
    holding = threading.Event()

    def note(name: str) -> str:
        with lock:
            order.append(name)
        return name

    def holder() -> None:
        def hold() -> None:
            query("SELECT 1")
            note("holder")
            holding.set()
            deadline = time.monotonic() + 30
            while not pool.get_stats().get("requests_waiting"):
                if time.monotonic() > deadline:
                    raise AssertionError("the waiter never waited")
                time.sleep(0.01)

        request(hold)
        request(lambda: (query("SELECT 1"), note("holder again")))

    def waiter() -> None:
        holding.wait(30)
        request(lambda: (query("SELECT 1"), note("waiter")))

    threads = [threading.Thread(target=holder), threading.Thread(target=waiter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return {"order": order, "size": connection.pool.get_stats().get("pool_size")}


def no_sharing(config: dict[str, Any]) -> dict[str, Any]:
    """Many threads, a small pool: no connection is ever in two requests at once."""
    from django.db import connection

    _full_pool()
    in_use: set[int] = set()
    overlaps: list[int] = []
    errors: list[str] = []
    pids: set[int] = set()
    lock = threading.Lock()

    def use() -> None:
        pid = query("SELECT pg_backend_pid()")
        raw = id(connection.connection)
        with lock:
            if raw in in_use:
                overlaps.append(pid)
            in_use.add(raw)
            pids.add(pid)
        query("SELECT 1")
        with lock:
            in_use.discard(raw)

    def worker() -> None:
        for _ in range(config["requests"]):
            try:
                request(use)
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker) for _ in range(config["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    stats = connection.pool.get_stats()
    return {
        "overlaps": overlaps,
        "errors": errors,
        "backends": len(pids),
        "idle": stats.get("pool_available"),
        "size": stats.get("pool_size"),
    }


def checkout(config: dict[str, Any]) -> dict[str, Any]:
    """Django's ``connect()``/``close()`` on a pooled checkout: signal, autocommit, async."""
    import asyncio

    from django.db import connection
    from django.db.backends.signals import connection_created

    created: list[str] = []
    connection_created.connect(
        lambda sender, connection, **kwargs: created.append(connection.alias),
        weak=False,
    )
    states = [
        request(lambda: (query("SELECT 1"), connection.get_autocommit())[1])
        for _ in range(3)
    ]
    in_requests = list(created)

    async def from_a_coroutine(method: str) -> str:
        try:
            getattr(connection, method)()
        except Exception as exc:
            return type(exc).__name__
        return "allowed"

    refused = [asyncio.run(from_a_coroutine(m)) for m in ("connect", "close")]
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    allowed = [asyncio.run(from_a_coroutine(m)) for m in ("connect", "close")]
    return {
        "created": in_requests,
        "created_after": created,
        "autocommit": states,
        "refused": refused,
        "allowed": allowed,
        "connection": repr(connection.connection),
    }


SCENARIOS = {
    "checkout": checkout,
    "own_connection": own_connection,
    "waiter_first": waiter_first,
    "no_sharing": no_sharing,
}

if __name__ == "__main__":
    name, raw = sys.argv[1], sys.argv[2]
    scenario_config = json.loads(raw)
    setup(scenario_config)
    print(json.dumps(SCENARIOS[name](scenario_config), default=str))
