"""The pool settings against a real server: concurrency, exhaustion, recovery, fork, replicas.

Each scenario runs in a subprocess (tests/pool/scenarios.py) with its own settings and a
database of its own, because Django keeps one pool per alias per process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.conf import settings

from django_dbtuning import embedded

ROOT = Path(__file__).resolve().parents[2]


def server_url(dbname: str) -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    host = db["HOST"] if not db["HOST"].startswith("/") else ""
    query = f"?host={db['HOST']}" if db["HOST"].startswith("/") else ""
    port = f":{db['PORT']}" if db["PORT"] and host else ""
    return f"postgres://{auth}@{host}{port}/{dbname}{query}"


@pytest.fixture
def scenario_url():
    name = f"dbtuning_pool_{uuid.uuid4().hex[:10]}"
    admin_url = server_url("postgres")
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.errors.InsufficientPrivilege:
        pytest.skip("the test role cannot CREATE DATABASE; live pool scenarios need it")
    yield server_url(name)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(name, url, config, script="scenarios.py", **env):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "pool" / script),
            name,
            json.dumps(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "SCENARIO_URL": url, **env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_twelve_threads_share_a_pool_of_three_connections(scenario_url):
    outcome = run(
        "concurrency",
        scenario_url,
        {"database": {"max_size": 3, "min_size": 1, "timeout": 10}, "threads": 12},
    )
    assert outcome["errors"] == []
    assert 1 <= outcome["backends"] <= 3
    assert outcome["stats"]["pool_max"] == 3
    assert outcome["stats"]["requests_num"] >= 60


def test_without_a_pool_every_request_opens_a_connection(scenario_url):
    outcome = run(
        "concurrency",
        scenario_url,
        {"database": {"pool": False, "conn_max_age": 0}, "threads": 4, "requests": 3},
    )
    assert outcome["errors"] == []
    assert outcome["backends"] == 12


def test_an_exhausted_pool_fails_with_a_clear_error_within_its_timeout(scenario_url):
    outcome = run(
        "exhaustion",
        scenario_url,
        {"database": {"max_size": 1, "min_size": 1, "timeout": 0.5}},
    )
    assert outcome["error"] == (
        "django.db.utils.OperationalError: couldn't get a connection after 0.50 sec"
    )
    # Far below the 30 s psycopg_pool default and gunicorn's worker timeout.
    assert outcome["waited"] < 5
    assert outcome["after"] == 42


@pytest.mark.parametrize(
    "database_options",
    [
        pytest.param({}, id="helper-default"),
        pytest.param({"pool": False}, id="conn-max-age-with-health-checks"),
    ],
)
def test_requests_recover_after_the_server_terminates_every_backend(
    scenario_url, database_options
):
    outcome = run(
        "recovery",
        scenario_url,
        {
            "database": {"min_size": 2, "max_size": 2, **database_options}
            if database_options.get("pool", True)
            else database_options
        },
    )
    assert outcome["killed"] >= 1
    assert all(isinstance(pid, int) for pid in outcome["results"]), outcome["results"]
    assert outcome["first"] not in outcome["results"]


def test_a_recently_verified_connection_skips_the_round_trip_but_not_a_kill(
    scenario_url,
):
    outcome = run("bypass", scenario_url, {"database": {"max_size": 1, "min_size": 1}})
    verified, pid = outcome["first"]
    assert verified is not None and verified > float(
        "-inf"
    )  # the first checkout probed
    # Checkouts inside the window reuse that verdict: no round trip.
    assert outcome["within"] == [[verified, pid]] * 3
    # The backend was terminated inside the window: its socket said so, no request failed.
    assert all(isinstance(result, list) for result in outcome["after_kill"]), outcome
    assert outcome["after_kill"][0][1] != pid
    # After the window the check makes its round trip again.
    assert outcome["after_idle"][0] > outcome["after_kill"][-1][0]


def test_without_health_checks_the_first_request_after_a_restart_fails(scenario_url):
    outcome = run(
        "recovery",
        scenario_url,
        {"database": {"pool": False, "health_checks": False}, "requests": 2},
    )
    assert isinstance(outcome["results"][0], str)
    assert "terminat" in outcome["results"][0] or "closed" in outcome["results"][0]
    assert isinstance(outcome["results"][1], int)


def test_after_fork_gives_the_child_its_own_connections_and_spares_the_parents(
    scenario_url,
):
    outcome = run("fork", scenario_url, {"database": {"max_size": 2, "min_size": 2}})
    assert outcome["child_status"] == 0
    assert outcome["child_backend"] not in outcome["parent_backends"]
    assert outcome["parent_after"] == outcome["parent_backend"]


def test_without_after_fork_the_child_talks_over_the_parents_socket(scenario_url):
    # What after_fork() prevents: both processes on one backend, protocol streams mixed.
    outcome = run(
        "fork",
        scenario_url,
        {"database": {"max_size": 2, "min_size": 2}, "after_fork": False},
    )
    assert outcome.get("child_backend") in outcome["parent_backends"]


@pytest.fixture
def replica():
    primary = embedded.current_server()
    if primary is None:
        pytest.skip(
            "a streaming replica needs the embedded server (DATABASE_URL is set)"
        )
    server = primary.replica()
    yield server
    server.stop()


def test_router_reads_from_a_real_streaming_replica_and_writes_to_the_primary(
    scenario_url, replica
):
    dbname = urlsplit(scenario_url).path.lstrip("/")
    replica_url = urlunsplit(urlsplit(replica.url)._replace(path=f"/{dbname}"))
    outcome = run(
        "router",
        scenario_url,
        {
            "database": {"pool": False},
            "extra": {
                "replica": ["REPLICA_URL", {"role": "replica", "pool": False}],
                "reports": ["SCENARIO_URL", {"role": "bulkhead", "pool": False}],
            },
            "apps": ["django.contrib.contenttypes", "tests.testapp"],
            "routers": ["django_dbtuning.routers.PrimaryReplicaRouter"],
        },
        REPLICA_URL=replica_url,
    )
    assert outcome["read"] == ["replica", True]
    assert outcome["write_then_read"] == ["default", "default"]
    assert outcome["next_request_read"] == "replica"
    assert outcome["in_transaction"] == "default"
    assert outcome["use_primary"] == "default"
    assert outcome["route_reads_to"] == "reports"
    assert outcome["replicated"] == ["Acme"]
    assert "read-only transaction" in outcome["replica_write"]
    assert (
        outcome["migrate_default"],
        outcome["migrate_replica"],
        outcome["migrate_reports"],
    ) == (
        True,
        False,
        False,
    )


@pytest.fixture
def pgbouncer(scenario_url):
    """Debian's PgBouncer in transaction mode in front of the test server."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if binary is None:
        pytest.skip(
            "PgBouncer is not installed (apt-get install pgbouncer; .ci/run does it)"
        )
    db = settings.DATABASES["default"]
    if db["HOST"].startswith("/"):
        pytest.skip("the PgBouncer fixture needs a TCP server")
    workdir = Path(tempfile.mkdtemp(prefix="dbtuning-pgbouncer-"))
    with socket.socket() as sock:  # a free port for PgBouncer
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (workdir / "userlist.txt").write_text(f'"{db["USER"]}" "{db["PASSWORD"]}"\n')
    (workdir / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={db['HOST']} port={db['PORT'] or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"auth_type = trust\nauth_file = {workdir}/userlist.txt\n"
        "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 200\n"
        f"logfile = {workdir}/pgbouncer.log\npidfile = {workdir}/pgbouncer.pid\n"
        f"admin_users = {db['USER']}\n"
    )
    preexec = None
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        import pwd

        nobody = pwd.getpwnam("nobody")
        for path in [workdir, *workdir.iterdir()]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)

        def preexec():
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)

    process = subprocess.Popen(
        [binary, str(workdir / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=preexec,
    )
    dbname = urlsplit(scenario_url).path.lstrip("/")
    url = f"postgres://{db['USER']}@127.0.0.1:{port}/{dbname}"
    deadline = time.monotonic() + 10
    while True:
        try:
            psycopg.connect(url, connect_timeout=1).close()
            break
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                log = (
                    (workdir / "pgbouncer.log").read_text()
                    if (workdir / "pgbouncer.log").exists()
                    else ""
                )
                process.kill()
                pytest.fail(f"PgBouncer did not start: {log[-1000:]}")
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


def test_through_pgbouncer_in_transaction_mode(pgbouncer):
    outcome = run(
        "pgbouncer",
        pgbouncer,
        {
            "database": {"pgbouncer": True, "max_size": 4, "min_size": 1},
            "apps": ["django.contrib.contenttypes", "tests.testapp"],
        },
        SCENARIO_URL=pgbouncer,
    )
    assert outcome["errors"] == []
    assert outcome["server_side_cursors_disabled"] is True
    assert outcome["iterated"] == 100


@pytest.mark.parametrize(
    ("config", "autocommit", "isolation", "status"),
    [
        pytest.param({}, True, "read committed", "IDLE", id="autocommit"),
        pytest.param(
            {"entry": {"AUTOCOMMIT": False}},
            False,
            "read committed",
            "INTRANS",
            id="no-autocommit",
        ),
        pytest.param(
            {"options": {"isolation_level": 4}},  # psycopg.IsolationLevel.SERIALIZABLE
            True,
            "serializable",
            "IDLE",
            id="isolation-level",
        ),
    ],
)
def test_the_pooled_engine_behaves_as_djangos_backend(
    scenario_url, config, autocommit, isolation, status
):
    outcome = run(
        "backend", scenario_url, {"database": {"max_size": 1, "min_size": 1}, **config}
    )
    assert outcome["engine"] == "django_dbtuning.pool.postgresql"
    assert outcome["wrapper"] == "django_dbtuning.pool.postgresql.base.DatabaseWrapper"
    assert outcome["vendor"] == "postgresql"
    first_pid, *first_state = outcome["first"]
    # One pooled connection, checked out and returned by each request.
    assert outcome["second"] == outcome["first"]
    assert first_state == [autocommit, isolation, status]
    assert outcome["params_equal"] is True
    if autocommit:
        # atomic() rolled back, the error came through, the connection went back clean.
        assert outcome["atomic_error"] == "DataError"
        assert outcome["rows_after_rollback"] == 0
    # A backend terminated mid-request fails that request only; its connection is not
    # handed out again.
    assert outcome["broken"] == "OperationalError"
    assert outcome["after_broken"][0] != first_pid
    assert outcome["after_broken"][1:] == first_state
    # A time-zone change closes the pool; the next one connects with the new parameters.
    assert outcome["new_pool"] is True
    assert outcome["time_zone"] == "Asia/Kathmandu"
    assert outcome["idle"] == outcome["size"] == 1


@pytest.fixture
def own_server():
    """A server of this test's own, which the scenario stops and starts again."""
    # Not under tmp_path: PostgreSQL runs as an unprivileged user when we are root.
    data_dir = Path(tempfile.mkdtemp(prefix="dbtuning-pg-outage-"))
    server = embedded.EmbeddedPostgres(data_dir=data_dir)
    try:
        server.start()
    except embedded.EmbeddedPostgresError as exc:
        pytest.skip(f"no embedded PostgreSQL here: {exc}")
    yield server
    server.stop()
    pid_file = data_dir / "postmaster.pid"
    if pid_file.exists():  # the scenario's restarted server outlived it: stop it too
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    shutil.rmtree(data_dir, ignore_errors=True)


def run_outage(server, down, timeout):
    return run(
        "outage",
        server.url,
        {
            "database": {"max_size": 3, "min_size": 3, "timeout": timeout},
            "threads": 6,
            "down": down,
        },
        SCENARIO_PGDATA=str(server.data_dir),
        SCENARIO_PORT=str(server.port),
    )


def test_a_server_restart_under_load_fails_only_the_requests_in_flight(own_server):
    outcome = run_outage(own_server, down=1.0, timeout=10.0)
    assert outcome["alive"] == [False] * 6
    up, down, back = (outcome["outcomes"].get(p, {}) for p in ("up", "down", "back"))
    failed = {result: n for result, n in up.items() if result != "ok"}
    # At most one failure per pooled connection: the query it was running at the stop.
    assert sum(failed.values()) <= 3, outcome
    assert all("terminating connection" in result for result in failed), outcome
    # Requests waiting for a connection while the server was down got one once it was
    # back (no pool timeout); those after the restart all succeed.
    assert set(down) <= {"ok"}, outcome
    assert set(back) == {"ok"} and sum(back.values()) >= 12, outcome


def test_a_server_down_longer_than_the_pool_timeout_gives_clean_timeouts(own_server):
    outcome = run_outage(own_server, down=3.0, timeout=0.5)
    assert outcome["alive"] == [False] * 6  # every request returned: no stuck worker
    down = outcome["outcomes"]["down"]
    timeouts = down.get("OperationalError: couldn't get a connection after 0.50 sec", 0)
    assert timeouts >= 6, outcome
    assert set(down) <= {
        "ok",
        "OperationalError: couldn't get a connection after 0.50 sec",
    }, down
    # psycopg_pool reconnects with a backoff (1 s, 2 s, 4 s, ...): until its first
    # connection is back, a request started after the restart may still time out cleanly.
    back = outcome["outcomes"]["back"]
    assert back.get("ok", 0) >= 12, outcome
    assert set(back) <= {
        "ok",
        "OperationalError: couldn't get a connection after 0.50 sec",
    }, outcome
