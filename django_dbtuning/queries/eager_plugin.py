"""pytest-xdist part of the unused-eager-load summary (``--n-plus-one=report``).

Each worker judges its own tests; a load one worker never read may have been read by a
test another worker ran. So a worker hands its session findings to the controller
(``workeroutput``) instead of printing them, and the controller merges them all into the
one summary :mod:`~django_dbtuning.queries.pytest_plugin` prints: a load is listed only if
no test of the whole session read it, as without xdist.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

_OUTPUT_KEY = "dbtuning_unused_eager_loads"
_MODULE = "django_dbtuning.queries.eager_findings"


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is None or _MODULE not in sys.modules:
        return  # not an xdist worker, or nothing was tracked
    from django_dbtuning.queries.eager_findings import SESSION

    workeroutput[_OUTPUT_KEY] = SESSION.export()
    SESSION.clear()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist controller: merge a worker's findings into the session's."""
    data = getattr(node, "workeroutput", {}).get(_OUTPUT_KEY)
    if not data:
        return
    from django_dbtuning.queries.eager_findings import SESSION

    SESSION.merge(data)
