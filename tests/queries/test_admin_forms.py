"""N+1s on admin change forms get the admin's own fix: raw_id_fields, autocomplete_fields or
the select's queryset, naming the ModelAdmin (or inline) and the field."""

# ruff: noqa: F811  (the catalogue's library fixture is imported)

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from django_dbtuning import track_queries
from tests.queries.test_nplusone import library  # noqa: F401  (the catalogue's data)
from tests.queries.test_unused_eager_loads import line_of
from tests.testapp.models import Author, Book, Profile, Publisher, Tag

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.queries.admin_forms")]

SITE = "tests/queries/admin_forms.py"


@pytest.fixture
def staff(client):
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


def by_relation(report):
    return {f.relation: f for f in report.n_plus_one}


def test_a_select_whose_labels_read_a_relation_names_raw_id_fields(staff, library):
    book = Book.objects.order_by("pk").first()
    with track_queries() as report:
        response = staff.get(f"/admin/testapp/book/{book.pk}/change/")
    assert response.status_code == 200
    found = by_relation(report)
    publisher = found["testapp.Author.publisher"]
    assert publisher.callsite == f"{SITE}:{line_of('# choice label line', SITE)}"
    assert publisher.template_call  # called from the admin's fieldset template
    assert publisher.hint == (
        'BookAdmin\'s change form renders "author" as a select whose labels read a '
        'relation per choice: add "author" to BookAdmin.raw_id_fields or '
        'autocomplete_fields, or set kwargs["queryset"] = '
        'Author.objects.select_related("publisher") for "author" in '
        "BookAdmin.formfield_for_foreignkey()"
    )
    # A many-to-many select whose labels count: the annotation, in the m2m hook.
    count = found["testapp.Tag.books"]
    assert count.callsite == f"{SITE}:{line_of('# choice count line', SITE)}"
    assert count.hint == (
        'BookAdmin\'s change form renders "tags" as a select whose labels read a '
        'relation per choice: add "tags" to BookAdmin.raw_id_fields or '
        'autocomplete_fields, or set kwargs["queryset"] = '
        'Tag.objects.annotate(Count("books")) for "tags" in '
        "BookAdmin.formfield_for_manytomany() and read the annotation in the label"
    )


@pytest.mark.parametrize("fixed", ["raw-id", "selecting"])
def test_either_fix_the_hint_names_removes_the_n_plus_one(staff, library, fixed):
    book = Book.objects.order_by("pk").first()
    with track_queries() as report:
        response = staff.get(f"/{fixed}/testapp/book/{book.pk}/change/")
    assert response.status_code == 200
    assert "testapp.Author.publisher" not in by_relation(report)


def test_an_inline_row_select_names_the_inline(staff, library):
    tag = Tag.objects.order_by("pk").first()
    assert tag.books.count() >= 3  # rows of the inline, each rendering a select
    with track_queries() as report:
        response = staff.get(f"/admin/testapp/tag/{tag.pk}/change/")
    assert response.status_code == 200
    author = by_relation(report)["testapp.Book.author"]
    assert author.callsite == f"{SITE}:{line_of('# inline label line', SITE)}"
    assert author.hint == (
        'each row of TaggedBookInline renders "book" as a select whose labels read a '
        'relation per choice: add "book" to TaggedBookInline.raw_id_fields or '
        'autocomplete_fields, or set kwargs["queryset"] = '
        'Book.objects.select_related("author") for "book" in '
        "TaggedBookInline.formfield_for_foreignkey()"
    )
    # Each row's select also runs the choices query again: a duplicate, same knob.
    (choices,) = report.duplicates
    assert choices.count == tag.books.count() + 1  # the rows and the empty form
    assert choices.hint == (
        'each row of TaggedBookInline renders "book" as a select that runs the same '
        'choices query again: add "book" to TaggedBookInline.raw_id_fields or '
        "autocomplete_fields"
    )


def test_a_form_rendered_outside_the_admin_keeps_the_plain_hint(library):
    from django import forms

    class BookForm(forms.ModelForm):
        class Meta:
            model = Book
            fields = ["author"]

    form = BookForm()
    form.fields["author"].label_from_instance = lambda a: a.publisher.name
    with track_queries() as report:
        str(form["author"])
    publisher = by_relation(report)["testapp.Author.publisher"]
    assert publisher.hint.startswith('add .select_related("publisher") to the Author')


def test_rows_read_from_the_change_forms_object_name_get_queryset(staff, library):
    # A readonly field walks the object's authors and reads each one's profile.
    publisher = Publisher.objects.order_by("pk").first()
    for i in range(2):
        author = Author.objects.create(name=f"New {i}", publisher=publisher)
        Profile.objects.create(author=author, bio="bio")
    with track_queries() as report:
        response = staff.get(f"/admin/testapp/publisher/{publisher.pk}/change/")
    assert response.status_code == 200
    profile = by_relation(report)["testapp.Author.profile"]
    assert profile.callsite == f"{SITE}:{line_of('# bio line', SITE)}"
    assert profile.hint == (
        "override PublisherAdmin.get_queryset() to return "
        'super().get_queryset(request).prefetch_related("author_set__profile")'
    )
