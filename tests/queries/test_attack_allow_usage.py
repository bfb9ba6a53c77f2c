"""The unused allow-list summary on entries the checks would reject: no crash."""

from __future__ import annotations

from django_dbtuning.queries import allow_usage
from tests.queries.test_allow_usage import CHILD, ENTRIES
from tests.queries.test_pytest_plugin import run_pytest

ODD = [*ENTRIES, {"model": "testapp.Book", 1: "author"}, {("a", "b"): "c"}, "x"]


def test_odd_entries_have_keys_and_are_unused():
    allow_usage.reset()
    assert [index for index, _ in allow_usage.unused(ODD)] == list(range(len(ODD)))


def test_the_summary_lists_odd_entries_instead_of_crashing(tmp_path):
    # json.dumps(sort_keys=True) raised TypeError on an int key beside a str one, and
    # the session ended in INTERNALERROR (exit code 3) from pytest_terminal_summary.
    code, output = run_pytest(
        tmp_path, "--n-plus-one=fail", tests=CHILD.replace(repr(ENTRIES), repr(ODD))
    )
    assert code == 0, output
    lines = [line for line in output.splitlines() if "matched no finding" in line]
    assert lines[-3:] == [
        "DBTUNING['ALLOW_N_PLUS_ONE'][4] {'model': 'testapp.Book', 1: 'author'} "
        "matched no finding in this session: remove it",
        "DBTUNING['ALLOW_N_PLUS_ONE'][5] {('a', 'b'): 'c'} matched no finding in this "
        "session: remove it",
        "DBTUNING['ALLOW_N_PLUS_ONE'][6] \"x\" matched no finding in this session: "
        "remove it",
    ]
