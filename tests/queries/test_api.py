"""track_queries(), query_budget() and allow_n_plus_one() outside requests."""

# ruff: noqa: B018, SIM117  (bare attribute reads are how N+1s happen)

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.db import (
    DatabaseError,
    ProgrammingError,
    connection,
    connections,
    transaction,
)

from django_dbtuning import (
    NPlusOneError,
    NPlusOneWarning,
    QueryBudgetExceeded,
    query_budget,
    track_queries,
)
from tests.testapp.models import Author, Book, Publisher

pytestmark = pytest.mark.django_db


@pytest.fixture
def books():
    publisher = Publisher.objects.create(name="P")
    authors = [
        Author.objects.create(name=f"A{i}", publisher=publisher) for i in range(4)
    ]
    return [Book.objects.create(title=f"B{i}", author=a) for i, a in enumerate(authors)]


def naive_loop():
    for book in Book.objects.all():
        book.author.name


def test_report_counts_times_and_lists_queries(books):
    with track_queries() as report:
        list(Author.objects.all())
        assert report.count == 1  # live inside the block
        Book.objects.filter(title="B1").exists()
    assert report.count == 2
    assert report.duration > 0
    assert [q.alias for q in report.queries] == ["default", "default"]
    assert report.queries[1].fingerprint.startswith("SELECT %s AS")
    assert all(q.parameters is None for q in report.queries)
    assert "2 queries" in repr(report)


def test_parameters_are_kept_only_when_asked(books, dbtuning):
    dbtuning(LOG_PARAMETERS=True)
    with track_queries() as report:
        Book.objects.filter(title="B1").exists()
    assert report.queries[0].parameters[-1] == "B1"


def test_nested_blocks_both_see_inner_queries(books):
    with track_queries() as outer:
        list(Author.objects.all())
        with track_queries() as inner:
            naive_loop()
    assert inner.count == 5
    assert outer.count == 6
    assert [f.relation for f in inner.n_plus_one] == ["testapp.Book.author"]
    assert [f.relation for f in outer.n_plus_one] == ["testapp.Book.author"]


def test_queries_outside_any_block_are_not_tracked(books):
    with track_queries() as report:
        pass
    naive_loop()
    assert report.count == 0


def test_async_with(books):
    async def run():
        async with track_queries() as report:
            await Author.objects.acount()
        return report

    assert async_to_sync(run)().count == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"threshold": 1}, ValueError, "threshold must be an int >= 2, not 1"),
        ({"threshold": "3"}, ValueError, "threshold must be an int >= 2, not '3'"),
        ({"threshold": True}, ValueError, "threshold must be an int >= 2"),
        ({"using": 3}, TypeError, "using must be an alias or a list of aliases, not 3"),
    ],
)
def test_track_queries_rejects_wrong_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        track_queries(**kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((-1,), {}, "max_queries must be an int >= 0 or None, not -1"),
        (("10",), {}, "max_queries must be an int >= 0 or None, not '10'"),
        (
            (None, "explode"),
            {},
            "n_plus_one must be 'warn', 'log', 'raise' or 'ignore', not 'explode'",
        ),
        ((None,), {"duplicates": 1}, "duplicates must be"),
    ],
)
def test_query_budget_rejects_wrong_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        query_budget(*args, **kwargs)


def test_query_budget_context_manager(books):
    with query_budget(max_queries=5):
        list(Book.objects.select_related("author"))
    with pytest.raises(
        QueryBudgetExceeded, match="3 queries, over the budget of 2"
    ) as info:
        with query_budget(max_queries=2, n_plus_one="ignore"):
            for model in (Author, Book, Publisher):
                model.objects.count()
    assert (info.value.count, info.value.budget) == (3, 2)


def test_query_budget_raises_on_n_plus_one_by_default(books):
    with pytest.raises(
        NPlusOneError, match=r"testapp\.Book\.author ran 4 times"
    ) as info:
        with query_budget():
            naive_loop()
    assert info.value.findings[0].callsite.startswith("tests/queries/test_api.py:")


def test_query_budget_warn_and_log(books, caplog):
    with pytest.warns(NPlusOneWarning, match="select_related"):
        with query_budget(n_plus_one="warn"):
            naive_loop()
    with query_budget(n_plus_one="log"):
        naive_loop()
    assert any(getattr(r, "finding", None) for r in caplog.records)


def test_query_budget_decorator_sync_and_async(books):
    @query_budget(max_queries=1)
    def one_query():
        return Author.objects.count()

    @query_budget(max_queries=1)
    def two_queries():
        Author.objects.count()
        return Book.objects.count()

    @query_budget()
    async def async_naive():
        async for book in Book.objects.all():
            await Author.objects.aget(pk=book.author_id)

    assert one_query() == 4
    assert one_query() == 4  # a fresh budget per call
    with pytest.raises(
        QueryBudgetExceeded,
        match="in test_query_budget_decorator_sync_and_async.<locals>.two_queries",
    ):
        two_queries()
    assert one_query.__name__ == "one_query"
    with pytest.raises(NPlusOneError):
        async_to_sync(async_naive)()


def test_query_budget_does_not_mask_the_blocks_own_error(books):
    with pytest.raises(ZeroDivisionError), query_budget(max_queries=0):
        Author.objects.count()
        1 / 0


def test_failing_sql_is_counted_and_the_error_is_unchanged(books):
    with track_queries() as report:
        with (
            pytest.raises(ProgrammingError, match="no_such_table"),
            transaction.atomic(),
        ):
            with connection.cursor() as cursor:
                cursor.execute("SELECT * FROM no_such_table WHERE id = %s", [1])
    assert report.count == 1
    assert report.queries[0].fingerprint == "SELECT * FROM no_such_table WHERE id = %s"


def test_missing_privileges_surface_as_the_database_error(books):
    with connection.cursor() as cursor:
        cursor.execute("CREATE ROLE dbtuning_no_select NOLOGIN")
    with track_queries() as report:
        with (
            pytest.raises(ProgrammingError, match="permission denied"),
            transaction.atomic(),
        ):
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL ROLE dbtuning_no_select")
                list(Book.objects.all())
    assert report.count == 1  # the SELECT; SET LOCAL is plumbing
    assert Book.objects.count() == 4  # and the data is as it was


def test_unreachable_database_raises_and_tracking_survives(books, settings):
    broken = connections.create_connection("default")
    broken.settings_dict = {**broken.settings_dict, "HOST": "127.0.0.1", "PORT": "1"}
    with track_queries() as report:
        with pytest.raises(DatabaseError):
            broken.ensure_connection()
        Author.objects.count()
    assert report.count == 1
