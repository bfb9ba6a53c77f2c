"""Build ``DATABASES`` entries that are right by construction, and size their pools.

Pure functions, importable from ``settings.py`` before Django is set up: they read no
settings, open no connection and import nothing from Django but its version.

    from django_dbtuning.pool import database
    DATABASES = {"default": database(os.environ.get("DATABASE_URL"), instances=3, processes=4,
                                     server_max_connections=100, statement_timeout="5s")}
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import django

from django_dbtuning.exceptions import InvalidDatabaseURL

__all__ = [
    "DJANGO_HAS_POOL",
    "PoolSizing",
    "connection_kwargs",
    "database",
    "pool_size",
    "redact_url",
    "server_budget",
]

ENGINE = "django.db.backends.postgresql"
DJANGO_HAS_POOL = django.VERSION >= (5, 1)
SCHEMES = frozenset({"postgres", "postgresql", "pgsql"})

# The pool's wait limit must stay well below the app server's worker timeout (gunicorn's
# default is 30 s), so that a starved request gets a clean error instead of a killed worker.
DEFAULT_POOL_TIMEOUT = 10.0
DEFAULT_MAX_IDLE = 300.0
DEFAULT_MAX_LIFETIME = 1800.0
DEFAULT_CONN_MAX_AGE = 600
DEFAULT_CONNECT_TIMEOUT = 5
DEFAULT_HEADROOM = 0.8
DEFAULT_BURST = 2.0
UNKNOWN_CONCURRENCY_CAP = 10
ROLES = ("primary", "replica", "bulkhead")
# PostgreSQL's superuser_reserved_connections default.
DEFAULT_RESERVED_CONNECTIONS = 3

# libpq connection keywords that may come from a URL query string and pass through to
# OPTIONS; anything else is a typo that libpq would reject at the first connection.
LIBPQ_KEYWORDS = frozenset(
    {
        "application_name",
        "channel_binding",
        "client_encoding",
        "connect_timeout",
        "fallback_application_name",
        "gssencmode",
        "gsslib",
        "hostaddr",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "krbsrvname",
        "load_balance_hosts",
        "options",
        "passfile",
        "require_auth",
        "service",
        "sslcert",
        "sslcompression",
        "sslcrl",
        "sslcrldir",
        "sslkey",
        "sslmode",
        "sslnegotiation",
        "sslpassword",
        "sslrootcert",
        "sslsni",
        "ssl_max_protocol_version",
        "ssl_min_protocol_version",
        "target_session_attrs",
        "tcp_user_timeout",
    }
)
# Query-string keys this helper understands itself (a URL can carry the pool's knobs, which
# dj-database-url and django-environ cannot express).
URL_PARAMETERS = frozenset(
    {
        "pool",
        "pool_min_size",
        "pool_max_size",
        "pool_timeout",
        "pool_max_idle",
        "pool_max_lifetime",
        "pool_max_waiting",
        "conn_max_age",
        "health_checks",
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "pgbouncer",
    }
)
TIMEOUT_SETTINGS = (
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

Timeout = str | int | float | timedelta | None


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and reports."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


# OPTIONS keys Django's backend consumes itself; libpq would reject them.
DJANGO_ONLY_OPTIONS = (
    "pool",
    "server_side_binding",
    "isolation_level",
    "assume_role",
    "cursor_factory",
    "context",
    "prepare_threshold",
)


def connection_kwargs(
    settings_dict: Mapping[str, Any], *, application_name: str | None = None
) -> dict[str, Any]:
    """``psycopg.connect()`` keywords for a ``DATABASES`` entry, without Django's extras.

    For a direct connection that bypasses the alias' pool: a pool retries for its whole
    timeout and reports "couldn't get a connection" instead of the real cause.
    """
    options = dict(settings_dict.get("OPTIONS") or {})
    for key in DJANGO_ONLY_OPTIONS:
        options.pop(key, None)
    kwargs: dict[str, Any] = dict(options)
    name = settings_dict.get("NAME")
    if name:
        kwargs["dbname"] = name
    elif name is None or not options.get("service"):
        kwargs["dbname"] = "postgres"
    for setting, key in (
        ("USER", "user"),
        ("PASSWORD", "password"),
        ("HOST", "host"),
        ("PORT", "port"),
    ):
        if settings_dict.get(setting):
            kwargs[key] = settings_dict[setting]
    if application_name is not None:
        kwargs["application_name"] = application_name
    kwargs.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    return kwargs


# -- sizing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolSizing:
    """The result of :func:`pool_size`: sizes plus the arithmetic that produced them."""

    min_size: int
    max_size: int
    server_budget: int
    """Connections the whole deployment may hold: (max_connections - reserved) x headroom."""
    per_process_budget: int
    """``server_budget`` divided among every process and alias sharing the server."""
    demand: int | None
    """Per-process connections needed at the given throughput (Little's law), if known."""
    total_max: int
    """Connections the whole deployment can open at ``max_size``."""
    rationale: str
    warnings: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        return self.rationale


def _positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _positive_float(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero) or math.isnan(value):
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


def server_budget(
    max_connections: int, reserved: int, other_clients: int = 0, headroom: float = 1.0
) -> int:
    """Connections the application may hold: (max - reserved - other clients) x headroom."""
    return math.floor((max_connections - reserved - other_clients) * headroom)


def pool_size(
    *,
    server_max_connections: int = 100,
    reserved_connections: int = DEFAULT_RESERVED_CONNECTIONS,
    other_clients: int = 0,
    instances: int = 1,
    processes: int = 1,
    threads: int | None = None,
    aliases: int = 1,
    headroom: float = DEFAULT_HEADROOM,
    throughput: float | None = None,
    hold_time: float | None = None,
    burst: float = DEFAULT_BURST,
) -> PoolSizing:
    """Size one alias' pool for a deployment, and explain the arithmetic.

    The ceiling is the server's connection budget shared by every process:
    ``floor((max_connections - reserved - other_clients) x headroom / (instances x processes
    x aliases))``. A process never needs more connections than it has threads, and, when
    ``throughput`` (requests/s across the deployment) and ``hold_time`` (seconds a request
    holds its connection, from first query to response) are given, Little's law gives the
    steady demand ``throughput x hold_time / (instances x processes)``, times ``burst`` for
    peaks.

    Args:
        server_max_connections: the server's ``max_connections``.
        reserved_connections: ``superuser_reserved_connections`` (+ ``reserved_connections``
            on PostgreSQL 16+).
        other_clients: connections used by anything else (Celery, cron, replication,
            monitoring, psql, migrations).
        instances: machines or containers running the app.
        processes: worker processes per instance (gunicorn ``--workers``).
        threads: threads per process (gunicorn ``--threads``); None when unknown.
        aliases: ``DATABASES`` aliases pointing at the same server (each has its own pool).
        headroom: share of the usable connections the app may take (0.8 leaves 20 %).
        throughput: requests per second across the whole deployment.
        hold_time: seconds a request holds a connection.
        burst: factor over the steady demand for peaks.

    Raises:
        ValueError: a value is out of range, or the deployment cannot get one connection
            per process.
        TypeError: a value has the wrong type.
    """
    max_connections = _positive_int("server_max_connections", server_max_connections)
    reserved = _positive_int("reserved_connections", reserved_connections, minimum=0)
    others = _positive_int("other_clients", other_clients, minimum=0)
    instances = _positive_int("instances", instances)
    processes = _positive_int("processes", processes)
    aliases = _positive_int("aliases", aliases)
    if threads is not None:
        threads = _positive_int("threads", threads)
    headroom = _positive_float("headroom", headroom)
    if headroom > 1:
        raise ValueError(
            f"headroom is a share of the connections (0-1], got {headroom}"
        )
    burst = _positive_float("burst", burst)
    if burst < 1:
        raise ValueError(f"burst must be >= 1, got {burst}")
    if (throughput is None) != (hold_time is None):
        raise ValueError("give both throughput and hold_time, or neither")

    budget = server_budget(max_connections, reserved, others, headroom)
    holders = instances * processes * aliases
    per_process = budget // holders if budget > 0 else 0
    lines = [
        f"server budget: ({max_connections} max_connections - {reserved} reserved"
        + (f" - {others} other clients" if others else "")
        + f") x {headroom:g} headroom = {budget}",
        f"per process: {budget} // ({instances} instances x {processes} processes"
        f" x {aliases} aliases = {holders}) = {per_process}",
    ]
    if per_process < 1:
        raise ValueError(
            f"{holders} processes x aliases cannot share {budget} connections: "
            f"raise max_connections, lower processes/instances, or put PgBouncer in front "
            f"({'; '.join(lines)})"
        )
    warnings: list[str] = []
    max_size = per_process
    limits = [f"budget {per_process}"]
    if threads is not None:
        limits.append(f"{threads} threads")
        if threads < max_size:
            max_size = threads
        elif threads > per_process:
            warnings.append(
                f"{threads} threads share {per_process} connections: requests queue in the "
                "pool at peak (intended if the pool is the throttle)"
            )
    elif throughput is None:
        # Nothing says how many requests a process serves at once; a process rarely
        # benefits from more connections than this, and the server pays for each one.
        limits.append(
            f"default cap {UNKNOWN_CONCURRENCY_CAP} (pass threads= or throughput=)"
        )
        max_size = min(max_size, UNKNOWN_CONCURRENCY_CAP)
    demand: int | None = None
    steady: int | None = None
    if throughput is not None and hold_time is not None:
        throughput = _positive_float("throughput", throughput)
        hold_time = _positive_float("hold_time", hold_time)
        busy = throughput * hold_time / (instances * processes)
        steady = max(1, math.ceil(busy))
        demand = max(1, math.ceil(busy * burst))
        lines.append(
            f"Little's law: {throughput:g} req/s x {hold_time:g} s / {instances * processes}"
            f" processes = {busy:.2f} busy per process; x {burst:g} burst = {demand}"
        )
        limits.append(f"demand {demand}")
        if demand < max_size:
            max_size = demand
        elif demand > per_process:
            warnings.append(
                f"demand {demand} per process exceeds the budget {per_process}: at "
                f"{throughput:g} req/s requests will wait for connections; add PgBouncer "
                "or raise max_connections"
            )
    min_size = min(max_size, steady) if steady is not None else max(1, max_size // 2)
    lines.append(f"max_size = min({', '.join(limits)}) = {max_size}")
    lines.append(
        f"min_size = {min_size} ("
        + ("steady demand" if steady is not None else "half of max_size, kept warm")
        + ")"
    )
    total = max_size * holders
    lines.append(
        f"whole deployment at max_size: {total} of {max_connections} connections"
        f" ({reserved + others} reserved for others)"
    )
    return PoolSizing(
        min_size=min_size,
        max_size=max_size,
        server_budget=budget,
        per_process_budget=per_process,
        demand=demand,
        total_max=total,
        rationale="\n".join(lines),
        warnings=tuple(warnings),
    )


# -- parsing -----------------------------------------------------------------------------


def _duration_ms(name: str, value: Timeout) -> int | None:
    """A PostgreSQL duration in whole milliseconds; int means ms, float means seconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a duration like '5s', not a bool")
    if isinstance(value, timedelta):
        ms = value.total_seconds() * 1000
    elif isinstance(value, int):
        ms = value
    elif isinstance(value, float):
        ms = value * 1000
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"{name}={value!r} is not a duration: use '500ms', '5s', '2min', or an "
                "int of milliseconds"
            )
        number, unit = float(match.group(1)), match.group(2) or "ms"
        factor = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
        ms = number * factor.get(unit, 86_400_000)
    else:
        raise TypeError(
            f"{name} must be a duration like '5s', not {type(value).__name__}"
        )
    if ms < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return int(round(ms))


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidDatabaseURL(
        f"URL parameter {name}={value!r} is not a boolean (true/false)"
    )


def _number(name: str, value: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise InvalidDatabaseURL(
            f"URL parameter {name}={value!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None


@dataclass
class _ParsedURL:
    settings: dict[str, Any]
    options: dict[str, Any]
    parameters: dict[str, str]


def _parse_url(url: str) -> _ParsedURL:
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidDatabaseURL(f"cannot parse database URL {shown}: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise InvalidDatabaseURL(
            f"database URL {shown} must start with postgres:// or postgresql://"
            + (f", not {parts.scheme}://" if parts.scheme else "")
        )
    name = unquote(parts.path.lstrip("/"))
    host = unquote(parts.hostname or "")
    # urlsplit lowercases hostnames; a percent-encoded socket path must keep its case.
    netloc_host = parts.netloc.rpartition("@")[2]
    if netloc_host.lower().startswith("%2f"):
        host = unquote(netloc_host.split(":", 1)[0])
    options: dict[str, Any] = {}
    parameters: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "host":
            host = value
        elif key == "port":
            port = int(_number("port", value, int))
        elif key in ("dbname", "user", "password"):
            raise InvalidDatabaseURL(
                f"database URL {shown}: put {key} in the URL itself, not in ?{key}="
            )
        elif key in URL_PARAMETERS:
            parameters[key] = value
        elif key in LIBPQ_KEYWORDS:
            options[key] = value
        else:
            raise InvalidDatabaseURL(
                f"database URL {shown}: unknown parameter {key!r} (libpq would reject it); "
                f"known: {', '.join(sorted(URL_PARAMETERS | LIBPQ_KEYWORDS))}"
            )
    if not name and "service" not in options:
        raise InvalidDatabaseURL(f"database URL {shown} names no database (…/DBNAME)")
    return _ParsedURL(
        settings={
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": host,
            "PORT": str(port) if port else "",
        },
        options=options,
        parameters=parameters,
    )


def _merge_options_string(existing: str, timeouts: dict[str, int]) -> str:
    extra = " ".join(f"-c {name}={ms}ms" for name, ms in timeouts.items())
    return f"{existing} {extra}".strip() if existing else extra


# -- the helper --------------------------------------------------------------------------


def database(
    url: str | None = None,
    *,
    env: str = "DATABASE_URL",
    pool: bool | None = None,
    instances: int = 1,
    processes: int = 1,
    threads: int | None = None,
    aliases: int = 1,
    server_max_connections: int = 100,
    reserved_connections: int = DEFAULT_RESERVED_CONNECTIONS,
    other_clients: int = 0,
    headroom: float = DEFAULT_HEADROOM,
    throughput: float | None = None,
    hold_time: float | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    timeout: float = DEFAULT_POOL_TIMEOUT,
    max_idle: float = DEFAULT_MAX_IDLE,
    max_lifetime: float = DEFAULT_MAX_LIFETIME,
    max_waiting: int = 0,
    conn_max_age: int | None = DEFAULT_CONN_MAX_AGE,
    health_checks: bool = True,
    statement_timeout: Timeout = None,
    lock_timeout: Timeout = None,
    idle_in_transaction_session_timeout: Timeout = None,
    connect_timeout: int | None = DEFAULT_CONNECT_TIMEOUT,
    application_name: str | None = None,
    pgbouncer: bool | None = None,
    options: Mapping[str, Any] | None = None,
    role: str = "primary",
    primary: str = "default",
    test: Mapping[str, Any] | None = None,
    atomic_requests: bool = False,
) -> dict[str, Any]:
    """Build one complete ``DATABASES`` entry for PostgreSQL.

    On Django 5.1+ the entry uses Django's native psycopg pool (``CONN_MAX_AGE=0``, an
    explicit ``OPTIONS["pool"]`` sized by :func:`pool_size`); on older Django, or with
    ``pool=False``, persistent connections (``CONN_MAX_AGE`` plus ``CONN_HEALTH_CHECKS``).
    Timeouts become libpq ``options``; ``pgbouncer=True`` sets what transaction pooling
    needs (no server-side cursors or prepared statements, no startup options).

    Args:
        url: ``postgres://user:password@host:port/dbname?param=value``; the host may also
            be a socket directory (``?host=/run/postgresql``). Query parameters are libpq
            keywords (``sslmode``...), or this helper's own: ``pool``, ``pool_min_size``,
            ``pool_max_size``, ``pool_timeout``, ``pool_max_idle``, ``pool_max_lifetime``,
            ``pool_max_waiting``, ``conn_max_age``, ``health_checks``, the three timeouts and
            ``pgbouncer``. Keyword arguments given explicitly win over the URL.
        env: environment variable read when ``url`` is None.

    The sizing arguments are those of :func:`pool_size`. ``role="replica"`` or
    ``role="bulkhead"`` (with ``primary``, the primary's alias) marks the entry for
    :class:`django_dbtuning.routers.PrimaryReplicaRouter` and mirrors the primary in tests.
    The README's "Pool and connection settings" section describes every argument.

    Raises:
        InvalidDatabaseURL: the URL is missing or malformed (the message never shows the
            password).
        ValueError, TypeError: an argument is out of range or of the wrong type.
    """
    if url is None:
        url = os.environ.get(env, "")
        if not url.strip():
            raise InvalidDatabaseURL(
                f"{env} is not set: export {env}=postgres://USER:PASSWORD@HOST:5432/DBNAME"
            )
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    parsed = _parse_url(url.strip())
    params = parsed.parameters

    # URL parameters fill in what the caller did not pass explicitly; the defaults above
    # are the only way to tell "not passed", so compare against them.
    if pool is None and "pool" in params:
        pool = _bool("pool", params["pool"])
    if pgbouncer is None:
        pgbouncer = (
            _bool("pgbouncer", params["pgbouncer"]) if "pgbouncer" in params else False
        )
    if min_size is None and "pool_min_size" in params:
        min_size = _number("pool_min_size", params["pool_min_size"], int)
    if max_size is None and "pool_max_size" in params:
        max_size = _number("pool_max_size", params["pool_max_size"], int)
    if timeout == DEFAULT_POOL_TIMEOUT and "pool_timeout" in params:
        timeout = _number("pool_timeout", params["pool_timeout"], float)
    if max_idle == DEFAULT_MAX_IDLE and "pool_max_idle" in params:
        max_idle = _number("pool_max_idle", params["pool_max_idle"], float)
    if max_lifetime == DEFAULT_MAX_LIFETIME and "pool_max_lifetime" in params:
        max_lifetime = _number("pool_max_lifetime", params["pool_max_lifetime"], float)
    if max_waiting == 0 and "pool_max_waiting" in params:
        max_waiting = _number("pool_max_waiting", params["pool_max_waiting"], int)
    if conn_max_age == DEFAULT_CONN_MAX_AGE and "conn_max_age" in params:
        raw = params["conn_max_age"]
        conn_max_age = (
            None if raw.lower() in ("none", "") else _number("conn_max_age", raw, int)
        )
    if health_checks and "health_checks" in params:
        health_checks = _bool("health_checks", params["health_checks"])
    timeouts_given: dict[str, Timeout] = {
        "statement_timeout": statement_timeout,
        "lock_timeout": lock_timeout,
        "idle_in_transaction_session_timeout": idle_in_transaction_session_timeout,
    }
    for name in TIMEOUT_SETTINGS:
        if timeouts_given[name] is None and name in params:
            timeouts_given[name] = params[name]

    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    use_pool = DJANGO_HAS_POOL if pool is None else bool(pool)
    if use_pool and not DJANGO_HAS_POOL:
        raise ValueError(
            f"pool=True needs Django 5.1 or newer (this is {django.get_version()}); "
            "leave pool unset to get CONN_MAX_AGE with health checks"
        )

    timeouts = {
        name: ms
        for name, value in timeouts_given.items()
        if (ms := _duration_ms(name, value)) is not None
    }
    entry_options: dict[str, Any] = dict(parsed.options)
    if options:
        entry_options.update(options)
    if connect_timeout is not None and "connect_timeout" not in entry_options:
        entry_options["connect_timeout"] = _positive_int(
            "connect_timeout", connect_timeout
        )
    if application_name is not None:
        entry_options["application_name"] = application_name
    if timeouts:
        if pgbouncer:
            settings_sql = "; ".join(
                f"ALTER ROLE {parsed.settings['USER'] or 'app'} SET {name} = '{ms}ms'"
                for name, ms in timeouts.items()
            )
            raise ValueError(
                "PgBouncer rejects startup options, so timeouts cannot travel with the "
                f"connection; set them on the server instead: {settings_sql}"
            )
        entry_options["options"] = _merge_options_string(
            str(entry_options.get("options", "")), timeouts
        )
    if pgbouncer:
        if "-c " in str(entry_options.get("options", "")):
            raise ValueError(
                "PgBouncer rejects the libpq 'options' startup parameter; move the -c "
                "settings to ALTER ROLE ... SET on the server"
            )
        # Transaction pooling hands each transaction a different server connection:
        # server-side prepared statements would be missing on the next one.
        entry_options["prepare_threshold"] = None

    sizing = pool_size(
        server_max_connections=server_max_connections,
        reserved_connections=reserved_connections,
        other_clients=other_clients,
        instances=instances,
        processes=processes,
        threads=threads,
        aliases=aliases,
        headroom=headroom,
        throughput=throughput,
        hold_time=hold_time,
    )
    entry: dict[str, Any] = {"ENGINE": ENGINE, **parsed.settings}
    if use_pool:
        if max_size is None:
            chosen_max = sizing.max_size
            default_min = sizing.min_size
        else:
            chosen_max = _positive_int("max_size", max_size)
            default_min = max(1, chosen_max // 2)
        chosen_min = (
            min(default_min, chosen_max)
            if min_size is None
            else _positive_int("min_size", min_size, minimum=0)
        )
        if chosen_min > chosen_max:
            raise ValueError(
                f"min_size ({chosen_min}) must not exceed max_size ({chosen_max})"
            )
        entry_options["pool"] = {
            "min_size": chosen_min,
            "max_size": chosen_max,
            "timeout": _positive_float("timeout", timeout),
            "max_idle": _positive_float("max_idle", max_idle),
            "max_lifetime": _positive_float("max_lifetime", max_lifetime),
            "max_waiting": _positive_int("max_waiting", max_waiting, minimum=0),
        }
        entry["CONN_MAX_AGE"] = 0
    else:
        if conn_max_age is not None:
            _positive_int("conn_max_age", conn_max_age, minimum=0)
        entry["CONN_MAX_AGE"] = conn_max_age
    entry["CONN_HEALTH_CHECKS"] = bool(health_checks)
    entry["DISABLE_SERVER_SIDE_CURSORS"] = bool(pgbouncer)
    entry["ATOMIC_REQUESTS"] = bool(atomic_requests)
    entry["OPTIONS"] = entry_options
    if role != "primary":
        # Replicas and bulkheads read the primary's data; in tests they must see the test
        # database through the same name rather than get an empty one of their own.
        entry["TEST"] = {"MIRROR": primary}
    if test:
        entry["TEST"] = {**entry.get("TEST", {}), **test}
    # Django ignores unknown keys; checks and dbreport read the deployment from here.
    entry["DBTUNING"] = {
        "role": role,
        "primary": primary if role != "primary" else None,
        "pgbouncer": bool(pgbouncer),
        "instances": instances,
        "processes": processes,
        "threads": threads,
        "aliases": aliases,
        "server_max_connections": server_max_connections,
        "reserved_connections": reserved_connections,
        "other_clients": other_clients,
        "headroom": headroom,
        "rationale": sizing.rationale,
    }
    return entry
