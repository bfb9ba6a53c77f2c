"""What a check message may contain, and the backstop that scrubs secrets from it.

Messages are composed from aliases, keys and validated values only: a value that failed
validation is described by its type (:func:`describe`) or not at all, and libpq's or the
server's own text is used without the values in it. Scrubbing the entry's secrets
(:func:`scrub_messages`) is a backstop on top.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from django.core.checks import CheckMessage

from django_dbtuning.pool import conninfo

MASK = "***"
# Secrets shorter than this are not scrubbed from messages: see scrub().
MIN_SCRUBBED = 4
# The modules whose constants check messages are made of.
_COMPOSERS = (
    "django_dbtuning.pool.checks",
    "django_dbtuning.pool.value_checks",
    "django_dbtuning.pool.live_checks",
    "django_dbtuning.pool.sizing",
    "django_dbtuning.pool.options",
    "django_dbtuning.pool.conninfo",
    "django_dbtuning.pool.startup",
    "django_dbtuning.pool.library_text",
)


def describe(value: object) -> str:
    """``value`` for a message: numbers, booleans and None as they are, anything else by
    its type (a string that failed validation may be a secret in the wrong place)."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def scrub(
    text: str,
    secrets: Iterable[object],
    *,
    keep: Iterable[object] = (),
    vocabulary: str = "",
) -> str:
    """``text`` with each secret (raw, repr-escaped or percent-encoded) replaced by ``***``.

    A backstop only: messages are built from names and validated values, never from a
    secret. So a secret found in a message is a coincidence far more often than a leak
    when it is short or part of what a message legitimately says, and masking it there
    would wreck the message and reveal the secret as a side channel
    (``DATABASES['d***fault']``). Skipped: secrets under :data:`MIN_SCRUBBED` characters,
    and secrets contained (case-insensitively) in a ``keep`` value (the user name, the
    database name, the alias...) or in ``vocabulary`` (the messages' fixed text).
    """
    kept = [str(value).lower() for value in keep if value not in (None, "")]
    fixed = vocabulary.lower()
    for secret in sorted(
        {str(s) for s in secrets if s not in (None, "")}, key=len, reverse=True
    ):
        lowered = secret.lower()
        if (
            len(secret) < MIN_SCRUBBED
            or lowered in fixed
            or any(lowered in value for value in kept)
        ):
            continue
        for form in {secret, repr(secret)[1:-1], quote(secret, safe="")}:
            if form:
                text = text.replace(form, MASK)
    return text


def _secrets_and_kept(
    alias: str, entry: Mapping[str, Any]
) -> tuple[list[object], list[object]]:
    """The entry's secrets, and what a message may legitimately contain: the alias and
    every non-secret value."""
    options = entry.get("OPTIONS")
    options = options if isinstance(options, Mapping) else {}
    hidden = conninfo.secret_keywords()
    secrets = [entry.get("PASSWORD"), *(options.get(key) for key in hidden)]
    kept: list[object] = [alias, *map(entry.get, ("NAME", "USER", "HOST", "PORT"))]
    kept += [
        value
        for key, value in options.items()
        if key not in hidden and isinstance(value, str | int)
    ]
    return [secret for secret in secrets if secret not in (None, "")], kept


# Texts of libpq and psycopg_pool produced without any secret (the dry run is never given
# one; pool sizes are numbers): fixed text like the constants, which the backstop leaves
# alone. Bounded: past the bound more is scrubbed, never less.
_LIBRARY_TEXTS: set[str] = set()
_LIBRARY_TEXTS_MAX = 1000


def known_text(text: str) -> str:
    """``text`` of libpq or psycopg_pool, produced without any secret, as fixed text."""
    if len(_LIBRARY_TEXTS) < _LIBRARY_TEXTS_MAX:
        _LIBRARY_TEXTS.add(text)
    return text


def _strings(constants: Iterable[object]) -> Iterable[str]:
    for constant in constants:
        if isinstance(constant, types.CodeType):
            yield from _strings(constant.co_consts)
        elif isinstance(constant, tuple | frozenset | list | set):
            yield from _strings(constant)
        elif isinstance(constant, dict):
            yield from _strings([*constant.keys(), *constant.values()])
        elif isinstance(constant, str | int) and not isinstance(constant, bool):
            yield str(constant)


@functools.cache
def message_vocabulary() -> str:
    """The fixed text check messages are made of: every string (and number) constant of
    the modules that compose them, and libpq's keywords. A secret found in it is not
    scrubbed: masking ``postgres`` in ``postgresql.org`` would reveal the password."""
    texts = set(conninfo.libpq_keywords())
    for name in (__name__, *_COMPOSERS):
        module = sys.modules.get(name)
        for value in vars(module).values() if module else ():
            if inspect.isfunction(value) and value.__module__ == name:
                texts.update(_strings(value.__code__.co_consts))
            else:
                texts.update(_strings([value]))
    return "\n".join(sorted(texts))


def scrub_messages(
    alias: str, entry: Mapping[str, Any], messages: Iterable[CheckMessage]
) -> list[CheckMessage]:
    """The messages with the entry's secrets replaced by ``***`` (a backstop: messages are
    not built from secrets; see :func:`scrub` for what is left alone)."""
    secrets, kept = _secrets_and_kept(alias, entry)
    vocabulary = "\n".join([message_vocabulary(), *_LIBRARY_TEXTS])
    clean = functools.partial(scrub, secrets=secrets, keep=kept, vocabulary=vocabulary)
    result = list(messages)
    for message in result:
        message.msg = clean(message.msg)
        if message.hint:
            message.hint = clean(message.hint)
    return result
