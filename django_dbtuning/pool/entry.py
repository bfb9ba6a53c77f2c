"""``database()``: one ``DATABASES`` entry, right by construction, its pool sized.

Pure: importable from ``settings.py`` before Django is set up. It reads no settings, opens
no connection and imports nothing from Django but its version.

    from django_dbtuning.pool import database
    DATABASES = {"default": database(os.environ.get("DATABASE_URL"), instances=3, processes=4,
                                     server_max_connections=100, statement_timeout="5s")}
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

import django

from django_dbtuning.exceptions import InvalidDatabaseURL
from django_dbtuning.pool.options import connection_options, validate_connection
from django_dbtuning.pool.parameters import url_arguments
from django_dbtuning.pool.sizing import Deployment, PoolSizing, size_for
from django_dbtuning.pool.url import ParsedURL, parse_url
from django_dbtuning.validation import (
    Duration,
    duration_ms,
    positive_float,
    positive_int,
)

ENGINE = "django.db.backends.postgresql"
# Django's backend, minus the per-checkout work a pool makes moot (pool/postgresql/base.py).
POOL_ENGINE = "django_dbtuning.pool.postgresql"
# Django 6.1 lets OPTIONS["pool"]["check"] through (ticket #37075); before, it passes its own.
DJANGO_POOL_CHECK_OPEN = django.VERSION >= (6, 1)
TIMEOUT_SETTINGS = (
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
)

# What an argument left out (or None) becomes once the URL is read. The pool's wait limit
# stays well below the app server's worker timeout (gunicorn's default is 30 s), so that
# a starved request gets a clean error instead of a killed worker.
DEFAULTS: dict[str, Any] = {
    "env": "DATABASE_URL",
    "pool": True,
    "pgbouncer": False,
    "timeout": 10.0,
    "max_idle": 300.0,
    "max_lifetime": 1800.0,
    "max_waiting": 0,
    "conn_max_age": 600,
    "health_checks": True,
    "server_max_connections": 100,
    "role": "primary",
    "primary": "default",
    "atomic_requests": False,
}
_DEPLOYMENT_FIELDS = frozenset(field.name for field in fields(Deployment))


def database(
    url: str | None = None,
    *,
    env: str | None = None,
    pool: bool | None = None,
    instances: int | None = None,
    processes: int | None = None,
    threads: int | None = None,
    aliases: int | None = None,
    server_max_connections: int | None = None,
    reserved_connections: int | None = None,
    other_clients: int | None = None,
    headroom: float | None = None,
    throughput: float | None = None,
    hold_time: float | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    timeout: float | None = None,
    max_idle: float | None = None,
    max_lifetime: float | None = None,
    max_waiting: int | None = None,
    conn_max_age: float | None = None,
    health_checks: bool | None = None,
    statement_timeout: Duration = None,
    lock_timeout: Duration = None,
    idle_in_transaction_session_timeout: Duration = None,
    connect_timeout: int | None = None,
    application_name: str | None = None,
    pgbouncer: bool | None = None,
    options: Mapping[str, Any] | None = None,
    role: str | None = None,
    primary: str | None = None,
    test: Mapping[str, Any] | None = None,
    atomic_requests: bool | None = None,
) -> dict[str, Any]:
    """Build one complete ``DATABASES`` entry for PostgreSQL, from ``url`` or ``$env``.

    The entry uses Django's native psycopg pool (``CONN_MAX_AGE=0``, an explicit
    ``OPTIONS["pool"]`` sized by :func:`pool_size`, whose arguments are the sizing ones
    here) through :data:`POOL_ENGINE`, Django's PostgreSQL backend minus the per-request
    work a pool makes moot; with ``pool=False``, persistent connections (``CONN_MAX_AGE`` plus
    ``CONN_HEALTH_CHECKS``). Timeouts become libpq ``options``;
    ``pgbouncer=True`` sets what transaction pooling needs. The URL's query may hold libpq
    keywords and this helper's own parameters (:data:`URL_PARAMETERS`). An argument left
    out or None is "not given", as in psycopg's ``make_conninfo()``: the URL's value
    applies, then :data:`DEFAULTS`. ``conn_max_age=math.inf`` keeps connections forever.
    ``role="replica"`` or ``"bulkhead"`` marks the entry for
    :class:`~django_dbtuning.routers.PrimaryReplicaRouter`; the entry records its
    :class:`Deployment` under ``"DBTUNING"``. docs/pool.md describes every argument.

    Raises:
        InvalidDatabaseURL: the URL is missing, malformed, ambiguous or carries a value
            libpq refuses (the message never shows the password).
        ValueError, TypeError: an argument is out of range or of the wrong type.
    """
    # None means "not given" for every argument: the URL's value applies, then DEFAULTS.
    given = {name: value for name, value in locals().items() if value is not None}
    parsed = parse_url(_url_text(url, given.get("env", DEFAULTS["env"])))
    from_url = url_arguments(parsed.parameters, parsed.shown)
    arguments = {**DEFAULTS, **from_url, **given}
    return _entry(parsed, arguments, frozenset(from_url) - given.keys())


def _entry(
    parsed: ParsedURL, arguments: Mapping[str, Any], url_sourced: frozenset[str]
) -> dict[str, Any]:
    """The entry for the merged arguments; ``url_sourced`` names those from the URL."""
    use_pool = _use_pool(arguments["pool"])
    timeouts = {
        name: ms
        for name in TIMEOUT_SETTINGS
        if (ms := duration_ms(name, arguments.get(name))) is not None
    }
    deployment = _deployment(arguments)
    sizing = size_for(deployment)
    entry: dict[str, Any] = {
        "ENGINE": POOL_ENGINE if use_pool else ENGINE,
        **parsed.settings(),
    }
    entry["OPTIONS"] = connection_options(
        parsed,
        arguments.get("options"),
        arguments.get("connect_timeout"),
        arguments.get("application_name"),
        timeouts,
        deployment.pgbouncer,
        url_sourced & set(TIMEOUT_SETTINGS),
    )
    validate_connection(entry, parsed)
    if use_pool:
        entry["OPTIONS"]["pool"] = _pool_options(arguments, sizing, url_sourced, parsed)
        entry["CONN_MAX_AGE"] = 0
    else:
        entry["CONN_MAX_AGE"] = _conn_max_age(arguments["conn_max_age"])
    entry["CONN_HEALTH_CHECKS"] = bool(arguments["health_checks"])
    entry["DISABLE_SERVER_SIDE_CURSORS"] = deployment.pgbouncer
    entry["ATOMIC_REQUESTS"] = bool(arguments["atomic_requests"])
    if deployment.role != "primary":
        # Replicas and bulkheads read the primary's data; in tests they must see the test
        # database through the same name rather than get an empty one of their own.
        entry["TEST"] = {"MIRROR": deployment.primary, **arguments.get("test", {})}
    elif arguments.get("test"):
        entry["TEST"] = dict(arguments["test"])
    # Django ignores unknown keys; checks, dbreport and the router read this back.
    entry["DBTUNING"] = replace(deployment, rationale=sizing.rationale).as_dict()
    return entry


def _url_text(url: str | None, env: str) -> str:
    if url is None:
        url = os.environ.get(env, "")
        if not url.strip():
            raise InvalidDatabaseURL(
                f"{env} is not set: export {env}=postgres://USER:PASSWORD@HOST:5432/DBNAME"
            )
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    return url.strip()


def _use_pool(pool: object) -> bool:
    return bool(pool)


def _deployment(arguments: Mapping[str, Any]) -> Deployment:
    values = {k: v for k, v in arguments.items() if k in _DEPLOYMENT_FIELDS}
    values["pgbouncer"] = bool(values["pgbouncer"])
    if values["role"] == "primary":
        values["primary"] = None
    return Deployment(**values)


def _conn_max_age(value: Any) -> int | None:
    # Django spells "keep connections forever" None, which here means "not given".
    if isinstance(value, float) and value == math.inf:
        return None
    return positive_int("conn_max_age", value, minimum=0)


def _pool_options(
    arguments: Mapping[str, Any],
    sizing: PoolSizing,
    url_arguments: frozenset[str],
    parsed: ParsedURL,
) -> dict[str, Any]:
    # Values from the URL were validated by url_arguments(); only their relation is left.
    max_size, min_size = arguments.get("max_size"), arguments.get("min_size")
    if max_size is None:
        chosen_max, default_min = sizing.max_size, sizing.min_size
    else:
        chosen_max = positive_int("max_size", max_size)
        default_min = max(1, chosen_max // 2)
    chosen_min = (
        min(default_min, chosen_max)
        if min_size is None
        else positive_int("min_size", min_size, minimum=0)
    )
    if chosen_min > chosen_max:
        if url_arguments & {"min_size", "max_size"}:
            raise InvalidDatabaseURL(
                f"database URL {parsed.shown}: the pool's min_size must not exceed "
                "its max_size (pool_min_size, pool_max_size)"
            )
        raise ValueError(
            f"min_size ({chosen_min}) must not exceed max_size ({chosen_max})"
        )
    return {
        "min_size": chosen_min,
        "max_size": chosen_max,
        "timeout": positive_float("timeout", arguments["timeout"]),
        "max_idle": positive_float("max_idle", arguments["max_idle"]),
        "max_lifetime": positive_float("max_lifetime", arguments["max_lifetime"]),
        "max_waiting": positive_int("max_waiting", arguments["max_waiting"], minimum=0),
        **(_health_hooks() if arguments["health_checks"] else {}),
    }


def _health_hooks() -> dict[str, Any]:
    """The pool keys that skip the checkout round trip for a recently verified connection.

    Django 6.1+ takes our ``check``; 5.2 and 6.0 pass psycopg_pool's ``check_connection``
    themselves, whose empty probe the connection class answers instead. Without psycopg
    3's pool there are none: Django and check E016 say what is missing.
    """
    try:
        from django_dbtuning.pool import health
    except ImportError:
        return {}
    if DJANGO_POOL_CHECK_OPEN:
        return {
            "check": health.check_unless_recent,
            "connection_class": health.PooledConnection,
        }
    return {"connection_class": health.ProbedConnection}
