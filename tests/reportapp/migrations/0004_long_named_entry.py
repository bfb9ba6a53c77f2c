from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reportapp", "0003_archived_order"),
    ]

    operations = [
        migrations.CreateModel(
            name="LongNamedEntry",
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
                ("code", models.IntegerField()),
            ],
            options={
                "db_table": "reportapp_"
                + "x" * 52
                + "é_entries_kept_for_a_very_long_time",
                "managed": False,
            },
        ),
    ]
