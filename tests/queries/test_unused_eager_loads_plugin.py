"""The pytest plugin's report mode reports unused eager loads no test of the session read."""

from __future__ import annotations

from tests.queries.test_pytest_plugin import run_pytest

TESTS = """
import pytest
from tests.testapp.models import Author, Book, Publisher, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def books():
    publisher = Publisher.objects.create(name="P")
    tag = Tag.objects.create(name="t")
    for i in range(3):
        author = Author.objects.create(name=f"A{i}", publisher=publisher)
        Book.objects.create(title=f"B{i}", author=author).tags.add(tag)


def with_authors():
    return Book.objects.select_related("author")


def test_titles_only(books):
    assert [b.title for b in with_authors()]


def test_reads_authors(books):  # the shared queryset's author is read here: not reported
    assert [b.author.name for b in with_authors()]


def test_tags_never_read(books):
    assert [b.title for b in Book.objects.prefetch_related("tags")]
"""


def test_report_mode_lists_what_no_test_read(tmp_path):
    code, output = run_pytest(tmp_path, "--n-plus-one=report", tests=TESTS)
    assert code == 0, output
    assert "django-dbtuning: unused eager loads (info)" in output
    assert (
        "  testapp.Book.tags (prefetch_related): never read in 1 test(s); fix: drop "
        '"tags" from prefetch_related(...) on the Book queryset' in output
    )
    assert "::test_tags_never_read" in output
    assert "testapp.Book.author" not in output  # read by test_reads_authors


def test_other_modes_do_not_track_them(tmp_path):
    code, output = run_pytest(tmp_path, tests=TESTS)
    assert code == 0, output
    assert "unused eager loads" not in output
