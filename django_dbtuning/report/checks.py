"""System checks of dbreport's settings (dbtuning.E050-E059, W050-W059)."""

from __future__ import annotations

import difflib
from datetime import timedelta
from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register

from django_dbtuning.conf import get_settings
from django_dbtuning.report.noise import DEPRECATED_THRESHOLD
from django_dbtuning.validation import is_number


def _report_timeouts() -> list[CheckMessage]:
    # The same rule dbreport applies when it runs: a timeout it would refuse (0 or
    # negative, which leave it without one; not a duration; over INT_MAX ms). A value of the
    # wrong type is dbtuning.E002's: the snapshot holds the default in its place.
    from django_dbtuning.report import timeouts

    current = get_settings()
    messages: list[CheckMessage] = []
    for name in timeouts.NAMES:
        problem = timeouts.problem(name, getattr(current, name.lower()))
        if problem is not None:
            messages.append(
                Error(
                    f"{problem}.",
                    hint="dbreport refuses to run with it: every report query runs under "
                    "a timeout of 1 ms to 2147483647 ms; a fraction of a millisecond "
                    "rounds up to 1 ms.",
                    id="dbtuning.E051",
                )
            )
    return messages


def _unused_index_min_age() -> list[CheckMessage]:
    from django_dbtuning.report import noise

    user = noise.user_settings()
    messages: list[CheckMessage] = []
    value = user.get(noise.SETTING)
    # A value of the wrong type is dbtuning.E002's (the registry's types).
    if isinstance(value, str | timedelta):
        problem = noise.min_age_problem(value)
        if problem is not None:
            messages.append(
                Error(
                    f"{problem}.",
                    hint="dbreport refuses to run with it.",
                    id="dbtuning.E055",
                )
            )
    thresholds = user.get("REPORT_THRESHOLDS")
    if isinstance(thresholds, dict) and DEPRECATED_THRESHOLD in thresholds:
        days = noise.deprecated_min_age_days(user)
        used = noise.SETTING not in user and days is not None
        messages.append(
            Warning(
                f"DBTUNING['REPORT_THRESHOLDS'][{DEPRECATED_THRESHOLD!r}] is deprecated"
                + (
                    f"; dbreport reads it as UNUSED_INDEX_MIN_AGE = '{days:g}d'."
                    if used
                    else f" and ignored ({noise.SETTING} is set, or it is not a "
                    "number >= 0)."
                ),
                hint=f"Set DBTUNING[{noise.SETTING!r}] (e.g. '7d') instead.",
                id="dbtuning.W055",
            )
        )
    return messages


@register()
def check_dbreport_settings(**kwargs: Any) -> list[CheckMessage]:
    """dbreport's settings: thresholds, timeouts, and what the live metrics report on."""
    from django.db import connections

    from django_dbtuning.report.findings import DEFAULT_THRESHOLDS, SECTIONS

    messages: list[CheckMessage] = []
    thresholds = get_settings().report_thresholds
    for key in sorted(thresholds, key=str):
        value = thresholds[key]
        if key == DEPRECATED_THRESHOLD:
            continue  # _unused_index_min_age() says what replaces it
        if key not in DEFAULT_THRESHOLDS:
            close = difflib.get_close_matches(str(key), DEFAULT_THRESHOLDS, n=1)
            messages.append(
                Warning(
                    f"DBTUNING['REPORT_THRESHOLDS'][{key!r}] is not a dbreport threshold "
                    "and is ignored.",
                    hint=f"Did you mean {close[0]!r}?"
                    if close
                    else "See the README's dbreport section for the thresholds.",
                    id="dbtuning.W050",
                )
            )
        elif not is_number(value) or value < 0:
            messages.append(
                Error(
                    f"DBTUNING['REPORT_THRESHOLDS'][{key!r}] is {value!r}; expected a "
                    "number >= 0.",
                    hint=f"The default is {DEFAULT_THRESHOLDS[key]!r}.",
                    id="dbtuning.E050",
                )
            )
    messages.extend(_report_timeouts())
    messages.extend(_unused_index_min_age())
    unknown = [s for s in get_settings().report_metrics_sections if s not in SECTIONS]
    if unknown:
        messages.append(
            Error(
                f"DBTUNING['REPORT_METRICS_SECTIONS'] has unknown section(s) "
                f"{', '.join(map(repr, unknown))}.",
                hint=f"Choose from {', '.join(SECTIONS)}.",
                id="dbtuning.E052",
            )
        )
    for alias in get_settings().report_metrics_aliases or ():
        if alias not in connections.settings:
            messages.append(
                Error(
                    f"DBTUNING['REPORT_METRICS_ALIASES'] names {alias!r}, which is not "
                    "in DATABASES.",
                    hint=f"DATABASES has {', '.join(map(repr, connections.settings))}.",
                    id="dbtuning.E053",
                )
            )
        elif connections[alias].vendor != "postgresql":
            messages.append(
                Error(
                    f"DBTUNING['REPORT_METRICS_ALIASES'] names {alias!r}, which is not "
                    "PostgreSQL.",
                    hint="dbreport reads PostgreSQL's statistics only.",
                    id="dbtuning.E053",
                )
            )
    return messages
