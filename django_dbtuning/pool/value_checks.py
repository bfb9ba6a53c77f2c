"""Static checks of a ``DATABASES`` entry's values, judged as libpq and the server would.

Called from :mod:`django_dbtuning.pool.checks` for each PostgreSQL alias: pool sizes
psycopg_pool refuses (``E014``) and other pool values out of range (``E020``), values
libpq or psycopg refuse (``E022``), an ``options`` string the server cannot parse
(``E023``), a ``-c`` setting the server refuses for certain (``E024``), a
``CONN_MAX_AGE`` that is not a number (``E025``). :mod:`django_dbtuning.pool.messages`
says what such a message may contain.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from django.core.checks import CheckMessage, Error

from django_dbtuning.pool import conninfo, startup
from django_dbtuning.pool.messages import describe, known_text
from django_dbtuning.pool.options import TOP_LEVEL_SETTINGS, libpq_params
from django_dbtuning.validation import is_int, is_number

LIBPQ_DOCS = (
    "https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS"
)
_HINTS = {
    "connect_timeout": "Use a whole number of seconds, e.g. 5 (0 waits forever).",
    "port": "Use a port number from 1 to 65535 (one per host, comma-separated).",
}


def _location(entry: Mapping[str, Any], keyword: str) -> str:
    if keyword in TOP_LEVEL_SETTINGS and entry.get(TOP_LEVEL_SETTINGS[keyword]):
        return f"[{TOP_LEVEL_SETTINGS[keyword]!r}]"
    return f"['OPTIONS'][{keyword!r}]"


def check_connection_values(
    alias: str, entry: Mapping[str, Any]
) -> Iterator[CheckMessage]:
    """``E022``: values libpq or psycopg refuse (``sslmode="bogus"``, ``port="-1"``...)."""
    params = libpq_params(entry)
    for problem in conninfo.connection_problems(params):
        keyword = problem.keyword
        if keyword is not None and keyword in params:
            where = f"DATABASES[{alias!r}]{_location(entry, keyword)}: libpq refuses it"
        else:
            where = f"DATABASES[{alias!r}]: libpq refuses the connection settings"
        yield Error(
            f"{where} ({known_text(problem.message)}), so the first connection fails.",
            hint=_HINTS.get(keyword or "", f"See the accepted values at {LIBPQ_DOCS}."),
            id="dbtuning.E022",
        )


def check_startup_options(alias: str, entry: Mapping[str, Any]) -> list[CheckMessage]:
    """``E023``: ``OPTIONS['options']`` the server cannot parse; ``E024``: a setting in it
    that the server refuses for certain (a timeout over PostgreSQL's limit)."""
    options = (entry.get("OPTIONS") or {}).get("options")
    if options is None:
        return []
    where = f"DATABASES[{alias!r}]['OPTIONS']['options']"
    if not isinstance(options, str):
        problem = f"is {describe(options)}, not a string"
        settings = None
    else:
        try:
            settings = startup.option_settings(options)
            problem = ""
        except startup.StartupOptionsError as exc:
            settings, problem = None, f"is not valid ({exc})"
    if settings is None:
        return [
            Error(
                f"{where} {problem}; the server refuses the connection ('invalid "
                "command-line argument for server process').",
                hint="Write settings as '-c name=value', separated by spaces; escape a "
                "space inside a value as '\\ '.",
                id="dbtuning.E023",
            )
        ]
    return [
        Error(
            f"{where} sets {name}={value}, which {refused}: the server refuses the "
            "connection.",
            hint="Use at most 2147483647ms (about 24 days), or 0 to disable the timeout.",
            id="dbtuning.E024",
        )
        for name, value in settings
        if (refused := startup.setting_problem(name, value)) is not None
    ]


def check_conn_max_age(alias: str, entry: Mapping[str, Any]) -> Iterator[CheckMessage]:
    """``E025``: ``CONN_MAX_AGE`` that Django cannot add to a clock (a string from an env)."""
    value = entry.get("CONN_MAX_AGE", 0)
    if value is None or (is_number(value) and not math.isnan(value)):
        return
    yield Error(
        f"DATABASES[{alias!r}]['CONN_MAX_AGE'] is {describe(value)}, not a number of seconds "
        "or None: Django fails at the first request ('unsupported operand type').",
        hint="Use an int, e.g. CONN_MAX_AGE=600 (int(os.environ[...]) for an "
        "environment variable), 0 for a new connection per request, or None.",
        id="dbtuning.E025",
    )


# -- the pool dict ---------------------------------------------------------------------------

_SECONDS = ("timeout", "max_lifetime", "max_idle", "reconnect_timeout")


def _pool_refuses(**kwargs: Any) -> str | None:
    """psycopg_pool's own validation of these arguments, without opening anything."""
    try:
        from psycopg_pool import ConnectionPool
    except ImportError:
        return None
    try:
        # A name of its own keeps psycopg_pool's "pool-N" counter for the real pools.
        ConnectionPool(open=False, name="dbtuning-check", **kwargs)
    except (TypeError, ValueError) as exc:
        return known_text(str(exc))
    return None


def check_pool_values(alias: str, pool: Mapping[str, Any]) -> Iterator[CheckMessage]:
    """``E014``: sizes psycopg_pool refuses; ``E020``: other pool values out of range."""
    where = f"DATABASES[{alias!r}]['OPTIONS']['pool']"
    min_size, max_size = pool.get("min_size", 4), pool.get("max_size")
    if not is_int(min_size) or not (max_size is None or is_int(max_size)):
        refused: str | None = "min_size must be an int, max_size an int or None"
    else:
        refused = _pool_refuses(min_size=min_size, max_size=max_size)
    if refused:
        yield Error(
            f"{where} sizes are invalid: min_size={describe(min_size)}, "
            f"max_size={describe(max_size)} "
            f"({refused}).",
            hint="Let django_dbtuning.pool.database() size the pool, or fix the numbers.",
            id="dbtuning.E014",
        )
    problems = {
        key: (
            "a finite number of seconds > 0",
            "psycopg_pool takes seconds, e.g. 10.0.",
        )
        for key in _SECONDS
        if key in pool
        and not (is_number(pool[key]) and math.isfinite(pool[key]) and pool[key] > 0)
    }
    waiting = pool.get("max_waiting", 0)
    if not (is_int(waiting) and waiting >= 0):
        problems["max_waiting"] = (
            "an int >= 0",
            "0 lets any number of requests wait; a small number sheds load early.",
        )
    if "num_workers" in pool and (
        not is_int(pool["num_workers"])
        or _pool_refuses(num_workers=pool["num_workers"])
    ):
        problems["num_workers"] = (
            "an int >= 1",
            "The pool's background threads; psycopg_pool's default is 3.",
        )
    for key, (expected, hint) in problems.items():
        yield Error(
            f"{where}[{key!r}] is {describe(pool[key])}; it must be {expected}.",
            hint=hint,
            id="dbtuning.E020",
        )
