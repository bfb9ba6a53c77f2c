"""pytest part of query snapshots: the ``query_snapshot`` fixture, ``--update-query-snapshots``.

Loaded by :mod:`django_dbtuning.queries.pytest_plugin` (its ``pytest_plugins``)::

    def test_book_list(client, query_snapshot):
        with query_snapshot():
            client.get("/books/")

A missing snapshot is written (and listed at the end of the session, to be committed),
except when the ``CI`` environment variable is set: there it fails, as a snapshot nobody
reviewed would otherwise pass unseen. A changed one fails with a diff;
``--update-query-snapshots`` records every snapshot the session runs instead, and drops
those of a passing test that no longer has the block. A session that collected every test
of a module (no ``-k``, ``-m``, node ids, ``--lf``...) also drops the snapshots of the
module's tests that no longer exist; a selection keeps them, and the summary says so.

Under pytest-xdist each worker writes under a lock (:func:`~.snapshots.locked`), and the
workers' changes reach the controller's summary through ``workeroutput``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from django_dbtuning.queries.snapshots import snapshot_queries

# Nothing from Django or this package is imported before a test asks for the fixture.

# (snapshot file, test, name) -> "written" / "updated" / "removed", for the summary.
_changes: dict[tuple[str, str, str], str] = {}
# Snapshot file -> the test keys this session collected from its module.
_collected: dict[Path, set[str]] = {}
# Why the session did not collect every test of its modules (-k, -m, node ids...), if so.
_selection: list[str] = []
# Under --update-query-snapshots, a selection kept the entries of tests it did not collect.
_kept_for_selection: list[bool] = []
_OUTPUT_KEY = "dbtuning_query_snapshots"
# Set on a test's item when its call passed (not skipped, failed or xfailed).
_PASSED = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("django-dbtuning")
    group.addoption(
        "--update-query-snapshots",
        dest="dbtuning_update_query_snapshots",
        action="store_true",
        default=False,
        help="record the queries of every query_snapshot block that runs, instead of "
        "failing when they changed (django-dbtuning).",
    )


@pytest.fixture
def query_snapshot(
    request: pytest.FixtureRequest,
) -> Generator[Callable[..., snapshot_queries], None, None]:
    """``with query_snapshot():`` checks a block's queries against the module's snapshots.

    Call it once per block; ``query_snapshot("detail")`` names a block (unnamed blocks
    are ``"1"``, ``"2"``... in order). ``using=`` limits it to some database aliases.
    """
    from django_dbtuning.queries.snapshots import (
        display_path,
        forget,
        snapshot_queries,
    )

    node = request.node
    path = Path(node.path).with_suffix(".queries.json")
    test = _test_key(node.nodeid, node.name)
    update = bool(request.config.getoption("dbtuning_update_query_snapshots"))
    used: list[str] = []
    blocks: list[snapshot_queries] = []

    def make(
        name: str | None = None,
        *,
        using: str | list[str] | tuple[str, ...] | None = None,
    ) -> snapshot_queries:
        if name is None:
            name = str(len(used) + 1)
        if name in used:
            raise ValueError(
                f"query snapshot {name!r} is used twice in {test}: give each block its "
                "own name"
            )
        used.append(name)
        block = snapshot_queries(path, test, name, update=update, using=using)
        blocks.append(block)
        return block

    yield make
    for block in blocks:
        if block.outcome is not None:
            _changes[(display_path(path), test, block.name)] = block.outcome
    # Only a test that ran to its end has no other blocks: one that failed, skipped or
    # xfailed part-way keeps those it did not reach.
    if update and used and node.stash.get(_PASSED, False):
        for name in forget(path, test, used):
            _changes[(display_path(path), test, name)] = "removed"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_PASSED] = report.passed and not hasattr(report, "wasxfail")
    return report


def _test_key(nodeid: str, name: str) -> str:
    return nodeid.split("::", 1)[1] if "::" in nodeid else name


def pytest_deselected(items: list[pytest.Item]) -> None:
    # -k, -m, --deselect, --lf, --sw all report what they drop here.
    if items and "deselected" not in _selection:
        _selection.append("deselected")


def pytest_collection_finish(session: pytest.Session) -> None:
    _collected.clear()
    if any("::" in str(arg) for arg in session.config.args):
        _selection.append("node ids")
    for item in session.items:
        path = Path(item.path).with_suffix(".queries.json")
        _collected.setdefault(path, set()).add(_test_key(item.nodeid, item.name))


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if config.getoption("dbtuning_update_query_snapshots", default=False):
        _prune_deleted_tests()
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: hand the summary over
        workeroutput[_OUTPUT_KEY] = {
            "changes": [[*key, outcome] for key, outcome in _changes.items()],
            "kept": bool(_kept_for_selection),
        }
        _changes.clear()
    _collected.clear()
    _selection.clear()


def _prune_deleted_tests() -> None:
    """Drop the entries of tests that no longer exist, if every test was collected."""
    files = [path for path in _collected if path.exists()]
    if not files:
        return
    if _selection:
        _kept_for_selection.append(True)
        return
    from django_dbtuning.exceptions import DbTuningError
    from django_dbtuning.queries.snapshots import display_path, prune

    for path in sorted(files):
        try:
            removed = prune(path, _collected[path])
        except DbTuningError:
            continue  # a broken file: its tests already failed, naming it
        for test, name in removed:
            _changes[(display_path(path), test, name)] = "removed"


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist controller: merge a worker's snapshot changes into the summary."""
    output = getattr(node, "workeroutput", {}).get(_OUTPUT_KEY)
    if not output:
        return
    for where, test, name, outcome in output["changes"]:
        _changes[(where, test, name)] = outcome
    if output["kept"]:
        _kept_for_selection.append(True)


def pytest_terminal_summary(
    terminalreporter: Any, exitstatus: int, config: pytest.Config
) -> None:
    kept = bool(_kept_for_selection)
    _kept_for_selection.clear()
    if not (_changes or kept):
        return
    terminalreporter.section("django-dbtuning: query snapshots")
    if kept:
        terminalreporter.write_line(
            "entries of tests this session did not collect are kept (it ran a "
            "selection: -k, -m, node ids, --lf...); run pytest --update-query-snapshots "
            "on whole modules to drop those of deleted tests"
        )
    by_file: dict[str, list[tuple[str, str, str]]] = {}
    for (where, test, name), outcome in sorted(_changes.items()):
        by_file.setdefault(where, []).append((test, name, outcome))
    for where, changes in by_file.items():
        terminalreporter.write_line(f"{where}: review and commit")
        for test, name, outcome in changes:
            terminalreporter.write_line(f"  {outcome}: {test} / {name}")
    _changes.clear()
