"""Fixtures shared by the query tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def three_books(db):
    """Three books by three authors of one publisher: a loop over them is an N+1."""
    from tests.testapp.models import Author, Book, Publisher

    publisher = Publisher.objects.create(name="P")
    for i in range(3):
        author = Author.objects.create(name=f"A{i}", publisher=publisher)
        Book.objects.create(title=f"B{i}", author=author)
