"""Django 6.1 fetch modes next to the detector, from the user's side.

``QuerySet.fetch_mode(models.FETCH_PEERS)`` loads a relation (or a deferred field) for every
row of the queryset on the first access: one query per relation, which is not an N+1 and
must not be reported. ``models.FETCH_RAISE`` makes that first access raise
``FieldFetchBlocked``: it must reach the caller as Django raised it, through
``track_queries``, ``query_budget`` and the middleware, with no finding of ours.
"""

# ruff: noqa: B018  (bare attribute reads are how N+1s happen)

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import django
import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from django_dbtuning import query_budget, track_queries
from tests.testapp.models import Author, Book, Comment, Profile, Publisher

pytestmark = [
    pytest.mark.skipif(
        django.VERSION < (6, 1), reason="QuerySet.fetch_mode() is new in Django 6.1"
    ),
    pytest.mark.django_db,
    pytest.mark.urls(__name__),
]

MIDDLEWARE = "django_dbtuning.middleware.QueryCountMiddleware"
ROWS = 6


def mode(name: str) -> Any:
    return getattr(models, name)  # FETCH_ONE, FETCH_PEERS, FETCH_RAISE (Django 6.1+)


def field_fetch_blocked() -> type[Exception]:
    from django.core.exceptions import FieldFetchBlocked  # Django 6.1+

    return FieldFetchBlocked


# One loop per relation kind that fetch modes cover, each reading the relation per row.


def forward_foreign_key(fetch_mode: Any) -> None:
    for book in Book.objects.fetch_mode(fetch_mode):
        book.author.name


def reverse_one_to_one(fetch_mode: Any) -> None:
    for author in Author.objects.fetch_mode(fetch_mode):
        author.profile.bio


def deferred_field(fetch_mode: Any) -> None:
    for book in Book.objects.only("id").fetch_mode(fetch_mode):
        book.title


def generic_foreign_key(fetch_mode: Any) -> None:
    for comment in Comment.objects.fetch_mode(fetch_mode):
        comment.target


LOOPS: dict[str, Callable[[Any], None]] = {
    "forward_foreign_key": forward_foreign_key,
    "reverse_one_to_one": reverse_one_to_one,
    "deferred_field": deferred_field,
    "generic_foreign_key": generic_foreign_key,
}
RELATIONS = {
    "forward_foreign_key": "testapp.Book.author",
    "reverse_one_to_one": "testapp.Author.profile",
    "deferred_field": "testapp.Book.title",
    "generic_foreign_key": "testapp.Comment.target",
}


def loop_view(request: HttpRequest, loop: str, fetch_mode: str) -> HttpResponse:
    LOOPS[loop](mode(fetch_mode))
    return HttpResponse("ok")


urlpatterns = [path("loop/<str:loop>/<str:fetch_mode>/", loop_view)]


@pytest.fixture
def library() -> None:
    publisher = Publisher.objects.create(name="P")
    for i in range(ROWS):
        author = Author.objects.create(name=f"A{i}", publisher=publisher)
        Profile.objects.create(author=author, bio=f"bio {i}")
        book = Book.objects.create(title=f"B{i}", author=author)
        Comment.objects.create(target=book, text=f"c{i}")
    ContentType.objects.get_for_model(Book)  # warm the cache, as any running site has


@pytest.fixture
def with_middleware(settings: Any, dbtuning: Any) -> None:
    settings.MIDDLEWARE = [MIDDLEWARE, *settings.MIDDLEWARE]
    dbtuning(ON_N_PLUS_ONE="raise", ON_DUPLICATE="raise")


def findings(caplog: pytest.LogCaptureFixture) -> list[Any]:
    return [r.finding for r in caplog.records if hasattr(r, "finding")]


# --- FETCH_ONE, Django's default: the N+1 these modes exist for ----------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_the_default_fetch_mode_is_an_n_plus_one(library, loop):
    with track_queries() as report:
        LOOPS[loop](mode("FETCH_ONE"))
    (finding,) = report.n_plus_one
    assert finding.relation == RELATIONS[loop]
    assert finding.count == ROWS


# --- FETCH_PEERS: one query per relation, nothing to report ------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_peer_fetches_are_silent(library, loop):
    with track_queries() as report:
        LOOPS[loop](mode("FETCH_PEERS"))
    assert report.count == 2  # the rows, then the relation for all of them
    assert report.n_plus_one == []
    assert report.duplicates == []


@pytest.mark.parametrize("loop", LOOPS)
def test_peer_fetches_stay_within_a_query_budget(library, loop):
    with query_budget(max_queries=2, n_plus_one="raise", duplicates="raise"):
        LOOPS[loop](mode("FETCH_PEERS"))


@pytest.mark.parametrize("loop", LOOPS)
def test_peer_fetches_in_a_view_are_silent(
    library, with_middleware, client, caplog, loop
):
    with caplog.at_level(logging.DEBUG, logger="django_dbtuning"):
        response = client.get(f"/loop/{loop}/FETCH_PEERS/")
    assert response.status_code == 200
    assert response["X-DB-Query-Count"] == "2"
    assert findings(caplog) == []


# --- FETCH_RAISE: FieldFetchBlocked passes through untouched ------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_field_fetch_blocked_passes_through_track_queries(library, loop):
    with pytest.raises(field_fetch_blocked()) as excinfo, track_queries() as report:
        LOOPS[loop](mode("FETCH_RAISE"))
    assert excinfo.type is field_fetch_blocked()
    assert report.count == 1  # the rows; the blocked fetch ran nothing
    assert report.n_plus_one == []


@pytest.mark.parametrize("loop", LOOPS)
def test_field_fetch_blocked_passes_through_query_budget(library, loop):
    # A budget of zero is exceeded too: Django's error wins, as any error out of the body.
    with (
        pytest.raises(field_fetch_blocked()) as excinfo,
        query_budget(max_queries=0, n_plus_one="raise"),
    ):
        LOOPS[loop](mode("FETCH_RAISE"))
    assert excinfo.type is field_fetch_blocked()
    assert "blocked" in str(excinfo.value)  # Django's own message, not one of ours


@pytest.mark.parametrize("loop", LOOPS)
def test_field_fetch_blocked_passes_through_the_middleware(
    library, with_middleware, caplog, loop
):
    client = Client(raise_request_exception=False)
    with caplog.at_level(logging.DEBUG, logger="django_dbtuning"):
        response = client.get(f"/loop/{loop}/FETCH_RAISE/")
    assert response.status_code == 500
    assert response.exc_info[0] is field_fetch_blocked()
    assert findings(caplog) == []
    with pytest.raises(field_fetch_blocked()):
        Client().get(f"/loop/{loop}/FETCH_RAISE/")


# --- the fix hint: FETCH_PEERS where it would batch the relation --------------------------

HINTS = {
    "forward_foreign_key": 'add .select_related("author") to the Book queryset, '
    "or .fetch_mode(models.FETCH_PEERS)",
    "reverse_one_to_one": 'add .select_related("profile") to the Author queryset, '
    "or .fetch_mode(models.FETCH_PEERS)",
    "deferred_field": '"title" was deferred: add it to .only() or drop it from .defer() '
    "on the Book queryset, or .fetch_mode(models.FETCH_PEERS)",
    "generic_foreign_key": 'add .prefetch_related("target") to the Comment queryset '
    "(GenericPrefetch to narrow it per content type), "
    "or .fetch_mode(models.FETCH_PEERS)",
}


@pytest.mark.parametrize("loop", LOOPS)
def test_the_hint_offers_fetch_peers(library, loop):
    with track_queries() as report:
        LOOPS[loop](mode("FETCH_ONE"))
    (finding,) = report.n_plus_one
    assert finding.hint == HINTS[loop]


def test_no_fetch_peers_hint_for_rows_that_already_fetch_peers(library):
    # Rows loaded one by one have no peers to batch with: FETCH_PEERS is no fix there.
    with track_queries() as report:
        for pk in Book.objects.values_list("pk", flat=True):
            Book.objects.fetch_mode(mode("FETCH_PEERS")).get(pk=pk).author.name
    relation = next(f for f in report.n_plus_one if f.relation == "testapp.Book.author")
    assert relation.hint == 'add .select_related("author") to the Book queryset'


def test_no_fetch_peers_hint_below_a_prefetch(library):
    # Prefetched rows do not take the root queryset's fetch mode.
    with track_queries() as report:
        for publisher in Publisher.objects.prefetch_related("author_set"):
            for author in publisher.author_set.all():
                author.profile.bio
    (finding,) = report.n_plus_one
    assert finding.relation == "testapp.Author.profile"
    assert "FETCH_PEERS" not in finding.hint


@pytest.mark.parametrize(
    ("relation", "loop"),
    [
        ("testapp.Author.books", lambda qs: [list(a.books.all()) for a in qs(Author)]),
        ("testapp.Book.tags", lambda qs: [list(b.tags.all()) for b in qs(Book)]),
        (
            "testapp.Book.comments",
            lambda qs: [list(b.comments.all()) for b in qs(Book)],
        ),
    ],
)
def test_fetch_peers_leaves_to_many_relations_to_prefetch_related(
    library, relation, loop
):
    with track_queries() as report:
        loop(lambda model: model.objects.fetch_mode(mode("FETCH_PEERS")))
    (finding,) = report.n_plus_one
    assert finding.relation == relation
    assert "prefetch_related(" in finding.hint
    assert "FETCH_PEERS" not in finding.hint
