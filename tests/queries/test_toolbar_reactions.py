"""The panel and the middleware's reaction on one request: one evaluation of the findings
serves both, and "raise" does not hide the page the toolbar shows them on."""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from django_dbtuning import NPlusOneError
from django_dbtuning.queries import n_plus_one_detected
from tests.queries import test_toolbar
from tests.queries.test_toolbar import (
    QUERY_COUNT,
    TOOLBAR,
    last_request_id,
    panel_content,
    subtitle,
)

# The panel tests' fixtures: the toolbar installed (autouse) and four books.
toolbar = test_toolbar.toolbar
books = test_toolbar.books

pytestmark = pytest.mark.urls("tests.queries.toolbar_urls")

RECORDING = "tests.queries.toolbar_urls.RecordingPanel"
LATE = "tests.queries.toolbar_urls.LateQueries"


@pytest.fixture
def detected():
    """Every finding sent as ``n_plus_one_detected``, in order."""
    sent = []

    def receiver(sender, finding, request, **kwargs):
        sent.append(finding)

    n_plus_one_detected.connect(receiver)
    yield sent
    n_plus_one_detected.disconnect(receiver)


@pytest.fixture
def recording(settings):
    # Imported once the toolbar app is installed (its models need it).
    from tests.queries.toolbar_urls import RecordingPanel

    settings.DEBUG_TOOLBAR_PANELS = [RECORDING]
    RecordingPanel.seen.clear()
    yield RecordingPanel.seen
    RecordingPanel.seen.clear()


def recorded_content(client) -> str:
    response = client.get(
        "/__debug__/render_panel/",
        {"request_id": last_request_id(), "panel_id": "RecordingPanel"},
    )
    assert response.status_code == 200
    return response.json()["content"]


@pytest.mark.parametrize("path", ["/books/naive/", "/books/page/"])
def test_the_panel_and_the_middleware_share_one_evaluation(
    client, books, recording, detected, path
):
    client.get(path)
    # One signal per finding, and the very finding objects the panel read: the findings
    # were evaluated once, while the panel built its stats, and the reaction reused them.
    assert len(detected) == 1
    assert len(recording) == 1
    assert detected[0] is recording[0]
    finding = detected[0]
    assert finding.relation == "testapp.Book.author" and finding.count == 4
    content = recorded_content(client)
    assert f"<code>{finding.relation}</code>" in content
    assert f"<td>{finding.count}</td>" in content


def test_toolbar_outside_the_middleware_shares_it_too(
    client, books, recording, detected, settings
):
    settings.MIDDLEWARE = [TOOLBAR, QUERY_COUNT, *settings.MIDDLEWARE[2:]]
    client.get("/books/naive/")
    assert len(detected) == 1 and detected[0] is recording[0]


def test_queries_after_the_panel_are_judged_again(
    client, books, recording, detected, settings
):
    """A middleware between ours and the toolbar runs an N+1 after the panel: the
    reaction sees it, the panel showed what ran before."""
    settings.MIDDLEWARE = [QUERY_COUNT, LATE, TOOLBAR, *settings.MIDDLEWARE[2:]]
    client.get("/books/fixed/")
    assert recording == []
    assert [f.relation for f in detected] == ["testapp.Book.author"]
    assert "No N+1 and no duplicate query in this request." in recorded_content(client)


def test_raise_on_a_page_with_the_toolbar_logs_instead(client, books, dbtuning, caplog):
    dbtuning(ON_N_PLUS_ONE="raise")
    with caplog.at_level(logging.WARNING, logger="django_dbtuning.queries"):
        response = client.get("/books/page/")
    assert response.status_code == 200
    assert 'id="djDebug"' in response.content.decode()
    request_id = last_request_id()
    assert subtitle(request_id) == "N+1: 1 · dup: 0"
    content = panel_content(client, request_id)
    assert '<code>ON_N_PLUS_ONE = "raise"</code>: not raised' in content
    notice, finding = [r for r in caplog.records if r.name == "django_dbtuning.queries"]
    assert "not raised (ON_N_PLUS_ONE = 'raise')" in notice.getMessage()
    assert "GET /books/page/" in notice.getMessage()
    assert notice.not_raised == ["ON_N_PLUS_ONE"]
    assert finding.finding.relation == "testapp.Book.author"


def test_raise_still_raises_where_the_toolbar_is_not_on_the_page(
    client, books, dbtuning
):
    dbtuning(ON_N_PLUS_ONE="raise")
    # A JSON response: the toolbar records it but shows it on no page.
    with pytest.raises(NPlusOneError, match="testapp.Book.author") as raised:
        client.get("/books/naive/")
    message = str(raised.value)
    assert "ran 4 times" in message and "books_naive" in message
    assert 'fix: add .select_related("author") to the Book queryset' in message
    assert 'FROM "testapp_author"' in message


def test_raise_still_raises_without_debug(client, books, dbtuning, settings):
    settings.DEBUG = False  # a SHOW_TOOLBAR_CALLBACK that shows it anyway (the tests')
    dbtuning(ON_N_PLUS_ONE="raise")
    with pytest.raises(NPlusOneError):
        client.get("/books/page/")


def test_a_disabled_panel_does_not_spare_the_raise(client, books, dbtuning):
    dbtuning(ON_N_PLUS_ONE="raise")
    client.cookies["djdtQueriesPanel"] = "off"  # unticked in the toolbar
    with pytest.raises(NPlusOneError):
        client.get("/books/page/")


def test_toolbar_outside_shows_the_error_page_with_the_panel(books, dbtuning, settings):
    """With the toolbar outside our middleware, the error is raised inside the toolbar:
    Django's debug page is the page, and the toolbar (with the panel) is on it."""
    settings.MIDDLEWARE = [TOOLBAR, QUERY_COUNT, *settings.MIDDLEWARE[2:]]
    dbtuning(ON_N_PLUS_ONE="raise")
    client = Client(raise_request_exception=False)
    response = client.get("/books/page/")
    assert response.status_code == 500
    page = response.content.decode()
    assert "NPlusOneError" in page and 'id="djDebug"' in page
    request_id = last_request_id()
    assert subtitle(request_id) == "N+1: 1 · dup: 0"
    assert "not raised" not in panel_content(client, request_id)


def test_over_the_budget_on_a_toolbar_page(client, books, dbtuning, caplog):
    dbtuning(QUERY_BUDGET=2, ON_QUERY_BUDGET="raise", ON_N_PLUS_ONE="raise")
    with caplog.at_level(logging.WARNING, logger="django_dbtuning.queries"):
        response = client.get("/books/page/")
    assert response.status_code == 200
    content = panel_content(client, last_request_id())
    assert "Over the query budget of 2" in content
    assert (
        '<code>ON_N_PLUS_ONE = "raise"</code>, '
        '<code>ON_QUERY_BUDGET = "raise"</code>: not raised'
    ) in content
    budget = [r for r in caplog.records if hasattr(r, "query_budget")]
    assert budget and budget[0].query_count == 5


def test_log_reactions_are_left_alone(client, books, caplog):
    with caplog.at_level(logging.WARNING, logger="django_dbtuning.queries"):
        client.get("/books/page/")
    assert not [r for r in caplog.records if hasattr(r, "not_raised")]
    assert "not raised" not in panel_content(client, last_request_id())


@pytest.mark.django_db(transaction=True)
def test_one_evaluation_on_an_async_view(async_client, books, recording, detected):
    async def get():
        return await async_client.get("/async/naive/")

    async_to_sync(get)()
    assert len(detected) == 1 and detected[0] is recording[0]


def test_a_finding_the_panel_did_not_show_still_raises(
    client, books, dbtuning, settings
):
    """An N+1 run after the panel (a middleware between ours and the toolbar) is not on
    the page: "raise" raises for it, whatever the panel showed."""
    settings.MIDDLEWARE = [QUERY_COUNT, LATE, TOOLBAR, *settings.MIDDLEWARE[2:]]
    dbtuning(ON_N_PLUS_ONE="raise")
    with pytest.raises(NPlusOneError, match="2 N\\+1 finding") as raised:
        client.get("/books/page/")
    assert "in __call__" in str(raised.value)  # LateQueries.__call__: not on the page


def test_queries_after_the_panel_without_new_findings_are_still_spared(
    client, books, dbtuning, settings
):
    """The same N+1 only counted again later (a session saved, a log written) changes
    nothing: the page shows it."""
    settings.MIDDLEWARE = [
        QUERY_COUNT,
        "tests.queries.toolbar_urls.LateCount",
        TOOLBAR,
        *settings.MIDDLEWARE[2:],
    ]
    dbtuning(ON_N_PLUS_ONE="raise")
    response = client.get("/books/page/")
    assert response.status_code == 200
    assert int(response["X-DB-Query-Count"]) == 6
