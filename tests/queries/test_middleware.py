"""QueryCountMiddleware from the user's side: settings, the test client, logs and headers."""

from __future__ import annotations

import logging
import threading

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.http import HttpResponse
from django.test import Client, RequestFactory

from django_dbtuning import NPlusOneError, NPlusOneWarning, QueryBudgetExceeded
from django_dbtuning.middleware import QueryCountMiddleware
from tests.testapp.models import Author, Book, Publisher

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.testapp.urls")]

MIDDLEWARE = "django_dbtuning.middleware.QueryCountMiddleware"


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


def n_plus_one_records(caplog):
    return [r for r in caplog.records if hasattr(r, "finding")]


def test_naive_view_is_logged_with_relation_line_and_fix(
    client, books, caplog, dbtuning
):
    dbtuning(ON_N_PLUS_ONE="log")
    with caplog.at_level(logging.WARNING, logger="django_dbtuning"):
        response = client.get("/books/naive/")
    assert response.status_code == 200
    assert response["X-DB-Query-Count"] == "6"
    (record,) = n_plus_one_records(caplog)
    assert record.levelno == logging.WARNING
    assert record.name.startswith("django_dbtuning")
    finding = record.finding
    assert finding.relation == "testapp.Book.author"
    assert finding.callsite.startswith("tests/testapp/views.py:")
    assert finding.view == "books-naive"
    message = record.getMessage()
    assert "testapp.Book.author ran 5 times" in message
    assert 'fix: add .select_related("author") to the Book queryset' in message
    assert "sql: SELECT … FROM" in message


def test_fixed_view_is_silent(client, books, caplog, dbtuning):
    dbtuning(ON_N_PLUS_ONE="raise", ON_DUPLICATE="raise")
    with caplog.at_level(logging.DEBUG, logger="django_dbtuning"):
        response = client.get("/books/fixed/")
    assert response["X-DB-Query-Count"] == "1"
    assert n_plus_one_records(caplog) == []


def test_parameters_never_reach_the_logs(client, books, caplog, dbtuning):
    dbtuning(ON_N_PLUS_ONE="log")
    secret_ids = {str(b.author_id) for b in books}
    with caplog.at_level(logging.DEBUG, logger="django_dbtuning"):
        client.get("/books/naive/")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "%s" in text
    assert not any(f"= {pk}" in text or f"({pk})" in text for pk in secret_ids)
    assert "parameters" not in text


def test_parameters_are_logged_only_when_asked(client, books, caplog, dbtuning):
    dbtuning(ON_N_PLUS_ONE="log", ON_DUPLICATE="log", LOG_PARAMETERS=True)
    Book.objects.update(
        author=books[0].author
    )  # every row now asks for the same author
    with caplog.at_level(logging.DEBUG, logger="django_dbtuning"):
        client.get("/books/naive/")
    (record,) = n_plus_one_records(caplog)
    assert record.finding.kind == "duplicate"
    assert f"parameters: ({books[0].author_id},)" in record.getMessage()
    assert record.finding.function == "books_naive"


def test_warn_mode_emits_a_warning_at_the_view_line(client, books, dbtuning, caplog):
    dbtuning(ON_N_PLUS_ONE="warn")
    with pytest.warns(NPlusOneWarning, match=r"testapp\.Book\.author") as caught:
        client.get("/books/naive/")
    assert caught[0].filename == "tests/testapp/views.py"
    assert n_plus_one_records(caplog)


def test_default_reaction_depends_on_debug(client, books, settings, caplog):
    settings.DEBUG = True
    with pytest.warns(NPlusOneWarning):
        client.get("/books/naive/")
    settings.DEBUG = False
    with caplog.at_level(logging.WARNING, logger="django_dbtuning"):
        client.get("/books/naive/")  # no warning: filterwarnings=error would fail here
    assert n_plus_one_records(caplog)


def test_raise_mode_raises_n_plus_one_error(client, books, dbtuning):
    dbtuning(ON_N_PLUS_ONE="raise")
    with pytest.raises(
        NPlusOneError, match=r"GET /books/naive/ \(books-naive\)"
    ) as info:
        client.get("/books/naive/")
    assert [f.relation for f in info.value.findings] == ["testapp.Book.author"]


def test_ignore_mode_is_silent(client, books, dbtuning, caplog):
    dbtuning(ON_N_PLUS_ONE="ignore")
    with caplog.at_level(logging.DEBUG, logger="django_dbtuning"):
        response = client.get("/books/naive/")
    assert response.status_code == 200
    assert n_plus_one_records(caplog) == []


def test_template_response_names_template_line(client, books, dbtuning, caplog):
    dbtuning(ON_N_PLUS_ONE="log")
    with caplog.at_level(logging.WARNING, logger="django_dbtuning"):
        client.get("/books/template-response/")
    (record,) = n_plus_one_records(caplog)
    assert record.finding.template == "testapp/books.html:4"
    assert record.finding.relation == "testapp.Book.author"


def test_detail_view_is_silent(client, books, dbtuning):
    dbtuning(ON_N_PLUS_ONE="raise", ON_DUPLICATE="raise")
    response = client.get(f"/books/{books[0].pk}/")
    assert response["X-DB-Query-Count"] == "2"


def test_headers_and_server_timing(client, books):
    response = client.get("/authors/")
    assert response["X-DB-Query-Count"] == "1"
    assert float(response["X-DB-Query-Time-Ms"]) >= 0
    assert response["Server-Timing"].startswith("db;dur=")
    assert response["Server-Timing"].endswith('desc="1 queries"')


def test_headers_can_be_switched_off(client, books, dbtuning):
    dbtuning(RESPONSE_HEADERS=False, SERVER_TIMING=False)
    response = client.get("/authors/")
    assert not response.has_header("X-DB-Query-Count")
    assert not response.has_header("Server-Timing")


def test_query_budget_setting(client, books, dbtuning):
    dbtuning(QUERY_BUDGET=3, ON_QUERY_BUDGET="raise", ON_N_PLUS_ONE="ignore")
    with pytest.raises(
        QueryBudgetExceeded, match="6 queries in GET /books/naive/"
    ) as info:
        client.get("/books/naive/")
    assert (info.value.count, info.value.budget) == (6, 3)
    assert "5 x SELECT" in str(info.value)
    client.get("/books/fixed/")  # within budget


def test_query_budget_log(client, books, dbtuning, caplog):
    dbtuning(QUERY_BUDGET=0, ON_QUERY_BUDGET="log")
    with caplog.at_level(logging.WARNING, logger="django_dbtuning"):
        client.get("/authors/")
    assert any("over the budget of 0" in r.getMessage() for r in caplog.records)


def test_a_failing_view_still_gets_counted(books, dbtuning):
    dbtuning(ON_N_PLUS_ONE="raise")
    client = Client(raise_request_exception=False)
    response = client.get("/broken/")
    assert response.status_code == 500
    assert response["X-DB-Query-Count"] == "0"


def test_a_failure_inside_the_detector_never_fails_the_request(
    client, books, dbtuning, monkeypatch, caplog
):
    from django_dbtuning.queries import callsite as detection
    from django_dbtuning.queries import recorder, units

    def explode(*args, **kwargs):
        raise RuntimeError("detector bug")

    dbtuning(ON_N_PLUS_ONE="raise")
    monkeypatch.setattr(detection, "_walk_for_site", explode)
    monkeypatch.setattr(units, "evaluate", explode)
    monkeypatch.setattr(recorder, "_error_logged", False)
    with caplog.at_level(logging.ERROR, logger="django_dbtuning"):
        response = client.get("/books/naive/")
    assert response.status_code == 200
    assert response.json()["books"][0]["author"] == "A0"
    assert any("django-dbtuning failed while" in r.getMessage() for r in caplog.records)


def test_middleware_is_sync_and_async_capable():
    sync = QueryCountMiddleware(lambda request: HttpResponse())

    async def get_response(request):
        return HttpResponse()

    asynchronous = QueryCountMiddleware(get_response)
    assert not iscoroutinefunction(sync)
    assert iscoroutinefunction(asynchronous)
    response = async_to_sync(asynchronous)(RequestFactory().get("/"))
    assert response["X-DB-Query-Count"] == "0"


@pytest.mark.django_db(transaction=True)
def test_async_view_queries_run_in_the_sync_thread_are_counted(async_client, dbtuning):
    publisher = Publisher.objects.create(name="P")
    for i in range(4):
        author = Author.objects.create(name=f"A{i}", publisher=publisher)
        Book.objects.create(title=f"B{i}", author=author)
    dbtuning(ON_N_PLUS_ONE="raise")

    async def run(path):
        return await async_client.get(path)

    with pytest.raises(NPlusOneError) as info:
        async_to_sync(run)("/async/naive/")
    (finding,) = info.value.findings
    assert finding.callsite.startswith("tests/testapp/views.py:")
    assert finding.function == "books_async_naive"
    assert finding.model == "testapp.Author"
    response = async_to_sync(run)("/async/fixed/")
    assert response["X-DB-Query-Count"] == "1"


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_each_see_their_own_count():
    publisher = Publisher.objects.create(name="P")
    authors = [
        Author.objects.create(name=f"A{i}", publisher=publisher) for i in range(3)
    ]
    for i in range(12):
        Book.objects.create(title=f"B{i}", author=authors[i % 3])
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(12)

    def request(i: int) -> None:
        from django.db import connection

        try:
            barrier.wait(timeout=30)
            path = (
                f"/books/{Book.objects.order_by('pk')[i].pk}/" if i % 2 else "/authors/"
            )
            results[i] = Client().get(path)["X-DB-Query-Count"]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # Odd requests: the lookup in the thread itself is outside the request (not counted),
    # then get + author = 2; even requests: one query.
    assert results == {i: ("2" if i % 2 else "1") for i in range(12)}


@pytest.mark.parametrize("reaction", ["raise", "log", "warn"])
def test_messages_show_the_url_pattern_never_the_path(
    client, books, dbtuning, caplog, reaction
):
    # A path carries whatever the URL carries: a password-reset token, an e-mail address.
    dbtuning(ON_N_PLUS_ONE=reaction, QUERY_BUDGET=1, ON_QUERY_BUDGET="log")
    texts = []
    with caplog.at_level(logging.DEBUG, logger="django_dbtuning"):
        if reaction == "raise":
            with pytest.raises(NPlusOneError) as info:
                client.get("/reset/tok-SECRET-4711/")
            texts.append(str(info.value))
        elif reaction == "warn":
            with pytest.warns(NPlusOneWarning) as caught:
                client.get("/reset/tok-SECRET-4711/")
            texts.extend(str(w.message) for w in caught)
        else:
            client.get("/reset/tok-SECRET-4711/")
    # (django.request logs the path of a 500 itself; only this package's records count.)
    texts.extend(
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("django_dbtuning")
    )
    assert any("GET /reset/<str:token>/ (reset-naive)" in text for text in texts)
    assert not any("SECRET-4711" in text for text in texts)
