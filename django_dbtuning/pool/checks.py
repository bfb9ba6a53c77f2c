"""System checks of ``DATABASES`` and the connection pool (dbtuning.E010-E029, W010-W029).

One function per concern, each yielding its messages; :func:`check_databases` runs them
for every PostgreSQL alias and :func:`check_database_servers` asks the live server under
``check --database``.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import django
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from django_dbtuning.conf import get_settings
from django_dbtuning.pool import startup
from django_dbtuning.pool.live_checks import check_live_budget, read_server
from django_dbtuning.pool.messages import describe, scrub_messages
from django_dbtuning.pool.options import known_options
from django_dbtuning.pool.sizing import Deployment
from django_dbtuning.pool.value_checks import (
    check_conn_max_age,
    check_connection_values,
    check_pool_values,
    check_startup_options,
)
from django_dbtuning.validation import number_or_none

# Keys Django passes to ConnectionPool itself; a user value collides with them (TypeError
# at the first query). Django 6.1 lets "check" through (ticket #37075).
DJANGO_OWNED_POOL_KEYS = ("kwargs", "open", "configure", "check")
PGBOUNCER_PORT = "6432"
THIRD_PARTY_POOL_ENGINES = ("dj_db_conn_pool", "django_db_geventpool")
POSTGRESQL_ENGINES = (
    "django.db.backends.postgresql",
    "django_dbtuning.pool.postgresql",
    *THIRD_PARTY_POOL_ENGINES,
)

EntryCheck = Callable[[str, Mapping[str, Any]], Iterable[CheckMessage]]


def _options(entry: Mapping[str, Any]) -> Mapping[Any, Any]:
    options = entry.get("OPTIONS") or {}
    return options if isinstance(options, Mapping) else {}


def _has_pool(entry: Mapping[str, Any]) -> bool:
    pool = _options(entry).get("pool")
    return pool is not None and pool is not False


def _is_postgresql(entry: Mapping[str, Any]) -> bool:
    engine = str(entry.get("ENGINE", ""))
    return engine.startswith(POSTGRESQL_ENGINES) or _postgresql_vendor(engine)


@functools.cache
def _postgresql_vendor(engine: str) -> bool:
    """A backend of one's own (PostGIS, a subclass of Django's): ask it its vendor."""
    from django.db.utils import load_backend

    try:
        return bool(load_backend(engine).DatabaseWrapper.vendor == "postgresql")
    except Exception:  # not importable here: Django reports it at the first query
        return False


# -- one function per concern --------------------------------------------------------------


def check_stacked_pools(alias: str, entry: Mapping[str, Any]) -> Iterator[CheckMessage]:
    engine = str(entry.get("ENGINE", ""))
    if not (
        any(engine.startswith(n) for n in THIRD_PARTY_POOL_ENGINES)
        and _options(entry).get("pool")
    ):
        return
    yield Warning(
        f"DATABASES[{alias!r}] uses the pooling backend {engine} and also sets "
        "OPTIONS['pool']: two pools stack, or the backend breaks on Django 5.1+.",
        hint="Use one: remove OPTIONS['pool'] or switch ENGINE to "
        "django.db.backends.postgresql.",
        id="dbtuning.W019",
    )


def check_pool_setting(alias: str, entry: Mapping[str, Any]) -> Iterator[CheckMessage]:
    """``OPTIONS['pool']`` itself: its type, Django and psycopg_pool, ``CONN_MAX_AGE``."""
    if not _has_pool(entry):
        return
    pool = _options(entry)["pool"]
    if pool is not True and not isinstance(pool, Mapping):
        yield Error(
            f"DATABASES[{alias!r}]['OPTIONS']['pool'] is {describe(pool)}; "
            "it must be True or "
            "a dict (an env parser's string or 1 crashes the first query with "
            "'argument after ** must be a mapping').",
            hint='Use "pool": True or "pool": {"min_size": 2, "max_size": 10, ...}.',
            id="dbtuning.E010",
        )
        return
    if isinstance(pool, Mapping) and not pool:
        yield Warning(
            f"DATABASES[{alias!r}]['OPTIONS']['pool'] is an empty dict, which Django "
            "treats as 'no pool': every request opens a new connection.",
            hint='Use "pool": True for the defaults, or give explicit sizes.',
            id="dbtuning.W010",
        )
        return
    yield from _pool_dependency_errors(alias)
    conn_max_age = entry.get("CONN_MAX_AGE", 0)
    if conn_max_age != 0:
        yield Error(
            f"DATABASES[{alias!r}] has a pool and CONN_MAX_AGE "
            f"{describe(conn_max_age)}; "
            "Django raises 'Pooling doesn't support persistent connections' at "
            "the first query.",
            hint="Set CONN_MAX_AGE to 0 and bound connection age with the pool's "
            "'max_lifetime' instead.",
            id="dbtuning.E011",
        )
    if pool is True:
        yield Warning(
            f'DATABASES[{alias!r}] uses "pool": True: psycopg_pool\'s defaults are '
            "a fixed 4 connections per process and a 30 s wait, the same as "
            "gunicorn's worker timeout.",
            hint="Size the pool for your deployment with "
            "django_dbtuning.pool.database(..., processes=, threads=).",
            id="dbtuning.W014",
        )
    yield from _check_pool_dict(alias, {} if pool is True else pool)


def _check_pool_dict(alias: str, pool: Mapping[str, Any]) -> Iterator[CheckMessage]:
    owned = [
        key
        for key in DJANGO_OWNED_POOL_KEYS
        if key in pool and not (key == "check" and django.VERSION >= (6, 1))
    ]
    if owned:
        yield Error(
            f"DATABASES[{alias!r}]['OPTIONS']['pool'] sets {', '.join(map(repr, owned))}, "
            "which Django passes to the pool itself: the first query fails with "
            "'got multiple values for keyword argument'.",
            hint="Remove these keys; use CONN_HEALTH_CHECKS=True instead of 'check'.",
            id="dbtuning.E012",
        )
    accepted = _pool_signature_keys()
    if accepted is not None:
        for key in sorted(set(pool) - accepted - set(DJANGO_OWNED_POOL_KEYS), key=str):
            close = difflib.get_close_matches(str(key), accepted, n=1)
            yield Error(
                f"DATABASES[{alias!r}]['OPTIONS']['pool'] has {key!r}, which "
                "psycopg_pool.ConnectionPool does not accept (TypeError at the first query).",
                hint=f"Did you mean {close[0]!r}?"
                if close
                else "Known keys: min_size, max_size, timeout, max_waiting, "
                "max_lifetime, max_idle, reconnect_timeout, num_workers, name.",
                id="dbtuning.E013",
            )
    yield from check_pool_values(alias, pool)
    yield from _check_pool_timeout(alias, pool)


def _check_pool_timeout(alias: str, pool: Mapping[str, Any]) -> Iterator[CheckMessage]:
    worker_timeout = get_settings().worker_timeout
    timeout = number_or_none(pool.get("timeout", 30.0))
    # A non-finite timeout is E020's business, not a comparison with the worker's.
    if timeout is None or not math.isfinite(timeout) or not worker_timeout:
        return
    if timeout < worker_timeout:
        return
    yield Warning(
        f"DATABASES[{alias!r}] pool timeout is {timeout:g}s, not below the worker "
        f"timeout of {worker_timeout:g}s: a request starved of connections gets its "
        "worker killed instead of a clean error.",
        hint="Use a pool 'timeout' well below your app server's timeout (e.g. 10.0), "
        "or set DBTUNING['WORKER_TIMEOUT'] to your real worker timeout.",
        id="dbtuning.W013",
    )


def check_pool_budget(alias: str, entry: Mapping[str, Any]) -> Iterator[CheckMessage]:
    """``W016``: a pool dict too big for the server budget declared to ``database()``."""
    pool = _options(entry).get("pool")
    if not isinstance(pool, Mapping) or not pool:
        return
    try:
        deployment = Deployment.from_entry(entry)
        if deployment is None or deployment.budget is None:
            return
        max_size = deployment.connections_per_process(entry)[0]
    except (TypeError, ValueError):  # a hand-written record: nothing to compare
        return
    budget, holders = deployment.budget, deployment.holders
    peak = deployment.peak_connections(entry)
    if peak <= budget:
        return
    yield Warning(
        f"DATABASES[{alias!r}] can open {max_size} x {holders} processes = "
        f"{peak} connections, over the server budget of {budget}: at peak "
        "PostgreSQL answers 'too many clients already'.",
        hint=f"Lower max_size to {max(1, budget // holders)} (or let database() size it), "
        "raise max_connections, or put PgBouncer in front.",
        id="dbtuning.W016",
    )


def check_persistent_connections(
    alias: str, entry: Mapping[str, Any]
) -> Iterator[CheckMessage]:
    """Without a pool: a connection per request, forever without health checks, ASGI."""
    if _has_pool(entry):
        return
    conn_max_age = entry.get("CONN_MAX_AGE", 0)
    if conn_max_age == 0:
        yield Warning(
            f"DATABASES[{alias!r}] opens a new connection for every request "
            "(CONN_MAX_AGE=0 and no pool): a few milliseconds and a server process "
            "fork per request.",
            hint="Use django_dbtuning.pool.database(), which sets up the native pool "
            "(Django 5.1+) or CONN_MAX_AGE with health checks.",
            id="dbtuning.W011",
        )
    elif conn_max_age is None and not entry.get("CONN_HEALTH_CHECKS", False):
        yield Warning(
            f"DATABASES[{alias!r}] keeps connections forever (CONN_MAX_AGE=None) "
            "without CONN_HEALTH_CHECKS: after a server restart or fail-over, "
            "requests fail on dead connections.",
            hint="Set CONN_HEALTH_CHECKS=True, or a finite CONN_MAX_AGE.",
            id="dbtuning.W012",
        )
    if conn_max_age != 0 and _serves_asgi():
        yield Warning(
            f"DATABASES[{alias!r}] has CONN_MAX_AGE {describe(conn_max_age)} "
            "under ASGI, where "
            "each request runs in a new thread: persistent connections pile up "
            "instead of being reused.",
            hint="Use the native pool (Django 5.1+) with CONN_MAX_AGE=0.",
            id="dbtuning.W015",
        )


def check_unknown_options(
    alias: str, entry: Mapping[str, Any]
) -> Iterator[CheckMessage]:
    known = known_options()
    unknown = sorted(
        key for key in _options(entry) if isinstance(key, str) and key not in known
    )
    if not unknown:
        return
    yield Error(
        f"DATABASES[{alias!r}]['OPTIONS'] has {', '.join(map(repr, unknown))}, which "
        "neither Django nor libpq understands: the first connection fails with "
        "'invalid connection option'.",
        hint="Top-level settings such as CONN_MAX_AGE belong next to ENGINE, not in "
        "OPTIONS (dj-database-url puts URL query parameters there).",
        id="dbtuning.E016",
    )


def check_isolation_level(
    alias: str, entry: Mapping[str, Any]
) -> Iterator[CheckMessage]:
    options = _options(entry)
    if "isolation_level" not in options:
        return
    try:
        from psycopg import IsolationLevel
    except ImportError:
        return
    try:
        IsolationLevel(options["isolation_level"])
    except ValueError:
        yield Error(
            f"DATABASES[{alias!r}]['OPTIONS']['isolation_level'] is "
            f"{describe(options['isolation_level'])}, not a "
            "psycopg.IsolationLevel: Django refuses to connect.",
            hint="Use psycopg.IsolationLevel.READ_COMMITTED (or another member).",
            id="dbtuning.E019",
        )
        return


def check_pgbouncer(alias: str, entry: Mapping[str, Any]) -> Iterator[CheckMessage]:
    """What transaction pooling breaks: server-side cursors, prepared statements, options."""
    try:
        deployment = Deployment.from_entry(entry)
    except (TypeError, ValueError):
        deployment = None
    declared = deployment is not None and deployment.pgbouncer
    if not declared and str(entry.get("PORT")) != PGBOUNCER_PORT:
        return
    options = _options(entry)
    if not entry.get("DISABLE_SERVER_SIDE_CURSORS", False):
        yield Error(
            f"DATABASES[{alias!r}] goes through PgBouncer but server-side cursors are "
            "on: QuerySet.iterator() fails in transaction pooling with 'cursor "
            '"_django_curs_…" does not exist\'.',
            hint="Set DISABLE_SERVER_SIDE_CURSORS=True (database(pgbouncer=True) does).",
            id="dbtuning.E018",
        )
    if isinstance(options.get("prepare_threshold"), int) or options.get(
        "server_side_binding"
    ):
        yield Warning(
            f"DATABASES[{alias!r}] goes through PgBouncer with server-side prepared "
            "statements or binding: before PgBouncer 1.22 (and without "
            "max_prepared_statements) queries fail with 'prepared statement "
            '"_pg3_0" does not exist\'.',
            hint="Remove prepare_threshold and server_side_binding from OPTIONS, "
            "or check your PgBouncer version and max_prepared_statements.",
            id="dbtuning.W017",
        )
    yield from _check_pgbouncer_options(alias, entry, options.get("options"))


def _check_pgbouncer_options(
    alias: str, entry: Mapping[str, Any], options: object
) -> Iterator[CheckMessage]:
    # Tokenized as the server does: '-cX', '--x=y', tabs all count as startup options.
    try:
        switches = startup.parse_options(str(options or ""))
    except startup.StartupOptionsError:  # E023 says what is wrong
        switches = [startup.StartupOption("?", str(options))]
    if not switches:
        return
    settings = [s for option in switches if (s := option.setting) is not None]
    example = settings or [("statement_timeout", "5s")]
    yield Warning(
        f"DATABASES[{alias!r}] goes through PgBouncer and sends startup options in "
        "OPTIONS['options']: PgBouncer rejects that startup parameter, or ignores it "
        "and the settings are silently not applied.",
        hint="Set them on the server: "
        + startup.alter_role_sql(str(entry.get("USER") or ""), example)
        + ".",
        id="dbtuning.W018",
    )


def _pool_signature_keys() -> frozenset[str] | None:
    try:
        import inspect

        from psycopg_pool import ConnectionPool
    except ImportError:
        return None
    return frozenset(inspect.signature(ConnectionPool.__init__).parameters) - {"self"}


def _psycopg_pool_version() -> tuple[int, ...] | None:
    try:
        from importlib.metadata import version

        return tuple(int(part) for part in version("psycopg-pool").split(".")[:2])
    except Exception:
        return None


def _pool_dependency_errors(alias: str) -> Iterator[CheckMessage]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        yield Error(
            f"DATABASES[{alias!r}] sets OPTIONS['pool'], which needs psycopg 3 (psycopg2 "
            "has no pool): Django raises 'Database pooling requires psycopg >= 3'.",
            hint='pip install "psycopg[binary,pool]"',
            id="dbtuning.E017",
        )
        return
    pool_version = _psycopg_pool_version()
    if pool_version is None or pool_version < (3, 2):
        found = "missing" if pool_version is None else ".".join(map(str, pool_version))
        yield Error(
            f"DATABASES[{alias!r}] sets OPTIONS['pool'] but psycopg_pool is {found}; "
            "Django needs psycopg_pool >= 3.2.",
            hint='pip install "psycopg[binary,pool]>=3.2"',
            id="dbtuning.E017",
        )
        return


def _serves_asgi() -> bool:
    return bool(getattr(settings, "ASGI_APPLICATION", None)) and not getattr(
        settings, "WSGI_APPLICATION", None
    )


# -- registered checks ---------------------------------------------------------------------

# In the order their messages are listed.
ENTRY_CHECKS: tuple[EntryCheck, ...] = (
    check_stacked_pools,
    check_pool_setting,
    check_pool_budget,
    check_persistent_connections,
    check_unknown_options,
    check_isolation_level,
    check_pgbouncer,
    check_conn_max_age,
    check_connection_values,
    check_startup_options,
)


def check_entry(alias: str, entry: Mapping[str, Any]) -> list[CheckMessage]:
    """Every static check of one PostgreSQL alias, secrets scrubbed."""
    options = entry.get("OPTIONS") or {}
    if not isinstance(options, Mapping):
        found: list[CheckMessage] = [
            Error(
                f"DATABASES[{alias!r}]['OPTIONS'] must be a dict, not {type(options).__name__}.",
                hint='Use "OPTIONS": {"sslmode": "require", ...}, or leave it out.',
                id="dbtuning.E021",
            )
        ]
        found += check_conn_max_age(alias, entry)
    else:
        found = [message for check in ENTRY_CHECKS for message in check(alias, entry)]
    return scrub_messages(alias, entry, found)


@register()
def check_databases(**kwargs: Any) -> list[CheckMessage]:
    """Flag DATABASES settings that crash at the first query or quietly cost performance."""
    databases = getattr(settings, "DATABASES", {})
    return [
        message
        for alias, entry in databases.items()
        if isinstance(entry, Mapping) and _is_postgresql(entry)
        for message in check_entry(alias, entry)
    ]


@register(Tags.database)
def check_database_servers(
    databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """With ``check --database ALIAS``: compare each pool plan with the live server, and
    ask it about the settings in ``OPTIONS['options']``."""
    from django.db import connections

    messages: list[CheckMessage] = []
    for alias in databases or ():
        entry = settings.DATABASES.get(alias)
        if not isinstance(entry, Mapping) or not _is_postgresql(entry):
            continue
        settings_dict = connections[alias].settings_dict
        server, found = read_server(alias, settings_dict)
        if server is not None:
            found += check_live_budget(alias, entry, server)
        messages += scrub_messages(alias, settings_dict, found)
    return messages
