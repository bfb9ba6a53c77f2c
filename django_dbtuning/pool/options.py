"""The ``OPTIONS`` of a ``DATABASES`` entry: libpq keywords, startup options, and back.

:func:`connection_options` merges the URL's keywords, the ``options`` argument and the
timeouts into the ``options`` startup parameter, tokenized as the server does, and refuses
what libpq or PgBouncer would refuse later; :func:`connection_kwargs` turns an entry back
into ``psycopg.connect()`` keywords.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django_dbtuning.exceptions import InvalidDatabaseURL
from django_dbtuning.pool import conninfo, startup
from django_dbtuning.pool.url import ParsedURL
from django_dbtuning.validation import positive_int

DEFAULT_CONNECT_TIMEOUT = 5
# Where each libpq keyword lives when Django's top-level settings give it.
TOP_LEVEL_SETTINGS = {"host": "HOST", "port": "PORT", "dbname": "NAME", "user": "USER"}

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


def known_options() -> frozenset[str]:
    """The keys ``OPTIONS`` may hold: the installed libpq's keywords, ``psycopg.connect()``'s
    own (autocommit, context...) and those Django's backend consumes."""
    return (
        conninfo.libpq_keywords()
        | conninfo.psycopg_connect_keywords()
        | frozenset(DJANGO_ONLY_OPTIONS)
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
    for key in ("user", "password", "host", "port"):
        if settings_dict.get(key.upper()):
            kwargs[key] = settings_dict[key.upper()]
    if application_name is not None:
        kwargs["application_name"] = application_name
    kwargs.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    return kwargs


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
        switches, problem = startup.parse_options(text), ""
    except startup.StartupOptionsError as exc:
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
        if (refused := startup.setting_problem(name, value)) is not None:
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
    return startup.join_options(args)


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
    statements = [startup.alter_role_sql(role, pairs)] if pairs else []
    if options_from_url:
        statements.append(
            startup.alter_role_sql(role, [("name", "value")])
            + " for each -c setting of the URL's options parameter"
        )
    return "; ".join(statements)


def connection_options(
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
    unknown = sorted(str(key) for key in explicit if key not in known_options())
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


def libpq_params(entry: Mapping[str, Any]) -> dict[str, object]:
    """The libpq keywords psycopg would receive for this entry (without defaults)."""
    options = entry.get("OPTIONS") or {}
    params: dict[str, object] = {
        key: value
        for key, value in options.items()
        if isinstance(key, str) and key in conninfo.libpq_keywords()
    }
    for keyword, setting in TOP_LEVEL_SETTINGS.items():
        if entry.get(setting):
            params[keyword] = entry[setting]
    return params


def validate_connection(entry: Mapping[str, Any], parsed: ParsedURL) -> None:
    """Let libpq (and psycopg) judge the connection values now, not at the first query."""

    def from_url(key: str) -> bool:
        return key in TOP_LEVEL_SETTINGS or (
            key in parsed.options and parsed.options[key] == entry["OPTIONS"].get(key)
        )

    for problem in conninfo.connection_problems(libpq_params(entry)):
        key = problem.keyword or "options"
        raise _refuse(parsed, key, from_url(key), problem.message)
