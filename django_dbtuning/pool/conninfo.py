"""What libpq and the server accept at connection time, asked of libpq itself.

Used by ``database()`` (refuse early) and by the system checks (report before the first query):
the keywords the installed libpq knows and which of them hold secrets, which of their values
may be shown, and a libpq dry run that validates connection values without touching the
network. The ``options`` startup parameter is :mod:`django_dbtuning.pool.startup`'s.
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django_dbtuning.pool import library_text

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


# -- which values may appear in a message ----------------------------------------------------

# Values of these keywords are shown in messages (and by redact_url) only when they are one
# of these, or a number below: never free text, which could hold a secret pasted into the
# wrong key or run on from an ambiguous separator (';password=...'). A value missing here
# (a newer libpq's) is merely hidden.
_ENUM_VALUES: dict[str, frozenset[str]] = {
    key: frozenset(values.split())
    for key, values in {
        "sslmode": "disable allow prefer require verify-ca verify-full",
        "gssencmode": "disable prefer require",
        "channel_binding": "disable prefer require",
        "target_session_attrs": "any read-write read-only primary standby prefer-standby",
        "load_balance_hosts": "disable random",
        "sslnegotiation": "postgres direct",
        "sslcertmode": "disable allow require",
        "min_protocol_version": "3.0 3.2 latest",
        "max_protocol_version": "3.0 3.2 latest",
        "sslrootcert": "system",
        "gsslib": "gssapi sspi",
        "replication": "0 1 true false on off yes no database",
        "sslcompression": "0 1",
        "sslsni": "0 1",
        "gssdelegation": "0 1",
    }.items()
}
_NUMBER_KEYWORDS = frozenset(
    {"connect_timeout", "keepalives", *_LIBPQ_INTEGER_KEYWORDS}
)
_NUMBER = re.compile(r"-?[0-9]{1,10}(?:\.[0-9]{1,6})?")
_PORTS = re.compile(r"[0-9]{0,5}(?:,[0-9]{0,5})*")
_AUTH_METHOD = r"!?(?:password|md5|gss|sspi|scram-sha-256|oauth|none)"
_REQUIRE_AUTH = re.compile(rf"{_AUTH_METHOD}(?:,{_AUTH_METHOD})*")


def shown_value(keyword: str, value: str) -> bool:
    """Whether ``value`` of ``keyword`` may appear in a message: a validated enum member or
    number of a keyword whose values are never secret. Anything else is never echoed."""
    if keyword in secret_keywords():
        return False
    if keyword in _ENUM_VALUES:
        return value in _ENUM_VALUES[keyword]
    if keyword == "port":
        return _PORTS.fullmatch(value) is not None and all(
            not item or 1 <= int(item) <= 65535 for item in value.split(",")
        )
    if keyword == "require_auth":
        return _REQUIRE_AUTH.fullmatch(value) is not None
    return keyword in _NUMBER_KEYWORDS and _NUMBER.fullmatch(value) is not None


# The quotes libpq puts around a value, in English and translated messages: removed only
# to tell which keyword a message of unknown shape names (the message itself is not shown).
# Each is (opening, closing).
_QUOTES = ('""', "''", "\u00bb\u00ab", "\u00ab\u00bb", "\u201c\u201d")


def _without_quoted(text: str, values: Iterable[str]) -> str:
    # On the text as given, before spaces are folded: a value's own spaces must match.
    for value in sorted(set(values), key=len, reverse=True):
        for quotes in _QUOTES:
            text = text.replace(f"{quotes[0]}{value}{quotes[1]}", "")
    return " ".join(text.split()).replace(" :", ":").replace(" ,", ",").rstrip(":; ")


# -- validating connection values ----------------------------------------------------------


@dataclass(frozen=True)
class ConnectionProblem:
    """A connection value libpq or psycopg would refuse at the first connection."""

    keyword: str | None
    """The libpq keyword at fault, when it can be told."""
    message: str
    """What is wrong, naming the keyword and never a value (libpq's text is read only
    through :mod:`django_dbtuning.pool.library_text`'s templates)."""


def connection_problems(params: Mapping[str, object]) -> list[ConnectionProblem]:
    """Problems libpq (and psycopg, for ``connect_timeout``) would report on connecting.

    ``params`` maps libpq keywords to values as ``psycopg.connect()`` receives them (``None``
    means unset). Unknown keywords are the caller's business and are ignored here. Nothing
    goes over the network: libpq validates the options against a host that cannot exist.
    Messages name keywords and what they expect, never a value (a known libpq text gives
    a phrase of our own, any other the keyword alone); secrets never reach libpq here.
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
    return problems


def _integer_problems(values: Mapping[str, str]) -> list[ConnectionProblem]:
    problems = [
        ConnectionProblem(key, f"invalid integer value for {key}")
        for key in sorted(_LIBPQ_INTEGER_KEYWORDS & values.keys())
        if not _LIBPQ_INTEGER.fullmatch(values[key])
    ]
    if "connect_timeout" in values and not _psycopg_accepts_timeout(
        values["connect_timeout"]
    ):
        problems.append(
            ConnectionProblem(
                "connect_timeout", "connect_timeout is not a number of seconds"
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
    items = hostaddr.split(",")
    for number, item in enumerate(items, start=1):
        try:
            ipaddress.ip_address(item.strip())
        except ValueError:
            which = f"hostaddr #{number}" if len(items) > 1 else "hostaddr"
            return [
                ConnectionProblem("hostaddr", f"{which} is not a numeric IP address")
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
    # libpq's text may carry a value, transformed (require_auth's "!" stripped): only a
    # known template's own phrase is used, never the text.
    known = library_text.libpq_phrase(message, values.keys())
    if known is not None:
        phrase, keyword = known
        return ConnectionProblem(keyword, phrase)
    keyword = _keyword_named(message, values)
    if keyword is None:
        return ConnectionProblem(None, "libpq refuses the connection settings")
    return ConnectionProblem(
        keyword, f"libpq refuses the value of {keyword}{_expects(keyword)}"
    )


def _expects(keyword: str) -> str:
    if keyword in _ENUM_VALUES and keyword != "sslrootcert":
        return f" (one of {', '.join(sorted(_ENUM_VALUES[keyword]))})"
    if keyword in _NUMBER_KEYWORDS or keyword == "port":
        return " (a whole number)"
    return ""


def _keyword_named(text: str, values: Mapping[str, str]) -> str | None:
    """The keyword a libpq message is about: named as a word, outside the quoted values
    (``invalid sslmode value: "port"``, ``invalid integer value "x" for ... "port"``)."""
    words = set(re.findall(r"[A-Za-z0-9_]+", _without_quoted(text, values.values())))
    return max((key for key in values if key in words), key=len, default=None)
