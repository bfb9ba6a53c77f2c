"""Views for the middleware tests: N+1s the naive way, and their fixed twins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.template.response import TemplateResponse

from django_dbtuning import QueryBudgetExceeded, query_budget
from tests.testapp.models import Author, Book


def books_naive(request: HttpRequest) -> JsonResponse:
    data = [{"title": b.title, "author": b.author.name} for b in Book.objects.all()]
    return JsonResponse({"books": data})


def reset_naive(request: HttpRequest, token: str) -> JsonResponse:
    return books_naive(request)


def books_fixed(request: HttpRequest) -> JsonResponse:
    books = Book.objects.select_related("author")
    return JsonResponse(
        {"books": [{"title": b.title, "author": b.author.name} for b in books]}
    )


def books_template(request: HttpRequest) -> HttpResponse:
    return render(request, "testapp/books.html", {"books": Book.objects.all()})


def books_template_response(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(
        request, "testapp/books.html", {"books": Book.objects.all()}
    )


def books_jinja(request: HttpRequest) -> HttpResponse:
    books = Book.objects.all()
    return render(request, "testapp/books.jinja", {"books": books}, using="jinja2")


def book_detail(request: HttpRequest, pk: int) -> JsonResponse:
    book = Book.objects.get(pk=pk)
    return JsonResponse({"title": book.title, "author": book.author.name})


def authors_count(request: HttpRequest) -> JsonResponse:
    authors = list(Author.objects.order_by("pk"))
    return JsonResponse({"count": len(authors)})


async def books_async_naive(request: HttpRequest) -> JsonResponse:
    data = []
    async for book in Book.objects.all():
        author = await Author.objects.aget(pk=book.author_id)
        data.append(author.name)
    return JsonResponse({"authors": data})


async def books_async_fixed(request: HttpRequest) -> JsonResponse:
    data = [b.author.name async for b in Book.objects.select_related("author")]
    return JsonResponse({"authors": data})


def broken(request: HttpRequest) -> HttpResponse:
    raise ValueError("the view itself failed")


# --- streamed responses: one query before the body, an N+1 inside it -------------------------


def author_name(book: Book) -> str:
    return book.author.name


def books_stream(request: HttpRequest) -> StreamingHttpResponse:
    total = Book.objects.count()

    def rows() -> Iterator[str]:
        yield f"{total} books\n"
        for book in Book.objects.order_by("pk"):
            yield f"{book.title},{author_name(book)}\n"

    return StreamingHttpResponse(rows(), content_type="text/csv")


async def books_stream_async(request: HttpRequest) -> StreamingHttpResponse:
    total = await Book.objects.acount()

    async def rows() -> AsyncIterator[str]:
        yield f"{total} books\n"
        async for book in Book.objects.order_by("pk"):
            yield f"{book.title},{await sync_to_async(author_name)(book)}\n"

    return StreamingHttpResponse(rows(), content_type="text/csv")


async def books_stream_until_disconnect(request: HttpRequest) -> StreamingHttpResponse:
    async def rows() -> AsyncIterator[str]:
        yield "first\n"
        yield f"{await Book.objects.acount()} books\n"
        await asyncio.Event().wait()  # until the client goes away
        yield "never sent\n"

    return StreamingHttpResponse(rows(), content_type="text/plain")


class BookCatalogue:
    """A file-like object that reads the database as it is read (a DB-backed storage)."""

    name = "books.txt"

    def __init__(self) -> None:
        self.books = list(Book.objects.order_by("pk"))
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        if not self.books:
            return b""
        book = self.books.pop(0)
        return f"{book.title},{author_name(book)}\n".encode()

    def close(self) -> None:
        self.closed = True


def books_file(request: HttpRequest) -> FileResponse:
    return FileResponse(BookCatalogue(), content_type="text/plain")


# --- one query_budget instance shared by every request -----------------------------------------
# The views answer 429 with the budget error's numbers: the test client cannot tell apart
# the exceptions of concurrent requests.

SHARED_BUDGET = query_budget(max_queries=1, n_plus_one="ignore")


async def two_queries_if(over: bool) -> None:
    await Author.objects.acount()
    await asyncio.sleep(0)  # let concurrent requests enter the same instance
    if over:
        await sync_to_async(Book.objects.count)()


async def budgeted_async(request: HttpRequest) -> JsonResponse:
    try:
        async with SHARED_BUDGET as report:
            await two_queries_if(bool(request.GET.get("over")))
    except QueryBudgetExceeded as exc:
        return JsonResponse({"count": exc.count, "budget": exc.budget}, status=429)
    return JsonResponse({"count": report.count})


@SHARED_BUDGET
async def budgeted_work(over: bool) -> None:
    await two_queries_if(over)


async def budgeted_async_decorated(request: HttpRequest) -> JsonResponse:
    try:
        await budgeted_work(bool(request.GET.get("over")))
    except QueryBudgetExceeded as exc:
        return JsonResponse({"count": exc.count, "budget": exc.budget}, status=429)
    return JsonResponse({})
