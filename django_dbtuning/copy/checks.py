"""System checks of models that use ``CopyManager`` (dbtuning.E040-E049)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error


def check_copy_manager(manager: Any, **kwargs: Any) -> list[CheckMessage]:
    """Run by Django's model checks for every ``CopyManager``: refusals found early."""
    model = manager.model
    if model is None or model._meta.abstract:
        return []
    messages: list[CheckMessage] = []
    concrete = model._meta.concrete_model
    parents = [p for p in concrete._meta.get_parent_list() if p is not concrete]
    if parents:
        messages.append(
            Error(
                f"{model._meta.label} uses CopyManager, but it inherits from "
                f"{parents[0]._meta.label} through multi-table inheritance, which "
                "copy_from() refuses (one row spans several tables).",
                hint="Give the CopyManager to the parent model, or load with "
                "bulk_create().",
                obj=model,
                id="dbtuning.E040",
            )
        )
    databases = kwargs.get("databases") or []
    from django.db import connections

    for alias in databases:
        connection = connections[alias]
        if connection.vendor == "postgresql" and (
            getattr(getattr(connection, "Database", None), "__name__", "") == "psycopg2"
        ):
            messages.append(
                Error(
                    f"{model._meta.label} uses CopyManager, but database {alias!r} runs "
                    "on psycopg2; COPY needs psycopg 3.",
                    hint="pip install 'psycopg[binary]' (Django prefers it over "
                    "psycopg2).",
                    obj=model,
                    id="dbtuning.E041",
                )
            )
    return messages
