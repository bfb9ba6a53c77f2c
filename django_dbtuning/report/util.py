"""Small formatting helpers shared by the collectors and renderers."""

from __future__ import annotations

import re
from datetime import datetime

from django_dbtuning.sqllex import masked_text

__all__ = ["human_bytes", "human_seconds", "iso", "quote_ident", "strip_literals"]

_SPACE = re.compile(r"\s+")


def human_bytes(value: float | None) -> str:
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover - loop always returns


def human_seconds(value: float | None) -> str:
    if value is None:
        return "?"
    seconds = float(value)
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def strip_literals(sql: str, *, limit: int = 300) -> str:
    """``sql`` with every literal replaced by ``?``, comments dropped, whitespace collapsed.

    pg_stat_activity shows queries with their values inlined (Django's psycopg backend
    binds client-side), and values may be personal data: the report never shows them
    unless ``DBTUNING["LOG_PARAMETERS"]`` asks. The same lexer as the N+1 fingerprints
    (:mod:`django_dbtuning.sqllex`) draws the literals; a text it cannot read to the end
    (pg_stat_activity cuts long queries mid-string) shows ``?…`` from that point.
    """
    text = masked_text(sql)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten(sql: str, *, limit: int = 300) -> str:
    text = _SPACE.sub(" ", sql).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote_ident(name: str) -> str:
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return (
        quote_ident(name)
        if schema == "public"
        else f"{quote_ident(schema)}.{quote_ident(name)}"
    )
