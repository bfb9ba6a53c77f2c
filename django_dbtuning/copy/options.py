"""The arguments of ``copy_from``, checked up front, and its progress reporting."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured

from django_dbtuning.validation import is_int

OnConflict = Literal["ignore", "update"]
FileFormat = Literal["csv", "text", "binary"]


def check_format(format: object) -> None:
    """``format=``, one keyword on both sides: ``copy_to`` writes what ``copy_from`` reads."""
    if format not in ("csv", "text", "binary"):
        raise ValueError(f"format must be 'csv', 'text' or 'binary', not {format!r}")


@dataclass(frozen=True)
class CopyOptions:
    """The keyword arguments of ``copy_from`` (see :meth:`.CopyQuerySet.copy_from`),
    refused on creation when they are of the wrong kind or do not go together."""

    fields: Sequence[str] | None = None
    batch_size: int | None = None
    on_conflict: OnConflict | None = None
    unique_fields: Sequence[str] | None = None
    update_fields: Sequence[str] | None = None
    return_ids: bool = False
    progress: Any = False
    header: bool = True
    mapping: Mapping[str, str | None] | None = None
    delimiter: str | None = None
    quotechar: str = '"'
    encoding: str = "utf-8"
    format: FileFormat = "csv"
    null: str | None = None

    def __post_init__(self) -> None:
        check_format(self.format)
        for name in ("fields", "unique_fields", "update_fields"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, str) or not isinstance(value, list | tuple)
            ):
                raise TypeError(f"{name} must be a list of field names, not {value!r}")
        size = self.batch_size
        if size is not None and not (is_int(size) and size >= 1):
            raise ValueError(f"batch_size must be a positive integer, not {size!r}")
        if self.on_conflict not in (None, "ignore", "update"):
            raise ValueError(
                "on_conflict must be None, 'ignore' or 'update', not "
                f"{self.on_conflict!r}"
            )
        if not isinstance(self.return_ids, bool):
            raise TypeError(
                f"return_ids must be True or False, not {self.return_ids!r}"
            )
        progress = self.progress
        if not (
            isinstance(progress, bool)
            or progress is None
            or callable(progress)
            or hasattr(progress, "update")
        ):
            raise TypeError(
                f"progress must be a bool, a callable or a progress bar, not {progress!r}"
            )
        self._check_conflict_options()

    def _check_conflict_options(self) -> None:
        on_conflict, unique_fields = self.on_conflict, self.unique_fields
        if on_conflict == "update" and not unique_fields:
            raise ValueError("on_conflict='update' needs unique_fields=[...]")
        if self.return_ids and on_conflict is not None and not unique_fields:
            raise ValueError(
                "return_ids with on_conflict needs unique_fields=[...] to find each "
                "row's id"
            )
        if on_conflict is None and (unique_fields or self.update_fields):
            raise ValueError("unique_fields and update_fields need on_conflict=...")
        if on_conflict == "ignore" and self.update_fields:
            raise ValueError("update_fields needs on_conflict='update', not 'ignore'")


def progress_callback(
    progress: Any, total: int | None, label: str
) -> Callable[[int | None], None] | None:
    """What to call with each batch's row count (None once the load ends)."""
    if progress is False or progress is None:
        return None
    if progress is True:
        try:
            from tqdm import tqdm
        except ImportError:
            raise ImproperlyConfigured(
                "progress=True needs tqdm: pip install 'django-dbtuning[progress]'"
            ) from None
        ours: Any = tqdm(total=total, unit=" rows", desc=f"COPY {label}")
        return lambda n: ours.close() if n is None else ours.update(n)
    if hasattr(progress, "update"):
        # A tqdm (or rich-like) bar the caller made, with its own total and label.
        bar: Any = progress
        return lambda n: None if n is None else bar.update(n)
    callback = progress
    done = 0

    def report(n: int | None) -> None:
        nonlocal done
        if n is not None:
            done += n
            callback(done)

    return report
