"""Checks of a ``DATABASES`` entry's connection values, judged by libpq and the server.

Called from :mod:`django_dbtuning.pool.checks` for each PostgreSQL alias: values libpq or psycopg
refuse (``E022``), an ``options`` string the server cannot parse (``E023``), a ``-c`` setting
the server refuses (``E024``; names and values are asked of the live server under
``check --database``), a ``CONN_MAX_AGE`` that is not a number (``E025``).

Messages are composed from aliases, keys and validated values only: a value that failed
validation is described by its type or not at all, and libpq's or the server's own text is
used without the values in it. Scrubbing the entry's secrets (:func:`scrub_messages`) is a
backstop on top.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.core.checks import CheckMessage, Error, Warning

from django_dbtuning.pool import conninfo, library_text
from django_dbtuning.validation import is_int

__all__ = [
    "check_conn_max_age",
    "describe",
    "message_vocabulary",
    "check_pool_values",
    "check_connection_values",
    "check_startup_options",
    "read_server",
    "scrub_messages",
]

LIBPQ_DOCS = (
    "https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS"
)
# Where each libpq keyword lives when Django's top-level settings give it.
_TOP_LEVEL = {"host": "HOST", "port": "PORT", "dbname": "NAME", "user": "USER"}
_HINTS = {
    "connect_timeout": "Use a whole number of seconds, e.g. 5 (0 waits forever).",
    "port": "Use a port number from 1 to 65535 (one per host, comma-separated).",
}
# A live check must not hang a deploy on an unreachable server.
LIVE_CONNECT_TIMEOUT = 5


def describe(value: object) -> str:
    """``value`` for a message: numbers, booleans and None as they are, anything else by
    its type (a string that failed validation may be a secret in the wrong place)."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _secrets(entry: Mapping[str, Any]) -> list[object]:
    options = entry.get("OPTIONS")
    found: list[object] = [entry.get("PASSWORD")]
    if isinstance(options, Mapping):
        found += [options.get(key) for key in conninfo.secret_keywords()]
    return [secret for secret in found if secret not in (None, "")]


def _kept(alias: str, entry: Mapping[str, Any]) -> list[object]:
    """What a message may legitimately contain: the alias and every non-secret value."""
    options = entry.get("OPTIONS")
    kept: list[object] = [alias] + [
        entry.get(k) for k in ("NAME", "USER", "HOST", "PORT")
    ]
    if isinstance(options, Mapping):
        kept += [
            value
            for key, value in options.items()
            if key not in conninfo.secret_keywords() and isinstance(value, str | int)
        ]
    return kept


# Texts of libpq and psycopg_pool produced without any secret (the dry run is never given
# one; pool sizes are numbers): fixed text like the constants, which the backstop leaves
# alone. Bounded: past the bound more is scrubbed, never less.
_LIBRARY_TEXTS: set[str] = set()
_LIBRARY_TEXTS_MAX = 1000


def _library_text(text: str) -> str:
    if len(_LIBRARY_TEXTS) < _LIBRARY_TEXTS_MAX:
        _LIBRARY_TEXTS.add(text)
    return text


def _strings(constants: Iterable[object]) -> Iterable[str]:
    for constant in constants:
        if isinstance(constant, types.CodeType):
            yield from _strings(constant.co_consts)
        elif isinstance(constant, tuple | frozenset | list | set):
            yield from _strings(constant)
        elif isinstance(constant, dict):
            yield from _strings([*constant.keys(), *constant.values()])
        elif isinstance(constant, str | int) and not isinstance(constant, bool):
            yield str(constant)


@functools.cache
def message_vocabulary() -> str:
    """The fixed text check messages are made of: every string (and number) constant of
    the modules that compose them, and libpq's keywords. A secret found in it is not
    scrubbed: masking ``postgres`` in ``postgresql.org`` would reveal the password."""
    texts = set(conninfo.libpq_keywords())
    for name in (
        "django_dbtuning.pool.checks",
        __name__,
        conninfo.__name__,
        library_text.__name__,
    ):
        module = sys.modules.get(name)
        for value in vars(module).values() if module else ():
            if inspect.isfunction(value) and value.__module__ == name:
                texts.update(_strings(value.__code__.co_consts))
            else:
                texts.update(_strings([value]))
    return "\n".join(sorted(texts))


def scrub(alias: str, entry: Mapping[str, Any], text: str) -> str:
    """``text`` without the entry's secrets, by :func:`conninfo.scrub`'s backstop rules."""
    vocabulary = "\n".join([message_vocabulary(), *_LIBRARY_TEXTS])
    return conninfo.scrub(
        text, _secrets(entry), keep=_kept(alias, entry), vocabulary=vocabulary
    )


def scrub_messages(
    alias: str, entry: Mapping[str, Any], messages: Iterable[CheckMessage]
) -> list[CheckMessage]:
    """The messages with the entry's secrets replaced by ``***`` (a backstop: messages are
    not built from secrets; see :func:`conninfo.scrub` for what is left alone)."""
    result = []
    for message in messages:
        message.msg = scrub(alias, entry, message.msg)
        if message.hint:
            message.hint = scrub(alias, entry, message.hint)
        result.append(message)
    return result


def libpq_params(entry: Mapping[str, Any]) -> dict[str, object]:
    """The libpq keywords psycopg would receive for this entry (without defaults)."""
    options = entry.get("OPTIONS") or {}
    params: dict[str, object] = {
        key: value
        for key, value in options.items()
        if isinstance(key, str) and key in conninfo.libpq_keywords()
    }
    for keyword, setting in _TOP_LEVEL.items():
        if entry.get(setting):
            params[keyword] = entry[setting]
    return params


def _location(entry: Mapping[str, Any], keyword: str) -> str:
    if keyword in _TOP_LEVEL and entry.get(_TOP_LEVEL[keyword]):
        return f"[{_TOP_LEVEL[keyword]!r}]"
    return f"['OPTIONS'][{keyword!r}]"


def check_connection_values(alias: str, entry: Mapping[str, Any]) -> list[CheckMessage]:
    """``E022``: values libpq or psycopg refuse (``sslmode="bogus"``, ``port="-1"``...)."""
    params = libpq_params(entry)
    messages: list[CheckMessage] = []
    for problem in conninfo.connection_problems(params):
        keyword = problem.keyword
        if keyword is not None and keyword in params:
            where = f"DATABASES[{alias!r}]{_location(entry, keyword)}: libpq refuses it"
        else:
            where = f"DATABASES[{alias!r}]: libpq refuses the connection settings"
        messages.append(
            Error(
                f"{where} ({_library_text(problem.message)}), so the first connection "
                "fails.",
                hint=_HINTS.get(
                    keyword or "", f"See the accepted values at {LIBPQ_DOCS}."
                ),
                id="dbtuning.E022",
            )
        )
    return messages


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
            settings = conninfo.option_settings(options)
            problem = ""
        except conninfo.StartupOptionsError as exc:
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
        if (refused := conninfo.setting_problem(name, value)) is not None
    ]


def check_conn_max_age(alias: str, entry: Mapping[str, Any]) -> list[CheckMessage]:
    """``E025``: ``CONN_MAX_AGE`` that Django cannot add to a clock (a string from an env)."""
    value = entry.get("CONN_MAX_AGE", 0)
    if value is None or (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not math.isnan(value)
    ):
        return []
    return [
        Error(
            f"DATABASES[{alias!r}]['CONN_MAX_AGE'] is {describe(value)}, not a number of seconds "
            "or None: Django fails at the first request ('unsupported operand type').",
            hint="Use an int, e.g. CONN_MAX_AGE=600 (int(os.environ[...]) for an "
            "environment variable), 0 for a new connection per request, or None.",
            id="dbtuning.E025",
        )
    ]


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
        return _library_text(str(exc))
    return None


def check_pool_values(alias: str, pool: Mapping[str, Any]) -> list[CheckMessage]:
    """``E014``: sizes psycopg_pool refuses; ``E020``: other pool values out of range."""
    where = f"DATABASES[{alias!r}]['OPTIONS']['pool']"
    messages: list[CheckMessage] = []
    min_size, max_size = pool.get("min_size", 4), pool.get("max_size")
    if not is_int(min_size) or not (max_size is None or is_int(max_size)):
        refused: str | None = "min_size must be an int, max_size an int or None"
    else:
        refused = _pool_refuses(min_size=min_size, max_size=max_size)
    if refused:
        messages.append(
            Error(
                f"{where} sizes are invalid: min_size={describe(min_size)}, "
                f"max_size={describe(max_size)} "
                f"({refused}).",
                hint="Let django_dbtuning.pool.database() size the pool, or fix the numbers.",
                id="dbtuning.E014",
            )
        )
    problems = {
        key: (
            "a finite number of seconds > 0",
            "psycopg_pool takes seconds, e.g. 10.0.",
        )
        for key in _SECONDS
        if key in pool
        and not (
            isinstance(pool[key], int | float)
            and not isinstance(pool[key], bool)
            and math.isfinite(pool[key])
            and pool[key] > 0
        )
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
        messages.append(
            Error(
                f"{where}[{key!r}] is {describe(pool[key])}; it must be {expected}.",
                hint=hint,
                id="dbtuning.E020",
            )
        )
    return messages


# -- check --database: ask the live server -------------------------------------------------


def _connect_timeout(value: object) -> int:
    try:
        seconds = float(str(value))
    except ValueError:
        return LIVE_CONNECT_TIMEOUT
    if not math.isfinite(seconds) or seconds <= 0:
        return LIVE_CONNECT_TIMEOUT
    return max(1, min(int(seconds), LIVE_CONNECT_TIMEOUT))


def _limits(conn: Any) -> dict[str, int]:
    rows = conn.execute(
        "SELECT name, setting::int FROM pg_settings WHERE name IN "
        "('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
    ).fetchall()
    return {str(name): int(value) for name, value in rows}


def read_server(
    alias: str, entry: Mapping[str, Any]
) -> tuple[dict[str, int] | None, list[CheckMessage]]:
    """The server's connection limits, and what it says about ``OPTIONS['options']``.

    Returns no limits and no message when the static checks already report the connection
    values (they would fail here too); a ``W021`` when the server cannot be reached.
    No text of libpq's or the server's is quoted: it may carry a refused value (the server
    repeats it, lower-cased, in a ``DETAIL``); messages are built from the setting's name,
    the SQLSTATE and :mod:`library_text`'s fixed phrases for texts of a known shape.
    """
    import psycopg

    from django_dbtuning.pool.entry import connection_kwargs

    if check_connection_values(alias, entry):
        return None, []
    kwargs = connection_kwargs(entry)
    kwargs["connect_timeout"] = _connect_timeout(kwargs.get("connect_timeout"))
    options = kwargs.pop("options", None)
    try:
        settings = conninfo.option_settings(str(options or ""))
    except conninfo.StartupOptionsError:  # E023 reports it; connect without
        options, settings = None, []
    # Settings the static check already refuses are not asked about twice.
    unasked = [s for s in settings if conninfo.setting_problem(*s) is None]
    try:
        trial = {**kwargs, "options": options} if options else kwargs
        with psycopg.connect(**trial) as conn:
            return _limits(conn), []
    except (psycopg.Error, OSError) as exc:
        failure = library_text.connection_failure(exc)
        refused = library_text.setting_refused_at_startup(
            str(exc), [name for name, _ in unasked]
        )
    if not options:
        return None, [_unreachable(alias, failure)]

    def at_startup(name: str, value: str) -> str | None:
        """Why the server refuses ``-c name=value`` alone when connecting, or None."""
        alone = conninfo.join_options(["-c", f"{name}={value}"])
        try:
            with psycopg.connect(**kwargs, options=alone):
                return None
        except (psycopg.Error, OSError) as exc:
            known = library_text.setting_refused_at_startup(str(exc), [name])
        return known[1] if known else "the server refuses it when connecting"

    try:  # the server may refuse only the startup options: ask it which and why
        with psycopg.connect(**kwargs) as conn:
            messages = _diagnose_settings(alias, conn, unasked, at_startup)
            if not messages and len(unasked) == len(settings):
                messages = [_refused_options(alias, failure, refused)]
            return _limits(conn), messages
    except (psycopg.Error, OSError):
        return None, [_unreachable(alias, failure)]


def _refused_options(
    alias: str, failure: str, refused: tuple[str, str] | None
) -> CheckMessage:
    where = f"DATABASES[{alias!r}]['OPTIONS']['options']"
    if refused is not None:
        name, why = refused
        msg = f"{where} sets {name}, which the server refuses: {why}."
    else:
        msg = f"{where} makes the server refuse the connection ({failure})."
    return Error(
        msg,
        hint="Connecting without OPTIONS['options'] works: fix or remove its settings.",
        id="dbtuning.E024",
    )


def _unreachable(alias: str, reason: str) -> CheckMessage:
    return Warning(
        f"DATABASES[{alias!r}]: cannot read the server's connection limits ({reason}).",
        hint="Check that the server is reachable and the role may read pg_settings.",
        id="dbtuning.W021",
    )


def _value_hint(name: str, row: tuple[Any, ...] | None) -> str:
    """What the setting accepts, from pg_settings (the catalog, not an error text)."""
    fallback = (
        "See its unit and range: SELECT unit, min_val, max_val, enumvals "
        f"FROM pg_settings WHERE name = {conninfo.quote_literal(name)}."
    )
    if row is None:
        return fallback
    vartype, unit, min_val, max_val, enumvals = row
    if vartype == "bool":
        return "Use on or off."
    if vartype == "enum" and enumvals:
        return f"Use one of: {', '.join(str(v) for v in enumvals)}."
    if vartype in ("integer", "real") and min_val is not None:
        unit_text = f" (unit {unit})" if unit else ""
        return f"Use a number from {min_val} to {max_val}{unit_text}."
    return fallback


def _diagnose_settings(
    alias: str,
    conn: Any,
    settings: list[tuple[str, str]],
    at_startup: Callable[[str, str], str | None],
) -> list[CheckMessage]:
    import psycopg

    where = f"DATABASES[{alias!r}]['OPTIONS']['options']"
    rows = conn.execute(
        "SELECT name, context, vartype, unit, min_val, max_val, enumvals FROM pg_settings"
    ).fetchall()
    conn.rollback()
    contexts = {str(row[0]): str(row[1]) for row in rows}
    kinds = {str(row[0]): tuple(row[2:]) for row in rows}
    messages: list[CheckMessage] = []

    def refuse(name: str, why: str, hint: str) -> None:
        # The setting's name, never its value: the server refused it.
        messages.append(
            Error(
                f"{where} sets {name}, which the server refuses: {why}.",
                hint=hint,
                id="dbtuning.E024",
            )
        )

    for name, value in settings:
        lowered = name.lower()
        context = contexts.get(lowered)
        if context is None:
            if "." not in lowered:  # a dotted name is a custom setting: always accepted
                close = difflib.get_close_matches(lowered, contexts, n=1)
                refuse(
                    name,
                    "no such setting",
                    f"Did you mean {close[0]!r}?"
                    if close
                    else "Check the name in pg_settings.",
                )
        elif context in ("postmaster", "sighup", "internal"):
            refuse(
                name,
                f"it cannot be set when connecting (context {context})",
                "Set it in postgresql.conf or with ALTER SYSTEM instead.",
            )
        elif context in ("user", "superuser"):
            try:
                conn.execute("SELECT set_config(%s, %s, true)", (lowered, value))
            except psycopg.Error as exc:
                refused = library_text.setting_phrase(
                    name, exc.diag.message_primary, exc.sqlstate
                )
                refuse(name, refused, _value_hint(lowered, kinds.get(lowered)))
            finally:
                conn.rollback()
        elif (at_start := at_startup(name, value)) is not None:  # backend contexts
            refuse(name, at_start, _value_hint(lowered, kinds.get(lowered)))
    return messages
