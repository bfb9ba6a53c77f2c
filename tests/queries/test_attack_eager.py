"""Unused eager loads on the odd querysets users write: what Django accepts still works."""

# ruff: noqa: F811  (the catalogue's library fixture is imported)

from __future__ import annotations

import pytest
from django.db.models import Prefetch, query

from django_dbtuning import track_queries
from tests.queries.test_nplusone import library  # noqa: F401  (the catalogue's data)
from tests.testapp.models import Author, Book

pytestmark = pytest.mark.django_db


@pytest.fixture
def on(dbtuning):
    dbtuning(UNUSED_EAGER_LOADS=True)
    yield
    dbtuning(UNUSED_EAGER_LOADS=False)


@pytest.mark.parametrize(
    "rows",
    [
        lambda: Book.objects.prefetch_related("tags").values("title"),
        lambda: Book.objects.prefetch_related("tags").values_list("title"),
        lambda: Book.objects.prefetch_related("tags").values_list("pk", flat=True),
        lambda: Book.objects.prefetch_related("author__books").values_list("title"),
    ],
)
def test_prefetch_then_values_gives_rows_as_without_the_setting(library, on, rows):
    # Django skips the prefetch for rows that are not instances; the capture raised
    # AttributeError: 'dict' object has no attribute '_state'.
    with track_queries() as report:
        got = list(rows())
    assert len(got) == 12
    assert report.unused_eager_loads == []


def test_prefetch_related_objects_on_plain_values(library, on):
    titles = list(Book.objects.values_list("title", flat=True))
    with track_queries() as report:
        query.prefetch_related_objects(titles, "tags")  # the name the capture wraps
    assert report.unused_eager_loads == []


def test_a_hostile_to_attr_is_quoted_as_a_python_literal(library, on):
    # The hint printed it raw: a quote or a newline in to_attr broke the console line
    # (and could forge one), unlike every other name from the user's code.
    hostile = 'x"y\nN+1 query: fake'
    with track_queries() as report:
        list(Author.objects.prefetch_related(Prefetch("books", to_attr=hostile)))
    [finding] = report.unused_eager_loads
    assert finding.hint == (
        'drop Prefetch("books", to_attr="x\\"y\\nN+1 query: fake") from '
        "prefetch_related(...) on the Author queryset"
    )
    assert "\n" not in finding.hint
