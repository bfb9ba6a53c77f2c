"""Database URLs: parsed strictly, shown without secrets.

A ``postgres://`` URL is split by :func:`urllib.parse.urlsplit` and decoded by the rules libpq
applies to its own URIs (``+`` is a plus sign, percent-escapes are strict). Whatever could be
read two ways is refused rather than guessed: a raw ``@``, ``#`` or control character where
a password could have leaked into the host, path or query; a query parameter given twice.
No message ever contains the URL as given: only :func:`redact_url`'s rendering of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from django_dbtuning.exceptions import InvalidDatabaseURL
from django_dbtuning.pool.conninfo import libpq_keywords, shown_value
from django_dbtuning.pool.parameters import URL_PARAMETERS

SCHEMES = frozenset({"postgres", "postgresql", "pgsql"})
# libpq keywords the URL itself spells: they belong in the authority and path.
_IN_THE_URL = ("dbname", "user", "password")
MASK = "***"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST_ITEM = re.compile(
    r"\[(?P<v6>[^\[\]]*)\](?::(?P<p6>[^:]*))?|(?P<host>[^\[\]:]*)(?::(?P<port>[^:]*))?"
)
_PORT = re.compile(r"[0-9]{1,5}")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]{1,63}")
# Characters that separate parameters for some reader of the URL (a ';' for older
# parse_qsl, HTML 4, JDBC-style strings): text holding one may carry a 'password=' inside.
_SEPARATORS = ";=&"

QueryItem = tuple[int, str, str | None]
"""A query parameter: its offset in the query, its raw key, its raw value (None: no '=')."""


def _query_items(query: str) -> list[QueryItem]:
    items: list[QueryItem] = []
    position = 0
    for text in query.split("&"):
        key, equals, value = text.partition("=")
        items.append((position, key, value if equals else None))
        position += len(text) + 1
    return items


def _value_shown(key: str, value: str) -> bool:
    # A validated enum member or number, spelt without escapes: what libpq reads too.
    parameter = URL_PARAMETERS.get(key)
    if parameter is not None:
        return parameter.shows(value)
    return "%" not in value and shown_value(key, value)


def _shown_prefix(items: list[QueryItem]) -> int:
    """How many leading query parameters are shown in full (and may appear in messages).

    The first parameter that is not a known key with a validated value ends it: its value
    may be a secret, or hold one after a ';', and a secret with a raw '&' in it runs on
    into the parameters that follow, so nothing after it is shown either.
    """
    for index, (_, key, value) in enumerate(items):
        if (
            value is None
            or not _PLAIN_KEY.fullmatch(key)
            or not _value_shown(key, value)
        ):
            return index
    return len(items)


def _first(text: str, chars: str, start: int = 0) -> int:
    """Where the first of ``chars`` stands in ``text`` from ``start`` (its end if none)."""
    return min((i for c in chars if (i := text.find(c, start)) >= 0), default=len(text))


def _separator_in(text: str) -> bool:
    # Raw only: a percent-encoded ';' is a literal character for every reader.
    return any(char in text for char in _SEPARATORS)


def redact_url(url: str) -> str:
    """``url`` for messages, with anything that could be a secret replaced by ``***``.

    Works on any string, parsable or not, by hiding the union of what could be secret under
    each way of reading it: the password up to the *last* ``@`` (a raw ``@``, ``/`` or
    ``?`` in it) and up to the *first* ``@`` of the authority; a non-numeric "port"; a
    host or database name holding ``;``, ``=`` or ``&`` and what follows it; every query
    value from the first one that is not a validated enum member or number (``sslmode=
    require``, ``connect_timeout=5``) on: a secret may run on through raw ``&``, or sit
    behind a ``;`` in another value; everything after a ``#``. A string without a
    ``scheme://`` is hidden whole: nothing in it tells a password apart.
    """
    scheme = _SCHEME.match(url)
    if scheme is None:
        # Not a URL: nothing tells user, password and host apart, and the "URL" may be
        # a password pasted into the wrong variable. Show none of it.
        return MASK
    start = scheme.end()
    hidden = [False] * len(url)

    def hide(begin: int, end: int) -> None:
        for index in range(max(begin, start), end):
            hidden[index] = True

    last_at = url.rfind("@", start)
    if last_at >= 0:
        user, colon, _ = url[start:last_at].partition(":")
        if _odd_user(user):
            hide(start, last_at)
        elif colon:
            hide(start + len(user) + 1, last_at)
    authority_end = _first(url, "/?#", start)
    empty_password = url.find(":@", start, authority_end)
    if empty_password >= 0:
        # 'user:@x': an empty password, or a password '@x' whose '@host' is missing.
        hide(empty_password + 2, authority_end)
    # Where the host list starts when the userinfo ends at the last '@' (a raw '@', '/'
    # or '?' in the password), at the authority's own last '@', and at its first.
    hosts_at = {
        last_at + 1 if last_at >= 0 else start,
        start + url[start:authority_end].rfind("@") + 1,
        start + url[start:authority_end].find("@") + 1,
    }
    for begin in hosts_at:
        _hide_bad_ports(url, begin, hide)
    path = url[authority_end + 1 : _first(url, "?#", authority_end)]
    if url.startswith("/", authority_end) and _separator_in(path):
        hide(authority_end + 1, len(url))
    question = url.find("?", start)
    if question >= 0:
        _hide_query(url, question + 1, hide)
    fragment = url.find("#", start)
    if fragment >= 0:
        hide(fragment + 1, len(url))
    shown: list[str] = []
    for index, char in enumerate(url):
        if not hidden[index]:
            shown.append(char)
        elif index == 0 or not hidden[index - 1]:
            shown.append(MASK)
    return "".join(shown)


def _odd_user(user: str) -> bool:
    # A "user" holding these cannot be a plain user name: under another reading it holds
    # a path or query (and their secrets), so it is hidden.
    return any(char in user for char in "@/?#") or _separator_in(user)


def _hide_bad_ports(url: str, begin: int, hide: Callable[[int, int], None]) -> None:
    position = begin
    for item in url[begin : _first(url, "/?#", begin)].split(","):
        if item.startswith("["):
            close = item.find("]")
            tail_at = close + 1 if close >= 0 else 0
        else:
            tail_at = item.find(":") if ":" in item else len(item)
        if _separator_in(item[:tail_at]):
            hide(position, len(url))
            return
        tail = item[tail_at:]
        if tail and not (tail.startswith(":") and _PORT.fullmatch(tail[1:])):
            # Not a port (an empty one included): likely a password missing its '@host',
            # whose remainder may run on into the path or query. Hide to the end.
            hide(position + tail_at + (1 if tail.startswith(":") else 0), len(url))
            return
        position += len(item) + 1


def _hide_query(url: str, begin: int, hide: Callable[[int, int], None]) -> None:
    items = _query_items(url[begin:])
    shown = _shown_prefix(items)
    if shown == len(items):
        return
    position, key, value = items[shown]
    # The first parameter not shown in full keeps its key when it is a plain word (no
    # earlier value can run on into it); its value and everything after are hidden.
    if value is not None and _PLAIN_KEY.fullmatch(key):
        position += len(key) + 1
    hide(begin + position, len(url))


# -- parsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedURL:
    """The parts of a database URL, decoded. ``repr`` never shows secrets."""

    name: str
    user: str
    password: str = field(repr=False)
    host: str
    port: str
    options: dict[str, str]
    """libpq keywords from the query string, for ``OPTIONS``."""
    parameters: dict[str, str]
    """This package's own query parameters (``pool_max_size``...), undecoded strings."""
    shown: str = ""
    """The URL as :func:`redact_url` shows it."""
    echoable: frozenset[str] = frozenset()
    """Keys whose values may appear in messages: the query parameters :func:`redact_url`
    shows in full (validated enum members and numbers before any other parameter), and
    ``user`` unless it is hidden. No other value from the URL is ever put in a message."""

    def __repr__(self) -> str:
        return f"ParsedURL({self.shown!r})"

    def settings(self) -> dict[str, str]:
        """``NAME``, ``USER``, ``PASSWORD``, ``HOST`` and ``PORT`` of a ``DATABASES`` entry."""
        return {
            "NAME": self.name,
            "USER": self.user,
            "PASSWORD": self.password,
            "HOST": self.host,
            "PORT": self.port,
        }


def _fail(shown: str, problem: str) -> InvalidDatabaseURL:
    """The URL's syntax is broken or ambiguous."""
    return InvalidDatabaseURL(f"cannot parse database URL {shown}: {problem}")


def _invalid(shown: str, problem: str) -> InvalidDatabaseURL:
    """The URL parses, but says something that cannot work."""
    return InvalidDatabaseURL(f"database URL {shown}: {problem}")


def _unquote_or_none(text: str) -> str | None:
    """libpq's percent-decoding: strict escapes, UTF-8, no NUL; None when invalid."""
    if _BAD_PERCENT.search(text):
        return None
    try:
        decoded = unquote(text, errors="strict")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in decoded else decoded


def _decode(text: str, what: str, shown: str) -> str:
    decoded = _unquote_or_none(text)
    if decoded is None:
        raise _fail(shown, f"the {what} has an invalid percent-escape (use %XX, UTF-8)")
    return decoded


def parse_url(url: str) -> ParsedURL:
    """Split a ``postgres://`` URL into a ``DATABASES`` entry's parts, or refuse it.

    Raises:
        InvalidDatabaseURL: the URL is malformed or ambiguous; the message names the
            problem and shows the URL only through :func:`redact_url`.
    """
    shown = redact_url(url)
    scheme = _SCHEME.match(url)
    if scheme is None or scheme.group(1).lower() not in SCHEMES:
        named = f", not {scheme.group(1)}://" if scheme else ""
        raise InvalidDatabaseURL(
            f"database URL {shown} must start with postgres:// or postgresql://{named}"
        )
    _refuse_ambiguity(url, shown)
    try:
        parts = urlsplit(url)
    except ValueError:  # urllib's text could quote the netloc: keep it out of the chain
        parts = None
    if parts is None:
        raise _fail(shown, "malformed (check the [brackets] of an IPv6 host)")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    hosts, ports = _hosts_and_ports(hostport, shown)
    options, parameters, host, port, echoable = _query(parts.query, shown)
    name = _decode(parts.path[1:], "database name", shown)
    if not name and "service" not in options:
        raise _invalid(shown, "names no database (…/DBNAME)")
    return ParsedURL(
        name=name,
        user=_decode(user, "user name", shown) if at else "",
        password=_decode(password, "password", shown) if at else "",
        host=hosts if host is None else host,
        port=ports if port is None else port,
        options=options,
        parameters=parameters,
        shown=shown,
        echoable=echoable if _odd_user(user) else echoable | {"user"},
    )


def _refuse_ambiguity(url: str, shown: str) -> None:
    if _CONTROL.search(url):
        # urlsplit silently drops tabs and newlines; libpq keeps them.
        raise _fail(shown, "contains a control character (tab, newline...)")
    if "#" in url:
        raise _fail(shown, "a raw '#' is not allowed: percent-encode it as %23")
    authority = url.split("://", 1)[1]
    end = _first(authority, "/?")
    if "@" in authority[end:]:
        raise _fail(
            shown,
            "a raw '@' after the host: a password with '/', '?' or '@' in it must be "
            "percent-encoded (%2F, %3F, %40)",
        )
    if authority[:end].count("@") > 1:
        raise _fail(shown, "more than one '@': percent-encode '@' in a password as %40")


def _hosts_and_ports(hostport: str, shown: str) -> tuple[str, str]:
    hosts, ports = [], []
    for number, item in enumerate(hostport.split(","), start=1):
        match = _HOST_ITEM.fullmatch(item)
        if match is None:
            raise _fail(shown, f"host #{number} is malformed")
        v6 = match.group("v6") is not None
        host, port = match.group("v6", "p6") if v6 else match.group("host", "port")
        hosts.append(_decode(host or "", "host", shown))
        ports.append(_port(port, shown) if port is not None else "")
    # As libpq spells them: one port per host, empty for the default.
    return ",".join(hosts), ",".join(ports) if any(ports) else ""


def _port(text: str, shown: str) -> str:
    if text == "":
        return ""
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise _fail(shown, "a port must be a number from 1 to 65535")
    return str(int(text))


def _query(
    query: str, shown: str
) -> tuple[dict[str, str], dict[str, str], str | None, str | None, frozenset[str]]:
    options: dict[str, str] = {}
    parameters: dict[str, str] = {}
    host: str | None = None
    port: str | None = None
    known = libpq_keywords()
    seen: set[str] = set()
    items = _query_items(query) if query else []
    shown_count = _shown_prefix(items)
    # Messages name parameters by key or position and never quote a value: a value
    # after a secret may be the secret's tail (a raw '&' in it).
    for number, (_, raw_key, raw_value) in enumerate(items, start=1):
        if raw_value is None:
            raise _fail(shown, f"query parameter #{number} has no '='")
        # libpq's rules, not parse_qsl's: '+' stays a plus sign, bad escapes are errors.
        key, value = _unquote_or_none(raw_key), _unquote_or_none(raw_value)
        if key is None or value is None:
            raise _fail(
                shown, f"query parameter #{number} has an invalid percent-escape"
            )
        if key in seen:
            raise _fail(shown, f"query parameter #{number} repeats an earlier key")
        seen.add(key)
        if key == "host":
            host = ",".join(_decode(h, "host", shown) for h in value.split(","))
        elif key == "port":
            port = ",".join(_port(p, shown) for p in value.split(","))
        elif key in _IN_THE_URL:
            raise _invalid(shown, f"put {key} in the URL itself, not in ?{key}=")
        elif key in URL_PARAMETERS:
            parameters[key] = value
        elif key in known:
            options[key] = value
        else:
            # Only the first parameter not shown in full may be named: no earlier value
            # can have run on into its key.
            named = (
                repr(key)
                if number - 1 == shown_count and _PLAIN_KEY.fullmatch(raw_key)
                else f"#{number}"
            )
            raise _invalid(
                shown,
                f"unknown parameter {named} (libpq would reject it); known: "
                + ", ".join(sorted({*URL_PARAMETERS, *known} - set(_IN_THE_URL))),
            )
    echoable = frozenset(key for _, key, _ in items[:shown_count])
    return options, parameters, host, port, echoable
