"""The report's own ``statement_timeout`` and ``lock_timeout``: never off, never too long.

PostgreSQL reads 0 as "no timeout" and rounds a fraction of a millisecond to the nearest
whole one, so ``"0.0001ms"`` turned the report's timeout off as well. Each setting is
resolved here to whole milliseconds by the rule ``database(statement_timeout=...)`` uses
(``django_dbtuning.validation.duration_ms``: PostgreSQL's units, rounded up, at most INT_MAX
ms) and the report sends that number, never the user's text. A value that would leave the
report without a timeout is refused, by the system check and at run time alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django_dbtuning.conf import SETTINGS
from django_dbtuning.validation import INT_MAX, duration_ms, millisecond_value

NAMES = ("REPORT_STATEMENT_TIMEOUT", "REPORT_LOCK_TIMEOUT")
_USE = "use a duration such as '500ms', '10s' or '1min', or an int of milliseconds"
# PostgreSQL's SHOW form: the largest unit that divides the value.
_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000))
_SHOWN = 100


def _shown(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long for str() (sys.set_int_max_str_digits)
        return f"an int of {value.bit_length()} bits" if isinstance(value, int) else "?"
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 5]}...{text[-4:]}"


def _duration(value: object) -> str | int | None:
    # A float would be seconds to duration_ms; the setting takes str or int (ms) only.
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value


def problem(name: str, value: object) -> str | None:
    """Why the report refuses ``DBTUNING[name] = value``, in one line; None if it is fine."""
    where = f"DBTUNING[{name!r}] is {_shown(value)}"
    duration = _duration(value)
    if duration is None:
        return f"{where}; {_USE}"
    amount = millisecond_value(duration) if isinstance(duration, str) else duration
    if amount is None:
        return f"{where}, which is not a duration; {_USE}"
    if amount < 0:
        return f"{where}, a negative timeout; {_USE} (at least 1ms)"
    if amount == 0:
        return (
            f"{where}, which PostgreSQL reads as no timeout at all, and dbreport never "
            f"runs without one; {_USE} (at least 1ms)"
        )
    try:
        duration_ms(name, duration)
    except ValueError:
        return f"{where}, over PostgreSQL's limit of {INT_MAX} ms (about 24.8 days)"
    return None


def resolve(name: str, value: object) -> int:
    """``value`` in whole milliseconds, 1 to INT_MAX (a fraction of one rounds up).

    Raises:
        ValueError: the one-line :func:`problem`, naming the setting and the value.
    """
    refused = problem(name, value)
    duration = _duration(value)
    if refused is not None or duration is None:
        raise ValueError(refused)
    ms = duration_ms(name, duration)
    if ms is None or not 1 <= ms <= INT_MAX:  # problem() refused those
        raise ValueError(f"DBTUNING[{name!r}] is {_shown(value)}; {_USE}")
    return ms


def show(ms: int) -> str:
    """``ms`` as PostgreSQL's SHOW prints it (``10s``, ``250ms``)."""
    for unit, size in _UNITS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True)
class ReportTimeouts:
    """The two timeouts every report query runs under, in whole milliseconds."""

    statement_ms: int
    lock_ms: int


def _user_value(name: str) -> Any:
    # The raw value, not conf's fall-back to the default: dbreport runs without the system
    # checks, so a value of the wrong type is refused here rather than replaced unseen.
    from django.conf import settings

    user = getattr(settings, "DBTUNING", None)
    values: Mapping[str, Any] = user if isinstance(user, Mapping) else {}
    return values.get(name, SETTINGS[name].default)


def configured() -> ReportTimeouts:
    """The timeouts ``DBTUNING`` sets; raises ValueError naming a refused setting."""
    statement, lock = (resolve(name, _user_value(name)) for name in NAMES)
    return ReportTimeouts(statement_ms=statement, lock_ms=lock)
