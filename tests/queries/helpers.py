"""Small query-running helpers shared by the recorder's concurrency and generator tests."""

from __future__ import annotations

from django.db import connection

from django_dbtuning.queries.recorder import current_allowance, current_unit

YIELD_WARNING = r"open across a `yield`"


def queries(n: int) -> None:
    with connection.cursor() as cursor:
        for _ in range(n):
            cursor.execute("SELECT 1")


def raw_n_plus_one() -> None:
    """Four executions of one shape from one line: an N+1 without any rows."""
    with connection.cursor() as cursor:
        for i in range(4):
            cursor.execute("SELECT %s::int", [i])


def nothing_current() -> bool:
    """No unit of work and no allowance is current in this context."""
    return current_unit.get() is None and current_allowance.get() is None


# One scenario per kind of problem, run the same way from every entry point
# (tests/queries/test_reactions.py). Each needs the three books of its tests' fixture.


def n_plus_one_scenario() -> None:
    from tests.testapp.models import Book

    for book in Book.objects.all():  # three books, three authors: a query each
        book.author.name  # noqa: B018


def duplicates_scenario() -> None:
    from tests.testapp.models import Publisher

    pk = Publisher.objects.values_list("pk", flat=True)[0]
    for _ in range(3):
        Publisher.objects.get(pk=pk)


def budget_scenario() -> None:
    """Three distinct statements."""
    from tests.testapp.models import Author, Book, Publisher

    for model in (Author, Book, Publisher):
        model.objects.count()


SCENARIOS = {
    "n_plus_one": n_plus_one_scenario,
    "duplicates": duplicates_scenario,
    "budget": budget_scenario,
}
