"""The app's one table: ``dbreport --save`` snapshots, read back by ``dbreport --since``.

One row per alias and moment. The per-object numbers (tables, indexes, statements,
findings) live in one compact JSON document per row, column lists plus rows of values: a
snapshot is written and read whole, PostgreSQL compresses the document out of line (TOAST),
and a snapshot of 500 tables, 2,000 indexes and 5,000 statements stays a few hundred KB
where one row per object would cost a tuple header and an index entry each. The fields a
query selects or orders by (alias, time, server, reset markers) are real columns.
"""

from __future__ import annotations

from typing import Any

from django.db import models


class Snapshot(models.Model):
    """What one database looked like when ``dbreport --save`` ran."""

    # Explicit: the migration must not depend on the project's DEFAULT_AUTO_FIELD.
    id = models.BigAutoField(primary_key=True)
    alias = models.CharField(
        max_length=100, help_text="The DATABASES alias the snapshot describes."
    )
    taken_at = models.DateTimeField(help_text="The server's clock when it was taken.")
    database = models.CharField(max_length=200, help_text="current_database()")
    server_version = models.PositiveIntegerField(help_text="server_version_num")
    stats_reset = models.DateTimeField(
        null=True,
        blank=True,
        help_text="pg_stat_database.stats_reset: row counts restart there.",
    )
    statements_reset = models.DateTimeField(
        null=True,
        blank=True,
        help_text="pg_stat_statements_info.stats_reset (PostgreSQL 14+).",
    )
    data: models.JSONField[Any, Any] = models.JSONField(
        default=dict,
        help_text="Tables, indexes, statements and findings: column lists and rows.",
    )

    class Meta:
        verbose_name = "database report snapshot"
        ordering = ["-taken_at"]
        # No index besides the key: a few thousand rows at most (retention), read by
        # alias and time a few times a day; an index would show up as unused in the
        # report of every database it lives in.
        permissions = [("view_report", "Can view the database report")]

    def __str__(self) -> str:
        return f"{self.alias} at {self.taken_at:%Y-%m-%d %H:%M:%S %Z}"
