"""URLs of the debug-toolbar panel tests: the test app's views, the toolbar's, and two more."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from debug_toolbar.toolbar import debug_toolbar_urls
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.template import Context, Engine
from django.urls import URLPattern, URLResolver, include, path

from django_dbtuning.queries import QueryFinding, request_report
from django_dbtuning.toolbar import QueriesPanel
from tests.queries.test_toolbar import HOSTILE_TABLE
from tests.testapp.models import Book


def show_toolbar(request: HttpRequest) -> bool:
    return True


class RecordingPanel(QueriesPanel):
    """The panel, plus what a project's own panel would read: the request's findings."""

    seen: ClassVar[list[QueryFinding]] = []

    def generate_stats(self, request: HttpRequest, response: HttpResponseBase) -> None:
        super().generate_stats(request, response)
        report = request_report(request)
        assert report is not None
        RecordingPanel.seen.extend(report.n_plus_one)


class LateQueries:
    """A middleware between QueryCountMiddleware and the toolbar whose response phase
    reads each book's author (an N+1 run after the panel made its stats)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        for book in Book.objects.order_by("pk"):
            _ = book.author.name
        return response


class LateCount:
    """Counts the books after the panel made its stats: one more query, no finding."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        Book.objects.count()
        return response


def books_twice(request: HttpRequest) -> JsonResponse:
    """The same query with the same parameters three times: a duplicate."""
    titles = [list(Book.objects.filter(title="B0")) for _ in range(3)]
    return JsonResponse({"found": sum(len(t) for t in titles)})


def hostile(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        for _ in range(3):
            cursor.execute(
                f'SELECT "id" FROM "{HOSTILE_TABLE}" WHERE "note" = %s', ["secret-42"]
            )
    return HttpResponse("<html><body><p>hostile</p></body></html>")


# A page with a body for the toolbar to insert itself in; the template reads each book's
# author, an N+1 reported at the template's line.
_PAGES = Engine(
    loaders=[
        (
            "django.template.loaders.locmem.Loader",
            {
                "shop/books.html": (
                    "<!doctype html>\n<html><body>\n<h1>Books</h1>\n<ul>\n"
                    "{% for book in books %}\n"
                    "  <li>{{ book.title }} by {{ book.author.name }}</li>\n"
                    "{% endfor %}\n</ul>\n</body></html>\n"
                )
            },
        )
    ]
)


def books_page(request: HttpRequest) -> HttpResponse:
    books = Book.objects.order_by("title")
    page = _PAGES.get_template("shop/books.html").render(Context({"books": books}))
    return HttpResponse(page)


def eager_unused(request: HttpRequest) -> JsonResponse:
    books = Book.objects.select_related("author")  # the author is never read
    return JsonResponse({"titles": [book.title for book in books]})


urlpatterns: list[URLPattern | URLResolver] = [
    path("", include("tests.testapp.urls")),
    path("twice/", books_twice, name="books-twice"),
    path("hostile/", hostile, name="hostile"),
    path("eager-unused/", eager_unused, name="eager-unused"),
    path("books/page/", books_page, name="books-page"),
    *debug_toolbar_urls(),
]
