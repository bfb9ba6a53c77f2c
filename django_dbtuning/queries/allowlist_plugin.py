"""pytest part of the allow-list: the entries no finding matched, in the session summary.

Loaded by :mod:`django_dbtuning.queries.pytest_plugin` (its ``pytest_plugins``). Only
under ``--n-plus-one=report`` or ``fail``, where every test's findings are evaluated: with
the plugin off, an entry may be unmatched only because nothing looked. Under pytest-xdist
each worker sees a part of the session: workers send the entries they matched to the
controller (``workeroutput``), which prints the summary for the whole session.
"""

from __future__ import annotations

from typing import Any

import pytest

from django_dbtuning.queries import allow_usage

SETTING = "DBTUNING['ALLOW_N_PLUS_ONE']"


# Set when a pytest-xdist worker went down with an error: its matches never arrived.
_lost_workers: list[str] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    allow_usage.reset()
    _lost_workers.clear()


def _whole_session_checked(config: pytest.Config) -> bool:
    mode = config.getoption("dbtuning_n_plus_one", default=None) or config.getini(
        "n_plus_one"
    )
    if str(mode or "off").strip() not in ("report", "fail"):
        return False
    # A worker saw part of the session; the controller prints the merged summary.
    return getattr(config, "workerinput", None) is None and not _lost_workers


_XDIST_KEY = "dbtuning_allow_matched"


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[_XDIST_KEY] = allow_usage.matched_keys()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist controller: the entries a worker matched count for the session."""
    if error is not None:
        _lost_workers.append(str(error))
    allow_usage.note_keys(getattr(node, "workeroutput", {}).get(_XDIST_KEY, ()))


def _entries() -> list[Any]:
    from django.apps import apps

    if not apps.ready:
        return []
    from django_dbtuning.conf import get_settings

    return list(get_settings().allow_n_plus_one)


def pytest_terminal_summary(
    terminalreporter: Any, exitstatus: int, config: pytest.Config
) -> None:
    if not _whole_session_checked(config):
        return
    try:
        entries = _entries()
    except ImportError:  # no Django in this session
        return
    unused = allow_usage.unused(entries)
    if not unused:
        return
    terminalreporter.section("django-dbtuning: unused allow-list entries")
    for index, entry in unused:
        shown = allow_usage.entry_text(entry)
        terminalreporter.write_line(
            f"{SETTING}[{index}] {shown} matched no finding in this session: remove it"
        )
