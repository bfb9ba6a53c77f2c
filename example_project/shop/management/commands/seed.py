"""Fill the shop with realistic, reproducible sample data, loaded with COPY."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction

from django_dbtuning.copy import CopyQuerySet
from shop.models import Customer, Order, OrderItem, Organisation, Product, Tag

WORDS = [
    "amber",
    "basalt",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "garnet",
    "harbor",
    "indigo",
    "juniper",
    "kelp",
    "lumen",
    "meadow",
    "nickel",
    "onyx",
    "pepper",
    "quartz",
    "russet",
    "sable",
    "tundra",
    "umber",
    "velvet",
    "willow",
    "xenon",
    "yarrow",
    "zinc",
]
SAMPLE = 10_000


class Command(BaseCommand):
    help = (
        "Create organisations, customers, products, tags, orders and order items "
        "with copy_from (PostgreSQL COPY), and compare its speed with bulk_create."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=10_000)
        parser.add_argument("--customers", type=int, default=1_000)
        parser.add_argument("--organisations", type=int, default=20)
        parser.add_argument("--products", type=int, default=500)
        parser.add_argument("--items-per-order", type=int, default=3)
        parser.add_argument("--seed", type=int, default=42, help="random seed")
        parser.add_argument(
            "--flush", action="store_true", help="delete existing shop data"
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="no progress bars"
        )
        parser.add_argument(
            "--no-compare",
            action="store_true",
            help="skip timing bulk_create on a sample for comparison",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for name in (
            "orders",
            "customers",
            "organisations",
            "products",
            "items_per_order",
        ):
            if options[name] < 1:
                self.stderr.write(f"--{name.replace('_', '-')} must be at least 1")
                raise SystemExit(2)
        rng = random.Random(options["seed"])
        self.progress = not options["no_progress"]
        started = time.perf_counter()
        with transaction.atomic():
            if options["flush"]:
                for model in (OrderItem, Order, Customer, Organisation, Product, Tag):
                    model.objects.all().delete()
            counts = self._create(rng, options)
        elapsed = time.perf_counter() - started
        rows = sum(counts.values())
        summary = ", ".join(f"{count:,} {name}" for name, count in counts.items())
        self.stdout.write(
            f"seeded {summary} with copy_from in {elapsed:.1f}s "
            f"({rows / elapsed:,.0f} rows/s)"
        )
        if not options["no_compare"]:
            self._compare(rng)

    def _create(self, rng: random.Random, options: dict[str, Any]) -> dict[str, int]:
        def phrase(n: int) -> str:
            return " ".join(rng.choice(WORDS) for _ in range(n)).title()

        Tag.objects.copy_from(
            [{"name": word} for word in WORDS],
            on_conflict="ignore",
            unique_fields=["name"],
        )
        tag_ids = list(Tag.objects.values_list("pk", flat=True))
        organisations = Organisation.objects.copy_from(
            [{"name": f"{phrase(2)} Ltd"} for _ in range(options["organisations"])],
            return_ids=True,
        ).ids
        assert organisations is not None
        offset = Customer.objects.count()
        customers = Customer.objects.copy_from(
            (
                {
                    "organisation_id": rng.choice(organisations),
                    "name": phrase(2),
                    "email": f"customer{offset + i}@example.com",
                }
                for i in range(options["customers"])
            ),
            return_ids=True,
        ).ids
        assert customers is not None
        product_offset = Product.objects.count()
        prices = [
            Decimal(rng.randint(100, 50_000)) / 100 for _ in range(options["products"])
        ]
        products = Product.objects.copy_from(
            [
                {
                    "sku": f"SKU-{product_offset + i:06d}",
                    "name": phrase(3),
                    "price": price,
                    "attributes": {
                        "colour": rng.choice(WORDS),
                        "weight_g": rng.randint(10, 5000),
                    },
                }
                for i, price in enumerate(prices)
            ],
            return_ids=True,
        ).ids
        assert products is not None
        # The M2M through table has Django's plain manager; a CopyQuerySet works too.
        CopyQuerySet(model=Product.tags.through).copy_from(
            ((product, tag) for product in products for tag in rng.sample(tag_ids, 2)),
            fields=["product_id", "tag_id"],
        )
        statuses = [choice.value for choice in Order.Status]
        with self._bar("orders", options["orders"]) as bar:
            orders = Order.objects.copy_from(
                (
                    {
                        "customer_id": rng.choice(customers),
                        "status": rng.choice(statuses),
                    }
                    for _ in range(options["orders"])
                ),
                return_ids=True,
                progress=bar,
            ).ids
        assert orders is not None
        per_order = options["items_per_order"]

        def items() -> Iterator[dict[str, Any]]:
            for order in orders:
                for _ in range(rng.randint(1, 2 * per_order - 1)):
                    index = rng.randrange(len(products))
                    yield {
                        "order_id": order,
                        "product_id": products[index],
                        "quantity": rng.randint(1, 5),
                        "unit_price": prices[index],
                    }

        # The item count is random: this bar counts rows as they stream.
        with self._bar("order items", None) as bar:
            loaded = OrderItem.objects.copy_from(items(), progress=bar)
        return {
            "organisations": len(organisations),
            "customers": len(customers),
            "products": len(products),
            "orders": len(orders),
            "order items": loaded.rows,
        }

    @contextmanager
    def _bar(self, what: str, total: int | None) -> Iterator[Any]:
        """A tqdm bar for copy_from(progress=...), or False without tqdm."""
        try:
            from tqdm import tqdm
        except ImportError:  # the progress extra is optional
            yield False
            return
        if not self.progress:
            yield False
            return
        with tqdm(total=total, desc=f"copy_from {what}", unit=" rows") as bar:
            yield bar

    def _compare(self, rng: random.Random) -> None:
        """Time copy_from and bulk_create on the same samples, then roll both back."""
        customers = list(Customer.objects.values_list("pk", flat=True)[:1000])
        orders = list(Order.objects.values_list("pk", flat=True)[:1000])
        products = list(Product.objects.values_list("pk", "price")[:500])
        statuses = [choice.value for choice in Order.Status]
        samples: list[
            tuple[str, type[Order] | type[OrderItem], list[dict[str, Any]]]
        ] = [
            (
                "orders",
                Order,
                [
                    {
                        "customer_id": rng.choice(customers),
                        "status": rng.choice(statuses),
                    }
                    for _ in range(SAMPLE)
                ],
            ),
            (
                "order items",
                OrderItem,
                [
                    {
                        "order_id": rng.choice(orders),
                        "product_id": (product := rng.choice(products))[0],
                        "quantity": rng.randint(1, 5),
                        "unit_price": product[1],
                    }
                    for _ in range(SAMPLE)
                ],
            ),
        ]
        for what, model, sample in samples:
            timings: dict[str, float] = {}
            for name in ("copy_from", "bulk_create") * 2:
                with transaction.atomic():
                    # Check foreign keys now for both, not at a COMMIT that never comes.
                    with connection.cursor() as cursor:
                        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                    started = time.perf_counter()
                    if name == "copy_from":
                        model.objects.copy_from(sample)
                    else:
                        model.objects.bulk_create(
                            [model(**row) for row in sample], batch_size=1000
                        )
                    elapsed = time.perf_counter() - started
                    transaction.set_rollback(True)
                timings[name] = min(timings.get(name, elapsed), elapsed)
            copy_rate = SAMPLE / timings["copy_from"]
            bulk_rate = SAMPLE / timings["bulk_create"]
            self.stdout.write(
                f"{what}, {SAMPLE:,}-row sample: copy_from {copy_rate:,.0f} rows/s, "
                f"bulk_create(batch_size=1000) {bulk_rate:,.0f} rows/s "
                f"({copy_rate / bulk_rate:.1f}x faster)"
            )
