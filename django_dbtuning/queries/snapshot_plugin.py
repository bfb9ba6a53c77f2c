"""pytest part of query snapshots: the ``query_snapshot`` fixture, ``--update-query-snapshots``.

Loaded by :mod:`django_dbtuning.queries.pytest_plugin` (its ``pytest_plugins``)::

    def test_book_list(client, query_snapshot):
        with query_snapshot():
            client.get("/books/")

A missing snapshot is written (and listed at the end of the session, to be committed),
except when the ``CI`` environment variable is set: there it fails, as a snapshot nobody
reviewed would otherwise pass unseen. A changed one fails with a diff;
``--update-query-snapshots`` records every snapshot the session runs instead, and drops
those of a passing test that no longer has the block.
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
    test = node.nodeid.split("::", 1)[1] if "::" in node.nodeid else node.name
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

    failed_before = request.session.testsfailed
    yield make
    for block in blocks:
        if block.outcome is not None:
            _changes[(display_path(path), test, block.name)] = block.outcome
    if update and used and request.session.testsfailed == failed_before:
        for name in forget(path, test, used):
            _changes[(display_path(path), test, name)] = "removed"


def pytest_terminal_summary(
    terminalreporter: Any, exitstatus: int, config: pytest.Config
) -> None:
    if not _changes:
        return
    terminalreporter.section("django-dbtuning: query snapshots")
    by_file: dict[str, list[tuple[str, str, str]]] = {}
    for (where, test, name), outcome in sorted(_changes.items()):
        by_file.setdefault(where, []).append((test, name, outcome))
    for where, changes in by_file.items():
        terminalreporter.write_line(f"{where}: review and commit")
        for test, name, outcome in changes:
            terminalreporter.write_line(f"  {outcome}: {test} / {name}")
    _changes.clear()
