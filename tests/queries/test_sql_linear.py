"""Fingerprinting stays linear in the statement's length, whatever the statement holds.

A statement is fingerprinted on the request path the first time it is seen, so a pattern that
backtracks over a long run (NBSP that one pattern's \\s matched and the whitespace collapse
did not fold: 40,000 of them took 20 s) is a denial of service. These 1 MB texts run in a
child process under a timeout that a linear pass meets with a wide margin on a loaded CI
machine (each takes well under a second here) and a quadratic one misses by hours: there
is no timing assertion, only "it finished".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180

CHILD = r"""
import json, sys
from django_dbtuning.queries.fingerprint import display_sql, fingerprint, sql_info

MB = 1_000_000

def run(unit, head="", tail=""):
    return head + unit * ((MB - len(head) - len(tail)) // len(unit)) + tail

CASES = {
    "nbsp in a CASE": run("\u00a0", "UPDATE t SET a = CASE", "x"),
    "nbsp before WHEN": run("\u00a0WHEN (", "UPDATE t SET a = CASE"),
    "nbsp in a select list": run("\u00a0", "SELECT a", "x"),
    "em space before FROM": run("\u2003", "SELECT a", "FROM x"),
    "nbsp in an IN list": run(",\u00a0%s", "SELECT * FROM t WHERE a IN (%s"),
    "nbsp after <": run("\u00a0", "SELECT * FROM t WHERE a <", "b"),
    "quotes, odd": run("'", "SELECT ", "'"),
    "quotes, doubled in a name": run('""', 'SELECT "', "x"),
    "open parentheses": run("(", "SELECT "),
    "open rows": run("(%s, ", "SELECT * FROM t WHERE (a, b) IN ("),
    "WHEN": run(" WHEN", "UPDATE t SET a = CASE"),
    "WHEN (": run(" WHEN (", "UPDATE t SET a = CASE"),
    "commas": run(",", "SELECT "),
}
for name in sys.argv[1:]:
    sql = CASES[name]
    shape = sql_info(sql).shape.text
    shown = display_sql(sql)
    assert fingerprint(sql) == shape
    print(json.dumps([name, shape[:40], shape[-2:], shown[:40]]), flush=True)
"""

NAMES = [
    "nbsp in a CASE",
    "nbsp before WHEN",
    "nbsp in a select list",
    "em space before FROM",
    "nbsp in an IN list",
    "nbsp after <",
    "quotes, odd",
    "quotes, doubled in a name",
    "open parentheses",
    "open rows",
    "WHEN",
    "WHEN (",
    "commas",
]


@pytest.fixture(scope="module")
def shapes() -> dict[str, list[str]]:
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, *NAMES],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        finished = expired.stdout or ""
        if isinstance(finished, bytes):
            finished = finished.decode()
        pytest.fail(
            f"not linear: still running after {TIMEOUT} s; finished:\n{finished}"
        )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return {name: rest for name, *rest in lines}


def test_every_pathological_text_is_fingerprinted(shapes: dict[str, list[str]]) -> None:
    assert sorted(shapes) == sorted(NAMES)


@pytest.mark.parametrize(
    ("name", "head", "end"),
    [
        # NBSP is a name character to PostgreSQL: "CASE\u00a0…x" is one identifier.
        ("nbsp in a CASE", "UPDATE t SET a = CASE\u00a0\u00a0", "\u00a0x"),
        ("nbsp in a select list", "SELECT a\u00a0\u00a0", "\u00a0x"),
        ("em space before FROM", "SELECT a\u2003\u2003", " x"),
        ("nbsp in an IN list", "SELECT * FROM t WHERE a IN (%s,\u00a0%s", "%s"),
        ("quotes, odd", "SELECT ?", "?…"),
        ("quotes, doubled in a name", "SELECT ?…", "?…"),
        ("open rows", "SELECT * FROM t WHERE (a, b) IN ((%s, (%s, ", "s,"),
        ("commas", "SELECT ,,,,", ",,"),
    ],
)
def test_the_shapes_are_what_the_server_reads(
    shapes: dict[str, list[str]], name: str, head: str, end: str
) -> None:
    shape_head, shape_end, _shown = shapes[name]
    assert shape_head.startswith(head[:40])
    assert shape_end == end
