"""Bulk loading and export with PostgreSQL COPY: ``CopyManager`` and ``CopyQuerySet``.

::

    class Order(models.Model):
        objects = CopyManager()

    Order.objects.copy_from(rows)                       # instances, dicts, tuples, CSV
    Order.objects.copy_from(rows, on_conflict="update", unique_fields=["reference"])
    Order.objects.filter(status="paid").copy_to("paid.csv")

Like ``bulk_create``, COPY calls no ``save()`` and sends no signals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from asgiref.sync import sync_to_async
from django.db import models, router

from django_dbtuning.copy import engine, export
from django_dbtuning.copy.engine import CopyResult
from django_dbtuning.copy.options import CopyOptions, FileFormat, OnConflict

_M = TypeVar("_M", bound=models.Model)


class CopyQuerySet(models.QuerySet[_M], Generic[_M]):
    """A QuerySet with ``copy_from`` / ``copy_to`` (and ``acopy_from`` / ``acopy_to``)."""

    def copy_from(
        self,
        rows: Any,
        *,
        fields: Sequence[str] | None = None,
        batch_size: int | None = None,
        on_conflict: OnConflict | None = None,
        unique_fields: Sequence[str] | None = None,
        update_fields: Sequence[str] | None = None,
        return_ids: bool = False,
        using: str | None = None,
        progress: Any = False,
        header: bool = True,
        mapping: dict[str, str | None] | None = None,
        delimiter: str | None = None,
        quotechar: str = '"',
        encoding: str = "utf-8",
        format: FileFormat = "csv",
        null: str | None = None,
    ) -> CopyResult:
        """Load ``rows`` into this model's table with COPY, in batches, atomically.

        ``rows``: an iterable of model instances, dicts (field names or attnames) or
        tuples (with ``fields=``), consumed lazily; or a file (path or file object):
        CSV by default (header names map to fields, ``mapping={"Header": "field" or
        None}`` renames or skips; an unquoted empty cell is NULL, a quoted one ``""``
        the empty string), or ``format="text"`` / ``"binary"``, PostgreSQL's own COPY
        formats as ``copy_to`` writes them (``fields=`` names a binary file's columns).
        Missing values get the field's default (callables per row), ``auto_now`` /
        ``auto_now_add`` the load's timestamp, ``db_default`` the database's.

        ``on_conflict="ignore"`` skips rows that break a unique constraint;
        ``"update"`` overwrites ``update_fields`` (default: every loaded non-key field
        except ``auto_now_add``) of the row matching ``unique_fields``, which must name
        a unique constraint or index (checked before any row is sent). Of rows with the
        same key anywhere in the load, ``"ignore"`` keeps the first, ``"update"`` the
        last.

        ``return_ids=True`` fills ``CopyResult.ids`` in input order and sets ``pk`` on
        instances; in an upsert a row that can never conflict (outside a partial unique
        index, or with a NULL key) gets its own new id. ``progress=True`` draws a tqdm
        bar; a callable gets the running row count; a bar object of your own
        (``tqdm(total=n)``) is advanced. A bad row raises
        :class:`~django_dbtuning.CopyError` naming its 0-based index, column,
        constraint and the condition, never the value (the server's own texts are on
        ``.pg_message`` / ``.detail``); any other database error is a ``CopyError``
        naming what the load was doing. Nothing of a failed load persists.
        """
        options = CopyOptions(
            fields=fields,
            batch_size=batch_size,
            on_conflict=on_conflict,
            unique_fields=unique_fields,
            update_fields=update_fields,
            return_ids=return_ids,
            progress=progress,
            header=header,
            mapping=mapping,
            delimiter=delimiter,
            quotechar=quotechar,
            encoding=encoding,
            format=format,
            null=null,
        )
        db = (
            using
            or getattr(self, "_db", None)
            or router.db_for_write(self.model, **getattr(self, "_hints", {}))
        )
        return engine.copy_from(self.model, rows, using=db, options=options)

    # export.copy_to(queryset, dest, ...) bound as a method: the queryset is ``self``.
    copy_to = export.copy_to

    async def acopy_from(self, rows: Any, **options: Any) -> CopyResult:
        """``copy_from`` in a worker thread (Django has no async database layer yet)."""
        return await sync_to_async(self.copy_from)(rows, **options)

    async def acopy_to(self, dest: Any = None, **options: Any) -> int | bytes:
        """``copy_to`` in a worker thread."""
        return await sync_to_async(self.copy_to)(dest, **options)


class CopyManager(models.Manager.from_queryset(CopyQuerySet)):  # type: ignore[misc]
    """A manager whose querysets can COPY: ``objects = CopyManager()``."""

    def check(self, **kwargs: Any) -> list[Any]:
        from django_dbtuning.copy.checks import check_copy_manager

        return [*super().check(**kwargs), *check_copy_manager(self, **kwargs)]
