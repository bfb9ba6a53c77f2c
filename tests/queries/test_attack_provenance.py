"""Attribution never evaluates a lazy object the code holds (its factory is user code).

``isinstance()`` reads ``__class__``, which a ``SimpleLazyObject`` answers by evaluating
itself: the hint's search for an admin form ran a lazy object's factory a second time
(its queries and side effects included).
"""

# ruff: noqa: F811  (the catalogue's library fixture is imported)

from __future__ import annotations

import copy

import pytest
from django.contrib.auth.models import User
from django.utils.functional import SimpleLazyObject

from django_dbtuning import track_queries
from tests.queries.test_nplusone import library  # noqa: F401  (the catalogue's data)
from tests.testapp.models import Book

pytestmark = pytest.mark.django_db

EVALUATED: list[str] = []


def lazy_context(request):
    """A context processor offering a lazy value the admin's templates never read."""
    return {"lazy_extra": SimpleLazyObject(lambda: EVALUATED.append("extra") or "x")}


def test_an_n_plus_one_inside_a_lazy_objects_factory_runs_it_once(three_books):
    calls = []

    def factory():
        calls.append(1)
        return [book.author.name for book in Book.objects.all()]

    lazy = SimpleLazyObject(factory)
    with track_queries() as report:
        assert len(lazy) == 3
    assert len(calls) == 1  # was 2
    assert report.count == 4  # was 8: the second run's queries counted too
    [finding] = report.n_plus_one
    assert finding.relation == "testapp.Book.author"


@pytest.mark.urls("tests.queries.admin_forms")
def test_a_lazy_context_value_is_not_evaluated_on_an_admin_form(
    client, library, settings
):
    templates = copy.deepcopy(settings.TEMPLATES)
    templates[0]["OPTIONS"]["context_processors"].append(f"{__name__}.lazy_context")
    settings.TEMPLATES = templates
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    book = Book.objects.order_by("pk").first()
    EVALUATED.clear()
    with track_queries() as report:
        response = client.get(f"/admin/testapp/book/{book.pk}/change/")
    assert response.status_code == 200
    assert "testapp.Author.publisher" in {f.relation for f in report.n_plus_one}
    assert EVALUATED == []
