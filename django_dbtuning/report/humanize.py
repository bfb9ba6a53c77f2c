"""Sizes, durations and times as the report's text and findings show them."""

from __future__ import annotations

from datetime import datetime


def human_bytes(value: float | None) -> str:
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


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


def human_duration(value: float) -> str:
    """A span of time in the shortest unit that reads well: ``2.6 s``, ``7 d``."""
    seconds = float(value)
    if seconds == 0:
        return "0 s"
    for unit, size, limit in (
        ("ms", 0.001, 1),
        ("s", 1, 60),
        ("min", 60, 3600),
        ("h", 3600, 86_400),
    ):
        if abs(seconds) < limit:
            return _number(seconds / size, unit)
    return _number(seconds / 86_400, "d")


def _number(amount: float, unit: str) -> str:
    text = f"{amount:.1f}".removesuffix(".0")
    return f"{text} {unit}"
