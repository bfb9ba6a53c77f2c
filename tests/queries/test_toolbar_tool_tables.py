"""Developer tools' own tables are never counted: the debug toolbar's ``debug_toolbar_*``
(its DatabaseStore, tested with the panel) and django-silk's ``silk_*`` (its middleware
saves each request, response and query inside the request it profiles)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.http import HttpResponse
from django.test import RequestFactory

from django_dbtuning.middleware import QueryCountMiddleware
from django_dbtuning.queries import track_queries

pytestmark = pytest.mark.django_db


@pytest.fixture
def silk_tables(db):
    """Tables named as silk's migrations name them (silk itself is not installed)."""
    with connection.cursor() as cursor:
        cursor.execute('CREATE TABLE "silk_request" ("id" int, "path" text)')
        cursor.execute('CREATE TABLE "silk_sqlquery" ("id" int, "query" text)')
        # A project's own table that merely starts alike is counted.
        cursor.execute('CREATE TABLE "silkworm_farm" ("id" int, "path" text)')


def silk_bookkeeping() -> None:
    """What silk's middleware does per request: a row per query, the request saved."""
    with connection.cursor() as cursor:
        for i in range(5):
            cursor.execute(
                'INSERT INTO "silk_sqlquery" ("id", "query") VALUES (%s, %s)',
                [i, "SELECT 1"],
            )
        for _ in range(3):
            cursor.execute('SELECT "id" FROM "silk_request" WHERE "id" = %s', [1])
        cursor.execute(
            'UPDATE "silk_request" SET "path" = %s WHERE "id" = %s', ["/", 1]
        )


def test_silk_tables_are_not_counted(silk_tables):
    with track_queries() as report:
        silk_bookkeeping()
        with connection.cursor() as cursor:
            cursor.execute('SELECT "id" FROM "silkworm_farm" WHERE "id" = %s', [1])
    assert report.count == 1
    assert report.n_plus_one == [] and report.duplicates == []
    assert [shape for shape, _ in report.most_common()] == [
        'SELECT "id" FROM "silkworm_farm" WHERE "id" = %s'
    ]


def test_silk_tables_are_not_in_a_requests_headers_or_findings(
    silk_tables, dbtuning, caplog
):
    dbtuning(ON_N_PLUS_ONE="raise", ON_DUPLICATE="raise")

    def view(request):
        silk_bookkeeping()
        return HttpResponse("ok")

    response = QueryCountMiddleware(view)(RequestFactory().get("/"))
    assert response["X-DB-Query-Count"] == "0"
    assert not [r for r in caplog.records if hasattr(r, "finding")]
