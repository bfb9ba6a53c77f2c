"""pytest plugin, auto-loaded through the ``pytest11`` entry point.

* ``@pytest.mark.no_n_plus_one``: fail this test if it triggers an N+1 (its own queries and
  those of requests it makes through the test client).
* ``--n-plus-one=fail`` (or ``n_plus_one = fail`` in the ini file): the same for every
  test; ``@pytest.mark.allow_n_plus_one`` exempts one.
* ``--n-plus-one=report``: never fail, print a summary of every finding at the end,
  grouped by location, and of the unused eager loads no test of the session read.
* ``query_snapshot`` fixture and ``--update-query-snapshots``: see
  :mod:`django_dbtuning.queries.snapshot_plugin`; allow-list entries that matched nothing:
  :mod:`django_dbtuning.queries.allowlist_plugin`.

Nothing is imported from Django until a test actually runs with tracking on, so the plugin
costs nothing in projects that do not use it.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

import pytest

# Query snapshots, and the summary of unused allow-list entries: modules of their own.
pytest_plugins = [
    "django_dbtuning.queries.snapshot_plugin",
    "django_dbtuning.queries.allowlist_plugin",
    "django_dbtuning.queries.eager_plugin",  # merges pytest-xdist workers' findings
]

_MODES = ("off", "report", "fail")
_findings: dict[str, dict[str, Any]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("django-dbtuning")
    group.addoption(
        "--n-plus-one",
        dest="dbtuning_n_plus_one",
        choices=_MODES,
        default=None,
        help="off (default): only marked tests are checked; report: summarise N+1 "
        "findings at the end; fail: fail every test that triggers an N+1.",
    )
    parser.addini(
        "n_plus_one",
        "django-dbtuning N+1 mode: off, report or fail (see --n-plus-one).",
        default="off",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "no_n_plus_one: fail the test if it triggers an N+1 query pattern (django-dbtuning).",
    )
    config.addinivalue_line(
        "markers",
        "allow_n_plus_one: do not fail this test on N+1 findings, whatever --n-plus-one "
        "says (django-dbtuning).",
    )
    mode = _mode(config)
    if mode not in _MODES:
        raise pytest.UsageError(
            f"n_plus_one = {mode!r} in the ini file; expected one of {', '.join(_MODES)}"
        )


def _mode(config: pytest.Config) -> str:
    option = config.getoption("dbtuning_n_plus_one", default=None)
    return str(option or config.getini("n_plus_one") or "off").strip()


def _django_ready() -> bool:
    try:
        from django.apps import apps
    except ImportError:
        return False
    return apps.ready


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    mode = _mode(item.config)
    fail = item.get_closest_marker("no_n_plus_one") is not None or (
        mode == "fail" and item.get_closest_marker("allow_n_plus_one") is None
    )
    if not (fail or mode == "report") or not _django_ready():
        return (yield)
    from django_dbtuning.queries.policy import Policy, enforce
    from django_dbtuning.queries.units import QueryReport, finish_unit, start_unit

    # Report mode also reports unused eager loads (merged over the session).
    unit = start_unit(unused_eager_loads=True if mode == "report" else None)
    try:
        result = yield
    finally:
        finish_unit(unit)
    report = QueryReport(unit)
    if unit.eager is not None:
        from django_dbtuning.queries.eager_findings import SESSION

        SESSION.add(unit.eager, item.nodeid)
    for finding in report.n_plus_one:
        entry = _findings.setdefault(
            finding.location + "\0" + (finding.relation or finding.fingerprint),
            {"finding": finding, "count": 0, "tests": []},
        )
        entry["count"] += finding.count
        entry["tests"].append(item.nodeid)
    # N+1s only: duplicates and budgets are the middleware's and query_budget's.
    policy = Policy(n_plus_one="raise" if fail else "ignore", over_budget="ignore")
    enforce(report, policy, item.nodeid)
    return result


def pytest_terminal_summary(
    terminalreporter: Any, exitstatus: int, config: pytest.Config
) -> None:
    _eager_summary(terminalreporter)
    if not _findings:
        return
    write = terminalreporter.write_line
    terminalreporter.section("django-dbtuning: N+1 queries")
    by_location: dict[str, list[dict[str, Any]]] = {}
    for entry in _findings.values():
        by_location.setdefault(entry["finding"].location, []).append(entry)
    for location in sorted(by_location):
        write(location)
        for entry in by_location[location]:
            finding = entry["finding"]
            tests = sorted(set(entry["tests"]))
            subject = finding.relation or finding.model or "query"
            write(
                f"  {subject}: {entry['count']} queries in {len(tests)} test(s); "
                f"fix: {finding.hint}"
            )
            for nodeid in tests[:3]:
                write(f"    {nodeid}")
            if len(tests) > 3:
                write(f"    ... and {len(tests) - 3} more")
    _findings.clear()


# --- pytest-xdist: a worker's N+1 findings go to the controller's summary ----------------

_XDIST_KEY = "dbtuning_n_plus_one"
_SUMMARY_FIELDS = ("location", "relation", "model", "hint")


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is None or not _findings:
        return  # not a worker (the summary is printed here), or nothing found
    workeroutput[_XDIST_KEY] = [
        [
            key,
            {f: getattr(e["finding"], f) for f in _SUMMARY_FIELDS},
            e["count"],
            e["tests"],
        ]
        for key, e in _findings.items()
    ]
    _findings.clear()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist controller: merge a worker's findings into the session's summary."""
    from types import SimpleNamespace

    for key, fields, count, tests in getattr(node, "workeroutput", {}).get(
        _XDIST_KEY, ()
    ):
        finding = SimpleNamespace(**fields)  # what the summary reads of a finding
        entry = _findings.setdefault(key, {"finding": finding, "count": 0, "tests": []})
        entry["count"] += count
        entry["tests"].extend(tests)


def _eager_summary(terminalreporter: Any) -> None:
    """Unused eager loads no test of the session read (report mode)."""
    if "django_dbtuning.queries.eager_findings" not in sys.modules:
        return  # nothing tracked them: do not import anything
    from django_dbtuning.queries.eager_findings import SESSION

    lines = SESSION.lines()
    SESSION.clear()
    if lines:
        terminalreporter.section("django-dbtuning: unused eager loads (info)")
        for line in lines:
            terminalreporter.write_line(line)
