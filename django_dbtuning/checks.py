"""System checks of the ``DBTUNING`` dict itself (dbtuning.E001-E009, W001-W009).

Every configuration mistake surfaces in ``manage.py check``. Ids are stable and never reused.
Each capability registers its own checks from its package: ``pool.checks`` (E010-E029,
W010-W029: ``DATABASES`` and the pool), ``queries.checks`` (E030-E039, W030-W039),
``copy.checks`` (E040-E049), ``report.checks`` (E050-E059, W050-W059).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from django_dbtuning.conf import SETTINGS, Setting, is_valid

__all__ = ["check_dbtuning_settings"]


def _describe_expected(setting: Setting) -> str:
    if setting.choices is not None:
        expected = " or ".join(repr(choice) for choice in setting.choices)
    else:
        expected = " or ".join(t.__name__ for t in setting.types)
    if setting.minimum is not None:
        expected += f" >= {setting.minimum:g}"
    if setting.nullable:
        expected += " or None"
    return expected


@register()
def check_dbtuning_settings(**kwargs: Any) -> list[CheckMessage]:
    """Validate the ``DBTUNING`` dict: a mapping, known keys, values of the right type."""
    user = getattr(settings, "DBTUNING", {})
    if not isinstance(user, Mapping):
        return [
            Error(
                f"DBTUNING must be a dict, not {type(user).__name__}.",
                hint='Set DBTUNING = {"N_PLUS_ONE_THRESHOLD": 3, ...} or remove it.',
                id="dbtuning.E001",
            )
        ]
    messages: list[CheckMessage] = []
    for key in sorted(user, key=str):
        value = user[key]
        setting = SETTINGS.get(key) if isinstance(key, str) else None
        if setting is None:
            close = difflib.get_close_matches(str(key), SETTINGS, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else None
            messages.append(
                Warning(
                    f"DBTUNING[{key!r}] is not a django-dbtuning setting and is ignored.",
                    hint=hint or "See docs/settings.md for the known keys.",
                    id="dbtuning.W001",
                )
            )
        elif not is_valid(setting, value):
            messages.append(
                Error(
                    f"DBTUNING[{key!r}] is {value!r}; expected {_describe_expected(setting)}.",
                    hint=f"{setting.description} Default: {setting.default!r}.",
                    id="dbtuning.E002",
                )
            )
    return messages
