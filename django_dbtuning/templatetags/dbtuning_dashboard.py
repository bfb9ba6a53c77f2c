"""Filters the dashboard's and the toolbar panel's templates format numbers with (the
report's own units) and show database names with (the report's own escapes)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString

from django_dbtuning.report import wrapping
from django_dbtuning.report.humanize import human_bytes, human_seconds

register = template.Library()


@register.filter("bytes")
def bytes_(value: Any) -> str:
    return human_bytes(value) if isinstance(value, int | float) else "-"


@register.filter
def seconds(value: Any) -> str:
    return human_seconds(value) if isinstance(value, int | float) else "-"


@register.filter
def percent(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "n/a"


@register.filter
def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"


@register.filter
def printable(value: Any) -> Any:
    """A database name or statement shown with its bidi overrides, isolates, zero-width
    characters and line separators as escapes: autoescape leaves them alone, and one
    would reorder its row as the browser shows it. A plain str, so autoescape still
    applies; markup already made safe is returned unchanged. Newlines and tabs are kept
    (``linebreaksbr`` after it still breaks the lines)."""
    if isinstance(value, SafeString):
        return value
    if value is None:
        return value
    return wrapping.printable(str(value))
