"""The arguments of ``copy_from`` checked up front, and its progress reporting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_dbtuning.copy.sources import Source

__all__ = ["progress_callback", "validate"]


def progress_callback(
    progress: Any, source: Source, label: str
) -> Callable[[int | None], None] | None:
    if progress is False or progress is None:
        return None
    if hasattr(progress, "update") and not isinstance(progress, bool):
        # A tqdm (or rich-like) bar the caller made, with its own total and label.
        bar_object: Any = progress

        def advance(n: int | None) -> None:
            if n is not None:
                bar_object.update(n)

        return advance
    if not isinstance(progress, bool):
        callback = progress
        done = 0

        def report(n: int | None) -> None:
            nonlocal done
            if n is not None:
                done += n
                callback(done)

        return report
    try:
        from tqdm import tqdm
    except ImportError:
        raise ImproperlyConfigured(
            "progress=True needs tqdm: pip install 'django-dbtuning[progress]'"
        ) from None
    bar = tqdm(total=source.total, unit=" rows", desc=f"COPY {label}")

    def update(n: int | None) -> None:
        if n is None:
            bar.close()
        else:
            bar.update(n)

    return update


def validate(**options: Any) -> None:
    fields = options["fields"]
    if fields is not None and (
        isinstance(fields, str) or not isinstance(fields, list | tuple)
    ):
        raise TypeError(f"fields must be a list of field names, not {fields!r}")
    for name in ("unique_fields", "update_fields"):
        value = options[name]
        if value is not None and (
            isinstance(value, str) or not isinstance(value, list | tuple)
        ):
            raise TypeError(f"{name} must be a list of field names, not {value!r}")
    size = options["batch_size"]
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int) or size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, not {size!r}")
    if options["on_conflict"] not in (None, "ignore", "update"):
        raise ValueError(
            "on_conflict must be None, 'ignore' or 'update', not "
            f"{options['on_conflict']!r}"
        )
    if not isinstance(options["return_ids"], bool):
        raise TypeError(
            f"return_ids must be True or False, not {options['return_ids']!r}"
        )
    progress = options["progress"]
    if not (
        isinstance(progress, bool)
        or progress is None
        or callable(progress)
        or hasattr(progress, "update")
    ):
        raise TypeError(
            f"progress must be a bool, a callable or a progress bar, not {progress!r}"
        )
    _check_conflict_options(**options)


def _check_conflict_options(
    *,
    on_conflict: str | None,
    unique_fields: Any,
    update_fields: Any,
    return_ids: Any,
    **_: Any,
) -> None:
    if on_conflict == "update" and not unique_fields:
        raise ValueError("on_conflict='update' needs unique_fields=[...]")
    if return_ids is True and on_conflict is not None and not unique_fields:
        raise ValueError(
            "return_ids with on_conflict needs unique_fields=[...] to find each row's id"
        )
    if on_conflict is None and (unique_fields or update_fields):
        raise ValueError("unique_fields and update_fields need on_conflict=...")
    if on_conflict == "ignore" and update_fields:
        raise ValueError("update_fields needs on_conflict='update', not 'ignore'")
