"""Statements and database time per alias (the request metrics' alias label) add up.

Statements no group holds (inside ``allow_n_plus_one()``, or of kind "other") used to be
left out of ``by_alias()`` / ``duration_by_alias()`` with two aliases, and with one
grouped alias the whole count went to it, whatever alias the others ran on.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.db import connection, connections

from django_dbtuning import allow_n_plus_one, track_queries
from django_dbtuning.queries import metrics
from tests.testapp.models import Publisher

pytestmark = pytest.mark.django_db(databases=["default", "other"])
DEFAULT_ONLY = pytest.mark.django_db  # no connection to "other" left open at the end


@contextmanager
def other():
    try:
        yield connections["other"]
    finally:
        # A mirror alias opens a connection of its own: the test database is dropped at
        # the end of the session, so nothing may stay connected to it (closed in the
        # test's body, as in test_metrics: a fixture's teardown comes too late).
        connections["other"].close()


def test_allowed_statements_keep_their_alias():
    with other(), track_queries() as report:
        with allow_n_plus_one():
            for _ in range(5):
                list(Publisher.objects.all())
        list(Publisher.objects.using("other").all())
    assert report.by_alias() == {"default": 5, "other": 1}  # was {"other": 6}
    seconds = report.duration_by_alias()
    assert set(seconds) == {"default", "other"}
    assert sum(seconds.values()) == pytest.approx(report.duration)


def test_every_statement_is_counted_once():
    with other() as connection_other, track_queries() as report:
        with allow_n_plus_one():
            for _ in range(5):
                list(Publisher.objects.all())
        list(Publisher.objects.using("other").all())
        list(Publisher.objects.filter(name="y"))
        with connection_other.cursor() as cursor:
            cursor.execute("DO $$ BEGIN PERFORM 1; END $$")  # kind "other": not grouped
    assert report.count == 8
    assert report.by_alias() == {
        "default": 6,
        "other": 2,
    }  # was {"default": 1, "other": 1}
    assert sum(report.duration_by_alias().values()) == pytest.approx(report.duration)


def test_the_histograms_observe_each_alias_once():
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    with other() as connection_other, track_queries() as report:
        with allow_n_plus_one():
            list(Publisher.objects.all())
            list(Publisher.objects.all())
        with connection_other.cursor() as cursor:
            cursor.execute("SELECT 1")
    metrics.observe_request("v", report, registry=registry)
    sample = registry.get_sample_value
    for alias, count in (("default", 2), ("other", 1)):
        labels = {"view": "v", "alias": alias}
        assert sample("dbtuning_request_queries_sum", labels) == count
        assert sample("dbtuning_request_db_seconds_count", labels) == 1


@DEFAULT_ONLY
def test_no_statement_is_zero_on_default():
    with track_queries() as report:
        pass
    assert report.by_alias() == {"default": 0}
    assert report.duration_by_alias() == {"default": 0.0}
    assert connection.alias == "default"
