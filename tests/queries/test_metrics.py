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
