"""Views for the middleware tests: N+1s the naive way, and their fixed twins."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.response import TemplateResponse

from tests.testapp.models import Author, Book


def books_naive(request: HttpRequest) -> JsonResponse:
    data = [{"title": b.title, "author": b.author.name} for b in Book.objects.all()]
    return JsonResponse({"books": data})


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
