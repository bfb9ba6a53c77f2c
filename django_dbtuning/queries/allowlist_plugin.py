"""pytest part of the allow-list: the entries no finding matched, in the session summary.

Loaded by :mod:`django_dbtuning.queries.pytest_plugin` (its ``pytest_plugins``). Only
under ``--n-plus-one=report`` or ``fail``, where every test's findings are evaluated: with
the plugin off, an entry may be unmatched only because nothing looked. Not under
pytest-xdist, whose workers each see a part of the session.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from django_dbtuning.queries import allow_usage

SETTING = "DBTUNING['ALLOW_N_PLUS_ONE']"


def pytest_sessionstart(session: pytest.Session) -> None:
    allow_usage.reset()


def _whole_session_checked(config: pytest.Config) -> bool:
    mode = config.getoption("dbtuning_n_plus_one", default=None) or config.getini(
        "n_plus_one"
    )
    if str(mode or "off").strip() not in ("report", "fail"):
        return False
    distributed = getattr(config, "workerinput", None) is not None or bool(
        config.getoption("numprocesses", default=None)
    )
    return not distributed


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
        shown = json.dumps(entry, sort_keys=True, ensure_ascii=False, default=repr)
        terminalreporter.write_line(
            f"{SETTING}[{index}] {shown} matched no finding in this session: remove it"
        )
