"""Filters the dashboard's templates format numbers with (the report's own units)."""

from __future__ import annotations

from typing import Any

from django import template

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
