"""A call site is the line of user code that ran the query, whatever ran before it.

The recorder learns, per SQL string, how deep in the stack the user's line usually sits;
these tests run one SQL string from different depths and lines in one process, in both
orders, and check that every query still lands on its own line.
"""

# ruff: noqa: B018  (bare attribute reads are how N+1s happen)

from __future__ import annotations

import operator

import pytest
from django.template import Context, Template
from django.utils.functional import cached_property

from django_dbtuning import track_queries
from tests.queries.test_nplusone import library
from tests.testapp.models import Author, Book

pytestmark = pytest.mark.django_db

HERE = "tests/queries/test_sites.py"
assert library  # the catalogue's fixture, used here by name


def line_of(marker: str) -> int:
    """The line of this file that contains ``marker``."""
    with open(__file__, encoding="utf-8") as source:
        for number, text in enumerate(source, start=1):
            if marker in text and "line_of(" not in text:
                return number
    raise AssertionError(marker)


def deep(books):
    """``book.author``: the user's line sits three frames above ``QuerySet.get``."""
    for book in books:
        book.author  # deep line


class Page:
    """A user frame above a library frame above two shallow lines (a middleware above a
    view): the shape that merged two view lines into the middleware's line."""

    def __init__(self, ids):
        self.ids = ids
        self.author = Author.objects.filter(pk__in=ids[:1]).first()

    # A query straight from a library frame: the walk learns that frame and render().
    publisher = cached_property(operator.attrgetter("author.publisher"))

    @cached_property
    def authors(self):
        queryset = Author.objects.all()
        for pk in self.ids:
            queryset.get(pk=pk)  # shallow line one
        for pk in self.ids:
            queryset.get(pk=pk)  # shallow line two
        return True

    def render(self):
        self.publisher
        return self.authors  # the outer user line


def shallow(ids):
    Page(ids).render()


@pytest.mark.parametrize("order", ["deep first", "shallow first"])
def test_one_statement_from_different_depths_keeps_every_line(library, order):
    ids = [a.pk for a in library["authors"]]
    runs = {
        "deep": lambda: deep(list(Book.objects.all())),
        "shallow": lambda: shallow(ids),
    }
    reports = {}
    for name in ("deep", "shallow") if order == "deep first" else ("shallow", "deep"):
        for _ in range(2):  # the second run goes through whatever the first one taught
            with track_queries() as report:
                runs[name]()
            reports[name] = report
    (deep_finding,) = reports["deep"].n_plus_one
    shallow_findings = reports["shallow"].n_plus_one
    assert reports["deep"].queries[-1].fingerprint == (
        reports["shallow"].queries[-1].fingerprint
    )  # one SQL shape for both paths
    assert deep_finding.callsite == f"{HERE}:{line_of('# deep line')}"
    assert deep_finding.relation == "testapp.Book.author"
    assert sorted((f.callsite, f.count) for f in shallow_findings) == [
        (f"{HERE}:{line_of('# shallow line one')}", 6),
        (f"{HERE}:{line_of('# shallow line two')}", 6),
    ]


def test_an_n_plus_one_below_a_library_frame_is_not_pinned_to_its_caller(library):
    # Twice the same loop from two callers: each run is one finding on the loop's line.
    ids = [a.pk for a in library["authors"]]
    for _ in range(3):
        with track_queries() as report:
            shallow(ids)
            deep(list(Book.objects.all()))
        lines = sorted(f.callsite for f in report.n_plus_one)
        assert lines == sorted(
            f"{HERE}:{line_of(marker)}"
            for marker in ("# shallow line one", "# shallow line two", "# deep line")
        )


DIRECT = Template("{% for b in books %}{{ b.author.name }}{% endfor %}")
METHOD = Template("{% for b in books %}{{ b.author_name }}{% endfor %}")


@pytest.mark.parametrize("order", ["template first", "method first", "line first"])
def test_one_statement_from_a_template_a_method_and_a_line(library, order):
    runs = {
        "template": lambda: DIRECT.render(Context({"books": Book.objects.all()})),
        "method": lambda: METHOD.render(Context({"books": Book.objects.all()})),
        "line": lambda: deep(list(Book.objects.all())),
    }
    names = list(runs)
    first = order.split()[0]
    names.remove(first)
    reports = {}
    for name in [first, *names, first]:
        with track_queries() as report:
            runs[name]()
        reports[name] = report
    (template,) = reports["template"].n_plus_one
    assert template.template == "<unknown source>:1"  # an inline Template has no name
    assert template.count == 12
    (method,) = reports["method"].n_plus_one
    assert method.callsite.startswith("tests/testapp/models.py:")
    assert method.function == "author_name"
    assert method.count == 12
    (line,) = reports["line"].n_plus_one
    assert line.callsite == f"{HERE}:{line_of('# deep line')}"
