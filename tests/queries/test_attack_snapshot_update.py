"""--update-query-snapshots drops a block only when the test ran to its end and passed."""

from __future__ import annotations

import json

import pytest

from tests.queries.test_pytest_plugin import run_pytest

CHILD = """
import os

import pytest
from tests.testapp.models import Publisher

pytestmark = pytest.mark.django_db


def test_two_blocks(query_snapshot):
    with query_snapshot("first"):
        Publisher.objects.count()
    if os.environ.get("CHILD_STOP") == "skip":
        pytest.skip("needs a newer Django")
    if os.environ.get("CHILD_STOP") == "xfail":
        pytest.xfail("known to fail here")
    if os.environ.get("CHILD_STOP") == "fail":
        raise AssertionError("the test failed after its first block")
    with query_snapshot("second"):
        list(Publisher.objects.all())
"""


@pytest.fixture(autouse=True)
def _not_on_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)


@pytest.mark.parametrize("stop", ["skip", "xfail", "fail"])
def test_a_test_that_stops_early_keeps_the_blocks_it_did_not_reach(
    tmp_path, monkeypatch, stop
):
    snapshot = tmp_path / "test_child.queries.json"
    monkeypatch.delenv("CHILD_STOP", raising=False)
    code, output = run_pytest(tmp_path, tests=CHILD)
    assert code == 0, output
    written = snapshot.read_text()
    assert sorted(json.loads(written)["test_two_blocks"]) == ["first", "second"]
    monkeypatch.setenv("CHILD_STOP", stop)
    code, output = run_pytest(tmp_path, "--update-query-snapshots", tests=CHILD)
    assert code == (1 if stop == "fail" else 0), output
    assert "removed" not in output
    assert snapshot.read_text() == written  # "second" was dropped on a skip or xfail
