"""Unused eager loads (UNUSED_EAGER_LOADS): select_related paths and prefetch_related lookups
whose objects a unit of work never read, and every case where nothing may be reported.

Real querysets on PostgreSQL inside ``track_queries()``; each test reads what a user reads in
``report.unused_eager_loads``.
"""

# ruff: noqa: B018  (bare attribute reads are how relations are read)

from __future__ import annotations

import pytest
from django.db.models import Prefetch

from django_dbtuning import track_queries
from django_dbtuning.queries import eager
from tests.testapp.models import Author, Book, Comment, Profile, Publisher, Tag

pytestmark = pytest.mark.django_db

HERE = "tests/queries/test_unused_eager_loads.py"


@pytest.fixture
def library():
    publishers = [Publisher.objects.create(name=f"Publisher {i}") for i in range(3)]
    authors = []
    for i in range(6):
        author = Author.objects.create(name=f"Author {i}", publisher=publishers[i % 3])
        Profile.objects.create(author=author, bio=f"bio {i}")
        authors.append(author)
    tags = [Tag.objects.create(name=f"tag{i}") for i in range(4)]
    for i in range(12):
        book = Book.objects.create(
            title=f"Book {i}", author=authors[i % 6], pages=100 + i
        )
        book.tags.set(tags[i % 4 : i % 4 + 2])
        Comment.objects.create(target=book, text=f"comment on {i}")
    return {"publishers": publishers, "authors": authors, "tags": tags}


@pytest.fixture
def on(dbtuning):
    dbtuning(UNUSED_EAGER_LOADS=True)


def hints(report):
    return [f.hint for f in report.unused_eager_loads]


def test_unused_select_related(library, on):
    with track_queries() as report:
        books = Book.objects.select_related("author")  # built here
        titles = [book.title for book in books]
    assert len(titles) == 12
    [finding] = report.unused_eager_loads
    assert finding.relation == "testapp.Book.author"
    assert finding.hint == 'drop "author" from select_related(...) on the Book queryset'
    assert finding.callsite.startswith(HERE + ":")
    print(finding)


def test_unused_prefetch_related(library, on):
    with track_queries() as report:
        titles = [book.title for book in Book.objects.prefetch_related("tags")]
    [finding] = report.unused_eager_loads
    assert finding.hint == 'drop "tags" from prefetch_related(...) on the Book queryset'
    print(finding)


def test_used(library, on):
    with track_queries() as report:
        for book in Book.objects.select_related("author__publisher").prefetch_related("tags"):
            book.author.publisher.name
            [t.name for t in book.tags.all()]
    assert report.unused_eager_loads == []


def test_nested(library, on):
    with track_queries() as report:
        for book in Book.objects.select_related("author__publisher").prefetch_related("tags__books"):
            book.author.name
            [t.name for t in book.tags.all()]
    assert hints(report) == [
        'replace "author__publisher" with "author" in select_related(...) on the Book queryset',
        'replace "tags__books" with "tags" in prefetch_related(...) on the Book queryset',
    ], hints(report)
