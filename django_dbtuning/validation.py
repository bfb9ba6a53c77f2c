"""Checks of user-given numbers and durations, written once for every entry point.

``database()``, ``pool_size()``, the system checks and dbreport's timeouts all accept the
same kinds of value; each rule lives here so that they cannot disagree. The raising helpers
name the argument and never echo a value that failed validation as text.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

__all__ = [
    "INT_MAX",
    "Duration",
    "duration_ms",
    "is_int",
    "is_number",
    "millisecond_value",
    "number_or_none",
    "positive_float",
    "positive_int",
]

# PostgreSQL stores integer settings (timeouts in ms included) in a C int.
INT_MAX = 2_147_483_647

#: A PostgreSQL duration as users give it: "5s"/"500ms" strings, int ms, float seconds,
#: a timedelta, or None for "not set".
Duration = str | int | float | timedelta | None


def is_int(value: object) -> bool:
    """An int that is not a bool (``True`` is no threshold)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def number_or_none(value: object) -> float | None:
    """``value`` as a float when it is a number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    # Beyond a C int nothing here is meaningful, and float arithmetic would overflow.
    if value > INT_MAX:
        raise ValueError(f"{name} must be <= {INT_MAX}, got {value}")
    return value


def positive_float(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float; OverflowError is no ValueError
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{name} must be > 0, got {value}")
    return number


def duration_ms(name: str, value: Duration) -> int | None:
    """A PostgreSQL duration in whole milliseconds; an int means ms, a float seconds.

    Rounded up: a positive timeout under 1 ms becomes 1 ms, never 0 (which disables it).
    Values PostgreSQL cannot hold (over INT_MAX ms, about 24.8 days) are refused.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a duration like '5s', not a bool")
    ms: Decimal | None
    if isinstance(value, timedelta):
        ms = Decimal(value // timedelta(microseconds=1)) / 1000
    elif isinstance(value, int):
        ms = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of seconds, got {value}")
        # repr(): the decimal the user wrote, not the binary fraction behind it.
        ms = Decimal(repr(value)) * 1000
    elif isinstance(value, str):
        ms = millisecond_value(value)
        if ms is None:  # not shown: a value that fails validation is never echoed
            raise ValueError(
                f"{name} is not a duration: use '500ms', '5s', '2min', or an int of "
                "milliseconds"
            )
    else:
        raise TypeError(
            f"{name} must be a duration like '5s', not {type(value).__name__}"
        )
    if ms < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    whole = int(ms.to_integral_value(rounding=ROUND_CEILING))
    if whole > INT_MAX:
        raise ValueError(
            f"{name}={value!r} is over PostgreSQL's limit of {INT_MAX} ms "
            "(about 24.8 days); use 0 to disable the timeout"
        )
    return whole


_GUC_TIME = re.compile(
    r"[ \t\n\r\f\v]*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))[ \t\n\r\f\v]*(us|ms|s|min|h|d)?[ \t\n\r\f\v]*"
)
_GUC_UNIT_MS = {
    "us": Decimal("0.001"),
    "ms": Decimal(1),
    "s": Decimal(1000),
    "min": Decimal(60_000),
    "h": Decimal(3_600_000),
    "d": Decimal(86_400_000),
}


def millisecond_value(value: str) -> Decimal | None:
    """A time setting's value in ms by PostgreSQL's unit rules, or None if not understood."""
    match = _GUC_TIME.fullmatch(value)
    if match is None:
        return None
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        return None
    return number * _GUC_UNIT_MS[match.group(2) or "ms"]
