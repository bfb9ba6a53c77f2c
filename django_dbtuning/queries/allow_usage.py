"""Which ``ALLOW_N_PLUS_ONE`` entries matched a finding in this process.

:func:`~django_dbtuning.queries.findings.is_allowed` notes every entry that covers a
finding; the pytest plugin lists, at the end of a session, the entries that never did
(zeal#48): an entry nothing matches any more hides nothing and should go. Entries are
known by their content, so a settings snapshot rebuilt by ``override_settings`` still
finds them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

_matched: set[str] = set()


def entry_key(entry: Any) -> str:
    """A stable text for an allow-list entry (dict key order does not matter)."""
    return entry_text(entry, ascii_only=True)


def entry_text(entry: Any, *, ascii_only: bool = False) -> str:
    """An entry as JSON with sorted keys, or its repr where JSON cannot say it: keys that
    are not all str (``1`` beside ``"model"``; ``dbtuning.E031``-``E035`` reject them)."""
    try:
        return json.dumps(entry, sort_keys=True, ensure_ascii=ascii_only, default=repr)
    except (TypeError, ValueError):
        return repr(entry)


def note_matched(entries: Iterable[Any]) -> None:
    _matched.update(entry_key(entry) for entry in entries)


def matched_keys() -> list[str]:
    """The :func:`entry_key` of every entry matched so far (what an xdist worker sends)."""
    return sorted(_matched)


def note_keys(keys: Iterable[str]) -> None:
    """Add another process's :func:`matched_keys` (the xdist controller's merge)."""
    _matched.update(keys)


def unused(entries: Iterable[Any]) -> list[tuple[int, Any]]:
    """``(index, entry)`` of the entries that covered no finding since :func:`reset`."""
    return [(i, e) for i, e in enumerate(entries) if entry_key(e) not in _matched]


def reset() -> None:
    _matched.clear()
