"""``database()``'s own URL query parameters: one table of (argument, converter).

A URL can carry the pool's knobs, which dj-database-url and django-environ cannot express.
Each parameter fills one ``database()`` argument through a converter that applies the
argument's own validation rule, and a value is shown in messages only when it is valid and
spelt plainly (a validated boolean or number).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from django_dbtuning.exceptions import InvalidDatabaseURL
from django_dbtuning.validation import (
    INT_MAX,
    duration_ms,
    positive_float,
    positive_int,
)

_INVALID: Any = object()
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLEANS |= {"0": False, "false": False, "no": False, "off": False}


def _boolean(text: str) -> Any:
    return _BOOLEANS.get(text.strip().lower(), _INVALID)


def _checked(
    parse: Callable[[str], Any], rule: Callable[[Any], Any]
) -> Callable[[str], Any]:
    """A converter: ``parse``, then database()'s own rule for the argument."""

    def convert(text: str) -> Any:
        try:
            return rule(parse(text))
        except (TypeError, ValueError):
            return _INVALID

    return convert


def _count(minimum: int) -> Callable[[str], Any]:
    return _checked(int, lambda number: positive_int("", number, minimum=minimum))


_seconds = _checked(float, lambda number: positive_float("", number))
# PostgreSQL's units, rounded up to whole milliseconds, at most INT_MAX.
_milliseconds = _checked(str, lambda text: duration_ms("", text))


def _conn_max_age(text: str) -> Any:
    # "none" is Django's CONN_MAX_AGE=None (forever), which database() spells math.inf.
    if text.strip().lower() in ("none", ""):
        return math.inf
    return _count(0)(text)


class UrlParameter(NamedTuple):
    """One of this package's own query parameters (a URL can carry the pool's knobs,
    which dj-database-url and django-environ cannot express)."""

    argument: str
    """The ``database()`` argument it fills."""
    convert: Callable[[str], Any]
    """Text to the argument's value (an invalid value gives a sentinel of its own)."""
    rule: str
    """What the value must be, for the error message."""
    shape: re.Pattern[str]
    """How a valid value may be spelt to be shown by ``redact_url()``."""

    def shows(self, text: str) -> bool:
        """Whether ``text`` is a valid value, spelt so that it may appear in messages."""
        return self.convert(text) is not _INVALID and bool(self.shape.fullmatch(text))


_BOOLEAN = re.compile(r"1|0|true|false|yes|no|on|off", re.IGNORECASE)
_COUNT = re.compile(r"[0-9]{1,10}")
_SECONDS = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,6})?")
_DURATION = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,6})?(?:us|ms|s|min|h|d)?")
_DURATION_RULE = (
    "a duration such as 500ms, 5s or 2min (an int is milliseconds), at most "
    f"{INT_MAX} ms"
)
_FLAG = (_boolean, "true or false", _BOOLEAN)
_TIME = (_seconds, "a finite number of seconds > 0", _SECONDS)
_TIMEOUT = (_milliseconds, _DURATION_RULE, _DURATION)

URL_PARAMETERS: dict[str, UrlParameter] = {
    "pool": UrlParameter("pool", *_FLAG),
    "pgbouncer": UrlParameter("pgbouncer", *_FLAG),
    "health_checks": UrlParameter("health_checks", *_FLAG),
    "pool_min_size": UrlParameter("min_size", _count(0), "an integer >= 0", _COUNT),
    "pool_max_size": UrlParameter("max_size", _count(1), "an integer >= 1", _COUNT),
    "pool_max_waiting": UrlParameter(
        "max_waiting", _count(0), "an integer >= 0", _COUNT
    ),
    "pool_timeout": UrlParameter("timeout", *_TIME),
    "pool_max_idle": UrlParameter("max_idle", *_TIME),
    "pool_max_lifetime": UrlParameter("max_lifetime", *_TIME),
    "conn_max_age": UrlParameter(
        "conn_max_age",
        _conn_max_age,
        "an integer >= 0 or none",
        re.compile(r"[0-9]{1,10}|none", re.IGNORECASE),
    ),
    "statement_timeout": UrlParameter("statement_timeout", *_TIMEOUT),
    "lock_timeout": UrlParameter("lock_timeout", *_TIMEOUT),
    "idle_in_transaction_session_timeout": UrlParameter(
        "idle_in_transaction_session_timeout", *_TIMEOUT
    ),
}


def url_arguments(parameters: Mapping[str, str], shown: str) -> dict[str, Any]:
    """A URL's own ``parameters`` as ``database()`` arguments (timeouts in whole ms).

    Raises:
        InvalidDatabaseURL: a value that cannot be used; the message shows the URL as
            ``shown`` and names the parameter and what it must be, never the value (it may
            be a secret's tail).
    """
    arguments: dict[str, Any] = {}
    for key, text in parameters.items():
        parameter = URL_PARAMETERS[key]
        value = parameter.convert(text)
        if value is _INVALID:
            raise InvalidDatabaseURL(
                f"database URL {shown}: parameter {key} must be {parameter.rule}"
            )
        arguments[parameter.argument] = value
    return arguments
