"""manage.py dbreport on a real PostgreSQL with planted problems."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from django_dbtuning.report import SECTIONS, run_report
from django_dbtuning.report.probe import connection_kwargs

# Marked so that pytest-django creates the test databases; the report itself reads them
# through its own connections, outside the test's transaction.
pytestmark = pytest.mark.django_db

SEVERITIES = {"info", "warning", "error"}
LIMITED_PASSWORD = "limited-Secret-pw-42"


def admin_connection() -> psycopg.Connection:
    kwargs = connection_kwargs(connections.settings["default"])
    return psycopg.connect(**kwargs, autocommit=True)


@contextmanager
def extra_alias(name: str, **overrides):
    """A DATABASES alias added for one test (the same server unless overridden)."""
    entry = {**connections.settings["default"], **overrides}
    connections.settings[name] = entry
    try:
        yield name
    finally:
        if hasattr(connections._connections, name):
            connections[name].close()
            del connections[name]
        del connections.settings[name]


def dbreport(*args: str) -> tuple[str, str, int]:
    out, err = StringIO(), StringIO()
    try:
        call_command("dbreport", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), str(exc), exc.returncode
    return out.getvalue(), err.getvalue(), 0


def report_json(*args: str) -> dict:
    out, err, code = dbreport("--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


def findings(document: dict, code: str) -> list[dict]:
    return [f for f in document["findings"] if f["code"] == code]


def objects(document: dict, code: str) -> set[str]:
    return {f["object"] for f in findings(document, code)}


# -- the planted problems ------------------------------------------------------------------


def test_never_scanned_index_is_unused(planted):
    document = report_json("--database", "default", "--section", "indexes")
    unused = objects(document, "unused_index")
    assert "reportapp_volume_pages_9a5ab7ca" in unused or any(
        "pages" in name for name in unused
    )
    pages = next(
        f for f in findings(document, "unused_index") if "pages" in f["object"]
    )
    assert pages["model"] == "reportapp.Volume"
    assert "set db_index=False on reportapp.Volume.pages" in pages["hint"]
    assert pages["data"]["scans"] == 0


def test_heavily_scanned_pk_and_unique_indexes_are_never_unused(planted):
    document = report_json("--database", "default", "--section", "indexes")
    unused = objects(document, "unused_index")
    assert not any("isbn" in name for name in unused)
    assert not any(name.endswith("_pkey") for name in unused)
    assert not any("reportapp_writer_code" in name for name in unused)  # unique
    assert "review_unique" not in unused
    # Nor any other drop suggestion.
    for code in ("duplicate_index", "overlapping_index"):
        for name in objects(document, code):
            assert not name.endswith("_pkey")
            assert name != "review_unique"


def test_identical_indexes_are_duplicates(planted):
    document = report_json("--database", "default", "--section", "indexes")
    duplicate = findings(document, "duplicate_index")
    assert [f["object"] for f in duplicate] == ["volume_title_b"]
    assert duplicate[0]["data"]["covered_by"] == "volume_title_a"
    assert "volume_title_b" in duplicate[0]["hint"]
    assert "reportapp.Volume.Meta.indexes" in duplicate[0]["hint"]


def test_prefix_indexes_overlap(planted):
    document = report_json("--database", "default", "--section", "indexes")
    overlapping = {f["object"]: f for f in findings(document, "overlapping_index")}
    assert overlapping["volume_pub"]["data"]["covered_by"] == "volume_pub_pages"
    fk_index = next(name for name in overlapping if "review_volume_id" in name)
    assert overlapping[fk_index]["data"]["covered_by"] == "review_unique"
    assert (
        "db_index=False on the ForeignKey reportapp.Review.volume"
        in overlapping[fk_index]["hint"]
    )


def test_invalid_index_from_failed_concurrent_build(planted):
    document = report_json("--database", "default", "--section", "indexes")
    invalid = findings(document, "invalid_index")
    assert [f["object"] for f in invalid] == ["volume_title_unique"]
    assert invalid[0]["severity"] == "error"
    assert (
        'DROP INDEX CONCURRENTLY "public"."volume_title_unique"' in invalid[0]["hint"]
    )
    assert invalid[0]["data"]["sql"] == [
        'DROP INDEX CONCURRENTLY "public"."volume_title_unique"'
    ]
    # Invalid indexes are reported as invalid, not as unused or duplicate.
    assert "volume_title_unique" not in objects(document, "unused_index")


def test_foreign_key_without_index(planted):
    document = report_json("--database", "default", "--section", "indexes")
    missing = findings(document, "fk_without_index")
    assert len(missing) == 1
    assert missing[0]["model"] == "reportapp.Volume"
    assert missing[0]["data"]["field"] == "reportapp.Volume.writer"
    assert "set db_index=True on reportapp.Volume.writer" in missing[0]["hint"]
    # Review.volume is covered by its own index (and the unique constraint).
    assert not any("review" in f["object"] for f in missing)


def test_int_column_fed_by_bigint_sequence(planted):
    document = report_json("--database", "default", "--section", "tables")
    overflow = findings(document, "sequence_near_overflow")
    assert [f["object"] for f in overflow] == ["reportapp_ticket.id"]
    assert overflow[0]["severity"] == "error"
    assert "bigint but the column is integer" in overflow[0]["detail"]
    assert "BigAutoField" in overflow[0]["hint"]
    assert overflow[0]["model"] == "reportapp.Ticket"


# -- formats -------------------------------------------------------------------------------


def test_json_v1_shape(planted):
    document = report_json()
    assert set(document) >= {"version", "generated_at", "databases", "findings"}
    assert document["version"] == 1
    datetime.datetime.fromisoformat(document["generated_at"])
    assert set(document["databases"]) == {"default", "other"}
    default = document["databases"]["default"]
    assert default["reachable"] is True
    for section in SECTIONS:
        assert isinstance(default[section], dict), section
    assert document["databases"]["other"]["same_database_as"] == "default"
    for check in default["checks"].values():
        assert check["status"] in {"ok", "skipped", "timeout", "error"}
    assert document["findings"]
    for finding in document["findings"]:
        for key in (
            "database",
            "severity",
            "code",
            "title",
            "detail",
            "hint",
            "object",
        ):
            assert isinstance(finding[key], str) and finding[key], (key, finding)
        assert finding["severity"] in SEVERITIES
        assert finding["database"] in document["databases"]
    # Serialisable both ways, no stray types.
    assert json.loads(json.dumps(document)) == document


def test_prometheus_output_parses(planted):
    from prometheus_client.parser import text_string_to_metric_families

    out, err, code = dbreport("--format", "prometheus", "--database", "default")
    assert code == 0, err
    families = {f.name: f for f in text_string_to_metric_families(out)}
    assert families
    for family in families.values():
        assert family.name.startswith("dbtuning_")
        for sample in family.samples:
            assert sample.labels.get("alias") == "default", sample
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples[("dbtuning_up", (("alias", "default"),))] == 1
    assert samples[("dbtuning_invalid_indexes", (("alias", "default"),))] == 1
    assert (
        samples[
            (
                "dbtuning_findings",
                (
                    ("alias", "default"),
                    ("code", "duplicate_index"),
                    ("severity", "warning"),
                ),
            )
        ]
        == 1
    )
    # Low cardinality by default: no per-index series.
    assert "dbtuning_index_scans" not in families


def test_prometheus_per_index_is_opt_in(planted):
    from prometheus_client.parser import text_string_to_metric_families

    out, _, _ = dbreport(
        "--format", "prometheus", "--database", "default", "--per-index"
    )
    families = {f.name: f for f in text_string_to_metric_families(out)}
    scans = {
        s.labels["index"]: s.value
        for s in families["dbtuning_index_scans"].samples
        if s.name == "dbtuning_index_scans_total"
    }
    isbn = next(name for name in scans if "isbn" in name)
    assert scans[isbn] >= 60


def test_text_output_names_findings_and_models(planted):
    out, err, code = dbreport("--database", "default")
    assert code == 0, err
    assert "== default: PostgreSQL" in out
    for heading in (
        "Pool",
        "Connections",
        "Indexes",
        "Tables",
        "Statements",
        "Settings",
    ):
        assert f"  {heading}" in out
    assert "[ERROR] invalid_index" in out
    assert "(reportapp.Volume)" in out
    assert "\x1b[" not in out  # no colour when not on a terminal


def test_sections_and_output_file(planted, tmp_path):
    (tmp_path / "metrics").mkdir()
    target = tmp_path / "metrics" / "dbtuning.prom"
    out, err, code = dbreport(
        "--format",
        "json",
        "--section",
        "indexes,tables",
        "--output",
        str(target),
        "--database",
        "default",
    )
    assert code == 0, err
    assert out == ""
    document = json.loads(target.read_text())
    default = document["databases"]["default"]
    assert "indexes" in default and "tables" in default
    assert "connections" not in default and "statements" not in default
    assert document["sections"] == ["indexes", "tables"]


def test_fail_on(planted):
    out, message, code = dbreport("--database", "default", "--fail-on", "error")
    assert code == 1
    assert "invalid_index" in message and "sequence_near_overflow" in message
    assert out  # the report is still printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--section", "indexes,bogus"], "unknown section bogus"),
        (["--database", "nope"], "unknown database alias 'nope'"),
        (["--top", "-1"], "--top must be an int >= 0"),
    ],
)
def test_wrong_arguments(planted, args, message):
    _, error, code = dbreport(*args)
    assert code == 1
    assert message in error


def test_run_report_rejects_wrong_values():
    with pytest.raises(ValueError, match="unknown section"):
        run_report(sections=["nope"])
    with pytest.raises(ValueError, match="top must be"):
        run_report(top="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top must be"):
        run_report(top=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="aliases must be str"):
        run_report([1])  # type: ignore[list-item]


def test_run_report_accepts_plain_strings(planted):
    report = run_report("default", sections="pool,settings")
    assert list(report.databases) == ["default"]
    assert report.sections == ("pool", "settings")
    assert "settings" in report.databases["default"].sections


def test_report_is_read_only(planted):
    from django_dbtuning.report.probe import connect

    with connect(connections.settings["default"]) as conn:
        conn.read_only = True
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), conn.transaction():
            conn.execute("CREATE TABLE dbreport_must_not_write (id int)")


@pytest.fixture
def fresh_statements(planted):
    # pg_stat_statements is shared by the whole test session: without a reset, heavier or
    # more frequent statements from earlier tests (COPY loads, N+1 loops) can push a test's
    # own statements out of the report's top lists.
    with admin_connection() as conn:
        try:
            conn.execute("SELECT pg_stat_statements_reset()")
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test role may not reset pg_stat_statements")


def test_statements_section_finds_the_queries(fresh_statements):
    with admin_connection() as conn:
        for i in range(30):
            conn.execute("SELECT title FROM reportapp_volume WHERE isbn = %s", [i])
    document = report_json(
        "--database", "default", "--section", "statements", "--top", "0"
    )
    statements = document["databases"]["default"]["statements"]
    assert statements["installed"] is True
    queries = [row["query"] for row in statements["top"]]
    assert any("reportapp_volume" in q for q in queries)
    # The report's own catalog queries are left out.
    assert not any("pg_stat_user_tables" in q for q in queries)
    assert not any(q.lower().startswith("begin") for q in queries)


# -- safety: privileges, unreachable servers --------------------------------------------------


@pytest.fixture
def limited_role(planted):
    with admin_connection() as conn:
        conn.execute("DROP ROLE IF EXISTS dbreport_limited")
        conn.execute(
            f"CREATE ROLE dbreport_limited LOGIN PASSWORD '{LIMITED_PASSWORD}'"
        )
        yield conn
        conn.execute("DROP OWNED BY dbreport_limited")
        conn.execute("DROP ROLE dbreport_limited")


def test_restricted_role_degrades_per_check(limited_role):
    # Another role's idle session, whose details a role without pg_monitor cannot see.
    limited_role.execute("SELECT 1")
    schema = limited_role.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
        "ON n.oid = e.extnamespace WHERE extname = 'pg_stat_statements'"
    ).fetchone()[0]
    limited_role.execute(f"REVOKE SELECT ON {schema}.pg_stat_statements FROM PUBLIC")
    try:
        with extra_alias("limited", USER="dbreport_limited", PASSWORD=LIMITED_PASSWORD):
            out, err, code = dbreport("--format", "json", "--database", "limited")
            text, _, _ = dbreport("--database", "limited")
    finally:
        limited_role.execute(f"GRANT SELECT ON {schema}.pg_stat_statements TO PUBLIC")
    assert code == 0, err
    assert LIMITED_PASSWORD not in out and LIMITED_PASSWORD not in text
    document = json.loads(out)
    limited = document["databases"]["limited"]
    assert limited["reachable"] is True
    assert limited["checks"]["statements"]["status"] == "skipped"
    assert "permission denied" in limited["checks"]["statements"]["reason"]
    assert limited["checks"]["index_inventory"]["status"] == "ok"
    notes = " ".join(limited["notes"])
    assert 'GRANT pg_monitor TO "dbreport_limited"' in notes
    assert limited["checks"]["sequence_values"]["status"] == "partial"
    assert "unreadable" in limited["checks"]["sequence_values"]["reason"]
    # What it could not see is a finding: the revoked view is a warning, sequences of
    # other owners an expected (info) gap.
    gaps = {f["data"]["check"]: f for f in findings(document, "check_incomplete")}
    assert gaps["statements"]["severity"] == "warning"
    assert gaps["sequence_values"]["severity"] == "info"
    # Everything that needs no privilege still produces findings.
    assert objects(document, "invalid_index") == {"volume_title_unique"}
    assert "check statements: skipped (permission denied" in text


def test_pg_monitor_role_sees_everything(limited_role):
    limited_role.execute("GRANT pg_monitor TO dbreport_limited")
    with extra_alias("monitor", USER="dbreport_limited", PASSWORD=LIMITED_PASSWORD):
        document = report_json("--database", "monitor")
    monitor = document["databases"]["monitor"]
    assert monitor["server"]["pg_monitor"] is True
    assert monitor["checks"]["statements"]["status"] == "ok"
    assert not any("GRANT pg_monitor" in note for note in monitor["notes"])


def test_unreachable_database_exits_2_with_one_line(planted):
    with extra_alias("down", HOST="127.0.0.1", PORT="1", PASSWORD="hunter2-secret"):
        out, error, code = dbreport("--database", "down")
        json_out, _, json_code = dbreport("--database", "down", "--format", "json")
    assert code == 2 == json_code
    assert "\n" not in error
    assert error.startswith("down: cannot connect to 127.0.0.1:1/")
    assert "hunter2-secret" not in error + out + json_out
    document = json.loads(json_out)
    assert document["databases"]["down"]["reachable"] is False
    with extra_alias("down", HOST="127.0.0.1", PORT="1"):
        prom, _, prom_code = dbreport("--database", "down", "--format", "prometheus")
    assert prom_code == 2
    assert 'dbtuning_up{alias="down"} 0.0' in prom
    assert findings(document, "database_unreachable")[0]["severity"] == "error"


def test_unreachable_database_from_the_command_line(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://someone:hunter2-secret@127.0.0.1:1/nowhere",
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "dbreport", "--settings=tests.settings"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=os.path.dirname(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        ),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot connect to 127.0.0.1:1/nowhere" in lines[0]
    assert "hunter2" not in result.stderr + result.stdout


# -- replicas ------------------------------------------------------------------------------


def test_unused_indexes_intersect_across_replicas(planted, monkeypatch):
    """Aliases reaching one database (same system identifier) are intersected: an index
    scanned on any of them is no drop candidate, and an unused one is reported once."""
    from django_dbtuning.report import indexes, runner

    real = indexes.collect

    def replica_scans_pages(probe):
        real(probe)
        if probe.alias == "replica":
            # What a read replica serving the pages lookups would report.
            for row in probe.result.objects["indexes"]:
                if "pages" in row["index"]:
                    row["scans"] = 42

    monkeypatch.setitem(runner.COLLECTORS, "indexes", replica_scans_pages)
    with extra_alias("replica", HOST="localhost"):
        report = run_report(["default", "replica"], sections=["indexes"])
    unused = [f for f in report.findings if f.code == "unused_index"]
    names = [f.object for f in unused]
    assert not any("pages" in name for name in names)
    assert len(names) == len(set(names))  # each index once, not once per alias
    title_b = next(f for f in unused if f.object == "volume_title_b")
    assert title_b.data["checked_aliases"] == ["default", "replica"]
    assert "Unused on every alias" in title_b.detail
    notes = " ".join(report.databases["default"].notes)
    assert "scanned on replica" in notes


@pytest.fixture
def streaming_replica(planted):
    from django_dbtuning import embedded

    primary = embedded.current_server()
    if primary is None:
        pytest.skip(
            "a streaming replica needs the embedded server (DATABASE_URL is set)"
        )
    server = primary.replica()
    yield server
    server.stop()


def test_unused_indexes_on_a_real_streaming_replica(streaming_replica):
    from urllib.parse import urlsplit

    parts = urlsplit(streaming_replica.url)
    name = connections.settings["default"]["NAME"]
    with psycopg.connect(
        host=parts.hostname,
        port=parts.port,
        user=parts.username,
        dbname=name,
        autocommit=True,
    ) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        # The replica serves the lookups by pages: its own statistics count the scans.
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_bitmapscan = off")
        for pages in range(100, 120):
            conn.execute("SELECT id FROM reportapp_volume WHERE pages = %s", [pages])
        conn.execute("SELECT pg_stat_force_next_flush()")
    with extra_alias("replica", HOST=parts.hostname, PORT=str(parts.port)):
        report = run_report(["default", "replica"], sections=["indexes", "connections"])
    assert report.databases["replica"].server["in_recovery"] is True
    replication = report.databases["replica"].sections["connections"]["replication"]
    assert replication["in_recovery"] is True
    assert "lag_seconds" in replication
    assert (
        report.databases["default"].sections["connections"]["replication"]["replicas"]
        >= 1
    )
    unused = [f.object for f in report.findings if f.code == "unused_index"]
    assert not any("volume_pages" in name for name in unused)
    assert "volume_title_b" in unused
    assert len(unused) == len(set(unused))
    # Schema findings are the same on both: reported once.
    invalid = [f for f in report.findings if f.code == "invalid_index"]
    assert [f.database for f in invalid] == ["default"]
    notes = " ".join(report.databases["default"].notes)
    assert "scanned on replica" in notes


# -- PgBouncer -----------------------------------------------------------------------------


@pytest.fixture
def pgbouncer(planted, tmp_path_factory):
    import shutil
    import socket
    import tempfile
    import time

    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if binary is None:
        pytest.skip("pgbouncer is not installed")
    default = connections.settings["default"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Readable by 'nobody': pgbouncer refuses to run as root.
    workdir = tempfile.mkdtemp(prefix="dbtuning-pgbouncer-")
    os.chmod(workdir, 0o777)
    config = os.path.join(workdir, "pgbouncer.ini")
    users = os.path.join(workdir, "users.txt")
    with open(users, "w") as handle:
        handle.write(f'"{default["USER"]}" ""\n')
    with open(config, "w") as handle:
        handle.write(
            "[databases]\n"
            f"{default['NAME']} = host={default['HOST']} port={default['PORT']}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {users}\n"
            f"admin_users = {default['USER']}\npool_mode = transaction\n"
            f"logfile = {workdir}/pgbouncer.log\n"
        )
    os.chmod(config, 0o644)
    os.chmod(users, 0o644)
    command = [binary, config]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail(
                f"pgbouncer did not start: {process.stderr.read() if process.stderr else ''}"
            )
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(workdir, ignore_errors=True)


def test_pgbouncer_admin_console(pgbouncer):
    name = connections.settings["default"]["NAME"]
    # A client through the bouncer, so that SHOW POOLS has a row for the database.
    with psycopg.connect(
        host="127.0.0.1",
        port=pgbouncer,
        user=connections.settings["default"]["USER"],
        dbname=name,
        prepare_threshold=None,
        autocommit=True,
    ) as client:
        client.execute("SELECT 1")
        with extra_alias(
            "bouncer", NAME="pgbouncer", HOST="127.0.0.1", PORT=str(pgbouncer)
        ):
            document = report_json("--database", "bouncer")
            text, _, code = dbreport("--database", "bouncer")
            prom, _, _ = dbreport("--database", "bouncer", "--format", "prometheus")
    assert code == 0
    bouncer = document["databases"]["bouncer"]
    assert bouncer["kind"] == "pgbouncer" and bouncer["reachable"] is True
    pools = bouncer["pgbouncer"]["pools"]
    assert any(pool["database"] == name for pool in pools)
    assert bouncer["pgbouncer"]["stats"] is not None
    assert "PgBouncer pools" in text
    from prometheus_client.parser import text_string_to_metric_families

    values = {
        s.name: s.value
        for family in text_string_to_metric_families(prom)
        for s in family.samples
        if s.labels.get("alias") == "bouncer"
    }
    assert values["dbtuning_up"] == 1
    assert values["dbtuning_pgbouncer_clients_active"] >= 1
    assert values["dbtuning_pgbouncer_clients_waiting"] == 0


# -- runtime findings: statements, sessions, tables, pool ----------------------------------


def test_n_plus_one_suspect_and_slow_query(fresh_statements, dbtuning):
    dbtuning(
        REPORT_THRESHOLDS={
            "n_plus_one_min_calls": 300,
            "n_plus_one_min_time_share": 0,
            "slow_query_min_calls": 3,
            "slow_query_mean_ms": 15,
        }
    )
    with admin_connection() as conn:
        for pk in range(400):
            conn.execute("SELECT name FROM reportapp_writer WHERE id = %s", [pk])
        for _ in range(3):
            conn.execute("SELECT count(*) FROM reportapp_ticket, pg_sleep(0.02)")
    document = report_json("--database", "default", "--section", "statements")
    suspects = findings(document, "n_plus_one_suspect")
    writer = next(f for f in suspects if f["model"] == "reportapp.Writer")
    assert writer["data"]["calls"] >= 400
    assert "select_related()/prefetch_related()" in writer["hint"]
    slow = findings(document, "slow_query")
    assert any(f["model"] == "reportapp.Ticket" for f in slow)


def test_idle_in_transaction_blocked_and_long_running_sessions(planted, dbtuning):
    import threading
    import time

    dbtuning(
        REPORT_THRESHOLDS={
            "idle_in_transaction_seconds": 0,
            "blocked_query_seconds": 0,
            "long_running_query_seconds": 0,
        }
    )
    holder = admin_connection()
    waiter = admin_connection()
    sleeper = admin_connection()
    holder.autocommit = False
    holder_pid = holder.info.backend_pid
    # Holds a lock and sits idle in its transaction.
    holder.execute(
        "UPDATE reportapp_writer SET name = 'secret-name' WHERE code = %s", [1]
    )
    threads = [
        threading.Thread(
            target=waiter.execute,
            args=("UPDATE reportapp_writer SET name = 'x' WHERE code = 1",),
        ),
        threading.Thread(target=sleeper.execute, args=("SELECT pg_sleep(3)",)),
    ]
    for thread in threads:
        thread.start()
    try:
        # Wait until the waiter is blocked and the sleeper is running (no fixed sleep).
        deadline = time.monotonic() + 20
        with admin_connection() as watcher:
            while time.monotonic() < deadline:
                states = watcher.execute(
                    "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'),"
                    " count(*) FILTER (WHERE query LIKE 'SELECT pg_sleep%'"
                    " AND state = 'active') FROM pg_stat_activity"
                ).fetchone()
                if states == (1, 1):
                    break
                time.sleep(0.05)
        document = report_json("--database", "default", "--section", "connections")
    finally:
        holder.rollback()
        for thread in threads:
            thread.join(timeout=10)
        for conn in (holder, waiter, sleeper):
            conn.close()
    idle = findings(document, "idle_in_transaction")
    assert f"pid:{holder_pid}" in {f["object"] for f in idle}
    blocked = findings(document, "blocked_query")
    assert [f["data"]["blocked_by"] for f in blocked] == [[holder_pid]]
    long_running = findings(document, "long_running_query")
    assert any("pg_sleep(?)" in f["detail"] for f in long_running)
    # Literal values never reach the report.
    assert "secret-name" not in json.dumps(document)
    connections_section = document["databases"]["default"]["connections"]
    assert connections_section["blocked"] >= 1
    assert connections_section["by_state"]["idle in transaction"] >= 1


def test_dead_tuples_seq_scans_and_stale_analyze(planted, dbtuning):
    dbtuning(
        REPORT_THRESHOLDS={
            "dead_tuples_min": 10,
            "dead_tuples_ratio": 0.05,
            "seq_scan_min_rows": 50,
            "seq_scan_min_scans": 5,
            "analyze_stale_days": 0,
        }
    )
    with admin_connection() as conn:
        conn.execute("ALTER TABLE reportapp_volume SET (autovacuum_enabled = false)")
        try:
            conn.execute("UPDATE reportapp_volume SET title = title WHERE isbn < 100")
            for _ in range(40):
                conn.execute(
                    "SELECT count(*) FROM reportapp_volume WHERE title LIKE 'x%'"
                )
            conn.execute("SELECT pg_stat_force_next_flush()")
            document = report_json("--database", "default", "--section", "tables")
        finally:
            conn.execute("ALTER TABLE reportapp_volume RESET (autovacuum_enabled)")
            conn.execute("VACUUM ANALYZE reportapp_volume")
    objects_by_code = {
        code: objects(document, code)
        for code in ("dead_tuples", "seq_scan_heavy", "analyze_stale")
    }
    for code, found in objects_by_code.items():
        assert "reportapp_volume" in found, code
    dead = next(
        f
        for f in findings(document, "dead_tuples")
        if f["object"] == "reportapp_volume"
    )
    assert dead["model"] == "reportapp.Volume"
    assert dead["data"]["dead_tuples"] >= 100


def test_pool_oversubscribed_against_the_live_server(planted):
    default = connections.settings["default"]
    options = {**default["OPTIONS"], "pool": {"min_size": 2, "max_size": 10}}
    deployment = {
        "instances": 4,
        "processes": 8,
        "threads": 10,
        "aliases": 1,
        "server_max_connections": 100,
        "reserved_connections": 3,
        "other_clients": 0,
        "headroom": 0.8,
    }
    with extra_alias("crowded", OPTIONS=options, DBTUNING=deployment):
        document = report_json("--database", "crowded", "--section", "pool")
    (finding,) = findings(document, "pool_oversubscribed")
    assert finding["severity"] == "error"
    assert finding["data"]["deployment_max_connections"] == 320
    assert (
        "4 instances x 8 processes x 1 aliases x 10 connections = 320"
        in (finding["detail"])
    )
    pool = document["databases"]["crowded"]["pool"]
    assert pool["recommended"]["max_size"] == 2
    assert "server budget" in pool["arithmetic"]


def test_pool_sizing_stale(planted):
    default = connections.settings["default"]
    options = {**default["OPTIONS"], "pool": {"min_size": 1, "max_size": 2}}
    deployment = {"instances": 1, "processes": 2, "server_max_connections": 500}
    with extra_alias("stale", OPTIONS=options, DBTUNING=deployment):
        document = report_json("--database", "stale", "--section", "pool")
    (finding,) = findings(document, "pool_sizing_stale")
    assert finding["severity"] == "info"
    assert "server_max_connections=100" in finding["hint"]


def test_colour_on_a_terminal(planted):
    out = StringIO()
    call_command(
        "dbreport",
        "--database",
        "default",
        "--section",
        "indexes",
        stdout=out,
        force_color=True,
    )
    assert "\x1b[" in out.getvalue()


def test_invalid_constraint(planted):
    with admin_connection() as conn:
        conn.execute(
            "ALTER TABLE reportapp_review ADD CONSTRAINT review_rating_positive "
            "CHECK (rating >= 0) NOT VALID"
        )
        try:
            document = report_json("--database", "default", "--section", "tables")
        finally:
            conn.execute(
                "ALTER TABLE reportapp_review DROP CONSTRAINT review_rating_positive"
            )
    (finding,) = findings(document, "invalid_constraint")
    assert finding["object"] == "reportapp_review.review_rating_positive"
    assert finding["model"] == "reportapp.Review"
    assert (
        'ALTER TABLE "public"."reportapp_review" VALIDATE CONSTRAINT '
        '"review_rating_positive"' in finding["hint"]
    )


def test_bloated_index(planted, dbtuning):
    dbtuning(
        REPORT_THRESHOLDS={"index_bloat_warning_bytes": 1, "index_bloat_min_ratio": 0.3}
    )
    with admin_connection() as conn:
        conn.execute(
            "CREATE TABLE report_bloat (id int, v int) WITH (autovacuum_enabled = false)"
        )
        try:
            conn.execute(
                "INSERT INTO report_bloat SELECT g, g FROM generate_series(1, 20000) g"
            )
            conn.execute("CREATE INDEX report_bloat_v ON report_bloat (v)")
            for _ in range(3):  # indexed column: no HOT updates, dead index entries
                conn.execute("UPDATE report_bloat SET v = v + 1")
            conn.execute("ANALYZE report_bloat")
            document = report_json("--database", "default", "--section", "indexes")
        finally:
            conn.execute("DROP TABLE report_bloat")
    bloat = {f["object"]: f for f in findings(document, "index_bloat")}
    assert "report_bloat_v" in bloat
    assert bloat["report_bloat_v"]["data"]["bloat_bytes"] > 0
    assert (
        'REINDEX INDEX CONCURRENTLY "public"."report_bloat_v"'
        in bloat["report_bloat_v"]["hint"]
    )
    assert document["databases"]["default"]["indexes"]["bloat_bytes_estimate"] > 0


@pytest.mark.parametrize(
    ("thresholds", "section", "code"),
    [
        ({"xid_age_warning": 1}, "tables", "xid_wraparound"),
        ({"connections_warning_ratio": 0}, "connections", "connections_near_limit"),
        (
            {"cache_hit_ratio_min": 1.01, "cache_min_blocks": 0},
            "tables",
            "low_cache_hit_ratio",
        ),
    ],
)
def test_threshold_driven_findings(planted, dbtuning, thresholds, section, code):
    document = report_json("--database", "default", "--section", section)
    assert not findings(document, code)
    dbtuning(REPORT_THRESHOLDS=thresholds)
    document = report_json("--database", "default", "--section", section)
    assert findings(document, code), code


def test_a_locked_table_costs_one_check_not_the_report(planted, dbtuning):
    """A migration holding ACCESS EXCLUSIVE: sizes fall back to estimates, nothing hangs."""
    dbtuning(REPORT_LOCK_TIMEOUT="200ms")
    with admin_connection() as conn:
        conn.autocommit = False
        conn.execute("LOCK TABLE reportapp_volume IN ACCESS EXCLUSIVE MODE")
        try:
            document = report_json(
                "--database", "default", "--section", "indexes,tables"
            )
        finally:
            conn.rollback()
    default = document["databases"]["default"]
    assert default["checks"]["index_inventory"]["status"] == "timeout"
    assert "lock_timeout 200ms" in default["checks"]["index_inventory"]["reason"]
    assert default["checks"]["index_inventory_estimated"]["status"] == "ok"
    assert any("a relation was locked" in note for note in default["notes"])
    # The findings still come.
    assert objects(document, "invalid_index") == {"volume_title_unique"}


def test_inactive_replication_slot(planted):
    with admin_connection() as conn:
        conn.execute(
            "SELECT pg_create_physical_replication_slot('dbreport_abandoned', true)"
        )
        try:
            document = report_json("--database", "default", "--section", "connections")
        finally:
            conn.execute("SELECT pg_drop_replication_slot('dbreport_abandoned')")
    (finding,) = findings(document, "inactive_replication_slot")
    assert finding["object"] == "slot:dbreport_abandoned"
    assert "pg_drop_replication_slot('dbreport_abandoned')" in finding["hint"]
    replication = document["databases"]["default"]["connections"]["replication"]
    assert replication["in_recovery"] is False and replication["lag_seconds"] is None


def test_missing_index_suggested_from_statements(fresh_statements, dbtuning):
    dbtuning(
        REPORT_THRESHOLDS={
            "missing_index_min_rows": 100,
            "missing_index_min_calls": 50,
            "missing_index_min_time_share": 0,
        }
    )
    with admin_connection() as conn:
        for writer in range(60):
            # Django's shape for Volume.objects.filter(writer_id=...).
            conn.execute(
                'SELECT "reportapp_volume"."id", "reportapp_volume"."title" '
                'FROM "reportapp_volume" WHERE "reportapp_volume"."writer_id" = %s',
                [writer % 20],
            )
        for isbn in range(60):  # covered by the isbn index: no suggestion
            conn.execute(
                'SELECT "reportapp_volume"."id" FROM "reportapp_volume" '
                'WHERE "reportapp_volume"."isbn" = %s',
                [isbn],
            )
    document = report_json("--database", "default", "--section", "statements")
    suggestions = {f["object"]: f for f in findings(document, "missing_index")}
    assert "reportapp_volume(writer_id)" in suggestions
    found = suggestions["reportapp_volume(writer_id)"]
    assert found["model"] == "reportapp.Volume"
    assert "models.Index(fields=['writer']" in found["hint"]
    assert "reportapp.Volume.Meta.indexes" in found["hint"]
    assert not any("isbn" in name for name in suggestions)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            'SELECT "t"."id" FROM "t" WHERE ("t"."a" = $1 AND "t"."b" > $2) '
            'ORDER BY "t"."id" LIMIT $3',
            ("t", [("a", False), ("b", True)]),
        ),
        ('UPDATE "t" SET "x" = $1 WHERE "t"."c" IN ($2, $3)', ("t", [("c", False)])),
        ('DELETE FROM "t" WHERE "t"."c" = ANY($1)', ("t", [("c", False)])),
        (
            'SELECT 1 FROM "t" INNER JOIN "u" ON "t"."u_id" = "u"."id" WHERE "u"."a" = $1',
            None,
        ),
        ('SELECT 1 FROM "t" WHERE "t"."a" = $1 OR "t"."b" = $2', None),
        ('SELECT count(*) FROM "t"', None),
    ],
)
def test_filter_parsing(sql, expected):
    from django_dbtuning.report.suggest import relation_filters

    found = relation_filters(sql)
    assert (found[1:] if found is not None else None) == expected


def test_a_comment_in_a_statement_never_names_its_table(fresh_statements, dbtuning):
    # pg_stat_statements keeps comments verbatim; "FROM <word>" inside one must not become
    # the table a finding is "on".
    dbtuning(
        REPORT_THRESHOLDS={"n_plus_one_min_calls": 50, "n_plus_one_min_time_share": 0}
    )
    with admin_connection() as conn:
        for pk in range(60):
            conn.execute(
                "/* FROM commentsecretword */ SELECT name FROM reportapp_writer WHERE id = %s",
                [pk],
            )
    output = json.dumps(report_json("--database", "default", "--section", "statements"))
    assert "reportapp.Writer" in output
    assert "commentsecretword" not in output
