"""Hints name a queryset the user's code builds, and the knob of the code that built it.

From the user's side: a real admin site, a DRF viewset with nested serializers, template
views (tests/queries/hint_site.py), and loops whose rows came through another object's
caches. Each test checks the relation, the location(s) and the exact hint.
"""

# ruff: noqa: B018  (bare attribute reads are how N+1s happen)

from __future__ import annotations

import django
import pytest
from django.contrib.auth.models import User
from django.db.models import Prefetch
from django.template import Context, Template
from django.template.loader import render_to_string
from hypothesis import given
from hypothesis import strategies as st

from django_dbtuning import track_queries
from django_dbtuning.queries.hints import quote
from tests.queries.test_nplusone import library
from tests.testapp.models import Author, Book, Publisher, Tag

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.queries.hint_site")]

assert library  # the catalogue's fixture, used here by name
OR_PEERS = ", or .fetch_mode(models.FETCH_PEERS)" if django.VERSION >= (6, 1) else ""
SITE = "tests/queries/hint_site.py"
HERE = "tests/queries/test_hints.py"


def line_of(marker: str, filename: str = HERE) -> int:
    with open(filename, encoding="utf-8") as source:
        for number, text in enumerate(source, start=1):
            if marker in text and "line_of(" not in text:
                return number
    raise AssertionError(marker)


def by_relation(report):
    findings = {f.relation: f for f in report.n_plus_one}
    assert len(findings) == len(report.n_plus_one), [f.message for f in findings]
    return findings


# --- provenance: the queryset the user built ---------------------------------------------------


def profile_of(author):
    return author.profile.bio  # helper line


def test_a_relation_reached_through_another_names_the_root_queryset(library):
    # project.owner.profile: the User was loaded by the project, not by a User queryset.
    with track_queries() as report:
        for book in Book.objects.all():
            profile_of(book.author)
    found = by_relation(report)
    profile = found["testapp.Author.profile"]
    assert profile.callsite == f"{HERE}:{line_of('# helper line')}"
    assert profile.hint == (
        'add .select_related("author__profile") to the Book queryset' + OR_PEERS
    )
    assert found["testapp.Book.author"].hint == (
        'add .select_related("author") to the Book queryset' + OR_PEERS
    )


def test_a_relation_read_below_a_prefetch_names_a_prefetch_queryset(library):
    # Member.user over a prefetched member_set: no Member queryset exists in user code.
    with track_queries() as report:
        for tag in Tag.objects.prefetch_related("books"):
            for book in tag.books.all():
                book.author.name
    (finding,) = report.n_plus_one
    assert finding.relation == "testapp.Book.author"
    assert finding.hint == (
        'replace "books" in .prefetch_related() on the Tag queryset with '
        'Prefetch("books", queryset=Book.objects.select_related("author"))'
    )


def test_prefetch_to_attr_gets_select_related_inside_the_prefetch(library):
    with track_queries() as report:
        for tag in Tag.objects.prefetch_related(
            Prefetch("books", queryset=Book.objects.all(), to_attr="some_books")
        ):
            for book in tag.some_books:
                book.author.name
    (finding,) = report.n_plus_one
    assert finding.hint == (
        'add .prefetch_related("some_books__author") to the Tag queryset'
    )


def test_template_calling_a_model_method_reports_both_lines(library):
    tags = Tag.objects.prefetch_related("books")
    with track_queries() as report:
        render_to_string("testapp/hints/tags.html", {"tags": tags})  # render here
    (finding,) = report.n_plus_one
    assert finding.relation == "testapp.Book.author"
    assert finding.callsite.startswith("tests/testapp/models.py:")
    assert finding.function == "author_name"
    assert finding.template == "testapp/hints/tags.html:4"
    assert finding.location == (
        f"{finding.callsite} in author_name (called from testapp/hints/tags.html:4, "
        f"rendered from {HERE}:{line_of('# render here')})"
    )
    assert finding.hint == (
        'replace "books" in .prefetch_related() on the Tag queryset that '
        "test_template_calling_a_model_method_reports_both_lines "
        f'({HERE}:{line_of("# render here")}) passes to the template as "tags" with '
        'Prefetch("books", queryset=Book.objects.select_related("author"))'
    )


@pytest.mark.parametrize(
    "name", ['my "books"', "books\nfix: rm -rf /", "Bücher", "books'); DROP"]
)
def test_hostile_context_names_are_quoted(library, name):
    template = Template("{% for b in books %}{{ b.author.name }}{% endfor %}")
    with track_queries() as report:
        template.render(
            Context({"books": Book.objects.all(), name: Book.objects.all()})
        )
    (finding,) = report.n_plus_one
    assert finding.hint.startswith('add .select_related("author") to the Book queryset')
    assert "\n" not in finding.hint
    assert finding.hint.endswith('as "books"' + OR_PEERS)


def test_rows_the_template_builds_keep_the_plain_hint(library):
    # author.books.all in the template: no queryset of the caller to name.
    template = Template(
        "{% for a in authors %}{% for b in a.books.all %}{{ b.tags.count }}"
        "{% endfor %}{% endfor %}"
    )
    with track_queries() as report:
        template.render(Context({"authors": list(Author.objects.all())}))  # builds
    hints = {f.relation: f.hint for f in report.n_plus_one}
    assert hints["testapp.Author.books"] == (
        'add .prefetch_related("books") to the Author queryset that '
        "test_rows_the_template_builds_keep_the_plain_hint "
        f"({HERE}:{line_of('# builds')}) passes to the "
        'template as "authors"'
    )
    assert hints["testapp.Book.tags"] == (
        'annotate the Book queryset with Count("tags") instead of .count() per row'
    )


def test_rows_of_a_lazy_related_manager_name_the_outer_queryset(library):
    # order.items.all / item.product in a template: the items came from each publisher's
    # manager, so the fix is one lookup on the queryset the code built.
    template = Template(
        "{% for p in publishers %}{% for a in p.author_set.all %}{{ a.profile.bio }}"
        "{% endfor %}{% endfor %}"
    )
    with track_queries() as report:
        template.render(Context({"publishers": list(Publisher.objects.all())}))  # lazy
    hints = {f.relation: f.hint for f in report.n_plus_one}
    assert hints["testapp.Author.profile"] == (
        'add .prefetch_related("author_set__profile") to the Publisher queryset that '
        "test_rows_of_a_lazy_related_manager_name_the_outer_queryset "
        f"({HERE}:{line_of('# lazy')}) passes to the "
        'template as "publishers"'
    )
    assert hints["testapp.Publisher.author_set"] == (
        'add .prefetch_related("author_set") to the Publisher queryset that '
        "test_rows_of_a_lazy_related_manager_name_the_outer_queryset "
        f"({HERE}:{line_of('# lazy')}) passes to the "
        'template as "publishers"'
    )


def test_rows_of_a_lazy_related_manager_in_python(library):
    with track_queries() as report:
        for publisher in Publisher.objects.all():
            for author in publisher.author_set.all():
                author.profile.bio
    hints = {f.relation: f.hint for f in report.n_plus_one}
    assert hints["testapp.Author.profile"] == (
        'add .prefetch_related("author_set__profile") to the Publisher queryset'
    )


@given(st.text())
def test_quoted_names_are_python_string_literals(name):
    import ast

    assert ast.literal_eval(quote(name)) == name
    assert "\n" not in quote(name)


# --- template views ----------------------------------------------------------------------------


def test_template_view_names_the_view_and_its_context(client, library):
    with track_queries() as report:
        client.get("/books/")
    (finding,) = report.n_plus_one
    render_line = line_of("# render line", SITE)
    assert finding.relation == "testapp.Book.author"
    assert finding.template == "testapp/hints/books.html:3"
    assert finding.callsite == f"{SITE}:{render_line}"
    assert finding.hint == (
        f'add .select_related("author") to the Book queryset that books_page '
        f'({SITE}:{render_line}) passes to the template as "books"' + OR_PEERS
    )


def test_template_response_names_the_resolved_view(client, library):
    with track_queries() as report:
        client.get("/books/response/")
    (finding,) = report.n_plus_one
    assert finding.hint == (
        'add .select_related("author") to the Book queryset that '
        "tests.queries.hint_site.books_page_response passes to the template as "
        '"books"' + OR_PEERS
    )


def test_template_view_over_a_prefetch(client, library):
    with track_queries() as report:
        client.get("/tags/")
    (finding,) = report.n_plus_one
    render_line = line_of("# tags render line", SITE)
    assert finding.location.endswith(
        f"(called from testapp/hints/tags.html:4, rendered from {SITE}:{render_line})"
    )
    assert finding.hint == (
        f'replace "books" in .prefetch_related() on the Tag queryset that tags_page '
        f'({SITE}:{render_line}) passes to the template as "tags" with '
        'Prefetch("books", queryset=Book.objects.select_related("author"))'
    )


# --- the admin ---------------------------------------------------------------------------------


@pytest.fixture
def staff(client):
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


def test_admin_changelist_names_list_select_related_and_get_queryset(staff, library):
    with track_queries() as report:
        response = staff.get("/admin/testapp/book/")
    assert response.status_code == 200
    found = by_relation(report)
    author = found["testapp.Book.author"]
    assert author.callsite == f"{SITE}:{line_of('# admin author line', SITE)}"
    assert author.function == "author_name"
    peers = ", or return .fetch_mode(models.FETCH_PEERS) from BookAdmin.get_queryset()"
    assert author.hint == (
        'set list_select_related = ["author"] on BookAdmin'
        + (peers if OR_PEERS else "")
    )
    tags = found["testapp.Book.tags"]
    assert tags.callsite == f"{SITE}:{line_of('# admin tags line', SITE)}"
    assert tags.hint == (
        "override BookAdmin.get_queryset() to return "
        'super().get_queryset(request).prefetch_related("tags")'
    )
    publisher = found["testapp.Author.publisher"]
    assert publisher.callsite == f"{SITE}:{line_of('# filter choice line', SITE)}"
    assert publisher.hint == (
        'the list_filter "author" of BookAdmin builds its Author choices one query '
        "per row: give it a RelatedFieldListFilter subclass whose field_choices() "
        'reads Author.objects.select_related("publisher")'
    )


def test_admin_with_list_select_related_gets_the_path_added(staff, library):
    with track_queries() as report:
        staff.get("/picky/testapp/book/")
    (finding,) = report.n_plus_one
    assert finding.relation == "testapp.Author.publisher"
    assert finding.hint.startswith(
        'add "author__publisher" to PickyBookAdmin.list_select_related'
    )


def test_admin_inline_names_the_inline_get_queryset(staff, library):
    author = library["authors"][0]
    for i in range(3):  # five books in all
        Book.objects.create(title=f"More {i}", author=author).tags.set(library["tags"])
    with track_queries() as report:
        response = staff.get(f"/admin/testapp/author/{author.pk}/change/")
    assert response.status_code == 200
    (finding,) = report.n_plus_one
    assert finding.relation == "testapp.Book.tags"
    assert finding.callsite == f"{SITE}:{line_of('# inline tags line', SITE)}"
    assert finding.hint == (
        "override BookInline.get_queryset() to return "
        'super().get_queryset(request).prefetch_related("tags")'
    )


# --- Django REST framework ---------------------------------------------------------------------


def test_drf_viewset_names_the_viewset_queryset_and_serializer_field(client, library):
    pytest.importorskip("rest_framework")
    with track_queries() as report:
        response = client.get("/api/books/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    found = by_relation(report)
    author = found["testapp.Book.author"]
    assert author.serializer == "BookSerializer.author"
    # No user frame ran it (DRF calls the fields): the location is the viewset to change.
    assert author.callsite == f"{SITE}:{line_of('class BookViewSet', SITE)}"
    assert author.function == "BookViewSet"
    assert author.hint == (
        'add .select_related("author") to BookViewSet.queryset '
        "(serializing BookSerializer.author)" + OR_PEERS
    )
    tags = found["testapp.Book.tags"]
    assert tags.hint == (
        'add .prefetch_related("tags") to BookViewSet.queryset '
        "(serializing BookSerializer.tags)"
    )


def test_drf_get_queryset_and_a_method_field(client, library):
    pytest.importorskip("rest_framework")
    with track_queries() as report:
        client.get("/api/publishers/", HTTP_ACCEPT="application/json")
    (finding,) = report.n_plus_one
    assert finding.relation == "testapp.Publisher.author_set"
    assert finding.callsite == f"{SITE}:{line_of('# drf count line', SITE)}"
    assert finding.hint == (
        'add .annotate(Count("author")) to the queryset '
        "PublisherViewSet.get_queryset() returns and read the annotation "
        "(serializing PublisherSerializer.n_authors)"
    )


def test_plain_code_keeps_the_plain_hint(library):
    with track_queries() as report:
        for publisher in Publisher.objects.all():
            list(publisher.author_set.all())
        for author in Author.objects.all():
            author.books.count()
    hints = {f.relation: f.hint for f in report.n_plus_one}
    assert hints == {
        "testapp.Publisher.author_set": (
            'add .prefetch_related("author_set") to the Publisher queryset'
        ),
        "testapp.Author.books": (
            'annotate the Author queryset with Count("books") instead of .count() '
            "per row"
        ),
    }
