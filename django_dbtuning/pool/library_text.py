"""libpq's and the server's error texts, read through known templates only (fail closed).

Their text about a refused value may carry that value, and not always as it was given:
libpq strips a ``require_auth`` method's ``!`` before quoting it, the server lower-cases an
enum value in its ``DETAIL``. Removing the value from the text (a deny-list) misses every
such transform, so no part of the text is ever shown. A text that matches a template below
gives a phrase of our own; the only slot a phrase may fill is a name we can vouch for: a
libpq keyword among those we passed, or a setting name the user wrote that passed the
syntax check. Any other text gives None, and the caller says what it knows in its own words.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

# A value libpq quotes: it escapes nothing inside, so the slot is greedy and the template
# anchored; a keyword slot is then always the last quoted word, as libpq writes it.
_VALUE = r'"(?s:.*)"'
_KEYWORD = r"(?P<kw>[a-z_]+)"

# (template, phrase, keyword when the template names none): libpq 14-18's option checks.
_LIBPQ: tuple[tuple[re.Pattern[str], str, str | None], ...] = tuple(
    (re.compile(template), phrase, keyword)
    for template, phrase, keyword in (
        (rf"invalid {_KEYWORD} value: {_VALUE}", "invalid {kw} value", None),
        (rf'invalid "{_KEYWORD}" value: {_VALUE}', "invalid {kw} value", None),
        (
            rf'invalid integer value {_VALUE} for connection option "{_KEYWORD}"',
            "invalid integer value for {kw}",
            None,
        ),
        (rf"invalid port number: {_VALUE}", "invalid port number", "port"),
        (
            r"could not match [0-9]+ port numbers to [0-9]+ hosts",
            "the number of ports does not match the number of hosts",
            "port",
        ),
        (
            r"could not match [0-9]+ host names to [0-9]+ hostaddr values",
            "the number of hostaddr values does not match the number of hosts",
            "hostaddr",
        ),
        (
            rf"negative require_auth method {_VALUE} cannot be mixed with "
            "non-negative methods",
            "negative require_auth methods (!method) cannot be mixed with "
            "non-negative ones",
            "require_auth",
        ),
        (
            rf"require_auth method {_VALUE} cannot be mixed with negative methods",
            "negative require_auth methods (!method) cannot be mixed with "
            "non-negative ones",
            "require_auth",
        ),
        (
            rf"require_auth method {_VALUE} is specified more than once",
            "a require_auth method is given more than once",
            "require_auth",
        ),
        (
            rf"definition of service {_VALUE} not found",
            "definition of service not found",
            "service",
        ),
        (rf"service file {_VALUE} not found", "service file not found", "servicefile"),
        (
            rf"weak sslmode {_VALUE} may not be used with sslrootcert=system "
            r'\(use "verify-full"\)',
            'a weak sslmode may not be used with sslrootcert=system (use "verify-full")',
            "sslmode",
        ),
        (
            rf"weak sslmode {_VALUE} may not be used with sslnegotiation=direct "
            r"\(.*\)",
            "a weak sslmode may not be used with sslnegotiation=direct (use "
            '"require", "verify-ca" or "verify-full")',
            "sslmode",
        ),
        (
            rf"invalid value {_VALUE} for (?:minimum|maximum) SSL protocol version",
            "invalid SSL protocol version",
            None,
        ),
        (
            r"invalid SSL protocol version range",
            "invalid SSL protocol version range",
            None,
        ),
    )
)


def libpq_phrase(text: str, keywords: Collection[str]) -> tuple[str, str | None] | None:
    """``(phrase, keyword)`` for a libpq option error that matches a known template.

    ``keywords`` are the keywords passed to libpq; a keyword slot holding any other word
    makes the text unknown. None for any text of another shape (a translation, another
    libpq version's wording, several lines): the caller names the keyword, not the text.
    """
    line = text.strip()
    for pattern, phrase, fixed in _LIBPQ:
        match = pattern.fullmatch(line)
        if match is None:
            continue
        keyword = match.groupdict().get("kw") or fixed
        if keyword is not None and keyword not in keywords and fixed is None:
            return None
        return phrase.format(kw=keyword), keyword
    return None


# The server's texts about one setting (guc.c), keyed on its name: `{name}` is the name
# the user wrote, matched case-insensitively (the server writes "TimeZone").
_SETTING: tuple[tuple[str, str], ...] = (
    (r'invalid value for parameter "{name}": (?s:.*)', "an invalid value"),
    (r'parameter "{name}" requires a Boolean value', "it needs a Boolean value"),
    (r'parameter "{name}" requires a numeric value', "it needs a numeric value"),
    (
        r'(?s:.*) is outside the valid range for parameter "{name}" \((?s:.*)\)',
        "the value is outside its valid range",
    ),
    (r'unrecognized configuration parameter "{name}"', "no such setting"),
    (
        r'parameter "{name}" cannot be changed without restarting the server',
        "it cannot be set when connecting (only at server start)",
    ),
    (
        r'parameter "{name}" cannot be (?:changed now|set after connection start)',
        "it cannot be set when connecting",
    ),
    (r'permission denied to set parameter "{name}"', "this role may not set it"),
    (r"role (?s:.*) does not exist", "no such role"),
    (r"tablespace (?s:.*) does not exist", "no such tablespace"),
)
# SQLSTATE -> the condition's words, for a refusal of no known shape.
_CONDITIONS = {
    "22023": "invalid parameter value",
    "22P02": "invalid text representation",
    "42501": "insufficient privilege",
    "42704": "undefined object",
    "55P02": "cannot be changed now",
    "42602": "invalid name",
}


def setting_phrase(name: str, text: str | None, sqlstate: str | None = None) -> str:
    """Why the server refused setting ``name``, from its primary message ``text``.

    A known template gives its phrase; otherwise the SQLSTATE's condition words; otherwise
    a phrase that says only that it was refused.
    """
    for template, phrase in _SETTING:
        pattern = template.replace("{name}", re.escape(name))
        if text is not None and re.fullmatch(pattern, text.strip(), re.IGNORECASE):
            return phrase
    if sqlstate in _CONDITIONS:
        return f"{_CONDITIONS[sqlstate]} (SQLSTATE {sqlstate})"
    return "the server refuses it"


def setting_refused_at_startup(
    text: str, names: Iterable[str]
) -> tuple[str, str] | None:
    """``(name, phrase)`` when a connection failure is the server refusing one of the
    startup settings ``names`` in a known shape (its ``FATAL:`` line), else None."""
    fatal = re.search(r"FATAL:  ([^\n]*)", text)
    if fatal is None:
        return None
    for name in names:
        phrase = setting_phrase(name, fatal.group(1))
        if phrase != "the server refuses it":
            return name, phrase
    return None


# Why a connection failed, in our words: a template is searched for anywhere in the text
# (it only picks one of these fixed phrases; nothing of the text is kept).
_FAILURES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(template), phrase)
    for template, phrase in (
        (r"\bConnection refused\b", "connection refused"),
        (r"\btimeout expired\b", "timeout expired"),
        (r"could not translate host name ", "the host name does not resolve"),
        (r"No such file or directory", "no server socket at that path"),
        (
            r"FATAL:  password authentication failed for user ",
            "password authentication failed",
        ),
        (r"fe_sendauth: no password supplied", "no password supplied"),
        (r"FATAL:  database .* does not exist", "the database does not exist"),
        (r"FATAL:  role .* does not exist", "the role does not exist"),
        (r"FATAL:  no pg_hba\.conf entry for ", "no pg_hba.conf entry allows it"),
        (r"FATAL:  sorry, too many clients already", "too many clients already"),
        (
            r"FATAL:  the database system is (?:starting up|shutting down|in recovery mode)",
            "the server is starting up or shutting down",
        ),
        (
            r"FATAL:  permission denied for database ",
            "permission denied for the database",
        ),
        (
            r"server closed the connection unexpectedly",
            "the server closed the connection",
        ),
        (r"server does not support SSL", "the server does not support SSL"),
        (
            r"permission denied for (?:table|view) pg_settings",
            "permission denied for pg_settings",
        ),
    )
)


def connection_failure(exc: BaseException) -> str:
    """Why connecting (or reading ``pg_settings``) failed, in fixed words: the known
    conditions found in the error's text, else its class and SQLSTATE."""
    text = str(exc)
    phrases = list(
        dict.fromkeys(phrase for pattern, phrase in _FAILURES if pattern.search(text))
    )
    if phrases:
        return "; ".join(phrases)
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and re.fullmatch(r"[0-9A-Z]{5}", sqlstate):
        return f"{type(exc).__name__}, SQLSTATE {sqlstate}"
    return f"{type(exc).__name__}"
