"""COPY loading: copy_from vs bulk_create, raw psycopg COPY, django-postgres-copy, pgbulk.

100,000 rows of a 12-column model (text, int, decimal, bool, UUID default, JSON, array,
two auto_now datetimes, FK). Methods run in turns (round-robin), the table is truncated
between runs, and each cell is the median of the rounds. Standalone::

    .venv/bin/python bench/bench_copy.py [--rows 100000] [--rounds 3] [--memory-rows 0]
        [--upsert-rows 100000]

The upsert table compares copy_from(on_conflict="update") with bulk_create(
update_conflicts=True) and pgbulk.upsert on a table that already holds half the keys.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import decimal
import io
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def setup() -> Any:
    import django
    from django.conf import settings

    from django_dbtuning.embedded import database_url
    from django_dbtuning.pool import database

    settings.configure(
        DATABASES={"default": database(database_url(), pool=False, conn_max_age=None)},
        INSTALLED_APPS=["django.contrib.contenttypes", "django_dbtuning"],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.contrib.postgres.fields import ArrayField
    from django.db import connection, models

    from django_dbtuning.copy import CopyManager

    class Vendor(models.Model):
        name = models.CharField(max_length=50)

        class Meta:
            app_label = "django_dbtuning"
            db_table = "bench_copy_vendor"

        def __str__(self) -> str:
            return self.name

    class Article(models.Model):
        title = models.CharField(max_length=100)
        body = models.TextField()
        quantity = models.IntegerField()
        price = models.DecimalField(max_digits=10, decimal_places=2)
        active = models.BooleanField(default=True)
        reference = models.UUIDField(default=uuid.uuid4)
        attributes = models.JSONField(default=dict)
        labels = ArrayField(models.CharField(max_length=20), default=list)
        vendor = models.ForeignKey(Vendor, on_delete=models.CASCADE)
        created = models.DateTimeField(auto_now_add=True)
        modified = models.DateTimeField(auto_now=True)

        objects = CopyManager()

        class Meta:
            app_label = "django_dbtuning"
            db_table = "bench_copy_article"

        def __str__(self) -> str:
            return self.title

    class Stock(models.Model):
        sku = models.CharField(max_length=20, unique=True)
        quantity = models.IntegerField()
        price = models.DecimalField(max_digits=10, decimal_places=2)
        note = models.CharField(max_length=50)

        objects = CopyManager()

        class Meta:
            app_label = "django_dbtuning"
            db_table = "bench_copy_stock"

        def __str__(self) -> str:
            return self.sku

    with connection.schema_editor() as editor:
        for model in (Article, Vendor, Stock):
            editor.execute(f"DROP TABLE IF EXISTS {model._meta.db_table} CASCADE")
        editor.create_model(Vendor)
        editor.create_model(Article)
        editor.create_model(Stock)
    return Vendor, Article, Stock


def upsert_bench(Stock: Any, n: int, rounds: int) -> None:
    """Upsert ``n`` shuffled rows into a table that already holds every other key."""
    import random

    from django.db import connection

    keys = [f"sku-{i:07d}" for i in range(n)]
    rows = [
        {
            "sku": k,
            "quantity": i,
            "price": decimal.Decimal(i % 10_000) / 100,
            "note": "updated",
        }
        for i, k in enumerate(keys)
    ]
    random.Random(1).shuffle(rows)
    existing = [{"sku": k, "quantity": 0, "price": 0, "note": "old"} for k in keys[::2]]
    updates = ["quantity", "price", "note"]

    def copy_from_upsert() -> None:
        Stock.objects.copy_from(rows, on_conflict="update", unique_fields=["sku"])

    def bulk_create_upsert() -> None:
        Stock.objects.bulk_create(
            [Stock(**r) for r in rows],
            update_conflicts=True,
            unique_fields=["sku"],
            update_fields=updates,
            batch_size=1000,
        )

    def pgbulk_upsert() -> None:
        import pgbulk

        pgbulk.upsert(Stock, [Stock(**r) for r in rows], ["sku"], update_fields=updates)

    methods = {
        "bulk_create(update_conflicts=True, batch_size=1000)": bulk_create_upsert,
        "copy_from(dicts, on_conflict='update')": copy_from_upsert,
        "pgbulk.upsert(instances)": pgbulk_upsert,
    }
    timings: dict[str, list[float]] = {name: [] for name in methods}
    for round_ in range(rounds):
        order = list(methods)
        if round_ % 2:
            order.reverse()
        for name in order:
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE bench_copy_stock")
            Stock.objects.copy_from(existing)
            started = time.perf_counter()
            methods[name]()
            timings[name].append(time.perf_counter() - started)
            assert Stock.objects.count() == n, name
            assert not Stock.objects.filter(note="old").exists(), name
    baseline = "bulk_create(update_conflicts=True, batch_size=1000)"
    print(
        f"\nUpsert: {n:,} shuffled rows into a table holding every other key "
        f"({len(existing):,} updates, {n - len(existing):,} inserts), median of "
        f"{rounds} rounds\n"
    )
    print("| method | seconds | rows/s | vs bulk_create |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in timings.items():
        seconds = statistics.median(values)
        ratio = statistics.median(
            b / a for a, b in zip(values, timings[baseline], strict=True)
        )
        print(f"| {name} | {seconds:.3f} | {n / seconds:,.0f} | {ratio:.1f}x faster |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--memory-rows",
        type=int,
        default=1_000_000,
        help="rows of the streaming-memory check (0 to skip)",
    )
    parser.add_argument(
        "--upsert-rows",
        type=int,
        default=100_000,
        help="rows of the upsert comparison (0 to skip)",
    )
    args = parser.parse_args()
    Vendor, Article, Stock = setup()
    from django.db import connection, transaction

    vendors = [Vendor.objects.create(name=f"vendor {i}").pk for i in range(20)]
    n = args.rows
    memory_line = ""
    if args.memory_rows:
        # First, while the process is small: peak RSS growth of a generator load.
        import resource

        def generated() -> Any:
            for i in range(args.memory_rows):
                yield {
                    "title": f"Article {i}",
                    "body": "Lorem ipsum",
                    "quantity": i,
                    "price": decimal.Decimal(i % 10_000) / 100,
                    "attributes": {"n": i},
                    "labels": ["x"],
                    "vendor_id": vendors[i % 20],
                }

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        loaded = Article.objects.copy_from(generated()).rows
        seconds = time.perf_counter() - started
        growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        memory_line = (
            f"copy_from(generator of {loaded:,} dicts): {seconds:.1f}s "
            f"({loaded / seconds:,.0f} rows/s), peak RSS growth {growth:.0f} MB "
            "(target < 100 MB)"
        )
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE bench_copy_article")

    def dict_rows() -> list[dict[str, Any]]:
        return [
            {
                "title": f"Article {i}",
                "body": "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
                "quantity": i,
                "price": decimal.Decimal(i % 10_000) / 100,
                "active": i % 3 == 0,
                "attributes": {"colour": "red", "size": i % 40},
                "labels": ["new", "sale"],
                "vendor_id": vendors[i % 20],
            }
            for i in range(n)
        ]

    dicts = dict_rows()
    columns = [
        "title",
        "body",
        "quantity",
        "price",
        "active",
        "reference",
        "attributes",
        "labels",
        "vendor_id",
        "created",
        "modified",
    ]
    now = datetime.datetime.now(datetime.UTC)
    tuples = [
        (
            d["title"],
            d["body"],
            d["quantity"],
            d["price"],
            d["active"],
            uuid.uuid4(),
            d["attributes"],
            d["labels"],
            d["vendor_id"],
            now,
            now,
        )
        for d in dicts
    ]
    types = [
        "varchar",
        "text",
        "int4",
        "numeric",
        "bool",
        "uuid",
        "jsonb",
        "varchar[]",
        "int8",
        "timestamptz",
        "timestamptz",
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for t in tuples:
        import json

        writer.writerow(
            [
                *t[:6],
                json.dumps(t[6]),
                "{" + ",".join(t[7]) + "}",
                t[8],
                t[9].isoformat(),
                t[10].isoformat(),
            ]
        )
    csv_text = buffer.getvalue()

    def truncate() -> None:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE bench_copy_article")

    def bulk_create_dicts() -> None:
        Article.objects.bulk_create([Article(**d) for d in dicts], batch_size=1000)

    def copy_from_dicts() -> None:
        Article.objects.copy_from(dicts)

    def copy_from_generator() -> None:
        Article.objects.copy_from(iter(dicts))

    def copy_from_dicts_ids() -> None:
        Article.objects.copy_from(dicts, return_ids=True)

    user_tuples = [t[:5] + t[6:9] for t in tuples]  # no reference, no timestamps

    def copy_from_tuples() -> None:
        Article.objects.copy_from(
            user_tuples,
            fields=[
                c for c in columns if c not in ("reference", "created", "modified")
            ],
        )

    instances: list[Any] = []

    def build_instances() -> None:
        instances[:] = [Article(**d) for d in dicts]

    def bulk_create_instances() -> None:
        Article.objects.bulk_create(instances, batch_size=1000)

    def copy_from_instances() -> None:
        Article.objects.copy_from(instances)

    def raw_binary_copy() -> None:
        with connection.cursor() as cursor, transaction.atomic():
            raw = cursor.cursor
            cols = ", ".join(columns[:8] + ["vendor_id", "created", "modified"])
            with raw.copy(
                f"COPY bench_copy_article ({cols}) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(types)
                for t in tuples:
                    copy.write_row(t)

    def postgres_copy_csv() -> None:
        from postgres_copy import CopyMapping

        CopyMapping(
            Article,
            io.StringIO(csv_text),
            {c.removesuffix("_id"): c for c in columns},
        ).save(silent=True)

    def pgbulk_copy_binary() -> None:
        import pgbulk

        pgbulk.copy(Article, instances, binary=True)

    methods: dict[str, tuple[Callable[[], None], Callable[[], None] | None]] = {
        "bulk_create(batch_size=1000) from dicts": (bulk_create_dicts, None),
        "copy_from(dicts)": (copy_from_dicts, None),
        "copy_from(generator of dicts)": (copy_from_generator, None),
        "copy_from(dicts, return_ids=True)": (copy_from_dicts_ids, None),
        "copy_from(tuples, fields=...)": (copy_from_tuples, None),
        "raw psycopg binary COPY of ready tuples": (raw_binary_copy, None),
        "bulk_create(batch_size=1000) from instances": (
            bulk_create_instances,
            build_instances,
        ),
        "copy_from(instances)": (copy_from_instances, build_instances),
        "pgbulk.copy(instances, binary=True)": (pgbulk_copy_binary, build_instances),
        "django-postgres-copy CopyMapping (CSV)": (postgres_copy_csv, None),
    }
    timings: dict[str, list[float]] = {name: [] for name in methods}
    for round_ in range(args.rounds):
        order = list(methods)
        if round_ % 2:
            order.reverse()
        for name in order:
            run, prepare = methods[name]
            truncate()
            if prepare:
                prepare()
            started = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - started)
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM bench_copy_article")
                (count,) = cursor.fetchone()
            assert count == n, (name, count)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    bulk_dicts = medians["bulk_create(batch_size=1000) from dicts"]
    bulk_objs = medians["bulk_create(batch_size=1000) from instances"]
    raw = medians["raw psycopg binary COPY of ready tuples"]
    print(
        f"{n:,} rows x 11 columns, median of {args.rounds} alternating rounds, "
        f"PostgreSQL {connection.pg_version // 10000}, {os.cpu_count()} CPUs\n"
    )
    print("| method | seconds | rows/s | vs bulk_create | vs raw COPY |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds in medians.items():
        baseline = bulk_objs if "instances" in name else bulk_dicts
        print(
            f"| {name} | {seconds:.3f} | {n / seconds:,.0f} | "
            f"{baseline / seconds:.1f}x faster | {seconds / raw:.2f}x the time |"
        )

    def paired(name: str, baseline: str) -> float:
        # Neighbours on a shared machine slow whole rounds: compare within each round.
        return statistics.median(
            a / b for a, b in zip(timings[name], timings[baseline], strict=True)
        )

    raw_name = "raw psycopg binary COPY of ready tuples"
    dicts_speedup = 1 / paired(
        "copy_from(dicts)", "bulk_create(batch_size=1000) from dicts"
    )
    objs_speedup = 1 / paired(
        "copy_from(instances)", "bulk_create(batch_size=1000) from instances"
    )
    to_raw = paired("copy_from(dicts)", raw_name)
    objs_to_raw = paired("copy_from(instances)", raw_name)
    print(
        "\nPer-round ratios (median): "
        f"copy_from(dicts) {dicts_speedup:.1f}x faster than bulk_create (target >= 10x) "
        f"and {to_raw:.2f}x the raw COPY time (target <= 1.3x); copy_from(instances) "
        f"{objs_speedup:.1f}x faster than bulk_create (target >= 5x), {objs_to_raw:.2f}x "
        "the raw COPY time"
    )
    if memory_line:
        print(memory_line)
    if args.upsert_rows:
        upsert_bench(Stock, args.upsert_rows, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
