"""The n_plus_one_detected signal: once per N+1 finding, from every unit of work."""

# ruff: noqa: B018  (bare attribute reads are how N+1s happen)

from __future__ import annotations

import logging

import pytest
from django.http import HttpRequest

from django_dbtuning import (
    NPlusOneError,
    n_plus_one_detected,
    query_budget,
    track_queries,
)
from django_dbtuning.queries import QueryFinding, enforce
from django_dbtuning.queries import n_plus_one_detected as from_queries
from django_dbtuning.queries.policy import Policy
from tests.testapp.models import Author, Book, Publisher

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.testapp.urls")]

MIDDLEWARE = "django_dbtuning.middleware.QueryCountMiddleware"


@pytest.fixture
def received():
    calls: list[dict[str, object]] = []

    def receiver(sender, **kwargs):
        calls.append({"sender": sender, **kwargs})

    n_plus_one_detected.connect(receiver)
    yield calls
    n_plus_one_detected.disconnect(receiver)


def naive():
    for book in Book.objects.all():
        book.author.name


def test_one_public_signal_object():
    assert n_plus_one_detected is from_queries


def test_a_query_budget_block_sends_one_signal_per_finding(three_books, received):
    with query_budget(n_plus_one="log"):
        naive()
    assert len(received) == 1
    call = received[0]
    assert call["sender"] is Book
    finding = call["finding"]
    assert isinstance(finding, QueryFinding)
    assert finding.relation == "testapp.Book.author"
    assert call["request"] is None
    assert call["signal"] is n_plus_one_detected


def test_sent_before_the_error_is_raised(three_books, received):
    with pytest.raises(NPlusOneError), query_budget():
        naive()
    assert [c["finding"].relation for c in received] == ["testapp.Book.author"]


def test_not_sent_when_the_reaction_is_ignore(three_books, received):
    with query_budget(n_plus_one="ignore"):
        naive()
    with track_queries():  # only records: no reaction, no signal
        naive()
    assert received == []


def test_duplicates_and_budgets_send_nothing(three_books, received):
    with query_budget(max_queries=0, duplicates="log", over_budget="log"):
        for _ in range(3):
            Publisher.objects.get(name="P")
    assert received == []


def test_each_finding_once(three_books, received):
    with track_queries() as report:
        naive()
        for author in Author.objects.all():
            list(author.books.all())
    enforce(report, Policy(n_plus_one="log"))
    assert sorted(c["finding"].relation for c in received) == [
        "testapp.Author.books",
        "testapp.Book.author",
    ]
    assert {c["sender"] for c in received} == {Author, Book}


def test_a_receiver_can_filter_by_model(three_books):
    calls = []

    def on_author(sender, finding, request, **kwargs):
        calls.append(finding)

    n_plus_one_detected.connect(on_author, sender=Author)
    try:
        with query_budget(n_plus_one="log"):
            naive()  # a Book N+1
        assert calls == []
        with query_budget(n_plus_one="log"):
            for author in Author.objects.all():
                list(author.books.all())
        assert [f.relation for f in calls] == ["testapp.Author.books"]
    finally:
        n_plus_one_detected.disconnect(on_author, sender=Author)


def test_a_request_sends_its_request(client, three_books, received, settings, dbtuning):
    settings.MIDDLEWARE = [MIDDLEWARE]
    dbtuning(ON_N_PLUS_ONE="log")
    response = client.get("/books/naive/")
    assert response.status_code == 200
    assert len(received) == 1
    request = received[0]["request"]
    assert isinstance(request, HttpRequest)
    assert request.path == "/books/naive/"
    assert received[0]["finding"].view == "books-naive"


def test_a_streamed_response_sends_its_request_when_the_body_ends(
    client, three_books, received, settings, dbtuning
):
    settings.MIDDLEWARE = [MIDDLEWARE]
    dbtuning(ON_N_PLUS_ONE="log")
    response = client.get("/books/stream/")
    assert received == []  # the body has not run yet
    b"".join(response.streaming_content)
    response.close()
    assert len(received) == 1
    assert received[0]["request"].path == "/books/stream/"


def test_a_receiver_that_raises_breaks_nothing(
    client, three_books, settings, dbtuning, caplog
):
    settings.MIDDLEWARE = [MIDDLEWARE]
    dbtuning(ON_N_PLUS_ONE="log")
    calls = []

    def broken(sender, **kwargs):
        raise RuntimeError("the integration is down")

    def after(sender, finding, request, **kwargs):
        calls.append(finding)

    # Connected first, so the receiver after it must still be called.
    n_plus_one_detected.connect(broken)
    n_plus_one_detected.connect(after)
    try:
        with caplog.at_level(logging.ERROR, logger="django.dispatch"):
            response = client.get("/books/naive/")
            with query_budget(n_plus_one="log"):
                naive()
    finally:
        n_plus_one_detected.disconnect(broken)
        n_plus_one_detected.disconnect(after)
    assert response.status_code == 200
    assert len(calls) == 2
    errors = [r for r in caplog.records if r.name == "django.dispatch"]
    assert len(errors) == 2
    assert "the integration is down" in str(errors[0].exc_info[1])
