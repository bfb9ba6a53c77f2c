"""Views for the unused-eager-load tests (tests/queries/test_unused_eager_loads.py)."""

from __future__ import annotations

import contextlib

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path

from tests.testapp.models import Book


def template_view(request: HttpRequest) -> HttpResponse:
    # The template reads book.author.name: the author is used, its profile never.
    books = Book.objects.select_related("author__profile")  # EAGER_VIEW_LINE
    return render(request, "testapp/books.html", {"books": books})


async def async_view(request: HttpRequest) -> JsonResponse:
    books = Book.objects.select_related("author").prefetch_related("tags")
    titles = [book.title async for book in books]  # nothing related is read
    return JsonResponse({"titles": titles})


urlpatterns = [
    path("eager/template/", template_view, name="eager-template"),
    path("eager/async/", async_view, name="eager-async"),
]


def api_urls() -> list[object]:
    """A Django REST framework viewset whose serializer never reads the author."""
    from rest_framework import routers, serializers, viewsets

    from tests.testapp.models import Tag

    class TagSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
        class Meta:
            model = Tag
            fields = ["name"]

    class BookSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
        tags = TagSerializer(many=True)

        class Meta:
            model = Book
            fields = ["title", "tags"]

    class BookViewSet(viewsets.ReadOnlyModelViewSet):  # type: ignore[type-arg]
        serializer_class = BookSerializer

        def get_queryset(self) -> object:
            return Book.objects.select_related("author").prefetch_related("tags")  # API

    router = routers.SimpleRouter()
    router.register("api/books", BookViewSet, basename="eager-book")
    return list(router.urls)


with contextlib.suppress(ImportError):  # Django REST framework is a test dependency
    urlpatterns += api_urls()
