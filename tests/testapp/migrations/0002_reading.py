from __future__ import annotations

import django.contrib.postgres.fields
import django.contrib.postgres.fields.ranges
from django.db import migrations, models

import tests.testapp.models


class Migration(migrations.Migration):
    dependencies = [("testapp", "0001_initial")]

    operations = [
        # A stand-in for PostGIS's function, so that Reading.shape's SQL runs here.
        migrations.RunSQL(
            "CREATE FUNCTION ST_GeomFromEWKB(bytea) RETURNS bytea "
            "LANGUAGE sql IMMUTABLE AS 'SELECT $1'",
            "DROP FUNCTION ST_GeomFromEWKB(bytea)",
        ),
        migrations.CreateModel(
            name="Reading",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("label", models.CharField(default="", max_length=20)),
                (
                    "tags",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.CharField(max_length=20),
                        default=list,
                        size=None,
                    ),
                ),
                (
                    "scores",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.IntegerField(), default=list, size=None
                    ),
                ),
                ("payload", models.JSONField(default=dict)),
                (
                    "span",
                    django.contrib.postgres.fields.ranges.IntegerRangeField(null=True),
                ),
                (
                    "amount",
                    models.DecimalField(decimal_places=2, default=0, max_digits=10),
                ),
                ("shape", tests.testapp.models.WrappedBytesField(null=True)),
            ],
        ),
    ]
