"""Fill the shop with realistic, reproducible sample data."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from shop.models import Customer, Order, OrderItem, Organisation, Product, Tag

WORDS = ["amber", "basalt", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper", "kelp", "lumen", "meadow", "nickel", "onyx", "pepper", "quartz", "russet", "sable", "tundra", "umber", "velvet", "willow", "xenon", "yarrow", "zinc"]


class Command(BaseCommand):
    help = "Create organisations, customers, products, tags, orders and order items."

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
            f"seeded {summary} in {elapsed:.1f}s ({rows / elapsed:,.0f} rows/s)"
        )

    def _create(self, rng: random.Random, options: dict[str, Any]) -> dict[str, int]:
        def phrase(n: int) -> str:
            return " ".join(rng.choice(WORDS) for _ in range(n)).title()

        tags = Tag.objects.bulk_create(
            [Tag(name=word) for word in WORDS], ignore_conflicts=True
        )
        tags = list(Tag.objects.all())
        organisations = Organisation.objects.bulk_create(
            [
                Organisation(name=f"{phrase(2)} Ltd")
                for _ in range(options["organisations"])
            ]
        )
        offset = Customer.objects.count()
        customers = Customer.objects.bulk_create(
            [
                Customer(
                    organisation=rng.choice(organisations),
                    name=phrase(2),
                    email=f"customer{offset + i}@example.com",
                )
                for i in range(options["customers"])
            ],
            batch_size=2_000,
        )
        product_offset = Product.objects.count()
        products = Product.objects.bulk_create(
            [
                Product(
                    sku=f"SKU-{product_offset + i:06d}",
                    name=phrase(3),
                    price=Decimal(rng.randint(100, 50_000)) / 100,
                    attributes={
                        "colour": rng.choice(WORDS),
                        "weight_g": rng.randint(10, 5000),
                    },
                )
                for i in range(options["products"])
            ],
            batch_size=2_000,
        )
        Product.tags.through.objects.bulk_create(
            [
                Product.tags.through(product_id=product.pk, tag_id=tag.pk)
                for product in products
                for tag in rng.sample(tags, 2)
            ],
            batch_size=5_000,
        )
        statuses = [choice.value for choice in Order.Status]
        orders = Order.objects.bulk_create(
            [
                Order(customer=rng.choice(customers), status=rng.choice(statuses))
                for _ in range(options["orders"])
            ],
            batch_size=2_000,
        )
        per_order = options["items_per_order"]
        items = [
            OrderItem(
                order=order,
                product=(product := rng.choice(products)),
                quantity=rng.randint(1, 5),
                unit_price=product.price,
            )
            for order in orders
            for _ in range(rng.randint(1, 2 * per_order - 1))
        ]
        OrderItem.objects.bulk_create(items, batch_size=5_000)
        return {
            "organisations": len(organisations),
            "customers": len(customers),
            "products": len(products),
            "orders": len(orders),
            "order items": len(items),
        }
