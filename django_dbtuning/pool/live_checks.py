"""``check --database``: the server's connection limits, and what it says about ``options``.

Compares each alias' peak connections with the live ``max_connections`` (``W020``), reports
a server that cannot be reached (``W021``), and asks the server about every setting in
``OPTIONS['options']`` (``E024``). No text of libpq's or the server's is quoted: it may
carry a refused value; messages use :mod:`django_dbtuning.pool.library_text`'s phrases.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

from django.core.checks import CheckMessage, Error, Warning

from django_dbtuning.pool import library_text, startup
from django_dbtuning.pool.sizing import Deployment
from django_dbtuning.pool.value_checks import check_connection_values

# A live check must not hang a deploy on an unreachable server.
LIVE_CONNECT_TIMEOUT = 5


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

    from django_dbtuning.pool import connection_kwargs

    if any(check_connection_values(alias, entry)):
        return None, []
    kwargs = connection_kwargs(entry)
    kwargs["connect_timeout"] = _connect_timeout(kwargs.get("connect_timeout"))
    options = kwargs.pop("options", None)
    try:
        settings = startup.option_settings(str(options or ""))
    except startup.StartupOptionsError:  # E023 reports it; connect without
        options, settings = None, []
    # Settings the static check already refuses are not asked about twice.
    unasked = [s for s in settings if startup.setting_problem(*s) is None]
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
        alone = startup.join_options(["-c", f"{name}={value}"])
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
        f"FROM pg_settings WHERE name = {startup.quote_literal(name)}."
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


def check_live_budget(
    alias: str, entry: Mapping[str, Any], server: Mapping[str, int]
) -> list[CheckMessage]:
    """``W020``: the deployment's peak connections over what the live server allows."""
    try:
        deployment = Deployment.from_entry(entry)
        if deployment is None:
            return []
        per_process, what = deployment.connections_per_process(entry)
    except (TypeError, ValueError):  # a hand-written record: nothing to compare
        return []
    max_connections = server["max_connections"]
    reserved = max(
        deployment.reserved_connections,
        server.get("superuser_reserved_connections", 3)
        + server.get("reserved_connections", 0),
    )
    usable = deployment.usable_connections(max_connections, reserved)
    wanted = deployment.peak_connections(entry)
    if wanted <= usable:
        return []
    others = deployment.other_clients
    return [
        Warning(
            f"DATABASES[{alias!r}]: {per_process} ({what}) x {deployment.holders} "
            f"processes = {wanted} connections, but the server allows {usable} "
            f"({max_connections} max_connections - {reserved} reserved"
            + (f" - {others} other clients" if others else "")
            + ").",
            hint=f"Pass server_max_connections={max_connections} to database() so "
            "it sizes the pool for this server, or raise max_connections.",
            id="dbtuning.W020",
        )
    ]
