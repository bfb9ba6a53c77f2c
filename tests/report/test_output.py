"""dbreport --output writes according to what the path is: a regular file or a new name
atomically (a symlink's target, the link kept), a character device or FIFO in place and never
replaced, a name of an open descriptor through that descriptor.

No test points --output at a real /dev node: a regression would replace it. Device nodes are
made in tmp_path (root only), descriptors are reached through links made in tmp_path."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connections

from tests.report.test_report import dbreport

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
# One quick section: these tests are about where the text goes, not what it says.
QUICK = ("--format", "json", "--database", "default", "--section", "settings")
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="creating a device node (mknod) and chown need root"
)


def is_report(data: bytes | str) -> bool:
    document = json.loads(data)
    return document["version"] == 1 and "default" in document["databases"]


def leftovers(*directories: Path) -> list[str]:
    """Temporary files a write left behind (they start with a dot)."""
    return [p.name for d in directories for p in d.iterdir() if p.name.startswith(".")]


def database_url() -> str:
    s = connections.settings["default"]
    password = f":{quote(s['PASSWORD'], safe='')}" if s["PASSWORD"] else ""
    host = s["HOST"] or ""
    host = (
        f"[{host}]" if ":" in host else quote(host, safe="")
    )  # IPv6, socket directory
    return (
        f"postgres://{quote(s['USER'], safe='')}{password}@{host}:{s['PORT']}"
        f"/{quote(s['NAME'], safe='')}"
    )


def manage(
    *args: str, tmp_path: Path, dbtuning: dict[str, object] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m django dbreport`` against the test database, DBTUNING overridden."""
    settings = "tests.settings"
    env = {**os.environ, "DATABASE_URL": database_url()}
    if dbtuning is not None:
        (tmp_path / "dbreport_test_settings.py").write_text(
            f"from tests.settings import *  # noqa: F403\nDBTUNING = {dbtuning!r}\n"
        )
        settings = "dbreport_test_settings"
        env["PYTHONPATH"] = os.pathsep.join(
            [str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")]
        )
    return subprocess.run(
        [sys.executable, "-m", "django", "dbreport", f"--settings={settings}", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )


# -- character devices and FIFOs: written in place -----------------------------------------


@pytest.fixture
def null_device(tmp_path: Path) -> Path:
    """A twin of /dev/null (character device 1:3) in tmp_path."""
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return node


def still_the_device(node: Path, device: int) -> bool:
    info = os.lstat(node)
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == device


@needs_root
def test_a_character_device_is_written_not_replaced(null_device, tmp_path):
    out, error, code = dbreport(*QUICK, "--output", str(null_device))
    assert code == 0, error
    assert out == ""
    assert still_the_device(null_device, os.makedev(1, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


@needs_root
def test_a_full_device_is_one_line_exit_1_and_stays(tmp_path):
    full = tmp_path / "full"  # a twin of /dev/full: every write fails with ENOSPC
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    out, error, code = dbreport(*QUICK, "--output", str(full))
    assert code == 1
    assert error == f"--output {full}: cannot write there (No space left on device)"
    assert still_the_device(full, os.makedev(1, 7))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


@needs_root
def test_a_character_device_from_the_command_line(null_device, tmp_path):
    result = manage(*QUICK, "--output", str(null_device), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert still_the_device(null_device, os.makedev(1, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


@pytest.fixture
def reader() -> Iterator[tuple[list[bytes], Callable[[Path], threading.Thread]]]:
    """Read a FIFO to its end in a thread, as a consumer process would."""
    received: list[bytes] = []
    threads: list[threading.Thread] = []

    def start(path: Path) -> threading.Thread:
        def run() -> None:
            with open(path, "rb") as handle:
                received.append(handle.read())

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return thread

    yield received, start
    for thread in threads:
        thread.join(timeout=30)


def test_a_fifo_gets_the_report_through_it(tmp_path, reader):
    received, start = reader
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    thread = start(fifo)
    out, error, code = dbreport(*QUICK, "--output", str(fifo))
    thread.join(timeout=60)
    assert code == 0, error
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert len(received) == 1 and is_report(received[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


# -- names of an open descriptor: through the descriptor ------------------------------------


def test_a_link_to_stdout_writes_to_stdout_from_the_command_line(tmp_path):
    # What --output /dev/stdout does, through a link of our own (/dev stays untouched).
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    result = manage(*QUICK, "--output", str(link), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert is_report(result.stdout)
    assert os.readlink(link) == "/proc/self/fd/1"


def test_a_descriptor_onto_a_file_appends_and_keeps_the_file(tmp_path):
    log = tmp_path / "log"
    log.write_text("before\n")
    inode = log.stat().st_ino
    with open(log, "a") as held:
        link = tmp_path / "fd-link"
        link.symlink_to(f"/proc/self/fd/{held.fileno()}")
        out, error, code = dbreport(*QUICK, "--output", str(link))
    assert code == 0, error
    assert log.stat().st_ino == inode  # written through, not replaced
    first, rest = log.read_text().split("\n", 1)
    assert first == "before" and is_report(rest)
    assert link.is_symlink()


# -- regular files and symlinks: atomically, where the file is ------------------------------


@pytest.mark.parametrize("chain", ["absolute", "relative", "two links"])
def test_a_symlink_stays_and_its_target_gets_the_report(tmp_path, chain):
    real = tmp_path / "real"
    real.mkdir()
    target = real / "report.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target if chain == "absolute" else Path("real/report.json"))
    given = link
    if chain == "two links":
        given = tmp_path / "outer.json"
        given.symlink_to(link)
    out, error, code = dbreport(*QUICK, "--output", str(given))
    assert code == 0, error
    assert link.is_symlink() and given.is_symlink()
    assert is_report(target.read_text())
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert leftovers(tmp_path, real) == []


def test_a_dangling_symlink_gets_its_target_created(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "made.json")
    out, error, code = dbreport(*QUICK, "--output", str(link))
    assert code == 0, error
    assert link.is_symlink()
    assert is_report((tmp_path / "made.json").read_text())
    assert stat.S_IMODE((tmp_path / "made.json").stat().st_mode) == 0o644


def test_a_dangling_symlink_into_a_missing_directory_is_one_line(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "gone" / "made.json")
    out, error, code = dbreport(*QUICK, "--output", str(link))
    assert code == 1
    assert error == (
        f"--output {link}: {tmp_path / 'gone'} (where link.json links to) does not exist"
    )
    assert link.is_symlink() and not (tmp_path / "gone").exists()


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664, 0o604], ids=oct)
def test_replacing_a_regular_file_keeps_its_mode(tmp_path, mode):
    target = tmp_path / "report.prom"
    target.write_text("old")
    target.chmod(mode)
    inode = target.stat().st_ino
    out, error, code = dbreport(*QUICK, "--output", str(target))
    assert code == 0, error
    assert is_report(target.read_text())
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert (
        target.stat().st_ino != inode
    )  # a rename: a reader saw old or new, never half
    assert leftovers(tmp_path) == []


def test_a_new_file_is_0644(tmp_path):
    target = tmp_path / "report.json"
    out, error, code = dbreport(*QUICK, "--output", str(target))
    assert code == 0, error
    assert is_report(target.read_text())
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


@needs_root
def test_replacing_keeps_owner_and_group_as_root(tmp_path):
    target = tmp_path / "report.prom"
    target.write_text("old")
    os.chown(target, 65534, 65534)
    target.chmod(0o640)
    out, error, code = dbreport(*QUICK, "--output", str(target))
    assert code == 0, error
    info = target.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (
        65534,
        65534,
        0o640,
    )


# -- refused before the report runs --------------------------------------------------------


def test_a_socket_is_refused_in_one_line(tmp_path):
    import socket

    path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        out, error, code = dbreport(*QUICK, "--output", str(path))
    finally:
        server.close()
    assert code == 1
    assert error == f"--output {path}: is a socket"
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_a_trailing_slash_is_refused_in_one_line(tmp_path):
    given = f"{tmp_path / 'new'}/"
    out, error, code = dbreport(*QUICK, "--output", given)
    assert code == 1
    assert error == f"--output {given}: names a directory (ends with a slash)"
    assert not (tmp_path / "new").exists()


def test_a_symlink_loop_is_refused_in_one_line(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    out, error, code = dbreport(*QUICK, "--output", str(loop))
    assert code == 1
    assert error == f"--output {loop}: Too many levels of symbolic links"
    assert loop.is_symlink()
