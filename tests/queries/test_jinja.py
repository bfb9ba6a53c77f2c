"""N+1s in Jinja2 templates are reported at the template line, not the compiled code's."""

from __future__ import annotations

import jinja2
import pytest

from django_dbtuning import NPlusOneError, track_queries
from django_dbtuning.queries.jinja import template_location
from tests.queries.test_hints import OR_PEERS
from tests.testapp.models import Book

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.testapp.urls")]

MIDDLEWARE = "django_dbtuning.middleware.QueryCountMiddleware"
TEMPLATE_LINE = 5  # tests/testapp/jinja2/testapp/books.jinja: {{ book.author.name }}


def test_the_template_file_says_what_the_tests_assume():
    from pathlib import Path

    source = Path(__file__).parents[1] / "testapp/jinja2/testapp/books.jinja"
    lines = source.read_text().splitlines()
    assert "book.author.name" in lines[TEMPLATE_LINE - 1]


def test_a_jinja2_view_names_the_template_line_and_the_view(
    client, three_books, settings, dbtuning
):
    settings.MIDDLEWARE = [MIDDLEWARE]
    dbtuning(ON_N_PLUS_ONE="raise")
    with pytest.raises(NPlusOneError) as caught:
        client.get("/books/jinja/")
    (finding,) = caught.value.findings
    assert finding.relation == "testapp.Book.author"
    assert finding.template == f"testapp/books.jinja:{TEMPLATE_LINE}"
    assert finding.callsite is not None
    assert finding.callsite.startswith("tests/testapp/views.py:")
    assert finding.function == "books_jinja"
    assert finding.location == (
        f"testapp/books.jinja:{TEMPLATE_LINE} (rendered from {finding.callsite})"
    )
    assert finding.hint.startswith('add .select_related("author") to the Book queryset')


def test_a_template_rendered_directly_from_a_string(three_books):
    environment = jinja2.Environment()
    template = environment.from_string(
        "{% for b in books %}\n\n{{ b.author.name }}\n{% endfor %}"
    )
    with track_queries() as report:
        template.render(books=Book.objects.all())
    (finding,) = report.n_plus_one
    assert finding.template == "<template>:3"
    assert finding.callsite is not None
    assert finding.callsite.startswith("tests/queries/test_jinja.py:")
    assert finding.relation == "testapp.Book.author"


def test_two_template_lines_are_two_sites(three_books):
    template = jinja2.Environment().from_string(
        "{% for b in books %}{{ b.author.name }}{% endfor %}\n"
        "{% for b in again %}{{ b.author.name }}{% endfor %}"
    )
    with track_queries() as report:
        template.render(books=Book.objects.all(), again=Book.objects.all())
    assert sorted(f.template for f in report.n_plus_one) == [
        "<template>:1",
        "<template>:2",
    ]


def test_a_frame_that_is_not_a_template():
    import sys

    assert template_location(sys._getframe()) is None


def test_a_model_property_called_by_a_template_names_both_lines(three_books):
    template = jinja2.Environment().from_string(
        "{% for b in books %}\n{{ b.author_name }}\n{% endfor %}"
    )
    with track_queries() as report:
        template.render(books=Book.objects.all())  # the renderer: this line
    (finding,) = report.n_plus_one
    assert finding.relation == "testapp.Book.author"
    assert finding.callsite.startswith("tests/testapp/models.py:")
    assert finding.function == "author_name"
    assert finding.template == "<template>:2"
    assert finding.rendered_from is not None
    assert finding.rendered_from.startswith("tests/queries/test_jinja.py:")
    assert finding.location.startswith(
        f"{finding.callsite} in author_name (called from <template>:2, rendered from "
        "tests/queries/test_jinja.py:"
    )


# --- the hint names the view and the context variable, as for a Django template -------------


def test_a_jinja2_view_hint_names_the_view_and_the_context_variable(
    client, three_books, settings, dbtuning
):
    settings.MIDDLEWARE = [MIDDLEWARE]
    dbtuning(ON_N_PLUS_ONE="raise")
    with pytest.raises(NPlusOneError) as caught:
        client.get("/books/jinja/")
    (finding,) = caught.value.findings
    assert finding.hint == (
        'add .select_related("author") to the Book queryset that books_jinja '
        f'({finding.callsite}) passes to the template as "books"' + OR_PEERS
    )


def test_a_loop_in_a_block_of_an_extended_template(three_books):
    environment = jinja2.Environment(
        loader=jinja2.DictLoader(
            {
                "base.jinja": "<ul>{% block items %}{% endblock %}</ul>",
                "books.jinja": '{% extends "base.jinja" %}{% block items %}\n'
                "{% for b in bücher %}{{ b.author.name }}{% endfor %}"
                "{% endblock %}",
            }
        )
    )
    with track_queries() as report:
        environment.get_template("books.jinja").render(bücher=Book.objects.all())
    (finding,) = report.n_plus_one
    assert finding.template == "books.jinja:2"
    # The renderer is this test, not the block's or the root's compiled frame.
    assert finding.callsite.startswith("tests/queries/test_jinja.py:")
    assert finding.hint == (
        'add .select_related("author") to the Book queryset that '
        "test_a_loop_in_a_block_of_an_extended_template "
        f'({finding.callsite}) passes to the template as "bücher"' + OR_PEERS
    )


def test_a_to_many_read_per_row_names_the_prefetch_and_the_variable(three_books):
    from tests.testapp.models import Author

    template = jinja2.Environment().from_string(
        "{% for a in authors %}{% for b in a.books.all() %}{{ b.title }}"
        "{% endfor %}{% endfor %}"
    )
    with track_queries() as report:
        template.render(authors=list(Author.objects.all()))
    (finding,) = report.n_plus_one
    assert finding.hint == (
        'add .prefetch_related("books") to the Author queryset that '
        "test_a_to_many_read_per_row_names_the_prefetch_and_the_variable "
        f'({finding.callsite}) passes to the template as "authors"'
    )
