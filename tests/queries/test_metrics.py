"""Prometheus request metrics: a fresh registry per test, deltas only."""

# ruff: noqa: B018  (bare attribute reads are how N+1s happen)

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from django_dbtuning import track_queries
from django_dbtuning.queries import metrics
from tests.testapp.models import Author, Book, Publisher

pytestmark = pytest.mark.django_db


def test_request_metrics_by_view_and_alias():
    registry = CollectorRegistry()
    publisher = Publisher.objects.create(name="P")
    for i in range(3):
        Book.objects.create(
            title=f"B{i}",
            author=Author.objects.create(name=f"A{i}", publisher=publisher),
        )
    with track_queries() as report:
        for book in Book.objects.all():
            book.author.name
    metrics.observe_request("books-naive", report, registry=registry)
    labels = {"view": "books-naive", "alias": "default"}
    assert registry.get_sample_value("dbtuning_request_queries_count", labels) == 1
    assert registry.get_sample_value("dbtuning_request_queries_sum", labels) == 4
    assert (
        registry.get_sample_value(
            "dbtuning_n_plus_one_total", {**labels, "kind": "n_plus_one"}
        )
        == 1
    )


def test_metrics_are_a_no_op_without_prometheus_client(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_prometheus(name, *args, **kwargs):
        if name.startswith("prometheus_client"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_prometheus)
    monkeypatch.setattr(metrics, "_unavailable", False)
    assert metrics.get_metrics(CollectorRegistry()) is None
    monkeypatch.setattr(metrics, "_unavailable", False)


def test_middleware_records_to_the_default_registry(client, settings):
    from prometheus_client import REGISTRY

    settings.ROOT_URLCONF = "tests.testapp.urls"
    settings.MIDDLEWARE = ["django_dbtuning.middleware.QueryCountMiddleware"]
    labels = {"view": "authors", "alias": "default"}
    before = REGISTRY.get_sample_value("dbtuning_request_queries_count", labels) or 0
    client.get("/authors/")
    assert (
        REGISTRY.get_sample_value("dbtuning_request_queries_count", labels)
        == before + 1
    )


def test_request_db_seconds_observes_the_views_database_time():
    registry = CollectorRegistry()
    Publisher.objects.create(name="P")
    with track_queries() as report:
        list(Publisher.objects.all())
        Publisher.objects.count()
    metrics.observe_request("publishers", report, registry=registry)
    labels = {"view": "publishers", "alias": "default"}
    assert registry.get_sample_value("dbtuning_request_db_seconds_count", labels) == 1
    assert (
        registry.get_sample_value("dbtuning_request_db_seconds_sum", labels)
        == report.duration
        > 0
    )
    # Same labels and bucket style as the query-count histogram: one row per bucket.
    assert registry.get_sample_value(
        "dbtuning_request_db_seconds_bucket", {**labels, "le": "+Inf"}
    ) == (1)


@pytest.mark.django_db(databases=["default", "other"])
def test_request_db_seconds_per_alias():
    registry = CollectorRegistry()
    from django.db import connections

    with track_queries() as report:
        Publisher.objects.count()
        try:
            Publisher.objects.using("other").count()
        finally:
            # A mirror alias opens a connection of its own: the test database is dropped
            # at the end of the session, so nothing may stay connected to it.
            connections["other"].close()
    metrics.observe_request("two-aliases", report, registry=registry)
    seconds = report.duration_by_alias()
    assert set(seconds) == {"default", "other"}
    for alias, value in seconds.items():
        labels = {"view": "two-aliases", "alias": alias}
        assert registry.get_sample_value("dbtuning_request_db_seconds_sum", labels) == (
            value
        )
    assert sum(seconds.values()) == pytest.approx(report.duration)


def test_middleware_records_db_seconds_per_view(client, settings):
    from prometheus_client import REGISTRY

    settings.ROOT_URLCONF = "tests.testapp.urls"
    settings.MIDDLEWARE = ["django_dbtuning.middleware.QueryCountMiddleware"]
    labels = {"view": "authors", "alias": "default"}
    count_before = (
        REGISTRY.get_sample_value("dbtuning_request_db_seconds_count", labels) or 0
    )
    sum_before = REGISTRY.get_sample_value("dbtuning_request_db_seconds_sum", labels)
    response = client.get("/authors/")
    assert (
        REGISTRY.get_sample_value("dbtuning_request_db_seconds_count", labels)
        == count_before + 1
    )
    elapsed_ms = float(response["X-DB-Query-Time-Ms"])
    added = REGISTRY.get_sample_value("dbtuning_request_db_seconds_sum", labels) - (
        sum_before or 0
    )
    assert added > 0
    assert round(added * 1000, 1) == pytest.approx(elapsed_ms, abs=0.051)
