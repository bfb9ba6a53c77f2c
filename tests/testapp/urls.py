from __future__ import annotations

from django.urls import path

from tests.testapp import views

urlpatterns = [
    path("books/naive/", views.books_naive, name="books-naive"),
    path("books/fixed/", views.books_fixed, name="books-fixed"),
    path("books/template/", views.books_template, name="books-template"),
    path(
        "books/template-response/",
        views.books_template_response,
        name="books-template-response",
    ),
    path("books/jinja/", views.books_jinja, name="books-jinja"),
    path("books/<int:pk>/", views.book_detail, name="book-detail"),
    # A URL that carries a secret (a password-reset token) into an N+1 view.
    path("reset/<str:token>/", views.reset_naive, name="reset-naive"),
    path("authors/", views.authors_count, name="authors"),
    path("async/naive/", views.books_async_naive, name="async-naive"),
    path("async/fixed/", views.books_async_fixed, name="async-fixed"),
    path("broken/", views.broken, name="broken"),
    path("books/stream/", views.books_stream, name="books-stream"),
    path("books/stream-async/", views.books_stream_async, name="books-stream-async"),
    path(
        "books/stream-until-disconnect/",
        views.books_stream_until_disconnect,
        name="books-stream-until-disconnect",
    ),
    path("books/file/", views.books_file, name="books-file"),
    path("budgeted/", views.budgeted_async, name="budgeted"),
    path(
        "budgeted/decorated/",
        views.budgeted_async_decorated,
        name="budgeted-decorated",
    ),
]
