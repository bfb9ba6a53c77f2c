"""Admin change forms that run a query per row: URLconf for tests/queries/test_admin_forms.py.

Two shapes Django teams meet: a foreign key rendered as a ``<select>`` whose option labels
read a relation (one query per choice), and an inline whose rows each render a select of
their own (one choices query per row, the rows' labels reading a relation).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.urls import path

from tests.testapp.models import Author, Book, Publisher, Tag

site = admin.AdminSite(name="forms")


def _with_publisher(author: Author) -> str:
    return f"{author.name} ({author.publisher.name})"  # choice label line


def _with_count(tag: Tag) -> str:
    return f"{tag.name} ({tag.books.count()} books)"  # choice count line


class BookAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    fields = ["title", "author", "tags"]

    def formfield_for_foreignkey(
        self, db_field: Any, request: Any, **kwargs: Any
    ) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "author":
            field.label_from_instance = _with_publisher  # "A (Publisher)" in the select
        return field

    def formfield_for_manytomany(
        self, db_field: Any, request: Any, **kwargs: Any
    ) -> Any:
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if db_field.name == "tags":
            field.label_from_instance = _with_count
        return field


class RawIdBookAdmin(BookAdmin):
    """The first hint applied: the author is typed as an id, no select is rendered."""

    fields = ["title", "author"]
    raw_id_fields = ["author"]


class SelectingBookAdmin(BookAdmin):
    """The other hint applied: the select's queryset joins the publisher."""

    fields = ["title", "author"]

    def formfield_for_foreignkey(
        self, db_field: Any, request: Any, **kwargs: Any
    ) -> Any:
        if db_field.name == "author":
            kwargs["queryset"] = Author.objects.select_related("publisher")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class TaggedBookInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Book.tags.through
    extra = 0

    def formfield_for_foreignkey(
        self, db_field: Any, request: Any, **kwargs: Any
    ) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "book":
            field.label_from_instance = _book_label
        return field


def _book_label(book: Book) -> str:
    return f"{book.title} by {book.author.name}"  # inline label line


class TagAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    fields = ["name"]
    inlines = [TaggedBookInline]


class PublisherAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    fields = ["name", "biographies"]
    readonly_fields = ["biographies"]

    @admin.display(description="biographies")
    def biographies(self, publisher: Publisher) -> str:
        return "; ".join(a.profile.bio for a in publisher.author_set.all())  # bio line


site.register(Book, BookAdmin)
site.register(Tag, TagAdmin)
site.register(Publisher, PublisherAdmin)
raw_id_site = admin.AdminSite(name="forms-raw-id")  # one ModelAdmin per model and site
raw_id_site.register(Book, RawIdBookAdmin)
selecting_site = admin.AdminSite(name="forms-selecting")
selecting_site.register(Book, SelectingBookAdmin)

urlpatterns = [
    path("admin/", site.urls),
    path("raw-id/", raw_id_site.urls),
    path("selecting/", selecting_site.urls),
]
