"""--n-plus-one=report under pytest-xdist: one N+1 summary, the workers' findings merged."""

from __future__ import annotations

import importlib.util

import pytest

from tests.queries.test_pytest_plugin import TESTS, run_pytest


@pytest.mark.skipif(
    importlib.util.find_spec("xdist") is None,
    reason="pytest-xdist is not installed (it belongs in the test dependency group)",
)
def test_report_mode_under_xdist_prints_one_merged_summary(tmp_path):
    code, output = run_pytest(tmp_path, "--n-plus-one=report", "-n", "2", tests=TESTS)
    assert code == 1, output  # the marked naive test fails, as without xdist
    assert "bringing up nodes" in output  # pytest-xdist ran it
    assert output.count("django-dbtuning: N+1 queries") == 1
    assert (
        '  testapp.Book.author: 9 queries in 3 test(s); fix: add .select_related("author")'
        " to the Book queryset" in output
    )
    for test in ("test_allowed_naive", "test_marked_naive", "test_unmarked_naive"):
        assert f"    ::{test}\n" in output
