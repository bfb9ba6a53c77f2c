"""Build ``DATABASES`` entries that are right by construction, and size their pools.

Pure functions, importable from ``settings.py`` before Django is set up: they read no
settings, open no connection and import nothing from Django but its version.

    from django_dbtuning.pool.entry import database
    DATABASES = {"default": database(os.environ.get("DATABASE_URL"), instances=3, processes=4,
                                     server_max_connections=100, statement_timeout="5s")}
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import django

from django_dbtuning.exceptions import InvalidDatabaseURL
from django_dbtuning.pool import conninfo
from django_dbtuning.pool.url import (
    ParsedURL,
    parse_url,
    redact_url,
    url_arguments,
)
from django_dbtuning.validation import (
    Duration,
    duration_ms,
    positive_float,
    positive_int,
)

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

TIMEOUT_SETTINGS = (
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
)

Timeout = Duration


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
    max_connections = positive_int("server_max_connections", server_max_connections)
    reserved = positive_int("reserved_connections", reserved_connections, minimum=0)
    others = positive_int("other_clients", other_clients, minimum=0)
    instances = positive_int("instances", instances)
    processes = positive_int("processes", processes)
    aliases = positive_int("aliases", aliases)
    if threads is not None:
        threads = positive_int("threads", threads)
    headroom = positive_float("headroom", headroom)
    if headroom > 1:
        raise ValueError(
            f"headroom is a share of the connections (0-1], got {headroom}"
        )
    burst = positive_float("burst", burst)
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
        throughput = positive_float("throughput", throughput)
        hold_time = positive_float("hold_time", hold_time)
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


# -- durations and URL values -------------------------------------------------------------


class _NotGiven(enum.Enum):
    TOKEN = "not given"


# conn_max_age=None means "keep connections forever" in Django, so "not given" needs a
# token of its own there; every other argument uses None for "not given".
NOT_GIVEN: Final = _NotGiven.TOKEN

# Applied after the URL and the explicit arguments are merged.
_DEFAULTS: dict[str, Any] = {
    "pgbouncer": False,
    "timeout": DEFAULT_POOL_TIMEOUT,
    "max_idle": DEFAULT_MAX_IDLE,
    "max_lifetime": DEFAULT_MAX_LIFETIME,
    "max_waiting": 0,
    "conn_max_age": DEFAULT_CONN_MAX_AGE,
    "health_checks": True,
}


def _merge_arguments(
    parsed: ParsedURL, explicit: Mapping[str, Any]
) -> tuple[dict[str, Any], frozenset[str]]:
    """Explicit arguments win over URL parameters, which win over the defaults.

    Also returns the arguments whose value came from the URL: messages about those name
    the URL parameter and do not quote the value.
    """
    from_url = url_arguments(parsed)
    merged: dict[str, Any] = {**_DEFAULTS, **from_url}
    for argument, value in explicit.items():
        given = (
            value is not NOT_GIVEN if argument == "conn_max_age" else value is not None
        )
        if given:
            merged[argument] = value
            from_url.pop(argument, None)
    return merged, frozenset(from_url)


# -- the entry, one part at a time ----------------------------------------------------------


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


def _refuse(parsed: ParsedURL, key: str, from_url: bool, problem: str) -> ValueError:
    """An error about ``key``: an InvalidDatabaseURL when the URL set it."""
    if from_url:
        return InvalidDatabaseURL(f"database URL {parsed.shown}: {problem}")
    return ValueError(f"OPTIONS[{key!r}]: {problem}")


def _startup_options(
    parsed: ParsedURL,
    existing: object,
    timeouts: Mapping[str, int],
    pgbouncer: bool,
    from_url: bool,
    url_timeouts: frozenset[str],
) -> str | None:
    """The libpq ``options`` string: the given one with the timeouts merged in."""
    text = "" if existing is None else str(existing)
    try:
        switches, problem = conninfo.parse_options(text), ""
    except conninfo.StartupOptionsError as exc:
        switches, problem = [], str(exc)
    if problem:  # raised outside the except block: no exception chain to read
        raise _refuse(
            parsed,
            "options",
            from_url,
            f"options is not valid server startup options: {problem}",
        )
    settings = [s for option in switches if (s := option.setting) is not None]
    for name, value in settings:
        if (refused := conninfo.setting_problem(name, value)) is not None:
            # From the URL only the name is said (one of the timeouts setting_problem
            # knows); an explicit value passed validation and is shown.
            said = name.lower() if from_url else f"{name}={value}"
            raise _refuse(parsed, "options", from_url, f"{said} {refused}")
    wanted = [(name, f"{ms}ms") for name, ms in timeouts.items()]
    if pgbouncer and (switches or wanted):
        hint = _alter_role_hint(parsed, settings, from_url, wanted, url_timeouts)
        raise ValueError(
            "PgBouncer rejects the libpq 'options' startup parameter, so timeouts and "
            "other settings cannot travel with the connection; set them on the server "
            f"instead: {hint}"
        )
    if not wanted:
        return None if existing is None else text
    args: list[str] = []
    for option in switches:
        setting = option.setting
        if setting is not None and setting[0].lower() in timeouts:
            continue  # the explicit timeout wins over the same -c in options
        if setting is not None:
            args += ["-c", f"{setting[0]}={setting[1]}"]
        else:
            args += [f"-{option.switch}"] + (
                [option.argument] if option.argument else []
            )
    for name, value in wanted:
        args += ["-c", f"{name}={value}"]
    return conninfo.join_options(args)


def _alter_role_hint(
    parsed: ParsedURL,
    settings: list[tuple[str, str]],
    options_from_url: bool,
    wanted: list[tuple[str, str]],
    url_timeouts: frozenset[str],
) -> str:
    """The ``ALTER ROLE`` statements to paste, with a value from the URL only when
    ``redact_url`` shows it too (validated, and before any secret)."""
    role = parsed.user if "user" in parsed.echoable else "<role>"
    pairs = [] if options_from_url else list(settings)
    pairs += [
        (name, value if name not in url_timeouts or name in parsed.echoable else "...")
        for name, value in wanted
    ]
    statements = [conninfo.alter_role_sql(role, pairs)] if pairs else []
    if options_from_url:
        statements.append(
            conninfo.alter_role_sql(role, [("name", "value")])
            + " for each -c setting of the URL's options parameter"
        )
    return "; ".join(statements)


def _connection_options(
    parsed: ParsedURL,
    options: Mapping[str, Any] | None,
    connect_timeout: int | None,
    application_name: str | None,
    timeouts: Mapping[str, int],
    pgbouncer: bool,
    url_timeouts: frozenset[str],
) -> dict[str, Any]:
    """``OPTIONS`` without the pool: URL keywords < ``options`` < the named arguments."""
    result: dict[str, Any] = dict(parsed.options)
    explicit = dict(options or {})
    unknown = sorted(
        str(key)
        for key in explicit
        if key
        not in conninfo.libpq_keywords()
        | conninfo.psycopg_connect_keywords()
        | set(DJANGO_ONLY_OPTIONS)
    )
    if unknown:
        raise ValueError(
            f"options {', '.join(map(repr, unknown))}: neither a libpq keyword nor an "
            "option of Django's PostgreSQL backend"
        )
    result.update(explicit)
    if connect_timeout is not None:
        result["connect_timeout"] = positive_int(
            "connect_timeout", connect_timeout, minimum=0
        )
    result.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    if application_name is not None:
        result["application_name"] = application_name
    from_url = "options" in parsed.options and "options" not in explicit
    merged = _startup_options(
        parsed, result.get("options"), timeouts, pgbouncer, from_url, url_timeouts
    )
    if merged is not None:
        result["options"] = merged
    if pgbouncer:
        # Transaction pooling hands each transaction a different server connection:
        # server-side prepared statements would be missing on the next one.
        result["prepare_threshold"] = None
    return result


def _validate_connection(entry: Mapping[str, Any], parsed: ParsedURL) -> None:
    """Let libpq (and psycopg) judge the connection values now, not at the first query."""
    params = {
        key: value
        for key, value in entry["OPTIONS"].items()
        if key in conninfo.libpq_keywords()
    }
    params.update(host=entry["HOST"], port=entry["PORT"], user=entry["USER"])

    def from_url(key: str) -> bool:
        return key in ("host", "port", "user") or (
            key in parsed.options and parsed.options[key] == entry["OPTIONS"].get(key)
        )

    for problem in conninfo.connection_problems(params):
        key = problem.keyword or "options"
        raise _refuse(parsed, key, from_url(key), problem.message)


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
    }


def _use_pool(pool: bool | None) -> bool:
    use_pool = DJANGO_HAS_POOL if pool is None else bool(pool)
    if use_pool and not DJANGO_HAS_POOL:
        raise ValueError(
            f"pool=True needs Django 5.1 or newer (this is {django.get_version()}); "
            "leave pool unset to get CONN_MAX_AGE with health checks"
        )
    return use_pool


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
    timeout: float | None = None,
    max_idle: float | None = None,
    max_lifetime: float | None = None,
    max_waiting: int | None = None,
    conn_max_age: int | None | _NotGiven = NOT_GIVEN,
    health_checks: bool | None = None,
    statement_timeout: Timeout = None,
    lock_timeout: Timeout = None,
    idle_in_transaction_session_timeout: Timeout = None,
    connect_timeout: int | None = None,
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
            be a socket directory (``?host=/run/postgresql``) or a list (``h1:5432,h2``).
            Query parameters are libpq keywords (``sslmode``...), or this helper's own:
            ``pool``, ``pool_min_size``, ``pool_max_size``, ``pool_timeout``,
            ``pool_max_idle``, ``pool_max_lifetime``, ``pool_max_waiting``,
            ``conn_max_age``, ``health_checks``, the three timeouts and ``pgbouncer``.
            Arguments given explicitly win over the URL; an argument left at ``None`` (or
            ``conn_max_age`` not passed) is "not given", and the default applies after
            the URL is read: ``timeout`` 10.0, ``max_idle`` 300, ``max_lifetime`` 1800,
            ``max_waiting`` 0, ``conn_max_age`` 600, ``health_checks`` True,
            ``connect_timeout`` 5 (0 waits forever, as in libpq).
        env: environment variable read when ``url`` is None.

    The sizing arguments are those of :func:`pool_size`. ``role="replica"`` or
    ``role="bulkhead"`` (with ``primary``, the primary's alias) marks the entry for
    :class:`django_dbtuning.routers.PrimaryReplicaRouter` and mirrors the primary in tests.
    The README's "Pool and connection settings" section describes every argument.

    Raises:
        InvalidDatabaseURL: the URL is missing, malformed, ambiguous or carries a value
            libpq refuses (the message never shows the password).
        ValueError, TypeError: an argument is out of range or of the wrong type.
    """
    parsed = parse_url(_url_text(url, env))
    arguments, url_sourced = _merge_arguments(
        parsed,
        {
            "pool": pool,
            "pgbouncer": pgbouncer,
            "min_size": min_size,
            "max_size": max_size,
            "timeout": timeout,
            "max_idle": max_idle,
            "max_lifetime": max_lifetime,
            "max_waiting": max_waiting,
            "conn_max_age": conn_max_age,
            "health_checks": health_checks,
            "statement_timeout": statement_timeout,
            "lock_timeout": lock_timeout,
            "idle_in_transaction_session_timeout": idle_in_transaction_session_timeout,
        },
    )
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    use_pool = _use_pool(arguments.get("pool"))
    timeouts = {
        name: ms
        for name in TIMEOUT_SETTINGS
        if (ms := duration_ms(name, arguments.get(name))) is not None
    }
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
    pgbouncer_mode = bool(arguments["pgbouncer"])
    entry: dict[str, Any] = {"ENGINE": ENGINE, **parsed.settings()}
    entry["OPTIONS"] = _connection_options(
        parsed,
        options,
        connect_timeout,
        application_name,
        timeouts,
        pgbouncer_mode,
        url_sourced & set(TIMEOUT_SETTINGS),
    )
    _validate_connection(entry, parsed)
    if use_pool:
        entry["OPTIONS"]["pool"] = _pool_options(arguments, sizing, url_sourced, parsed)
        entry["CONN_MAX_AGE"] = 0
    else:
        entry["CONN_MAX_AGE"] = _conn_max_age_value(arguments["conn_max_age"])
    entry["CONN_HEALTH_CHECKS"] = bool(arguments["health_checks"])
    entry["DISABLE_SERVER_SIDE_CURSORS"] = pgbouncer_mode
    entry["ATOMIC_REQUESTS"] = bool(atomic_requests)
    entry.update(
        _test_and_deployment(entry, role, primary, test, pgbouncer_mode, sizing)
    )
    entry["DBTUNING"].update(
        instances=instances,
        processes=processes,
        threads=threads,
        aliases=aliases,
        server_max_connections=server_max_connections,
        reserved_connections=reserved_connections,
        other_clients=other_clients,
        headroom=headroom,
    )
    return entry


def _conn_max_age_value(value: Any) -> int | None:
    if value is not None:
        positive_int("conn_max_age", value, minimum=0)
    return value  # type: ignore[no-any-return]


def _test_and_deployment(
    entry: Mapping[str, Any],
    role: str,
    primary: str,
    test: Mapping[str, Any] | None,
    pgbouncer: bool,
    sizing: PoolSizing,
) -> dict[str, Any]:
    """``TEST`` for replicas and bulkheads, and the ``DBTUNING`` record checks read."""
    extra: dict[str, Any] = {}
    if role != "primary":
        # Replicas and bulkheads read the primary's data; in tests they must see the test
        # database through the same name rather than get an empty one of their own.
        extra["TEST"] = {"MIRROR": primary}
    if test:
        extra["TEST"] = {**extra.get("TEST", {}), **test}
    # Django ignores unknown keys; checks and dbreport read the deployment from here.
    extra["DBTUNING"] = {
        "role": role,
        "primary": primary if role != "primary" else None,
        "pgbouncer": pgbouncer,
        "rationale": sizing.rationale,
    }
    return extra
