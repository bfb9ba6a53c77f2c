"""Query snapshots: the SQL shapes a block runs, kept in a reviewable file next to its test.

A snapshot is the list of a block's statements in execution order, each as its fingerprint
(:mod:`~django_dbtuning.queries.fingerprint`: literals and parameters folded away, the outer
select list collapsed to ``…`` so that adding a column to a model does not touch every
snapshot), consecutive repeats of one shape folded into a ``count``. The alias is kept only
when it is not ``"default"``: a query moving to a replica is a change worth reviewing.

One JSON file per test module (``test_views.py`` -> ``test_views.queries.json``), keyed by
test (its node id within the module) and snapshot name, both sorted, one statement per line,
so a change reads as a small diff in code review. The text depends on nothing but the
statements: not on the Python hash seed, the machine or the order tests ran in.
"""

from __future__ import annotations

import difflib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from django_dbtuning.exceptions import DbTuningError, QuerySnapshotMismatch
from django_dbtuning.queries.fingerprint import display_sql

if sys.platform != "win32":
    import fcntl

SUFFIX = ".queries.json"
NEW_FILE_MODE = 0o644  # mkstemp's own 0o600 would hide a new file from the group
UPDATE_OPTION = "--update-query-snapshots"

Entry = dict[str, Any]
"""One line of a snapshot: ``{"count": 3, "alias": "replica", "sql": "SELECT …"}``."""
Snapshots = dict[str, dict[str, list[Entry]]]
"""A snapshot file: test -> snapshot name -> entries."""


# --- the file format ----------------------------------------------------------------------


def entries_of(queries: Iterable[tuple[str, str]]) -> list[Entry]:
    """The snapshot entries of ``(alias, fingerprint)`` pairs, in order, runs folded."""
    entries: list[Entry] = []
    for alias, fingerprint in queries:
        sql = display_sql(fingerprint, limit=sys.maxsize)
        last = entries[-1] if entries else None
        if (
            last is not None
            and last["sql"] == sql
            and last.get("alias") == _alias(alias)
        ):
            last["count"] += 1
        else:
            entries.append(_entry(1, _alias(alias), sql))
    return entries


def _alias(alias: str) -> str | None:
    return None if alias == "default" else alias


def _entry(count: int, alias: str | None, sql: str) -> Entry:
    # Always this key order: a line of the file reads count, alias, statement.
    entry: Entry = {"count": count}
    if alias is not None:
        entry["alias"] = alias
    entry["sql"] = sql
    return entry


def entry_lines(entries: list[Entry], *, ascii_only: bool = False) -> list[str]:
    """One JSON object per entry: the lines of the file and of a diff."""
    return [json.dumps(e, ensure_ascii=ascii_only) for e in entries]


def render(snapshots: Snapshots) -> str:
    """The file's text: sorted, one entry per line; ``parse(render(s)) == s``."""
    try:
        text = _render(snapshots, ascii_only=False)
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only \\u escapes can carry it
        text = _render(snapshots, ascii_only=True)
    return text


def _render(snapshots: Snapshots, *, ascii_only: bool) -> str:
    def key(text: str) -> str:
        return json.dumps(text, ensure_ascii=ascii_only)

    lines = ["{"]
    tests = sorted(snapshots)
    for t, test in enumerate(tests):
        lines.append(f"  {key(test)}: {{")
        names = sorted(snapshots[test])
        for n, name in enumerate(names):
            comma = "," if n < len(names) - 1 else ""
            body = entry_lines(snapshots[test][name], ascii_only=ascii_only)
            if not body:
                lines.append(f"    {key(name)}: []{comma}")
                continue
            lines.append(f"    {key(name)}: [")
            lines.extend(f"      {line}," for line in body[:-1])
            lines.append(f"      {body[-1]}")
            lines.append(f"    ]{comma}")
        lines.append("  }," if t < len(tests) - 1 else "  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def parse(text: str, where: str = "query snapshot file") -> Snapshots:
    """Read a snapshot file's text; a clear error naming ``where`` if it is not one."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _corrupt(where, f"not JSON ({exc})") from None
    except RecursionError:  # json's decoder recurses once per nesting level
        raise _corrupt(where, "nested too deeply to be one") from None
    if not isinstance(data, dict):
        raise _corrupt(where, "the top level must be an object of tests")
    snapshots: Snapshots = {}
    for test, named in data.items():
        if not isinstance(named, dict):
            raise _corrupt(where, f"{test!r} must be an object of snapshot names")
        snapshots[test] = {}
        for name, entries in named.items():
            if not isinstance(entries, list):
                raise _corrupt(where, f"{test!r} / {name!r} must be a list of queries")
            snapshots[test][name] = [
                _parse_entry(e, where, test, name) for e in entries
            ]
    return snapshots


def _parse_entry(entry: Any, where: str, test: str, name: str) -> Entry:
    if isinstance(entry, dict):
        count, alias, sql = entry.get("count"), entry.get("alias"), entry.get("sql")
        if (
            set(entry) <= {"count", "alias", "sql"}
            and type(count) is int
            and count >= 1
            and isinstance(sql, str)
            and (alias is None or (isinstance(alias, str) and alias != "default"))
        ):
            return _entry(count, alias, sql)
    raise _corrupt(
        where,
        f"{test!r} / {name!r}: {entry!r} is not a query "
        '({"count": int >= 1, "alias": str (not "default"), optional, "sql": str})',
    )


def _corrupt(where: str, reason: str) -> DbTuningError:
    return DbTuningError(
        f"{where} is not a query snapshot file: {reason}; fix it, or delete it and run "
        f"pytest {UPDATE_OPTION}"
    )


def diff(recorded: list[Entry], current: list[Entry], where: str) -> str:
    """A unified diff of two snapshots, one statement per line."""
    return "\n".join(
        difflib.unified_diff(
            entry_lines(recorded),
            entry_lines(current),
            fromfile=f"{where} (recorded)",
            tofile="this run",
            lineterm="",
        )
    )


# --- files -----------------------------------------------------------------------------------


def snapshot_path(path: str | os.PathLike[str]) -> Path:
    """The snapshot file of a test module (``test_x.py`` -> ``test_x.queries.json``)."""
    path = Path(path)
    return path.with_suffix(SUFFIX) if path.suffix == ".py" else path


def display_path(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if relative.startswith("..") else relative


def read(path: Path) -> Snapshots:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as exc:
        raise _corrupt(display_path(path), f"not UTF-8 text ({exc.reason})") from None
    return parse(text, display_path(path))


def update(path: Path, change: Callable[[Snapshots], None]) -> None:
    """Apply ``change`` to the file as it is now and replace it in one step.

    Read, changed and replaced under an exclusive lock (:func:`locked`), so processes
    writing one file at once (pytest-xdist workers running tests of one module) merge
    their entries instead of the last writer dropping the others'; replaced atomically
    (a temporary file, then ``os.replace``), so a reader never sees half a file.
    """
    with locked(path):
        snapshots = read(path)
        change(snapshots)
        text = render(snapshots)
        fd, temporary = tempfile.mkstemp(
            prefix=path.name + ".", suffix=".tmp", dir=path.parent
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as file:
                file.write(text)
            os.chmod(temporary, _mode(path))
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _mode(path: Path) -> int:
    """The permissions the file has (a rename would drop them), or a new file's."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return NEW_FILE_MODE


def lock_path(path: Path) -> Path:
    """The sibling file :func:`locked` holds (``test_x.queries.json.lock``), while held."""
    return path.with_name(path.name + ".lock")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``'s sibling lock file; POSIX only.

    The lock file is removed on release, so none is left beside the tests. That is safe
    because a process that waited on a file another one removed sees, once it has the
    lock, that the name now points elsewhere (or nowhere) and locks again. Where
    ``fcntl`` does not exist (Windows), nothing is locked: concurrent writers of one file
    can then lose each other's entries.
    """
    if sys.platform == "win32":  # pragma: no cover
        yield
        return
    where = lock_path(path)
    while True:
        fd = os.open(where, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(where)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if current is not None and (current.st_dev, current.st_ino) == (
            mine.st_dev,
            mine.st_ino,
        ):
            break
        os.close(fd)  # removed or replaced by the previous holder: lock the new one
    try:
        yield
    finally:
        try:
            os.unlink(where)  # still holding the lock: nobody else holds this file
        finally:
            os.close(fd)


def in_ci() -> bool:
    """``CI`` is set to something other than empty, 0, false or no (as CI services do)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# --- checking one snapshot -----------------------------------------------------------------


def check(
    path: Path,
    test: str,
    name: str,
    current: list[Entry],
    *,
    update_mode: bool,
    create: bool,
) -> str | None:
    """Compare ``current`` with the recorded snapshot; ``"written"``/``"updated"`` or None.

    Raises :class:`~django_dbtuning.QuerySnapshotMismatch` on a difference (unless
    ``update_mode``) or a missing snapshot when ``create`` is false.
    """
    __tracebackhide__ = True  # pytest shows the user's block and the diff, not this
    where = display_path(path)
    recorded = read(path).get(test, {}).get(name)
    if recorded == current:
        return None
    if recorded is None and not (create or update_mode):
        raise QuerySnapshotMismatch(
            f"no query snapshot {test!r} / {name!r} in {where}, and CI is set, so none is "
            f"written: run pytest {UPDATE_OPTION} locally and commit {where}"
        )
    if recorded is not None and not update_mode:
        changes = diff(recorded, current, where)
        raise QuerySnapshotMismatch(
            f"the queries of {test!r} / {name!r} changed:\n{changes}\n"
            f"If the new queries are right, run pytest {UPDATE_OPTION} and commit "
            f"{where}.",
            diff=changes,
        )

    def store(snapshots: Snapshots) -> None:
        snapshots.setdefault(test, {})[name] = current

    update(path, store)
    return "written" if recorded is None else "updated"


def forget(path: Path, test: str, keep: Iterable[str]) -> list[str]:
    """Drop ``test``'s snapshots not named in ``keep`` (the blocks it no longer has)."""
    keep = set(keep)
    stale = sorted(set(read(path).get(test, {})) - keep)
    if stale:

        def drop(snapshots: Snapshots) -> None:
            named = snapshots.get(test, {})
            for name in stale:
                named.pop(name, None)
            if not named:
                snapshots.pop(test, None)

        update(path, drop)
    return stale


def prune(path: Path, tests: Iterable[str]) -> list[tuple[str, str]]:
    """Drop the snapshots of every pytest test not in ``tests`` (tests that no longer
    exist); ``(test, name)`` removed. Only for a session that collected every test of the
    module. Keys pytest cannot have made (``snapshot_queries(__file__, self.id())`` in a
    unittest ``TestCase``: ``app.tests.BookTests.test_list``) are never dropped.
    """
    keep = set(tests)
    if not path.exists():
        return []
    removed: list[tuple[str, str]] = []

    def stale(snapshots: Snapshots) -> list[str]:
        return sorted(t for t in set(snapshots) - keep if _pytest_key(t))

    def drop(snapshots: Snapshots) -> None:
        for test in stale(snapshots):
            removed.extend((test, name) for name in sorted(snapshots.pop(test)))

    if stale(read(path)):
        update(path, drop)
    return removed


def _pytest_key(test: str) -> bool:
    """``test_x``, ``test_x[1-a]``, ``TestX::test_y``: a node id within its module."""
    return all(part.isidentifier() for part in test.split("[", 1)[0].split("::"))


class snapshot_queries:  # named like a function, by contract
    """Check a block's queries against a snapshot file: ``with snapshot_queries(...):``.

    The pytest fixture ``query_snapshot`` builds these for a test; use this class directly
    from unittest (``snapshot_queries(__file__, self.id())``) or a script.

    Args:
        path: the test module (``test_views.py`` -> ``test_views.queries.json`` beside it)
            or the snapshot file itself.
        test: the key of the test in the file.
        name: the key of this block within the test (default ``"1"``).
        update: record this run's queries instead of comparing (``--update-query-snapshots``).
        create: write a missing snapshot (default: yes, unless the ``CI`` environment
            variable is set, where a missing snapshot fails).
        using: only these database aliases (default: all but ``IGNORE_ALIASES``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        test: str,
        name: str = "1",
        *,
        update: bool = False,
        create: bool | None = None,
        using: str | list[str] | tuple[str, ...] | None = None,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or a path, not {path!r}")
        given: tuple[tuple[str, object], ...] = (("test", test), ("name", name))
        for label, value in given:
            if not isinstance(value, str) or not value:
                raise TypeError(f"{label} must be a non-empty str, not {value!r}")
        from django_dbtuning.queries.api import track_queries

        self.path = snapshot_path(path)
        self.test = test
        self.name = name
        self.update = bool(update)
        self.create = (not in_ci()) if create is None else bool(create)
        self.outcome: str | None = None
        """After the block: ``"written"``, ``"updated"`` or None (unchanged)."""
        self._tracker = track_queries(using=using)
        self._report: Any = None

    def __enter__(self) -> snapshot_queries:
        self._report = self._tracker.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        self._tracker.__exit__(exc_type, exc, traceback)
        if exc_type is not None:
            return  # the block's own failure wins; its queries prove nothing
        current = entries_of((q.alias, q.fingerprint) for q in self._report.queries)
        self.outcome = check(
            self.path,
            self.test,
            self.name,
            current,
            update_mode=self.update,
            create=self.create,
        )

    async def __aenter__(self) -> snapshot_queries:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)
