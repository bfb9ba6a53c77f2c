"""Query snapshots through the pytest fixture, against the committed snapshot file.

``test_snapshots.queries.json`` beside this module is the same on every supported Django
and Python: each run (Django 5.2, 6.0, 6.1) compares against it, and fails with a diff if a
fingerprint differs. ``CI`` being set makes a missing entry fail too.
"""

# ruff: noqa: B018  (bare attribute reads are how N+1s happen)

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.db.models import Count, Prefetch

from tests.testapp.models import Author, Book, Publisher, Tag

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.testapp.urls")]


@pytest.fixture
def library():
    publisher = Publisher.objects.create(name="P")
    tag = Tag.objects.create(name="t")
    for i in range(3):
        author = Author.objects.create(name=f"A{i}", publisher=publisher)
        book = Book.objects.create(title=f"B{i}", author=author)
        book.tags.add(tag)


def test_a_view_naive_and_fixed(client, library, query_snapshot):
    with query_snapshot("naive"):
        client.get("/books/naive/")
    with query_snapshot("fixed"):
        client.get("/books/fixed/")


def test_unnamed_blocks_are_numbered(library, query_snapshot):
    with query_snapshot():
        Book.objects.count()
    with query_snapshot():
        list(Author.objects.filter(name__in=["A0", "A1"]).order_by("name"))


def test_orm_shapes(library, query_snapshot):
    with query_snapshot():
        Book.objects.get(title="B1")
        list(Author.objects.prefetch_related("books__tags"))
        list(Author.objects.annotate(n=Count("books")).filter(n__gt=0))
        list(
            Publisher.objects.prefetch_related(
                Prefetch(
                    "author_set", queryset=Author.objects.select_related("profile")
                )
            )
        )
        Book.objects.filter(title__startswith="B").update(title="X")
        Tag.objects.bulk_create([Tag(name=f"n{i}") for i in range(4)])
        Tag.objects.filter(name__startswith="n").delete()


@pytest.mark.parametrize("n", [1, 3])
def test_parametrized_tests_get_one_entry_each(library, query_snapshot, n):
    with query_snapshot():
        for book in Book.objects.order_by("pk")[:n]:
            book.author.name


@pytest.mark.django_db(databases=["default", "other"])
def test_another_alias_is_named(library, query_snapshot):
    from django.db import connections

    try:
        with query_snapshot():
            Publisher.objects.using("other").count()
            Publisher.objects.count()
    finally:
        connections["other"].close()


class TestInAClass:
    def test_method(self, library, query_snapshot):
        with query_snapshot():
            Publisher.objects.exists()


def test_async_block(query_snapshot):
    async def run():
        async with query_snapshot():
            await Publisher.objects.acount()

    async_to_sync(run)()
