"""Pool scenarios run in a fresh process, each with its own settings and database.

Django keeps one pool per alias per process, and pytest-django owns the test process' aliases,
so the live pool tests run these scenarios in a subprocess:

    python tests/pool/scenarios.py SCENARIO '{"database": {...database() kwargs...}}'

Each prints one JSON object on stdout. Requests are simulated the way Django's handlers
do it: ``request_started`` (close_old_connections), queries, ``request_finished``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def setup(config: dict[str, Any]) -> None:
    import django
    from django.conf import settings

    from django_dbtuning.pool import database

    databases = {
        "default": database(os.environ["SCENARIO_URL"], **config.get("database", {}))
    }
    databases["default"].update(config.get("entry", {}))
    databases["default"]["OPTIONS"].update(config.get("options", {}))
    for alias, (env, kwargs) in config.get("extra", {}).items():
        databases[alias] = database(os.environ[env], **kwargs)
    settings.configure(
        DATABASES=databases,
        INSTALLED_APPS=config.get("apps", []),
        DATABASE_ROUTERS=config.get("routers", []),
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


def request(work: Callable[[], Any]) -> Any:
    from django.core.signals import request_finished, request_started

    request_started.send(sender=None)
    try:
        return work()
    finally:
        request_finished.send(sender=None)


def query(sql: str, alias: str = "default") -> Any:
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def concurrency(config: dict[str, Any]) -> dict[str, Any]:
    from django.db import connection

    pids: set[int] = set()
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(config.get("requests", 5)):
            try:
                pid = request(
                    lambda: query("SELECT pg_backend_pid() FROM pg_sleep(0.02)")
                )
                with lock:
                    pids.add(pid)
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=worker) for _ in range(config.get("threads", 12))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pool = getattr(connection, "pool", None)  # Django < 5.1 has no pool attribute
    stats = pool.get_stats() if pool is not None else {}
    return {"backends": len(pids), "errors": errors, "stats": stats}


def exhaustion(config: dict[str, Any]) -> dict[str, Any]:
    holder = threading.Thread(
        target=lambda: request(lambda: query("SELECT pg_sleep(2)"))
    )
    holder.start()
    time.sleep(0.3)
    started = time.perf_counter()
    try:
        request(lambda: query("SELECT 1"))
        outcome = {"error": None}
    except Exception as exc:
        outcome = {"error": f"{type(exc).__module__}.{type(exc).__name__}: {exc}"}
    outcome["waited"] = time.perf_counter() - started
    holder.join()
    outcome["after"] = request(lambda: query("SELECT 42"))
    return outcome


def recovery(config: dict[str, Any]) -> dict[str, Any]:
    import psycopg
    from django.db import connection

    first = request(lambda: query("SELECT pg_backend_pid()"))
    with psycopg.connect(os.environ["SCENARIO_URL"], autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    time.sleep(0.2)
    results: list[Any] = []
    for _ in range(config.get("requests", 3)):
        try:
            results.append(request(lambda: query("SELECT pg_backend_pid()")))
        except Exception as exc:
            results.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
    return {
        "first": first,
        "killed": killed,
        "results": results,
        "pooled": getattr(connection, "pool", None) is not None,
    }


def bypass(config: dict[str, Any]) -> dict[str, Any]:
    """One pooled connection: when its check made a round trip, and a kill in the window.

    The window is widened to a minute, then closed, so that a slow machine cannot turn
    "inside the window" into "after it".
    """
    from django.db import connection

    from django_dbtuning.pool import health

    health.ALIVE_BYPASS_WINDOW = 60.0

    def checked() -> list[Any]:
        pid = query("SELECT pg_backend_pid()")
        return [getattr(connection.connection, "verified_at", None), pid]

    first = request(checked)
    within = [request(checked) for _ in range(3)]
    with psycopg_admin() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    time.sleep(0.05)  # the FATAL message reaches the socket, well inside the window
    after_kill: list[Any] = []
    for _ in range(3):
        try:
            after_kill.append(request(checked))
        except Exception as exc:
            after_kill.append(f"{type(exc).__name__}: {str(exc).strip()[:200]}")
    health.ALIVE_BYPASS_WINDOW = 0.0  # as if the connection had idled past the window
    return {
        "first": first,
        "within": within,
        "after_kill": after_kill,
        "after_idle": request(checked),
    }


def psycopg_admin() -> Any:
    import psycopg

    return psycopg.connect(os.environ["SCENARIO_URL"], autocommit=True)


def fork(config: dict[str, Any]) -> dict[str, Any]:
    from django.db import connection

    from django_dbtuning.fork import after_fork

    parent_pid = query("SELECT pg_backend_pid()")  # opens the pool in the parent
    time.sleep(0.3)  # let the pool's background workers fill up to min_size
    from django.db import connection as conn

    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT array_agg(pid) FROM pg_stat_activity WHERE datname = current_database()"
        )
        parent_backends = cursor.fetchone()[0]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(read)
        try:
            if config.get("after_fork", True):
                after_fork()
            pid = request(lambda: query("SELECT pg_backend_pid()"))
            os.write(write, json.dumps({"child_backend": pid}).encode())
        except Exception as exc:
            os.write(write, json.dumps({"child_error": str(exc)}).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    child_result = json.loads(os.read(read, 65536).decode() or "{}")
    parent_again = query("SELECT pg_backend_pid()")
    return {
        "parent_backend": parent_pid,
        "parent_backends": parent_backends,
        "parent_after": parent_again,
        "child_status": status,
        "pooled": getattr(connection, "pool", None) is not None,
        **child_result,
    }


def router(config: dict[str, Any]) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import ProgrammingError, connections, transaction
    from django.db import router as django_router

    from django_dbtuning.routers import route_reads_to, use_primary
    from tests.testapp.models import Author, Publisher

    call_command("migrate", verbosity=0, database="default")
    outcome: dict[str, Any] = {
        "migrate_replica": django_router.allow_migrate_model("replica", Author),
        "migrate_reports": django_router.allow_migrate_model("reports", Author),
        "migrate_default": django_router.allow_migrate_model("default", Author),
    }

    def fresh_read() -> tuple[str, bool]:
        qs = Author.objects.all()
        in_recovery = query("SELECT pg_is_in_recovery()", qs.db)
        return qs.db, in_recovery

    outcome["read"] = request(fresh_read)

    def write_then_read() -> tuple[str, str]:
        Publisher.objects.create(name="Acme")
        return Publisher.objects.all().db, Author.objects.all().db

    outcome["write_then_read"] = request(write_then_read)
    outcome["next_request_read"] = request(lambda: Author.objects.all().db)

    def in_transaction() -> str:
        with transaction.atomic():
            return Author.objects.all().db

    outcome["in_transaction"] = request(in_transaction)

    def primary_block() -> str:
        with use_primary():
            return Author.objects.all().db

    outcome["use_primary"] = request(primary_block)

    def report_block() -> str:
        with route_reads_to("reports"):
            return Author.objects.all().db

    outcome["route_reads_to"] = request(report_block)
    # Rows written through the primary become visible on the replica.
    deadline = time.monotonic() + 10
    names: list[str] = []
    while time.monotonic() < deadline and not names:
        # ProgrammingError: the migration has not replayed on the replica yet.
        with contextlib.suppress(ProgrammingError):
            names = request(
                lambda: list(Publisher.objects.values_list("name", flat=True))
            )
        time.sleep(0.05)
    outcome["replicated"] = names
    with connections["replica"].cursor() as cursor:
        try:
            cursor.execute("INSERT INTO testapp_publisher (name) VALUES ('x')")
            outcome["replica_write"] = "accepted"
        except Exception as exc:
            outcome["replica_write"] = str(exc).strip().splitlines()[0]
    return outcome


def pgbouncer(config: dict[str, Any]) -> dict[str, Any]:
    from django.core.management import call_command

    from tests.testapp.models import Author, Publisher

    call_command("migrate", verbosity=0)
    Author.objects.bulk_create([Author(name=f"a{i}") for i in range(100)])
    outcome = concurrency({"threads": 8, "requests": 5})

    def interleaved() -> int:
        seen = 0
        for _author in Author.objects.iterator(chunk_size=10):
            Publisher.objects.count()
            seen += 1
        return seen

    try:
        outcome["iterated"] = request(interleaved)
    except Exception as exc:
        outcome["iterated"] = (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        )
    outcome["server_side_cursors_disabled"] = __import__(
        "django.db", fromlist=["connection"]
    ).connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"]
    return outcome


def backend(config: dict[str, Any]) -> dict[str, Any]:
    """What a pooled entry's ENGINE (django_dbtuning.pool.postgresql) keeps from Django's."""
    from django.db import (
        DatabaseError,
        OperationalError,
        connection,
        connections,
        transaction,
    )
    from django.test.utils import override_settings

    pool = connection.pool
    outcome: dict[str, Any] = {
        "engine": connection.settings_dict["ENGINE"],
        "wrapper": f"{type(connections['default']).__module__}."
        f"{type(connections['default']).__name__}",
        "vendor": connection.vendor,
        "autocommit_setting": connection.settings_dict["AUTOCOMMIT"],
    }

    def in_request() -> list[Any]:
        pid = query("SELECT pg_backend_pid()")
        with transaction.atomic():  # psycopg sets the isolation level at BEGIN
            isolation = query("SHOW transaction_isolation")
        return [
            pid,
            connection.get_autocommit(),
            isolation,
            connection.connection.info.transaction_status.name,
        ]

    outcome["first"] = request(in_request)
    outcome["second"] = request(in_request)
    outcome["params_equal"] = (
        connection.get_connection_params() == connection.get_connection_params()
    )

    def rolled_back() -> str:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS scenario_t (v int)")
        try:
            with transaction.atomic():
                query("INSERT INTO scenario_t VALUES (1) RETURNING v")
                query("SELECT 1 / 0")
        except DatabaseError as exc:
            return type(exc).__name__
        return "no error"

    if connection.settings_dict["AUTOCOMMIT"]:
        outcome["atomic_error"] = request(rolled_back)
        outcome["rows_after_rollback"] = request(
            lambda: query("SELECT count(*) FROM scenario_t")
        )

    def broken() -> str:
        with psycopg_admin() as admin:
            admin.execute(
                "SELECT pg_terminate_backend(%s)", [query("SELECT pg_backend_pid()")]
            )
        try:
            query("SELECT 1")
        except OperationalError as exc:
            return type(exc).__name__
        return "no error"

    outcome["broken"] = request(broken)
    outcome["after_broken"] = request(in_request)
    with override_settings(USE_TZ=False, TIME_ZONE="Asia/Kathmandu"):
        outcome["new_pool"] = connection.pool is not pool
        outcome["time_zone"] = request(lambda: query("SHOW TIME ZONE"))
        # Every connection back in the pool after the request.
        stats = connection.pool.get_stats()
        outcome["idle"] = stats.get("pool_available")
        outcome["size"] = stats.get("pool_size")
    return outcome


def _stop_server(data_dir: Path) -> None:
    """Fast shutdown of the server in ``data_dir`` (SIGINT, as at a restart)."""
    import signal

    pid_file = data_dir / "postmaster.pid"
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
    deadline = time.monotonic() + 30
    while pid_file.exists() and time.monotonic() < deadline:  # removed at exit
        time.sleep(0.05)


def _start_server(data_dir: Path, port: int) -> None:
    from django_dbtuning.embedded import EmbeddedPostgres

    EmbeddedPostgres(port=port, data_dir=data_dir).start()


def outage(config: dict[str, Any]) -> dict[str, Any]:
    """Requests in a loop on several threads while the server stops, stays down, restarts.

    Each request's outcome is recorded with its phase: "up" (before the stop), "down"
    (started while the server was down), "back" (started after it answered again).
    """
    data_dir, port = (
        Path(os.environ["SCENARIO_PGDATA"]),
        int(os.environ["SCENARIO_PORT"]),
    )
    outcomes: list[tuple[str, str]] = []
    phase = ["up"]
    done = threading.Event()
    lock = threading.Lock()

    def worker() -> None:
        while not done.is_set():
            started_in = phase[0]
            try:
                request(lambda: query("SELECT 1 FROM pg_sleep(0.01)"))
                result = "ok"
            except Exception as exc:
                result = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
            with lock:
                outcomes.append((started_in, result))

    threads = [threading.Thread(target=worker) for _ in range(config["threads"])]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    _stop_server(data_dir)
    phase[0] = "down"
    time.sleep(config["down"])
    _start_server(data_dir, port)
    phase[0] = "back"
    # The pool reconnects with psycopg_pool's backoff (1 s, 2 s, ...): wait for requests
    # started after the restart to come through, as a client would.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with lock:
            if outcomes.count(("back", "ok")) >= 12:
                break
        time.sleep(0.1)
    done.set()
    for thread in threads:
        thread.join(120)  # a request stuck past every timeout would show here
    summary: dict[str, dict[str, int]] = {}
    for started_in, result in outcomes:
        counts = summary.setdefault(started_in, {})
        counts[result] = counts.get(result, 0) + 1
    return {"outcomes": summary, "alive": [t.is_alive() for t in threads]}


SCENARIOS = {
    "pgbouncer": pgbouncer,
    "concurrency": concurrency,
    "exhaustion": exhaustion,
    "recovery": recovery,
    "bypass": bypass,
    "backend": backend,
    "outage": outage,
    "fork": fork,
    "router": router,
}

if __name__ == "__main__":
    name, raw = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}"
    scenario_config = json.loads(raw)
    setup(scenario_config)
    print(json.dumps(SCENARIOS[name](scenario_config), default=str))
