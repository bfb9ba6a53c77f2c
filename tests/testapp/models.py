"""Models the tests share: a small library with every relation kind."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.contrib.postgres.fields import ArrayField, IntegerRangeField
from django.db import models


class Publisher(models.Model):
    name = models.CharField(max_length=100)


class Author(models.Model):
    name = models.CharField(max_length=100)
    publisher = models.ForeignKey(Publisher, null=True, on_delete=models.SET_NULL)


class Profile(models.Model):
    author = models.OneToOneField(
        Author, on_delete=models.CASCADE, related_name="profile"
    )
    bio = models.TextField(blank=True)


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)


class Book(models.Model):
    title = models.CharField(max_length=200)
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    tags = models.ManyToManyField(Tag, related_name="books", blank=True)
    pages = models.IntegerField(default=100)
    comments = GenericRelation("Comment")

    @property
    def author_name(self) -> str:
        return self.author.name


class Comment(models.Model):
    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.PositiveIntegerField()
    target = GenericForeignKey("content_type", "object_id")
    text = models.TextField()


class WrappedBytesField(models.BinaryField):  # type: ignore[type-arg]
    """A geometry-like column: its value is sent wrapped in a function, as PostGIS does.

    ``ST_GeomFromEWKB`` here is a stand-in created by the migration (the test server has no
    PostGIS); what matters is the SQL ``bulk_create`` and ``bulk_update`` send for it.
    """

    def get_placeholder(
        self, value: object, compiler: object, connection: object
    ) -> str:
        return "ST_GeomFromEWKB(%s)"

    # Django 6.1's spelling (get_placeholder is deprecated there); 5.2 and 6.0 ignore it.
    def get_placeholder_sql(
        self, value: object, compiler: Any, connection: object
    ) -> tuple[str, tuple[object, ...]]:
        if hasattr(value, "as_sql"):  # bulk_update's Case(When(...)) values
            sql, params = compiler.compile(value)
            return f"ST_GeomFromEWKB({sql})", tuple(params)
        return "ST_GeomFromEWKB(%s)", (value,)


class Reading(models.Model):
    """One column per kind of value whose SQL carries a cast or a wrapper in bulk writes."""

    label = models.CharField(max_length=20, default="")
    tags = ArrayField(models.CharField(max_length=20), default=list)
    scores = ArrayField(models.IntegerField(), default=list)
    payload = models.JSONField(default=dict)
    span = IntegerRangeField(null=True)
    amount = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    shape = WrappedBytesField(null=True)
