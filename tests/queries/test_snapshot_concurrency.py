"""Query snapshot files written by several processes at once (pytest-xdist workers)."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing

import pytest

from django_dbtuning.queries.snapshots import lock_path, parse, render
from tests.queries.snapshot_writers import write_many
from tests.queries.test_pytest_plugin import run_pytest


def test_concurrent_writers_lose_no_entry(tmp_path):
    """Four processes writing one file: every entry of every process is in it."""
    path = tmp_path / "test_shared.queries.json"
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(target=write_many, args=(str(path), w, 25, start))
        for w in range(4)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    recorded = json.loads(path.read_text())
    assert sorted(recorded) == sorted(f"w{w}_{i}" for w in range(4) for i in range(25))
    assert recorded["w3_7"] == {"1": [{"count": 1, "sql": "SELECT 3"}]}
    # Neither the lock file nor a temporary file is left beside the tests.
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert not lock_path(path).exists()


XDIST_CHILD = """
import pytest
from tests.testapp.models import Publisher

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("n", range(8))
def test_publishers(query_snapshot, n):
    with query_snapshot():
        list(Publisher.objects.filter(name="x")[:n + 1])
"""


@pytest.mark.skipif(
    importlib.util.find_spec("xdist") is None,
    reason="pytest-xdist is not installed (it belongs in the test dependency group)",
)
def test_xdist_workers_write_one_file_and_one_summary(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    code, output = run_pytest(tmp_path, "-n", "2", tests=XDIST_CHILD)
    assert code == 0, output
    assert "bringing up nodes" in output  # pytest-xdist ran it
    recorded = json.loads((tmp_path / "test_child.queries.json").read_text())
    assert sorted(recorded) == [f"test_publishers[{n}]" for n in range(8)]
    # The workers' changes reach the controller's summary.
    assert output.count("django-dbtuning: query snapshots") == 1
    for n in range(8):
        assert f"written: test_publishers[{n}] / 1" in output
    # Pruning a deleted test's entries works from the workers too, reported once.
    path = tmp_path / "test_child.queries.json"
    path.write_text(render({**parse(path.read_text()), "test_deleted": {"1": []}}))
    code, output = run_pytest(
        tmp_path, "--update-query-snapshots", "-n", "2", tests=XDIST_CHILD
    )
    assert code == 0, output
    assert output.count("removed: test_deleted / 1") == 1
    assert "test_deleted" not in json.loads(path.read_text())
