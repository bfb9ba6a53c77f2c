"""A small site with the places Django teams meet N+1s: an admin, a DRF API, template views.

URLconf for tests/queries/test_hints.py (``pytest.mark.urls``). Each naive piece reads a
relation per row the way real code does; the tests check that the hint names the knob the
user turns here (list_select_related, get_queryset(), the viewset's queryset, the view's
context).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import include, path

from tests.testapp.models import Author, Book, Publisher, Tag

site = admin.AdminSite(name="hints")


class PublisherFilter(admin.RelatedFieldListFilter):
    """A list filter whose labels read a relation per choice."""

    def field_choices(self, field: Any, request: Any, model_admin: Any) -> Any:
        return [
            (a.pk, f"{a.name} ({a.publisher.name})")  # filter choice line
            for a in Author.objects.order_by("pk")
        ]


class BookAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["title", "author_name", "tag_names"]
    list_filter = [("author", PublisherFilter)]

    @admin.display(description="author")
    def author_name(self, obj: Book) -> str:
        return obj.author.name  # admin author line

    @admin.display(description="tags")
    def tag_names(self, obj: Book) -> str:
        return ", ".join(t.name for t in obj.tags.all())  # admin tags line


class PickyBookAdmin(BookAdmin):
    """Already selects something: the hint adds to the list."""

    list_select_related = ["author"]
    list_display = ["title", "publisher_name"]
    list_filter = []

    @admin.display(description="publisher")
    def publisher_name(self, obj: Book) -> str:
        return obj.author.publisher.name  # admin publisher line


class BookInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Book
    fields = ["title", "tag_names"]
    readonly_fields = ["tag_names"]
    extra = 0

    @admin.display(description="tags")
    def tag_names(self, obj: Book) -> str:
        return ", ".join(t.name for t in obj.tags.all())  # inline tags line


class AuthorAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    inlines = [BookInline]


site.register(Book, BookAdmin)
site.register(Author, AuthorAdmin)
picky_site = admin.AdminSite(name="hints-picky")  # one ModelAdmin per model and site
picky_site.register(Book, PickyBookAdmin)


# --- Django REST framework ---------------------------------------------------------------------


def api_urls() -> list[Any]:
    from rest_framework import routers, serializers, viewsets

    class AuthorSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
        class Meta:
            model = Author
            fields = ["name"]

    class TagSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
        class Meta:
            model = Tag
            fields = ["name"]

    class BookSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
        author = AuthorSerializer()
        tags = TagSerializer(many=True)

        class Meta:
            model = Book
            fields = ["title", "author", "tags"]

    class BookViewSet(viewsets.ReadOnlyModelViewSet):  # type: ignore[type-arg]
        queryset = Book.objects.order_by("pk")
        serializer_class = BookSerializer

    class PublisherSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
        n_authors = serializers.SerializerMethodField()

        class Meta:
            model = Publisher
            fields = ["name", "n_authors"]

        def get_n_authors(self, publisher: Publisher) -> int:
            return publisher.author_set.count()  # drf count line

    class PublisherViewSet(viewsets.ReadOnlyModelViewSet):  # type: ignore[type-arg]
        serializer_class = PublisherSerializer

        def get_queryset(self) -> Any:
            return Publisher.objects.order_by("pk")

    router = routers.SimpleRouter()
    router.register("books", BookViewSet, basename="book")
    router.register("publishers", PublisherViewSet, basename="publisher")
    return list(router.urls)


# --- template views ----------------------------------------------------------------------------


def books_page(request: HttpRequest) -> HttpResponse:
    books = Book.objects.order_by("pk")
    return render(request, "testapp/hints/books.html", {"books": books})  # render line


def books_page_response(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(
        request, "testapp/hints/books.html", {"books": Book.objects.order_by("pk")}
    )


def tags_page(request: HttpRequest) -> HttpResponse:
    context = {"tags": Tag.objects.prefetch_related("books").order_by("pk")}
    return render(request, "testapp/hints/tags.html", context)  # tags render line


def _drf_patterns() -> list[Any]:
    try:
        return [path("api/", include(api_urls()))]
    except ImportError:  # Django REST framework not installed: those tests skip
        return []


urlpatterns = [
    path("admin/", site.urls),
    path("picky/", picky_site.urls),
    path("books/", books_page, name="hint-books"),
    path("books/response/", books_page_response, name="hint-books-response"),
    path("tags/", tags_page, name="hint-tags"),
    *_drf_patterns(),
]
