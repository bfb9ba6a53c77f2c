"""Models that plant the problems dbreport must find (and the ones it must not flag)."""

from __future__ import annotations

from django.db import models


class Writer(models.Model):
    name = models.CharField(max_length=100)
    # unique: never a drop candidate, however unused.
    code = models.IntegerField(unique=True)


class Volume(models.Model):
    # db_index=False: fk_without_index.
    writer = models.ForeignKey(Writer, on_delete=models.CASCADE, db_index=False)
    title = models.CharField(max_length=200)
    # Scanned heavily by the tests: never flagged.
    isbn = models.IntegerField(db_index=True)
    # Never scanned: unused_index (declared through the field).
    pages = models.IntegerField(db_index=True)
    published = models.DateField()

    class Meta:
        indexes = [
            models.Index(fields=["title"], name="volume_title_a"),
            # Identical to volume_title_a: duplicate_index.
            models.Index(fields=["title"], name="volume_title_b"),
            models.Index(fields=["published", "pages"], name="volume_pub_pages"),
            # A leading prefix of volume_pub_pages: overlapping_index.
            models.Index(fields=["published"], name="volume_pub"),
        ]


class Review(models.Model):
    # Its index is a prefix of the unique constraint below: overlapping_index whose hint
    # is db_index=False on the ForeignKey.
    volume = models.ForeignKey(Volume, on_delete=models.CASCADE)
    rating = models.IntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["volume", "rating"], name="review_unique")
        ]


class Ticket(models.Model):
    # An int column the tests feed from a bigint sequence pushed near int's limit.
    id = models.AutoField(primary_key=True)
    note = models.CharField(max_length=20, default="")


# -- schema lints (tests/report/test_schema_lints.py plants the problems in the database;
# the models are what Django believes) ----------------------------------------------------


class Ledger(models.Model):
    id = models.BigAutoField(primary_key=True)


class LedgerEntry(models.Model):
    # The test turns its column into integer (the database missed a migration):
    # fk_type_mismatch fixed by RunSQL; and adds a second constraint:
    # duplicate_foreign_key.
    ledger = models.ForeignKey(Ledger, on_delete=models.CASCADE)
    # A boolean indexed alone: boolean_index.
    settled = models.BooleanField(db_index=True, default=False)


class Branch(models.Model):
    # The test turns this column into bigint behind Django's back: the model lags, the
    # fix is an AlterField to BigAutoField.
    id = models.AutoField(primary_key=True)


class Teller(models.Model):
    branch = models.ForeignKey(Branch, on_delete=models.CASCADE)


class AuditEvent(models.Model):
    # The test drops its primary key constraint: missing_primary_key.
    note = models.CharField(max_length=20, default="")


# -- schemas (tests/report/test_model_schemas.py creates its table): a model in another
# schema, named the way Django users do it (Django quotes db_table as a whole, so the inner
# '"."' splits schema from table and inner quotes come doubled), every name hostile.
ARCHIVE_SCHEMA = 'Arch "S"; DROP x; --'
ARCHIVE_TABLE = 'Ördër "T"; x'


class ArchivedOrder(models.Model):
    code = models.IntegerField(db_index=True)

    class Meta:
        managed = False
        db_table = (
            ARCHIVE_SCHEMA.replace('"', '""') + '"."' + ARCHIVE_TABLE.replace('"', '""')
        )


# -- a db_table longer than PostgreSQL's 63-byte names: the server keeps its first 63 bytes,
# cut at a character boundary ("é" is two bytes and straddles byte 63 here).
LONG_TABLE = "reportapp_" + "x" * 52 + "é_entries_kept_for_a_very_long_time"


class LongNamedEntry(models.Model):
    code = models.IntegerField()

    class Meta:
        managed = False
        db_table = LONG_TABLE
