"""Views for the unused-eager-load tests (tests/queries/test_unused_eager_loads.py)."""

from __future__ import annotations

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
