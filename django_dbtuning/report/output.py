"""Where ``dbreport --output`` writes, and how, decided by what the path is.

- a regular file, or a new path: a temporary file in the same directory, then a rename, so
  a scraper (node_exporter's textfile collector) never reads half a report; an existing
  file keeps its permission bits (and its owner and group where the OS lets us);
- a symbolic link: the same, on the file it resolves to; the link stays;
- a character device or a FIFO (``/dev/null``, a terminal, a pipe), or a name of an open
  descriptor (``/dev/stdout``, ``/dev/fd/3``): written in place, as a shell's ``>``
  does; a rename would replace the device node (as root, ``--output /dev/null`` made
  ``/dev/null`` a regular file) or the file behind the descriptor;
- a directory, a block device or a socket: refused.

Every refusal is one :class:`OutputError` line, raised before the report runs where the
path already tells (:func:`destination`), else when writing.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

NEW_FILE_MODE = 0o644
# Names of an open descriptor; what they resolve to (a file, a pipe) belongs to whoever
# opened the descriptor, and is written through, never replaced.
_DESCRIPTOR = re.compile(r"/(?:dev|proc/(?:self|thread-self|[0-9]+))/fd/[0-9]+")
_LINK_HOPS = 40  # Linux's MAXSYMLINKS


class OutputError(Exception):
    """``--output`` cannot be written; the message is one line naming the path."""


@dataclass(frozen=True)
class Destination:
    """What writing ``--output`` means for one path."""

    path: Path  # as given
    target: Path  # the file the bytes end up in (a symlink's target)
    in_place: bool  # open and write, no temporary file, no rename
    append: bool = False  # in place onto a regular file behind a descriptor
    existing: os.stat_result | None = None  # the regular file a rename replaces


def _fail(path: Path | str, problem: str) -> OutputError:
    return OutputError(" ".join(f"--output {path}: {problem}".split()))


def _names_descriptor(path: Path) -> bool:
    """Whether ``path``, or a link on the way to its target, names an open descriptor."""
    current = os.path.abspath(path)
    for _ in range(_LINK_HOPS):
        head, tail = os.path.split(current)
        current = os.path.join(os.path.realpath(head), tail)
        if _DESCRIPTOR.fullmatch(current):
            return True
        try:
            link = os.readlink(current)
        except OSError:
            return False
        current = os.path.normpath(os.path.join(os.path.dirname(current), link))
    return False


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISBLK(mode):
        return "is a block device (a report is never written onto a disk)"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is not a regular file, character device or FIFO"


def destination(raw: str) -> Destination:
    """How ``--output raw`` will be written; raises :class:`OutputError` when it cannot."""
    path = Path(raw)
    if raw.endswith(os.sep):
        raise _fail(raw, "names a directory (ends with a slash)")
    try:
        found: os.stat_result | None = path.stat()  # follows symlinks
    except FileNotFoundError:
        found = None
    except NotADirectoryError:
        raise _fail(path, f"{path.parent} is not a directory") from None
    except OSError as exc:  # a symlink loop, a component we may not search
        raise _fail(path, exc.strerror or type(exc).__name__) from None
    if found is not None and not stat.S_ISREG(found.st_mode):
        if not (stat.S_ISCHR(found.st_mode) or stat.S_ISFIFO(found.st_mode)):
            raise _fail(path, _kind(found.st_mode))
        if not os.access(path, os.W_OK):
            raise _fail(path, "no permission to write to it")
        return Destination(path, path, in_place=True)
    if found is not None and _names_descriptor(path):
        if not os.access(path, os.W_OK):
            raise _fail(path, "no permission to write to it")
        return Destination(path, path, in_place=True, append=True)
    # A regular file, a new name, or a symlink to either (a dangling one included, as a
    # shell creates its target): the rename happens where the file is.
    target = Path(os.path.realpath(path))
    _check_directory(path, target, replacing=found is not None)
    return Destination(path, target, in_place=False, existing=found)


def same_file(one: str, other: str) -> bool:
    """Whether writing ``one`` would replace the regular file ``other`` names (the same
    path spelt twice, through a symlink, or a hard link). Devices, FIFOs and descriptors
    are written in place, as a shell would, and never count; nor does a path that cannot
    be written."""
    try:
        first, second = destination(one), destination(other)
    except OutputError:
        return False
    if first.in_place or second.in_place:
        return False
    if first.target == second.target:
        return True
    return (
        first.existing is not None
        and second.existing is not None
        and os.path.samestat(first.existing, second.existing)
    )


def _check_directory(path: Path, target: Path, *, replacing: bool) -> None:
    linked = path.is_symlink()
    parent = target.parent if linked else path.parent
    if not parent.is_dir():
        problem = "is not a directory" if parent.exists() else "does not exist"
        where = f"{parent} (where {path.name} links to)" if linked else str(parent)
        raise _fail(path, f"{where} {problem}")
    if not os.access(parent, os.W_OK | os.X_OK):
        why = f" (to replace {target.name} in one step)" if replacing else ""
        raise _fail(path, f"no permission to create files in {parent}{why}")


def write(raw: str, text: str) -> Destination:
    """Write ``text`` to ``--output raw`` as :func:`destination` decides, in UTF-8."""
    where = destination(raw)
    data = text.encode("utf-8")
    try:
        if where.in_place:
            _write_in_place(where, data)
        else:
            _replace(where, data)
    except OSError as exc:
        raise _fail(where.path, f"cannot write there ({exc.strerror or exc})") from None
    return where


def _write_in_place(where: Destination, data: bytes) -> None:
    # No O_CREAT: this never makes a regular file where a device was. A FIFO blocks until
    # a reader opens it, as with a shell's ">".
    flags = os.O_WRONLY | getattr(os, "O_NOCTTY", 0)  # a terminal never becomes ours
    flags |= os.O_APPEND if where.append else 0
    fd = os.open(where.path, flags)
    with open(fd, "wb") as handle:
        handle.write(data)


def _replace(where: Destination, data: bytes) -> None:
    target = where.target
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with open(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _keep_attributes(tmp, where.existing)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _keep_attributes(tmp: str, existing: os.stat_result | None) -> None:
    if existing is None:
        os.chmod(tmp, NEW_FILE_MODE)
        return
    # Owner first: chown clears the set-id bits chmod sets. Only root may give a file
    # away, and a group only to one we belong to; otherwise the new file is ours (a
    # rename cannot keep an owner we cannot set; the README says so).
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    uid = existing.st_uid if root else -1
    with contextlib.suppress(PermissionError):
        os.chown(tmp, uid, existing.st_gid)
    os.chmod(tmp, stat.S_IMODE(existing.st_mode))
