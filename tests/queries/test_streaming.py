"""Streamed responses: the body's queries count and are reported when the stream ends.

Views (tests/testapp/views.py) run one query before the body and an N+1 inside it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import wsgiref.util
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished
from django.db import close_old_connections, connection
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.test import Client, RequestFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from django_dbtuning import NPlusOneWarning, track_queries
from django_dbtuning.middleware import QueryCountMiddleware
from django_dbtuning.queries.units import Unit
from tests.testapp.models import Author, Book, Publisher

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.testapp.urls")]

MIDDLEWARE = "django_dbtuning.middleware.QueryCountMiddleware"
ASYNC_UNDER_WSGI = (
    "ignore:StreamingHttpResponse must consume asynchronous iterators:Warning"
)
SYNC_UNDER_ASGI = (
    "ignore:StreamingHttpResponse must consume synchronous iterators:Warning"
)


@pytest.fixture(autouse=True)
def with_middleware(settings):
    settings.MIDDLEWARE = [MIDDLEWARE, *settings.MIDDLEWARE]


@pytest.fixture
def books():
    publisher = Publisher.objects.create(name="P")
    authors = [
        Author.objects.create(name=f"A{i}", publisher=publisher) for i in range(5)
    ]
    return [Book.objects.create(title=f"B{i}", author=authors[i]) for i in range(5)]


@pytest.fixture
def log(caplog):
    caplog.set_level(logging.DEBUG, logger="django_dbtuning")
    return caplog


def close(response: HttpResponseBase) -> None:
    """response.close() as the handlers call it; the test client keeps the test's
    connection open the same way."""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def findings(records: list[logging.LogRecord]) -> list[Any]:
    return [r.finding for r in records if hasattr(r, "finding")]


def summaries(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if hasattr(r, "query_count_before_body")]


def active_unit() -> Unit | None:
    from django_dbtuning.queries.recorder import current_unit

    return current_unit.get()


def assert_book_author_n_plus_one(found: list[Any], view: str) -> None:
    (finding,) = found
    assert finding.relation == "testapp.Book.author"
    assert finding.count == 5
    assert finding.callsite.startswith("tests/testapp/views.py:")
    assert finding.view == view


# --- WSGI: the test client ---------------------------------------------------------------------


def test_sync_stream_counts_its_body_and_reports_at_the_end(
    client, books, log, dbtuning
):
    dbtuning(ON_N_PLUS_ONE="log")
    labels = {"view": "books-stream", "alias": "default"}
    before = REGISTRY.get_sample_value("dbtuning_request_queries_sum", labels) or 0
    response = client.get("/books/stream/")
    assert response.streaming
    assert response["X-DB-Query-Count"] == "1"  # the count() before the body
    assert response["Server-Timing"].endswith('desc="1 queries"')
    assert findings(log.records) == []  # nothing is reported before the body has run
    body = b"".join(response.streaming_content)
    assert body.count(b"\n") == 6
    assert_book_author_n_plus_one(findings(log.records), "books-stream")
    (summary,) = summaries(log.records)
    assert (summary.query_count, summary.query_count_before_body) == (7, 1)
    assert "GET /books/stream/ (books-stream): streamed response finished" in (
        summary.getMessage()
    )
    after = REGISTRY.get_sample_value("dbtuning_request_queries_sum", labels)
    assert after == before + 7
    assert active_unit() is None


def test_a_block_around_the_test_sees_the_body_n_plus_one(client, books, dbtuning):
    # What the pytest plugin (no_n_plus_one, --n-plus-one=fail) wraps every test in: the
    # way to fail a test on an N+1 inside a streamed body.
    dbtuning(ON_N_PLUS_ONE="ignore")
    with track_queries() as report:
        response = client.get("/books/stream/")
        b"".join(response.streaming_content)
    assert report.count == 7
    assert [f.relation for f in report.n_plus_one] == ["testapp.Book.author"]


def test_raise_is_an_error_record_once_the_stream_has_started(
    client, books, log, dbtuning
):
    dbtuning(ON_N_PLUS_ONE="raise", QUERY_BUDGET=3, ON_QUERY_BUDGET="raise")
    response = client.get("/books/stream/")
    b"".join(response.streaming_content)  # no exception: the status is already sent
    errors = [r for r in log.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    n_plus_one, budget = errors
    assert n_plus_one.finding.relation == "testapp.Book.author"
    assert "logged, not raised: the streamed response had already started" in (
        n_plus_one.getMessage()
    )
    assert "7 queries in GET /books/stream/" in budget.getMessage()
    assert (budget.query_count, budget.query_budget) == (7, 3)


def test_warn_warns_when_the_body_has_been_read(client, books, dbtuning):
    dbtuning(ON_N_PLUS_ONE="warn")
    response = client.get("/books/stream/")
    with pytest.warns(NPlusOneWarning, match=r"testapp\.Book\.author ran 5 times"):
        b"".join(response.streaming_content)


def test_file_response_counts_the_queries_of_its_reads(client, books, log, dbtuning):
    dbtuning(ON_N_PLUS_ONE="log")
    response = client.get("/books/file/")
    assert response["X-DB-Query-Count"] == "1"  # the books, loaded by the view
    assert b"".join(response.streaming_content).count(b"\n") == 5
    assert_book_author_n_plus_one(findings(log.records), "books-file")
    (summary,) = summaries(log.records)
    assert summary.query_count == 6


@pytest.mark.django_db(transaction=True)  # the test client's close() closes connections
def test_a_client_that_goes_away_mid_body_still_ends_the_unit(
    client, books, log, dbtuning
):
    dbtuning(ON_N_PLUS_ONE="log")
    with track_queries() as outer:
        response = client.get("/books/stream/")
        chunks = iter(response.streaming_content)
        next(chunks)
        next(chunks)  # the books query and one author
        response.close()  # what the WSGI server does when the client disconnects
        assert active_unit() is outer._unit
        Author.objects.count()
    (summary,) = summaries(log.records)
    assert summary.query_count == 3
    assert findings(log.records) == []
    assert outer.count == 4
    assert active_unit() is None


def test_a_body_that_fails_ends_the_unit_and_keeps_its_error(
    client, books, log, monkeypatch
):
    def broken_name(book: Book) -> str:
        raise LookupError("the body itself failed")

    monkeypatch.setattr("tests.testapp.views.author_name", broken_name)
    response = client.get("/books/stream/")
    with pytest.raises(LookupError, match="the body itself failed"):
        b"".join(response.streaming_content)
    (summary,) = summaries(log.records)
    assert summary.query_count == 2
    assert active_unit() is None


def test_a_block_spanning_two_chunks_of_the_body(client, books, log, settings):
    reports: list[Any] = []

    def view(request: HttpRequest) -> StreamingHttpResponse:
        def rows() -> Iterator[str]:
            with track_queries() as report:
                reports.append(report)
                yield str(Author.objects.count())
                yield str(Book.objects.count())
            yield str(Publisher.objects.count())

        return StreamingHttpResponse(rows())

    middleware = QueryCountMiddleware(view)
    response = middleware(RequestFactory().get("/"))
    chunks = iter(response)
    next(chunks)
    Author.objects.count()  # between two chunks, outside the request: its own
    assert b"".join(chunks) == b"51"
    close(response)
    assert reports[0].count == 2
    (summary,) = summaries(log.records)
    assert summary.query_count == 3
    assert active_unit() is None


def test_a_view_that_leaves_a_block_open_does_not_leak_into_the_thread(books, settings):
    left_open: list[Any] = []

    def view(request: HttpRequest) -> Any:
        from django.http import HttpResponse

        tracker = track_queries()
        left_open.append(tracker.__enter__())
        Author.objects.count()
        return HttpResponse()

    middleware = QueryCountMiddleware(view)
    response = middleware(RequestFactory().get("/"))
    assert response["X-DB-Query-Count"] == "1"
    Author.objects.count()  # after the request: the block it left open sees nothing
    assert left_open[0].count == 1
    assert active_unit() is None


# --- ASGI: the async test client ---------------------------------------------------------------


def test_async_stream_under_the_async_client(async_client, books, log, dbtuning):
    dbtuning(ON_N_PLUS_ONE="log")

    async def run() -> tuple[str, bytes]:
        response = await async_client.get("/books/stream-async/")
        assert response.is_async
        header = response["X-DB-Query-Count"]
        assert findings(log.records) == []
        body = b"".join([chunk async for chunk in response.streaming_content])
        return header, body

    header, body = async_to_sync(run)()
    assert header == "1"
    assert body.count(b"\n") == 6
    assert_book_author_n_plus_one(findings(log.records), "books-stream-async")
    (summary,) = summaries(log.records)
    assert summary.query_count == 7


def test_sync_stream_under_the_async_client(async_client, books, log, dbtuning):
    dbtuning(ON_N_PLUS_ONE="log")

    async def run() -> tuple[str, bytes]:
        response = await async_client.get("/books/stream/")
        body = await sync_to_async(b"".join)(response.streaming_content)
        return response["X-DB-Query-Count"], body

    header, body = async_to_sync(run)()
    assert header == "1"
    assert body.count(b"\n") == 6
    assert_book_author_n_plus_one(findings(log.records), "books-stream")
    assert [s.query_count for s in summaries(log.records)] == [7]


# --- many streams at once ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # each thread has its own connection
def test_12_threads_streaming_at_once_each_count_their_own_body(books, log, dbtuning):
    dbtuning(ON_N_PLUS_ONE="log")
    barrier = threading.Barrier(12)
    errors: list[BaseException] = []
    headers: list[str] = []

    def request() -> None:
        try:
            response = Client().get("/books/stream/")
            barrier.wait(timeout=30)  # every response open before any body is read
            headers.append(response["X-DB-Query-Count"])
            for _ in response.streaming_content:
                barrier.wait(timeout=30)  # bodies advance in lockstep, interleaved
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert headers == ["1"] * 12
    assert [s.query_count for s in summaries(log.records)] == [7] * 12
    assert [f.count for f in findings(log.records)] == [5] * 12


def test_asyncio_tasks_streaming_at_once_each_count_their_own_body(
    async_client, books, log, dbtuning
):
    dbtuning(ON_N_PLUS_ONE="log")

    async def one() -> int:
        response = await async_client.get("/books/stream-async/")
        return len([chunk async for chunk in response.streaming_content])

    async def run() -> list[int]:
        return list(await asyncio.gather(*(one() for _ in range(8))))

    assert async_to_sync(run)() == [6] * 8
    assert [s.query_count for s in summaries(log.records)] == [7] * 8
    assert [f.count for f in findings(log.records)] == [5] * 8


# --- real handlers: Django's ASGIHandler and WSGIHandler ---------------------------------------


def asgi_scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def asgi_get(path: str, *, disconnect_after: int | None = None) -> list[Any]:
    """Messages Django's ASGIHandler sends; disconnect after that many body chunks."""

    async def run() -> list[Any]:
        communicator = ApplicationCommunicator(ASGIHandler(), asgi_scope(path))
        await communicator.send_input({"type": "http.request"})
        messages = [await communicator.receive_output(timeout=30)]  # the start
        while True:
            messages.append(await communicator.receive_output(timeout=30))
            if not messages[-1].get("more_body", False):
                break
            if disconnect_after is not None and len(messages) > disconnect_after:
                await communicator.send_input({"type": "http.disconnect"})
                break
        await communicator.wait(timeout=30)
        return messages

    return async_to_sync(run)()


def header(start: dict[str, Any], name: bytes) -> bytes:
    return dict(start["headers"])[name]


@pytest.mark.django_db(transaction=True)  # the handlers close connections per request
def test_asgi_async_stream_end_to_end(books, log, dbtuning):
    dbtuning(ON_N_PLUS_ONE="log")
    start, *body = asgi_get("/books/stream-async/")
    assert header(start, b"X-DB-Query-Count") == b"1"
    assert b"".join(m.get("body", b"") for m in body).count(b"\n") == 6
    assert_book_author_n_plus_one(findings(log.records), "books-stream-async")
    assert [s.query_count for s in summaries(log.records)] == [7]


@pytest.mark.filterwarnings(SYNC_UNDER_ASGI)
@pytest.mark.django_db(transaction=True)
def test_asgi_sync_stream_end_to_end(books, log, dbtuning):
    dbtuning(ON_N_PLUS_ONE="log")
    start, *body = asgi_get("/books/stream/")
    assert header(start, b"X-DB-Query-Count") == b"1"
    assert b"".join(m.get("body", b"") for m in body).count(b"\n") == 6
    assert_book_author_n_plus_one(findings(log.records), "books-stream")
    assert [s.query_count for s in summaries(log.records)] == [7]


@pytest.mark.django_db(transaction=True)
def test_asgi_client_disconnect_mid_body_ends_the_unit(books, log):
    start, first, second = asgi_get(
        "/books/stream-until-disconnect/", disconnect_after=2
    )
    assert header(start, b"X-DB-Query-Count") == b"0"
    assert (first["body"], second["body"]) == (b"first\n", b"5 books\n")
    (summary,) = summaries(log.records)
    assert summary.query_count == 1


def wsgi_environ(path: str) -> dict[str, Any]:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    wsgiref.util.setup_testing_defaults(environ)
    return environ


@pytest.mark.filterwarnings(ASYNC_UNDER_WSGI)
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "view"),
    [
        ("/books/stream/", "books-stream"),
        ("/books/stream-async/", "books-stream-async"),
    ],
)
def test_wsgi_stream_end_to_end(books, log, dbtuning, path, view):
    dbtuning(ON_N_PLUS_ONE="log")
    started: list[Any] = []
    result = WSGIHandler()(
        wsgi_environ(path), lambda status, headers: started.append(dict(headers))
    )
    assert started[0]["X-DB-Query-Count"] == "1"
    body = b"".join(result)  # what a WSGI server does: iterate, then close
    result.close()
    assert body.count(b"\n") == 6
    assert_book_author_n_plus_one(findings(log.records), view)
    assert [s.query_count for s in summaries(log.records)] == [7]
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_wsgi_file_wrapper_still_serves_a_file_response(books, log):
    environ = wsgi_environ("/books/file/")
    environ["wsgi.file_wrapper"] = wsgiref.util.FileWrapper
    started: list[str] = []
    result = WSGIHandler()(environ, lambda status, headers: started.append(status))
    assert isinstance(result, wsgiref.util.FileWrapper)  # sendfile path kept
    body = b"".join(result)
    result.close()  # what the server does at the end: ends the unit
    assert started == ["200 OK"]
    assert body.count(b"\n") == 5
    # The server read the file itself, outside the request's context: the reads'
    # queries are not the request's (documented); the unit still ended.
    assert [s.query_count for s in summaries(log.records)] == [1]
    connection.close()


# --- property: any body, read to any point, in sync or async --------------------------------


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    before=st.integers(0, 3),
    chunks=st.lists(st.integers(0, 3), max_size=6),
    read=st.integers(0, 7),
    asynchronous=st.booleans(),
)
def test_property_a_streamed_unit_counts_what_its_body_ran(
    log, before, chunks, read, asynchronous
):
    log.clear()

    def queries(n: int) -> None:
        for _ in range(n):
            Author.objects.exists()

    def rows() -> Iterator[str]:
        for n in chunks:
            queries(n)
            yield "x"

    def view(request: HttpRequest) -> StreamingHttpResponse:
        queries(before)
        return StreamingHttpResponse(rows())

    async def async_view(request: HttpRequest) -> StreamingHttpResponse:
        await sync_to_async(queries)(before)

        async def arows() -> Any:
            for n in chunks:
                await sync_to_async(queries)(n)
                yield "x"

        return StreamingHttpResponse(arows())

    read = min(read, len(chunks) + 1)  # one past the end: StopIteration

    if asynchronous:

        async def run() -> str:
            response = await QueryCountMiddleware(async_view)(RequestFactory().get("/"))
            content = aiter(response.streaming_content)
            for _ in range(read):
                try:
                    await anext(content)
                except StopAsyncIteration:
                    break
            await sync_to_async(close)(response)
            return response["X-DB-Query-Count"]

        count_header = async_to_sync(run)()
    else:
        response = QueryCountMiddleware(view)(RequestFactory().get("/"))
        content = iter(response.streaming_content)
        for _ in range(read):
            next(content, None)
        close(response)
        count_header = response["X-DB-Query-Count"]
    queries(1)  # after the response: counted nowhere
    assert count_header == str(before)
    (summary,) = summaries(log.records)
    assert summary.query_count == before + sum(chunks[:read])
    assert active_unit() is None
