"""The ``options`` startup parameter, tokenized as the server does, and ``ALTER ROLE`` hints.

libpq sends ``options`` to the server, which splits it (pg_split_opts) and reads the words
as command-line switches (getopt); a setting that cannot travel with the connection
(PgBouncer) is given as an ``ALTER ROLE ... SET`` statement quoted as PostgreSQL requires.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django_dbtuning.validation import INT_MAX, millisecond_value

# The server splits ``options`` on C isspace() in the "C" locale.
_C_SPACE = " \t\n\v\f\r"


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
            The message points at the word by its position and never quotes it: the
            string failed to parse, so nothing in it is known to be safe to show.
    """
    args = split_options(options)
    parsed: list[StartupOption] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":  # getopt's end of switches; anything after it is a stray word
            if index < len(args):
                raise StartupOptionsError(f"word #{index + 1} follows '--'")
            break
        if not arg.startswith("-") or arg == "-":
            raise StartupOptionsError(
                f"word #{index} is not a switch (the server takes '-c name=value' "
                "settings)"
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
                    f"word #{index} holds a switch the server does not know"
                )
            if position < len(arg):
                argument = arg[position:]
            elif index < len(args):
                argument = args[index]
                index += 1
            else:
                raise StartupOptionsError(f"switch '-{switch}' needs an argument")
            parsed.append(_checked(StartupOption(switch, argument), index))
            break
    return parsed


def _checked(option: StartupOption, word: int) -> StartupOption:
    setting = option.setting
    if setting is None:
        return option
    switch = "--" if option.switch == "-" else "-c"
    if "=" not in (option.argument or ""):
        raise StartupOptionsError(f"word #{word}: {switch} needs name=value")
    if not _SETTING_NAME.fullmatch(setting[0]):
        raise StartupOptionsError(
            f"word #{word}: {switch} needs a valid setting name before '='"
        )
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


def setting_problem(name: str, value: str) -> str | None:
    """Why the server would refuse ``name=value`` at startup, when that is certain offline.

    A phrase without the value (``"is negative"``): the caller decides whether the
    value may be shown.
    """
    if name.lower() not in MILLISECOND_SETTINGS:
        return None
    ms = millisecond_value(value)
    if ms is None:
        return None
    if ms < 0:
        return "is negative"
    if ms.to_integral_value() > INT_MAX:
        return f"is over PostgreSQL's limit of {INT_MAX} ms (about 24.8 days)"
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
