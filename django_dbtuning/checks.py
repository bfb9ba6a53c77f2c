"""System checks: every configuration mistake surfaces in ``manage.py check``.

Ids are stable and never reused; the README lists each one. Ranges: E001-E009/W001-W009
for the ``DBTUNING`` dict itself, E010-E029/W010-W029 for ``DATABASES`` and the pool,
E030-E039/W030-W039 for query tracking, E050-E059/W050-W059 for dbreport.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from django_dbtuning import conninfo, pool_checks
from django_dbtuning.conf import SETTINGS, Setting, conf, is_valid
from django_dbtuning.pool import server_budget

__all__ = [
    "check_database_servers",
    "check_databases",
    "check_dbtuning_settings",
    "check_query_tracking",
]


def _describe_expected(setting: Setting) -> str:
    if setting.choices is not None:
        expected = " or ".join(repr(choice) for choice in setting.choices)
    else:
        expected = " or ".join(t.__name__ for t in setting.types)
    if setting.minimum is not None:
        expected += f" >= {setting.minimum:g}"
    if setting.nullable:
        expected += " or None"
    return expected


@register()
def check_dbtuning_settings(**kwargs: Any) -> list[CheckMessage]:
    """Validate the ``DBTUNING`` dict: a mapping, known keys, values of the right type."""
    user = getattr(settings, "DBTUNING", {})
    if not isinstance(user, Mapping):
        return [
            Error(
                f"DBTUNING must be a dict, not {type(user).__name__}.",
                hint='Set DBTUNING = {"N_PLUS_ONE_THRESHOLD": 3, ...} or remove it.',
                id="dbtuning.E001",
            )
        ]
    messages: list[CheckMessage] = []
    for key in sorted(user, key=str):
        value = user[key]
        setting = SETTINGS.get(key) if isinstance(key, str) else None
        if setting is None:
            close = difflib.get_close_matches(str(key), SETTINGS, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else None
            messages.append(
                Warning(
                    f"DBTUNING[{key!r}] is not a django-dbtuning setting and is ignored.",
                    hint=hint or "See the README's settings table for the known keys.",
                    id="dbtuning.W001",
                )
            )
        elif not is_valid(setting, value):
            messages.append(
                Error(
                    f"DBTUNING[{key!r}] is {value!r}; expected {_describe_expected(setting)}.",
                    hint=f"{setting.description} Default: {setting.default!r}.",
                    id="dbtuning.E002",
                )
            )
    return messages


# -- DATABASES and the connection pool (E010-E029, W010-W029) --------------------------

# Keys Django passes to ConnectionPool itself; a user value collides with them (TypeError
# at the first query). Django 6.1 lets "check" through (ticket #37075).
DJANGO_OWNED_POOL_KEYS = ("kwargs", "open", "configure", "check")
# OPTIONS keys Django's PostgreSQL backend consumes instead of passing them to libpq.
DJANGO_OPTIONS = frozenset(
    {
        "pool",
        "server_side_binding",
        "prepare_threshold",
        "assume_role",
        "isolation_level",
    }
)
PGBOUNCER_PORT = "6432"
THIRD_PARTY_POOL_ENGINES = ("dj_db_conn_pool", "django_db_geventpool")


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


def _is_postgresql(entry: Mapping[str, Any]) -> bool:
    engine = str(entry.get("ENGINE", ""))
    return engine.startswith("django.db.backends.postgresql") or any(
        engine.startswith(name) for name in THIRD_PARTY_POOL_ENGINES
    )


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _check_pool_dict(alias: str, pool: Mapping[str, Any]) -> list[CheckMessage]:
    import django

    messages: list[CheckMessage] = []
    owned = [
        key
        for key in DJANGO_OWNED_POOL_KEYS
        if key in pool and not (key == "check" and django.VERSION >= (6, 1))
    ]
    if owned:
        messages.append(
            Error(
                f"DATABASES[{alias!r}]['OPTIONS']['pool'] sets {', '.join(map(repr, owned))}, "
                "which Django passes to the pool itself: the first query fails with "
                "'got multiple values for keyword argument'.",
                hint="Remove these keys; use CONN_HEALTH_CHECKS=True instead of 'check'.",
                id="dbtuning.E012",
            )
        )
    accepted = _pool_signature_keys()
    if accepted is not None:
        for key in sorted(set(pool) - accepted - set(DJANGO_OWNED_POOL_KEYS), key=str):
            close = difflib.get_close_matches(str(key), accepted, n=1)
            messages.append(
                Error(
                    f"DATABASES[{alias!r}]['OPTIONS']['pool'] has {key!r}, which "
                    "psycopg_pool.ConnectionPool does not accept (TypeError at the first query).",
                    hint=f"Did you mean {close[0]!r}?"
                    if close
                    else "Known keys: min_size, max_size, timeout, max_waiting, "
                    "max_lifetime, max_idle, reconnect_timeout, num_workers, name.",
                    id="dbtuning.E013",
                )
            )
    messages += pool_checks.check_pool_values(alias, pool)
    worker_timeout = conf.WORKER_TIMEOUT
    timeout = _number_or_none(pool.get("timeout", 30.0))
    # A non-finite timeout is E020's business, not a comparison with the worker's.
    if (
        timeout is not None
        and math.isfinite(timeout)
        and worker_timeout
        and timeout >= worker_timeout
    ):
        messages.append(
            Warning(
                f"DATABASES[{alias!r}] pool timeout is {timeout:g}s, not below the worker "
                f"timeout of {worker_timeout:g}s: a request starved of connections gets its "
                "worker killed instead of a clean error.",
                hint="Use a pool 'timeout' well below your app server's timeout (e.g. 10.0), "
                "or set DBTUNING['WORKER_TIMEOUT'] to your real worker timeout.",
                id="dbtuning.W013",
            )
        )
    return messages


def _check_sizing(
    alias: str, entry: Mapping[str, Any], pool: Any
) -> list[CheckMessage]:
    deployment = entry.get("DBTUNING")
    if not isinstance(deployment, Mapping) or not isinstance(pool, Mapping):
        return []
    try:
        holders = (
            int(deployment["instances"])
            * int(deployment["processes"])
            * int(deployment["aliases"])
        )
        budget = server_budget(
            int(deployment["server_max_connections"]),
            int(deployment["reserved_connections"]),
            int(deployment["other_clients"]),
            float(deployment["headroom"]),
        )
        max_size = _max_size(pool)
    except (KeyError, TypeError, ValueError):
        return []
    if max_size * holders <= budget:
        return []
    return [
        Warning(
            f"DATABASES[{alias!r}] can open {max_size} x {holders} processes = "
            f"{max_size * holders} connections, over the server budget of {budget}: at peak "
            "PostgreSQL answers 'too many clients already'.",
            hint=f"Lower max_size to {max(1, budget // holders)} (or let database() size it), "
            "raise max_connections, or put PgBouncer in front.",
            id="dbtuning.W016",
        )
    ]


def _check_database(alias: str, entry: Mapping[str, Any]) -> list[CheckMessage]:
    import django

    messages: list[CheckMessage] = []
    engine = str(entry.get("ENGINE", ""))
    options = entry.get("OPTIONS") or {}
    if not isinstance(options, Mapping):
        return [
            Error(
                f"DATABASES[{alias!r}]['OPTIONS'] must be a dict, not {type(options).__name__}.",
                hint='Use "OPTIONS": {"sslmode": "require", ...}, or leave it out.',
                id="dbtuning.E021",
            )
        ]
    pool = options.get("pool")
    conn_max_age = entry.get("CONN_MAX_AGE", 0)
    health_checks = bool(entry.get("CONN_HEALTH_CHECKS", False))
    deployment = (
        entry.get("DBTUNING") if isinstance(entry.get("DBTUNING"), Mapping) else {}
    )
    assert isinstance(deployment, Mapping)
    behind_pgbouncer = (
        bool(deployment.get("pgbouncer")) or str(entry.get("PORT")) == PGBOUNCER_PORT
    )

    if any(engine.startswith(name) for name in THIRD_PARTY_POOL_ENGINES) and pool:
        messages.append(
            Warning(
                f"DATABASES[{alias!r}] uses the pooling backend {engine} and also sets "
                "OPTIONS['pool']: two pools stack, or the backend breaks on Django 5.1+.",
                hint="Use one: remove OPTIONS['pool'] or switch ENGINE to "
                "django.db.backends.postgresql.",
                id="dbtuning.W019",
            )
        )

    if pool is not None and pool is not False:
        if pool is not True and not isinstance(pool, Mapping):
            messages.append(
                Error(
                    f"DATABASES[{alias!r}]['OPTIONS']['pool'] is {pool_checks.describe(pool)}; "
                    "it must be True or "
                    "a dict (an env parser's string or 1 crashes the first query with "
                    "'argument after ** must be a mapping').",
                    hint='Use "pool": True or "pool": {"min_size": 2, "max_size": 10, ...}.',
                    id="dbtuning.E010",
                )
            )
        elif isinstance(pool, Mapping) and not pool:
            messages.append(
                Warning(
                    f"DATABASES[{alias!r}]['OPTIONS']['pool'] is an empty dict, which Django "
                    "treats as 'no pool': every request opens a new connection.",
                    hint='Use "pool": True for the defaults, or give explicit sizes.',
                    id="dbtuning.W010",
                )
            )
        else:
            if not django.VERSION >= (5, 1):
                messages.append(
                    Error(
                        f"DATABASES[{alias!r}] sets OPTIONS['pool'], which Django "
                        f"{django.get_version()} does not support: libpq rejects 'pool' as an "
                        "invalid connection option.",
                        hint="Upgrade to Django 5.1+, or use database(), which falls back to "
                        "CONN_MAX_AGE with health checks.",
                        id="dbtuning.E015",
                    )
                )
            messages += _pool_dependency_errors(alias)
            if conn_max_age != 0:
                messages.append(
                    Error(
                        f"DATABASES[{alias!r}] has a pool and CONN_MAX_AGE "
                        f"{pool_checks.describe(conn_max_age)}; "
                        "Django raises 'Pooling doesn't support persistent connections' at "
                        "the first query.",
                        hint="Set CONN_MAX_AGE to 0 and bound connection age with the pool's "
                        "'max_lifetime' instead.",
                        id="dbtuning.E011",
                    )
                )
            if pool is True:
                messages.append(
                    Warning(
                        f'DATABASES[{alias!r}] uses "pool": True: psycopg_pool\'s defaults are '
                        "a fixed 4 connections per process and a 30 s wait, the same as "
                        "gunicorn's worker timeout.",
                        hint="Size the pool for your deployment with "
                        "django_dbtuning.pool.database(..., processes=, threads=).",
                        id="dbtuning.W014",
                    )
                )
                messages += _check_pool_dict(alias, {})
            else:
                assert isinstance(pool, Mapping)
                messages += _check_pool_dict(alias, pool)
                messages += _check_sizing(alias, entry, pool)
    elif _is_postgresql(entry):
        if conn_max_age == 0:
            messages.append(
                Warning(
                    f"DATABASES[{alias!r}] opens a new connection for every request "
                    "(CONN_MAX_AGE=0 and no pool): a few milliseconds and a server process "
                    "fork per request.",
                    hint="Use django_dbtuning.pool.database(), which sets up the native pool "
                    "(Django 5.1+) or CONN_MAX_AGE with health checks.",
                    id="dbtuning.W011",
                )
            )
        elif conn_max_age is None and not health_checks:
            messages.append(
                Warning(
                    f"DATABASES[{alias!r}] keeps connections forever (CONN_MAX_AGE=None) "
                    "without CONN_HEALTH_CHECKS: after a server restart or fail-over, "
                    "requests fail on dead connections.",
                    hint="Set CONN_HEALTH_CHECKS=True, or a finite CONN_MAX_AGE.",
                    id="dbtuning.W012",
                )
            )
        if conn_max_age != 0 and _serves_asgi():
            messages.append(
                Warning(
                    f"DATABASES[{alias!r}] has CONN_MAX_AGE {pool_checks.describe(conn_max_age)} "
                    "under ASGI, where "
                    "each request runs in a new thread: persistent connections pile up "
                    "instead of being reused.",
                    hint="Use the native pool (Django 5.1+) with CONN_MAX_AGE=0.",
                    id="dbtuning.W015",
                )
            )

    unknown = sorted(
        key
        for key in options
        if isinstance(key, str)
        and key not in DJANGO_OPTIONS
        and key not in _libpq_keywords()
        and _is_postgresql(entry)
    )
    if unknown:
        messages.append(
            Error(
                f"DATABASES[{alias!r}]['OPTIONS'] has {', '.join(map(repr, unknown))}, which "
                "neither Django nor libpq understands: the first connection fails with "
                "'invalid connection option'.",
                hint="Top-level settings such as CONN_MAX_AGE belong next to ENGINE, not in "
                "OPTIONS (dj-database-url puts URL query parameters there).",
                id="dbtuning.E016",
            )
        )
    if "isolation_level" in options:
        messages += _check_isolation_level(alias, options["isolation_level"])
    if behind_pgbouncer:
        if not entry.get("DISABLE_SERVER_SIDE_CURSORS", False):
            messages.append(
                Error(
                    f"DATABASES[{alias!r}] goes through PgBouncer but server-side cursors are "
                    "on: QuerySet.iterator() fails in transaction pooling with 'cursor "
                    '"_django_curs_…" does not exist\'.',
                    hint="Set DISABLE_SERVER_SIDE_CURSORS=True (database(pgbouncer=True) does).",
                    id="dbtuning.E018",
                )
            )
        if isinstance(options.get("prepare_threshold"), int) or options.get(
            "server_side_binding"
        ):
            messages.append(
                Warning(
                    f"DATABASES[{alias!r}] goes through PgBouncer with server-side prepared "
                    "statements or binding: before PgBouncer 1.22 (and without "
                    "max_prepared_statements) queries fail with 'prepared statement "
                    '"_pg3_0" does not exist\'.',
                    hint="Remove prepare_threshold and server_side_binding from OPTIONS, "
                    "or check your PgBouncer version and max_prepared_statements.",
                    id="dbtuning.W017",
                )
            )
        messages += _check_pgbouncer_options(alias, entry, options.get("options"))
    return messages


def _check_pgbouncer_options(
    alias: str, entry: Mapping[str, Any], options: object
) -> list[CheckMessage]:
    # Tokenized as the server does: '-cX', '--x=y', tabs all count as startup options.
    try:
        switches = conninfo.parse_options(str(options or ""))
    except conninfo.StartupOptionsError:
        switches = [
            conninfo.StartupOption("?", str(options))
        ]  # E023 says what is wrong
    if not switches:
        return []
    settings = [s for option in switches if (s := option.setting) is not None]
    example = settings or [("statement_timeout", "5s")]
    return [
        Warning(
            f"DATABASES[{alias!r}] goes through PgBouncer and sends startup options in "
            "OPTIONS['options']: PgBouncer rejects that startup parameter, or ignores it "
            "and the settings are silently not applied.",
            hint="Set them on the server: "
            + conninfo.alter_role_sql(str(entry.get("USER") or ""), example)
            + ".",
            id="dbtuning.W018",
        )
    ]


def _libpq_keywords() -> frozenset[str]:
    # The installed libpq's keywords, and psycopg.connect()'s own (autocommit, context...).
    return conninfo.libpq_keywords() | conninfo.psycopg_connect_keywords()


def _pool_dependency_errors(alias: str) -> list[CheckMessage]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return [
            Error(
                f"DATABASES[{alias!r}] sets OPTIONS['pool'], which needs psycopg 3 (psycopg2 "
                "has no pool): Django raises 'Database pooling requires psycopg >= 3'.",
                hint='pip install "psycopg[binary,pool]"',
                id="dbtuning.E017",
            )
        ]
    pool_version = _psycopg_pool_version()
    if pool_version is None or pool_version < (3, 2):
        found = "missing" if pool_version is None else ".".join(map(str, pool_version))
        return [
            Error(
                f"DATABASES[{alias!r}] sets OPTIONS['pool'] but psycopg_pool is {found}; "
                "Django needs psycopg_pool >= 3.2.",
                hint='pip install "psycopg[binary,pool]>=3.2"',
                id="dbtuning.E017",
            )
        ]
    return []


def _check_isolation_level(alias: str, value: Any) -> list[CheckMessage]:
    try:
        from psycopg import IsolationLevel
    except ImportError:
        return []
    try:
        IsolationLevel(value)
    except ValueError:
        return [
            Error(
                f"DATABASES[{alias!r}]['OPTIONS']['isolation_level'] is "
                f"{pool_checks.describe(value)}, not a "
                "psycopg.IsolationLevel: Django refuses to connect.",
                hint="Use psycopg.IsolationLevel.READ_COMMITTED (or another member).",
                id="dbtuning.E019",
            )
        ]
    return []


def _serves_asgi() -> bool:
    return bool(getattr(settings, "ASGI_APPLICATION", None)) and not getattr(
        settings, "WSGI_APPLICATION", None
    )


@register()
def check_databases(**kwargs: Any) -> list[CheckMessage]:
    """Flag DATABASES settings that crash at the first query or quietly cost performance."""
    databases = getattr(settings, "DATABASES", {})
    messages: list[CheckMessage] = []
    for alias, entry in databases.items():
        if isinstance(entry, Mapping) and _is_postgresql(entry):
            found = _check_database(alias, entry)
            found += pool_checks.check_conn_max_age(alias, entry)
            if isinstance(entry.get("OPTIONS") or {}, Mapping):
                found += pool_checks.check_connection_values(alias, entry)
                found += pool_checks.check_startup_options(alias, entry)
            messages += pool_checks.scrub_messages(alias, entry, found)
    return messages


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
        server, found = pool_checks.read_server(alias, settings_dict)
        if server is not None:
            found += _check_live_budget(alias, entry, server)
        messages += pool_checks.scrub_messages(alias, settings_dict, found)
    return messages


def _max_size(pool: Mapping[str, Any]) -> int:
    # psycopg_pool: max_size None (or absent) means min_size, whose default is 4.
    max_size = pool.get("max_size")
    return int(pool.get("min_size", 4) if max_size is None else max_size)


def _check_live_budget(
    alias: str, entry: Mapping[str, Any], server: Mapping[str, int]
) -> list[CheckMessage]:
    deployment = entry.get("DBTUNING")
    if not isinstance(deployment, Mapping):
        return []
    pool = (entry.get("OPTIONS") or {}).get("pool")
    try:
        processes = int(deployment["instances"]) * int(deployment["processes"])
        holders = processes * int(deployment["aliases"])
        if isinstance(pool, Mapping) and pool:
            per_process = _max_size(pool)
            what = "pool max_size"
        elif deployment.get("threads"):
            # Without a pool, each thread keeps (or opens) its own connection.
            per_process = int(deployment["threads"])
            what = "threads"
        else:
            return []
        reserved = server.get("superuser_reserved_connections", 3) + server.get(
            "reserved_connections", 0
        )
        usable = server_budget(
            server["max_connections"], reserved, int(deployment["other_clients"])
        )
    except (KeyError, TypeError, ValueError):
        return []
    wanted = per_process * holders
    if wanted <= usable:
        return []
    return [
        Warning(
            f"DATABASES[{alias!r}]: {per_process} ({what}) x {holders} processes = {wanted} "
            f"connections, but the server allows {usable} "
            f"({server['max_connections']} max_connections - {reserved} reserved"
            + (
                f" - {deployment['other_clients']} other clients"
                if deployment["other_clients"]
                else ""
            )
            + ").",
            hint=f"Pass server_max_connections={server['max_connections']} to database() so "
            "it sizes the pool for this server, or raise max_connections.",
            id="dbtuning.W020",
        )
    ]


# --- Query tracking: E030-E039 / W030-W039 ---------------------------------------------------

QUERY_COUNT_MIDDLEWARE = "django_dbtuning.middleware.QueryCountMiddleware"
# Middleware that never runs a query, so it may sit before QueryCountMiddleware.
_QUERY_FREE_MIDDLEWARE = frozenset(
    {
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.gzip.GZipMiddleware",
        "django.middleware.http.ConditionalGetMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.locale.LocaleMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "corsheaders.middleware.CorsMiddleware",
        "debug_toolbar.middleware.DebugToolbarMiddleware",
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
    }
)


@register()
def check_query_tracking(**kwargs: Any) -> list[CheckMessage]:
    """The middleware's presence and position; the allow-list and ignored aliases."""
    messages: list[CheckMessage] = []
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    positions = [
        i for i, path in enumerate(middleware) if path == QUERY_COUNT_MIDDLEWARE
    ]
    if not positions and settings.DEBUG:
        messages.append(
            Warning(
                f"{QUERY_COUNT_MIDDLEWARE} is not in MIDDLEWARE: N+1 queries in views "
                "go unreported.",
                hint=f'Add "{QUERY_COUNT_MIDDLEWARE}" at the top of MIDDLEWARE.',
                id="dbtuning.W030",
            )
        )
    if len(positions) > 1:
        messages.append(
            Error(
                f"{QUERY_COUNT_MIDDLEWARE} is listed {len(positions)} times in MIDDLEWARE; "
                "every query would be counted more than once.",
                hint="Keep one entry, at the top of MIDDLEWARE.",
                id="dbtuning.E030",
            )
        )
    if positions:
        before = [
            path
            for path in middleware[: positions[0]]
            if path not in _QUERY_FREE_MIDDLEWARE
        ]
        if before:
            messages.append(
                Warning(
                    f"{QUERY_COUNT_MIDDLEWARE} comes after {', '.join(before)}; queries "
                    "these run (sessions, authentication...) are not counted.",
                    hint=f"Move {QUERY_COUNT_MIDDLEWARE} to the top of MIDDLEWARE.",
                    id="dbtuning.W031",
                )
            )
    messages.extend(_check_allow_list())
    aliases = getattr(settings, "DATABASES", {}) or {}
    for alias in conf.IGNORE_ALIASES:
        if alias not in aliases:
            messages.append(
                Warning(
                    f"DBTUNING['IGNORE_ALIASES'] names {alias!r}, which is not in "
                    "DATABASES.",
                    hint=f"Known aliases: {', '.join(sorted(aliases)) or 'none'}.",
                    id="dbtuning.W032",
                )
            )
    return messages


_ALLOW_KEYS = ("model", "field", "fingerprint", "view", "callsite")


def _check_allow_list() -> list[CheckMessage]:
    user = getattr(settings, "DBTUNING", {})
    entries = user.get("ALLOW_N_PLUS_ONE", ()) if isinstance(user, Mapping) else ()
    if not isinstance(entries, list | tuple):
        return []  # wrong type: already dbtuning.E002
    messages: list[CheckMessage] = []
    for index, entry in enumerate(entries):
        where = f"DBTUNING['ALLOW_N_PLUS_ONE'][{index}]"
        if not isinstance(entry, Mapping) or not entry:
            messages.append(
                Error(
                    f"{where} is {entry!r}; expected a non-empty dict.",
                    hint=f"Use keys among {', '.join(_ALLOW_KEYS)}, e.g. "
                    '{"model": "shop.Order", "field": "customer"}.',
                    id="dbtuning.E031",
                )
            )
            continue
        for key, value in entry.items():
            if key not in _ALLOW_KEYS:
                close = difflib.get_close_matches(str(key), _ALLOW_KEYS, n=1)
                messages.append(
                    Error(
                        f"{where} has an unknown key {key!r}.",
                        hint=f"Did you mean {close[0]!r}?"
                        if close
                        else f"Known keys: {', '.join(_ALLOW_KEYS)}.",
                        id="dbtuning.E032",
                    )
                )
            elif not isinstance(value, str) or not value:
                messages.append(
                    Error(
                        f"{where}[{key!r}] is {value!r}; expected a non-empty string "
                        "(glob patterns allowed).",
                        hint="For example 'shop.Order', 'customer', 'shop/views.py:*'.",
                        id="dbtuning.E033",
                    )
                )
        messages.extend(_check_allowed_model(entry, where))
    return messages


def _is_glob(value: str) -> bool:
    return any(char in value for char in "*?[")


def _check_allowed_model(entry: Mapping[str, Any], where: str) -> list[CheckMessage]:
    from django.apps import apps

    model_name, field_name = entry.get("model"), entry.get("field")
    if not isinstance(model_name, str) or not model_name or _is_glob(model_name):
        return []
    try:
        model = apps.get_model(model_name)
    except (LookupError, ValueError):
        return [
            Error(
                f"{where}['model'] is {model_name!r}, which is not an installed model.",
                hint="Use 'app_label.ModelName', as in INSTALLED_APPS' models.",
                id="dbtuning.E034",
            )
        ]
    if not isinstance(field_name, str) or not field_name or _is_glob(field_name):
        return []
    names = set()
    for model_field in model._meta.get_fields():
        names.add(model_field.name)
        accessor = getattr(model_field, "get_accessor_name", None)
        if accessor is not None:
            names.add(accessor())
    if field_name not in names:
        close = difflib.get_close_matches(
            field_name, sorted(n for n in names if n), n=1
        )
        return [
            Error(
                f"{where}['field'] is {field_name!r}, which {model_name} does not have.",
                hint=f"Did you mean {close[0]!r}?"
                if close
                else f"{model_name} has: {', '.join(sorted(n for n in names if n))}.",
                id="dbtuning.E035",
            )
        ]
    return []


# -- COPY (dbtuning.E040-E049 / W040-W049) -------------------------------------------


def check_copy_manager(manager: Any, **kwargs: Any) -> list[CheckMessage]:
    """Run by Django's model checks for every ``CopyManager``: refusals found early."""
    model = manager.model
    if model is None or model._meta.abstract:
        return []
    messages: list[CheckMessage] = []
    concrete = model._meta.concrete_model
    parents = [p for p in concrete._meta.get_parent_list() if p is not concrete]
    if parents:
        messages.append(
            Error(
                f"{model._meta.label} uses CopyManager, but it inherits from "
                f"{parents[0]._meta.label} through multi-table inheritance, which "
                "copy_from() refuses (one row spans several tables).",
                hint="Give the CopyManager to the parent model, or load with "
                "bulk_create().",
                obj=model,
                id="dbtuning.E040",
            )
        )
    databases = kwargs.get("databases") or []
    from django.db import connections

    for alias in databases:
        connection = connections[alias]
        if connection.vendor == "postgresql" and (
            getattr(getattr(connection, "Database", None), "__name__", "") == "psycopg2"
        ):
            messages.append(
                Error(
                    f"{model._meta.label} uses CopyManager, but database {alias!r} runs "
                    "on psycopg2; COPY needs psycopg 3.",
                    hint="pip install 'psycopg[binary]' (Django prefers it over "
                    "psycopg2).",
                    obj=model,
                    id="dbtuning.E041",
                )
            )
    return messages


def _report_timeouts() -> list[CheckMessage]:
    # The same rule dbreport applies when it runs: a timeout it would refuse (0 or
    # negative, which leave it without one; not a duration; over INT_MAX ms). A value of the
    # wrong type is dbtuning.E002's.
    from django_dbtuning.report import timeouts

    user = getattr(settings, "DBTUNING", None)
    values = user if isinstance(user, Mapping) else {}
    messages: list[CheckMessage] = []
    for name in timeouts.NAMES:
        value = values.get(name, SETTINGS[name].default)
        problem = (
            timeouts.problem(name, value) if is_valid(SETTINGS[name], value) else None
        )
        if problem is not None:
            messages.append(
                Error(
                    f"{problem}.",
                    hint="dbreport refuses to run with it: every report query runs under "
                    "a timeout of 1 ms to 2147483647 ms; a fraction of a millisecond "
                    "rounds up to 1 ms.",
                    id="dbtuning.E051",
                )
            )
    return messages


@register()
def check_dbreport_settings(**kwargs: Any) -> list[CheckMessage]:
    """dbreport's settings: thresholds, timeouts, and what the live metrics report on."""
    from django.db import connections

    from django_dbtuning.report.findings import DEFAULT_THRESHOLDS, SECTIONS

    messages: list[CheckMessage] = []
    thresholds = conf.REPORT_THRESHOLDS
    for key in sorted(thresholds, key=str):
        value = thresholds[key]
        if key not in DEFAULT_THRESHOLDS:
            close = difflib.get_close_matches(str(key), DEFAULT_THRESHOLDS, n=1)
            messages.append(
                Warning(
                    f"DBTUNING['REPORT_THRESHOLDS'][{key!r}] is not a dbreport threshold "
                    "and is ignored.",
                    hint=f"Did you mean {close[0]!r}?"
                    if close
                    else "See the README's dbreport section for the thresholds.",
                    id="dbtuning.W050",
                )
            )
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            messages.append(
                Error(
                    f"DBTUNING['REPORT_THRESHOLDS'][{key!r}] is {value!r}; expected a "
                    "number >= 0.",
                    hint=f"The default is {DEFAULT_THRESHOLDS[key]!r}.",
                    id="dbtuning.E050",
                )
            )
    messages.extend(_report_timeouts())
    unknown = [s for s in conf.REPORT_METRICS_SECTIONS if s not in SECTIONS]
    if unknown:
        messages.append(
            Error(
                f"DBTUNING['REPORT_METRICS_SECTIONS'] has unknown section(s) "
                f"{', '.join(map(repr, unknown))}.",
                hint=f"Choose from {', '.join(SECTIONS)}.",
                id="dbtuning.E052",
            )
        )
    for alias in conf.REPORT_METRICS_ALIASES or ():
        if alias not in connections.settings:
            messages.append(
                Error(
                    f"DBTUNING['REPORT_METRICS_ALIASES'] names {alias!r}, which is not "
                    "in DATABASES.",
                    hint=f"DATABASES has {', '.join(map(repr, connections.settings))}.",
                    id="dbtuning.E053",
                )
            )
        elif connections[alias].vendor != "postgresql":
            messages.append(
                Error(
                    f"DBTUNING['REPORT_METRICS_ALIASES'] names {alias!r}, which is not "
                    "PostgreSQL.",
                    hint="dbreport reads PostgreSQL's statistics only.",
                    id="dbtuning.E053",
                )
            )
    return messages
