"""What libpq and the server accept at connection time, asked of libpq itself.

Used by ``database()`` (refuse early) and by the system checks (report before the first query):
the keywords the installed libpq knows and which of them hold secrets, a libpq dry run that
validates connection values without touching the network, the server's tokenizer for the
``options`` startup parameter, and ``ALTER ROLE ... SET`` hints quoted as PostgreSQL requires.
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

__all__ = [
    "INT_MAX",
    "MILLISECOND_SETTINGS",
    "ConnectionProblem",
    "StartupOption",
    "StartupOptionsError",
    "alter_role_sql",
    "connection_problems",
    "join_options",
    "libpq_keywords",
    "millisecond_value",
    "option_settings",
    "parse_options",
    "psycopg_connect_keywords",
    "quote_identifier",
    "quote_literal",
    "scrub",
    "secret_keywords",
    "setting_problem",
    "split_options",
]

# PostgreSQL stores integer settings (timeouts in ms included) in a C int.
INT_MAX = 2_147_483_647
MASK = "***"

# libpq parses these integers only once it has a TCP socket, so a dry run cannot see a bad
# value; the rule is libpq's pqParseIntParam (an optionally signed decimal, spaces around).
_LIBPQ_INTEGER_KEYWORDS = frozenset(
    {
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
    }
)
_LIBPQ_INTEGER = re.compile(r"[ \t\n\r\f\v]*[+-]?[0-9]+[ \t\n\r\f\v]*")
# A directory that cannot hold a socket: the dry run's connection attempt fails at once,
# locally, after libpq has validated every option.
_DRY_RUN_HOST = "/dev/null/dbtuning-dry-run"
# The server splits ``options`` on C isspace() in the "C" locale.
_C_SPACE = " \t\n\v\f\r"


# -- keywords --------------------------------------------------------------------------


@functools.cache
def _libpq_options() -> tuple[tuple[str, bytes], ...]:
    from psycopg.pq import Conninfo

    return tuple(
        (option.keyword.decode(), option.dispchar) for option in Conninfo.get_defaults()
    )


@functools.cache
def libpq_keywords() -> frozenset[str]:
    """Every connection keyword the installed libpq understands."""
    return frozenset(keyword for keyword, _ in _libpq_options())


@functools.cache
def secret_keywords() -> frozenset[str]:
    """Keywords whose values must never be shown.

    libpq marks password-like options with dispchar ``*``; ``D`` marks debug options, which
    include the SCRAM keys, so they are hidden too. ``password`` and ``sslpassword`` are
    added in case an old libpq lacks the marks.
    """
    return frozenset(
        keyword for keyword, dispchar in _libpq_options() if dispchar in (b"*", b"D")
    ) | {"password", "sslpassword"}


@functools.cache
def psycopg_connect_keywords() -> frozenset[str]:
    """Keyword arguments ``psycopg.connect()`` takes besides libpq keywords."""
    import psycopg

    parameters = inspect.signature(psycopg.Connection.connect).parameters
    return frozenset(
        name
        for name, parameter in parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    )


def scrub(text: str, secrets: Iterable[object]) -> str:
    """``text`` with each secret (raw, repr-escaped or percent-encoded) replaced by ``***``."""
    for secret in sorted(
        {str(s) for s in secrets if s not in (None, "")}, key=len, reverse=True
    ):
        for form in {secret, repr(secret)[1:-1], quote(secret, safe="")}:
            if form:
                text = text.replace(form, MASK)
    return text


# -- validating connection values ----------------------------------------------------------


@dataclass(frozen=True)
class ConnectionProblem:
    """A connection value libpq or psycopg would refuse at the first connection."""

    keyword: str | None
    """The libpq keyword at fault, when it can be told."""
    message: str
    """What is wrong, naming the keyword and value (never a secret's value)."""


def connection_problems(params: Mapping[str, object]) -> list[ConnectionProblem]:
    """Problems libpq (and psycopg, for ``connect_timeout``) would report on connecting.

    ``params`` maps libpq keywords to values as ``psycopg.connect()`` receives them (``None``
    means unset). Unknown keywords are the caller's business and are ignored here. Nothing
    goes over the network: libpq validates the options against a host that cannot exist.
    """
    known = libpq_keywords()
    values = {
        key: str(value)
        for key, value in params.items()
        if value is not None and key in known
    }
    problems = [
        ConnectionProblem(key, f"{key} contains a NUL character")
        for key, value in values.items()
        if "\x00" in value
    ]
    if problems:
        return problems
    problems += _integer_problems(values)
    problems += _hostaddr_problems(values.get("hostaddr"))
    # libpq stops at the first bad value: drop each one found and ask again.
    remaining = dict(values)
    while (dry_run := _libpq_dry_run(remaining)) is not None:
        problems.append(dry_run)
        if dry_run.keyword not in remaining:
            break
        del remaining[dry_run.keyword]
    secrets = [values[key] for key in secret_keywords() if key in values]
    return [ConnectionProblem(p.keyword, scrub(p.message, secrets)) for p in problems]


def _integer_problems(values: Mapping[str, str]) -> list[ConnectionProblem]:
    problems = []
    for key in sorted(_LIBPQ_INTEGER_KEYWORDS & values.keys()):
        if not _LIBPQ_INTEGER.fullmatch(values[key]):
            problems.append(
                ConnectionProblem(
                    key, f"invalid integer value {values[key]!r} for {key}"
                )
            )
    if "connect_timeout" in values and not _psycopg_accepts_timeout(
        values["connect_timeout"]
    ):
        problems.append(
            ConnectionProblem(
                "connect_timeout",
                f"connect_timeout {values['connect_timeout']!r} is not a number of seconds",
            )
        )
    return problems


def _psycopg_accepts_timeout(value: str) -> bool:
    from psycopg import ProgrammingError, conninfo

    parse = getattr(conninfo, "timeout_from_conninfo", None)
    if parse is not None:
        try:
            parse({"connect_timeout": value})
        except ProgrammingError:
            return False
        return True
    try:  # psycopg's own rule, for versions without the helper
        return math.isfinite(float(value))
    except ValueError:
        return False


def _hostaddr_problems(hostaddr: str | None) -> list[ConnectionProblem]:
    if not hostaddr:
        return []
    for item in hostaddr.split(","):
        try:
            ipaddress.ip_address(item.strip())
        except ValueError:
            return [
                ConnectionProblem(
                    "hostaddr", f"hostaddr {item!r} is not a numeric IP address"
                )
            ]
    return []


def _libpq_dry_run(values: Mapping[str, str]) -> ConnectionProblem | None:
    from psycopg import Error, pq
    from psycopg.conninfo import make_conninfo

    hosts = values.get("host", "").split(",")
    trial = {
        key: value
        for key, value in values.items()
        # Secrets are not needed to validate the rest; hostaddr would mean a TCP attempt.
        if key not in secret_keywords() and key not in ("host", "hostaddr")
    }
    trial["host"] = ",".join(_DRY_RUN_HOST for _ in hosts)
    # A password of its own keeps libpq from reading (and warning about) the passfile.
    trial["password"] = "dry-run"
    try:
        conninfo = make_conninfo(**trial)
    except Error:
        conninfo = None
    # Raised outside the except block, so libpq's text stays out of the exception chain.
    if conninfo is None:
        return ConnectionProblem(None, "libpq cannot parse the connection settings")
    pgconn = pq.PGconn.connect_start(conninfo.encode())
    try:
        if pgconn.status != pq.ConnStatus.BAD:
            return None
        message = pgconn.error_message.decode("utf-8", "replace")
    finally:
        pgconn.finish()
    if _DRY_RUN_HOST in message:
        return None  # only the impossible host failed: every option passed
    text = " ".join(message.split())
    # The keyword named outside the quoted value: 'invalid sslmode value: "port"'.
    named = re.sub(r'"[^"]*"', "", text)
    keyword = max((key for key in values if key in named), key=len, default=None)
    return ConnectionProblem(keyword, text)


# -- the options startup parameter ---------------------------------------------------------


class StartupOptionsError(ValueError):
    """``options`` is not something the server accepts as startup switches."""


@dataclass(frozen=True)
class StartupOption:
    """One server switch from ``options``: ``-c name=value`` is ``('c', 'name=value')``."""

    switch: str
    argument: str | None

    @property
    def setting(self) -> tuple[str, str] | None:
        """``(name, value)`` for ``-c name=value`` and ``--name=value``, else None."""
        if self.switch not in ("c", "-") or self.argument is None:
            return None
        name, _, value = self.argument.partition("=")
        # The server's ParseLongOption: dashes in the name become underscores.
        return name.replace("-", "_"), value


# getopt string of PostgreSQL's process_postgres_switches(): the switches a client may send.
_SWITCHES = "B:bC:c:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:"
_TAKES_ARGUMENT = frozenset(
    _SWITCHES[i - 1] for i, ch in enumerate(_SWITCHES) if ch == ":"
)
_NO_ARGUMENT = frozenset(ch for ch in _SWITCHES if ch != ":") - _TAKES_ARGUMENT
_CUSTOM_NAME_PART = r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*"
_SETTING_NAME = re.compile(
    rf"[A-Za-z_][A-Za-z0-9_]*|{_CUSTOM_NAME_PART}(?:\.{_CUSTOM_NAME_PART})+"
)


def split_options(options: str) -> list[str]:
    """The server's pg_split_opts(): split on spaces, a backslash escapes the next character."""
    args: list[str] = []
    current: list[str] | None = None
    escaped = False
    for char in options:
        if not escaped and char in _C_SPACE:
            if current is not None:
                args.append("".join(current))
                current = None
            continue
        if current is None:
            current = []
        if not escaped and char == "\\":
            escaped = True
        else:
            escaped = False
            current.append(char)
    if current is not None:
        args.append("".join(current))
    return args


def join_options(args: Sequence[str]) -> str:
    """The inverse of :func:`split_options`: escape backslashes and spaces."""
    return " ".join(
        "".join(
            "\\" + char if char == "\\" or char in _C_SPACE else char for char in arg
        )
        for arg in args
    )


def parse_options(options: str) -> list[StartupOption]:
    """Parse ``options`` as the server does (pg_split_opts, then getopt), or raise.

    Raises:
        StartupOptionsError: a switch the server does not know, a switch without its
            argument, ``-c`` without ``=value``, a malformed setting name or a stray word.
    """
    args = split_options(options)
    parsed: list[StartupOption] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":  # getopt's end of switches; anything after it is a stray word
            if index < len(args):
                raise StartupOptionsError(f"unexpected word {args[index]!r} after '--'")
            break
        if not arg.startswith("-") or arg == "-":
            raise StartupOptionsError(
                f"{arg!r} is not a switch (the server takes '-c name=value' settings)"
            )
        position = 1
        while position < len(arg):
            switch = arg[position]
            position += 1
            if switch in _NO_ARGUMENT:
                parsed.append(StartupOption(switch, None))
                continue
            if switch not in _TAKES_ARGUMENT:
                raise StartupOptionsError(
                    f"unknown server switch '-{switch}' in {arg!r}"
                )
            if position < len(arg):
                argument = arg[position:]
            elif index < len(args):
                argument = args[index]
                index += 1
            else:
                raise StartupOptionsError(f"switch '-{switch}' needs an argument")
            parsed.append(_checked(StartupOption(switch, argument)))
            break
    return parsed


def _checked(option: StartupOption) -> StartupOption:
    setting = option.setting
    if setting is None:
        return option
    shown = "--" if option.switch == "-" else "-c "
    if "=" not in (option.argument or ""):
        raise StartupOptionsError(f"{shown}{option.argument} needs a value: name=value")
    if not _SETTING_NAME.fullmatch(setting[0]):
        raise StartupOptionsError(f"{setting[0]!r} is not a setting name")
    return option


def option_settings(options: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` settings of ``options``; raises :class:`StartupOptionsError`."""
    return [s for option in parse_options(options) if (s := option.setting) is not None]


# Settings in milliseconds whose limit (INT_MAX ms, about 24.8 days) is worth checking
# statically: the timeouts people write in days.
MILLISECOND_SETTINGS = frozenset(
    {
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "idle_session_timeout",
        "transaction_timeout",
    }
)
_GUC_TIME = re.compile(
    r"[ \t\n\r\f\v]*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))[ \t\n\r\f\v]*(us|ms|s|min|h|d)?[ \t\n\r\f\v]*"
)
_GUC_UNIT_MS = {
    "us": Decimal("0.001"),
    "ms": Decimal(1),
    "s": Decimal(1000),
    "min": Decimal(60_000),
    "h": Decimal(3_600_000),
    "d": Decimal(86_400_000),
}


def millisecond_value(value: str) -> Decimal | None:
    """A time setting's value in ms by PostgreSQL's unit rules, or None if not understood."""
    match = _GUC_TIME.fullmatch(value)
    if match is None:
        return None
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        return None
    return number * _GUC_UNIT_MS[match.group(2) or "ms"]


def setting_problem(name: str, value: str) -> str | None:
    """Why the server would refuse ``name=value`` at startup, when that is certain offline."""
    if name.lower() not in MILLISECOND_SETTINGS:
        return None
    ms = millisecond_value(value)
    if ms is None:
        return None
    if ms < 0:
        return f"{name}={value} is negative"
    if ms.to_integral_value() > INT_MAX:
        return f"{name}={value} is over PostgreSQL's limit of {INT_MAX} ms (about 24.8 days)"
    return None


# -- hints that are safe to paste --------------------------------------------------------------


def quote_identifier(name: str) -> str:
    """``name`` as a PostgreSQL identifier: doubled ``"`` inside double quotes."""
    if "\x00" in name:
        raise ValueError("an identifier cannot contain a NUL character")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """``value`` as a string literal; the ``E''`` form when it holds a backslash.

    ``E''`` means the same whatever ``standard_conforming_strings`` says.
    """
    if "\x00" in value:
        raise ValueError("a string literal cannot contain a NUL character")
    quoted = value.replace("'", "''")
    if "\\" in quoted:
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return "'" + quoted + "'"


def alter_role_sql(role: str | None, settings: Iterable[tuple[str, str]]) -> str:
    """``ALTER ROLE ... SET name = 'value'`` statements, joined by ``; ``.

    The role is always quoted (a role named ``all`` unquoted would mean every role), and so
    is every setting name but the timeouts this package writes itself: a name that is a
    keyword (``in``) would otherwise not parse. No role means the role that runs the
    statement (``CURRENT_USER``).
    """
    target = quote_identifier(role) if role else "CURRENT_USER"
    statements = []
    for name, value in settings:
        lowered = name.lower()
        shown = (
            lowered if lowered in MILLISECOND_SETTINGS else quote_identifier(lowered)
        )
        statements.append(f"ALTER ROLE {target} SET {shown} = {quote_literal(value)}")
    return "; ".join(statements)
