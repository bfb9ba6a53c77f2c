"""Models for the COPY tests: every field kind copy_from has to get right."""

from __future__ import annotations

import uuid
from typing import Any

import django
from django.contrib.postgres.fields import ArrayField
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from django_dbtuning.copy import CopyManager


class Publisher(models.Model):
    name = models.CharField(max_length=100, unique=True)

    objects = CopyManager()


class ShoutingField(models.CharField):
    """A custom field: its own get_prep_value, so COPY must call it."""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return value.upper() if isinstance(value, str) else value

    def pre_save(self, model_instance: Any, add: bool) -> Any:
        value = getattr(model_instance, self.attname)
        if add and isinstance(value, str) and not value.endswith("!"):
            value += "!"
            setattr(model_instance, self.attname, value)
        return value


class Item(models.Model):
    name = models.CharField(max_length=20)
    notes = models.TextField(blank=True)
    quantity = models.IntegerField()
    stock = models.PositiveIntegerField(default=0)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    ratio = models.FloatField(null=True)
    active = models.BooleanField(default=True)
    reference = models.UUIDField(default=uuid.uuid4, unique=True)
    data = models.JSONField(default=dict)
    extra = models.JSONField(encoder=DjangoJSONEncoder, null=True)
    tags = ArrayField(models.CharField(max_length=10), default=list)
    publisher = models.ForeignKey(
        Publisher, null=True, on_delete=models.CASCADE, related_name="items"
    )
    sku = models.CharField(  # noqa: DJ001 - NULL keys never conflict in upserts
        max_length=10, unique=True, null=True, db_column="stock_code"
    )
    day = models.DateField(null=True)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    objects = CopyManager()


class Custom(models.Model):
    """Fields without a binary fast path: the whole COPY goes through text."""

    shout = ShoutingField(max_length=20)
    address = models.GenericIPAddressField(null=True)

    objects = CopyManager()


class Token(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    label = models.CharField(max_length=20)

    objects = CopyManager()


class Place(models.Model):
    name = models.CharField(max_length=20)


class Restaurant(Place):
    """Multi-table inheritance: copy_from refuses it (no CopyManager, see the tests)."""

    serves_pizza = models.BooleanField(default=False)


class Pair(models.Model):
    left = models.IntegerField()
    right = models.IntegerField()
    note = models.CharField(max_length=20, default="")

    objects = CopyManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["left", "right"], name="copyapp_pair_lr")
        ]


if django.VERSION >= (5, 0):
    from django.db.models.functions import Now

    class Defaults(models.Model):
        """db_default and GeneratedField (Django 5+ only)."""

        name = models.CharField(max_length=20)
        level = models.IntegerField(db_default=7)
        stamp = models.DateTimeField(db_default=Now())
        width = models.IntegerField(default=2)
        height = models.IntegerField(default=3)
        area = models.GeneratedField(
            expression=models.F("width") * models.F("height"),
            output_field=models.IntegerField(),
            db_persist=True,
        )

        objects = CopyManager()


class Slot(models.Model):
    """A partial unique constraint: one active slot per code."""

    code = models.CharField(max_length=10)
    active = models.BooleanField(default=True)
    note = models.CharField(max_length=20, default="")

    objects = CopyManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["code"],
                condition=models.Q(active=True),
                name="copyapp_slot_active_code",
            )
        ]


class Tally(models.Model):
    """Concurrent upserts: many writers, one key each row."""

    key = models.CharField(max_length=20, unique=True)
    value = models.IntegerField()
    writer = models.IntegerField(default=0)

    objects = CopyManager()


class Sample(models.Model):
    """Every value kind a copy_to -> copy_from round trip has to keep exactly."""

    text = models.TextField(blank=True)
    maybe = models.TextField(null=True)  # noqa: DJ001 - "" and NULL must both survive
    short = models.CharField(max_length=30, null=True)  # noqa: DJ001 - likewise
    number = models.IntegerField(null=True)
    big = models.BigIntegerField(null=True)
    small = models.SmallIntegerField(null=True)
    amount = models.DecimalField(max_digits=14, decimal_places=4, null=True)
    ratio = models.FloatField(null=True)
    flag = models.BooleanField(null=True)
    day = models.DateField(null=True)
    moment = models.DateTimeField(null=True)
    clock = models.TimeField(null=True)
    span = models.DurationField(null=True)
    ident = models.UUIDField(null=True)
    doc = models.JSONField(null=True)
    words = ArrayField(models.TextField(), null=True)
    numbers = ArrayField(models.IntegerField(), null=True)
    blob = models.BinaryField(null=True)

    objects = CopyManager()


class Shapes(models.Model):
    """Arrays of every depth and item kind whose binary dumpers need checking."""

    flags = ArrayField(models.BooleanField(), null=True)
    days = ArrayField(models.DateField(), null=True)
    smalls = ArrayField(models.SmallIntegerField(), null=True)
    grid = ArrayField(ArrayField(models.IntegerField()), null=True)

    objects = CopyManager()


class Reserved(models.Model):
    """Columns named like the engine's helper columns."""

    key = models.CharField(max_length=20, unique=True)
    row = models.TextField(null=True, db_column="dbtuning_row")  # noqa: DJ001
    alone = models.TextField(null=True, db_column="dbtuning_alone")  # noqa: DJ001
    again = models.IntegerField(null=True, db_column="dbtuning_row_2")

    objects = CopyManager()
