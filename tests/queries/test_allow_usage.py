"""Allow-list entries that matched no finding, listed at the end of a pytest session."""

# ruff: noqa: B018  (bare attribute reads are how N+1s happen)

from __future__ import annotations

import importlib.util

import pytest

from django_dbtuning import track_queries
from django_dbtuning.queries import allow_usage
from tests.queries.test_pytest_plugin import run_pytest
from tests.testapp.models import Book

ENTRIES = [
    {"model": "testapp.Book", "field": "author"},
    {"model": "testapp.Author", "field": "books"},
    {"view": "never-*"},
    {"field": "auth*"},  # matches the same finding as the first: used too
]


def test_every_matching_entry_is_noted(three_books, dbtuning):
    dbtuning(ALLOW_N_PLUS_ONE=ENTRIES)
    allow_usage.reset()
    with track_queries() as report:
        for book in Book.objects.all():
            book.author.name
    assert report.n_plus_one == []
    assert allow_usage.unused(ENTRIES) == [(1, ENTRIES[1]), (2, ENTRIES[2])]
    # Keys in another order are the same entry.
    assert allow_usage.unused([{"field": "author", "model": "testapp.Book"}]) == []


CHILD = f"""
import pytest
from django.test import override_settings
from tests.testapp.models import Author, Book, Publisher

# For the whole session, summary included.
override_settings(DBTUNING={{"ALLOW_N_PLUS_ONE": {ENTRIES!r}}}).enable()


@pytest.mark.django_db
def test_naive():
    publisher = Publisher.objects.create(name="P")
    authors = Author.objects.bulk_create(
        [Author(name=f"A{{i}}", publisher=publisher) for i in range(3)]
    )
    Book.objects.bulk_create([Book(title="B", author=author) for author in authors])
    for book in Book.objects.all():
        book.author.name
"""


def test_the_session_summary_lists_unused_entries(tmp_path):
    code, output = run_pytest(tmp_path, "--n-plus-one=fail", tests=CHILD)
    assert code == 0, output
    assert "django-dbtuning: unused allow-list entries" in output
    lines = [line for line in output.splitlines() if "matched no finding" in line]
    assert lines == [
        "DBTUNING['ALLOW_N_PLUS_ONE'][1] "
        '{"field": "books", "model": "testapp.Author"} matched no finding in this '
        "session: remove it",
        "DBTUNING['ALLOW_N_PLUS_ONE'][2] "
        '{"view": "never-*"} matched no finding in this session: remove it',
    ]


def test_no_summary_when_the_session_was_not_checked(tmp_path):
    # Mode off: only marked tests are checked, so "never matched" would be a guess.
    code, output = run_pytest(tmp_path, tests=CHILD)
    assert code == 0, output
    assert "unused allow-list entries" not in output


# Settings from a conftest: the xdist controller never imports the test module.
XDIST_CONFTEST = f"""
from django.test import override_settings


def pytest_configure(config):
    override_settings(DBTUNING={{"ALLOW_N_PLUS_ONE": {ENTRIES!r}}}).enable()
"""
XDIST_CHILD = """
import pytest
from tests.testapp.models import Author, Book, Publisher


@pytest.mark.django_db
@pytest.mark.parametrize("naive", [True] + [False] * 7)
def test_books(naive):
    publisher = Publisher.objects.create(name="P")
    authors = Author.objects.bulk_create(
        [Author(name=f"A{i}", publisher=publisher) for i in range(3)]
    )
    Book.objects.bulk_create([Book(title="B", author=author) for author in authors])
    books = Book.objects.all() if naive else Book.objects.select_related("author")
    for book in books:  # one test of one worker matches the first entries
        book.author.name
"""


@pytest.mark.skipif(
    importlib.util.find_spec("xdist") is None,
    reason="pytest-xdist is not installed (it belongs in the test dependency group)",
)
def test_under_xdist_the_controller_merges_what_the_workers_matched(tmp_path):
    (tmp_path / "conftest.py").write_text(XDIST_CONFTEST)
    code, output = run_pytest(
        tmp_path, "--n-plus-one=fail", "-n", "2", tests=XDIST_CHILD
    )
    assert code == 0, output
    assert "bringing up nodes" in output  # pytest-xdist ran it
    assert output.count("django-dbtuning: unused allow-list entries") == 1
    lines = [line for line in output.splitlines() if "matched no finding" in line]
    assert [line.split(" ", 1)[0] for line in lines] == [
        "DBTUNING['ALLOW_N_PLUS_ONE'][1]",
        "DBTUNING['ALLOW_N_PLUS_ONE'][2]",
    ]
