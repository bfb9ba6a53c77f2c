"""dbreport's live metrics: the default registry, pool gauges, multi-process mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.db import connections
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from django_dbtuning.report import live
from django_dbtuning.report.live import DbReportCollector, register_collectors
from django_dbtuning.report.pool import live_stats
from tests.report.test_report import dbreport, extra_alias


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_registered_on_the_default_registry_without_running_queries(monkeypatch):
    collector = register_collectors()
    assert collector is not None
    assert collector is register_collectors()  # idempotent
    assert collector in REGISTRY._collector_to_names
    assert collector.describe() == []

    def no_queries(*args, **kwargs):
        raise AssertionError("registration must not run the report")

    monkeypatch.setattr(live, "run_report", no_queries)
    registry = CollectorRegistry()
    register_collectors(registry)  # auto_describe: describe(), never collect()


@pytest.mark.django_db
def test_collector_serves_the_report(dbtuning):
    dbtuning(REPORT_METRICS_SECTIONS=["indexes", "connections"])
    registry = CollectorRegistry()
    registry.register(DbReportCollector(aliases=["default"]))
    values = samples(generate_latest(registry).decode())
    assert values[("dbtuning_up", (("alias", "default"),))] == 1
    assert ("dbtuning_indexes", (("alias", "default"),)) in values
    assert not any(name == "dbtuning_tables" for name, _ in values)


@pytest.mark.django_db
def test_collector_caches_between_scrapes(dbtuning, monkeypatch):
    dbtuning(REPORT_METRICS_SECTIONS=["connections"], REPORT_METRICS_TTL=300)
    calls = []
    real = live.run_report

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(live, "run_report", counting)
    collector = DbReportCollector(aliases=["default"])
    registry = CollectorRegistry()
    registry.register(collector)
    generate_latest(registry)
    generate_latest(registry)
    assert len(calls) == 1


def test_ttl_zero_and_metrics_off_run_no_query(dbtuning, monkeypatch):
    def no_queries(*args, **kwargs):
        raise AssertionError("no report expected")

    monkeypatch.setattr(live, "run_report", no_queries)
    dbtuning(REPORT_METRICS_TTL=0)
    registry = CollectorRegistry()
    registry.register(DbReportCollector(aliases=["default"]))
    assert "dbtuning_up" not in generate_latest(registry).decode()
    dbtuning(METRICS=False)
    assert generate_latest(registry).decode() == ""


def test_pool_gauges_from_get_stats(dbtuning, django_db_blocker):
    dbtuning(REPORT_METRICS_TTL=0)
    default = connections.settings["default"]
    options = {**default["OPTIONS"], "pool": {"min_size": 1, "max_size": 3}}
    with extra_alias("pooled", OPTIONS=options, CONN_MAX_AGE=0):
        wrapper_class = type(connections["pooled"])
        # Reading the stats must not create a pool in a process that never connected.
        assert live_stats("pooled") is None
        assert "pooled" not in wrapper_class._connection_pools
        try:
            with django_db_blocker.unblock(), connections["pooled"].cursor() as cursor:
                cursor.execute("SELECT 1")
            connections["pooled"].close()  # back to the pool
            registry = CollectorRegistry()
            registry.register(DbReportCollector(aliases=["pooled"]))
            values = samples(generate_latest(registry).decode())
            label = (("alias", "pooled"),)
            assert values[("dbtuning_pool_open", label)] == 1
            assert values[("dbtuning_pool_max_connections", label)] == 3
            assert values[("dbtuning_pool_min_connections", label)] == 1
            assert values[("dbtuning_pool_requests_total", label)] >= 1
            open_connections = values[("dbtuning_pool_open_connections", label)]
            assert 1 <= open_connections <= 3
            assert (
                values[("dbtuning_pool_in_use_connections", label)] <= open_connections
            )
            # get_stats(), not pop_stats(): the counters survive a scrape.
            again = samples(generate_latest(registry).decode())
            assert again[("dbtuning_pool_requests_total", label)] >= 1

            out, err, code = dbreport("--database", "pooled", "--section", "pool")
            assert code == 0, err
            assert "psycopg pool: min_size 1, max_size 3" in out
            assert "this process: " in out and "requests" in out
        finally:
            connections["pooled"].close_pool()


def test_multiprocess_mode(tmp_path):
    """Under gunicorn's PROMETHEUS_MULTIPROC_DIR the pool gauges go through the files."""
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(
            """
            import django
            django.setup()
            from django.core.signals import request_finished
            from django.db import connections
            from django.test import RequestFactory

            from django_dbtuning.report import live

            default = connections.settings["default"]
            connections.settings["pooled"] = {
                **default,
                "CONN_MAX_AGE": 0,
                "OPTIONS": {**default["OPTIONS"], "pool": {"min_size": 1, "max_size": 2}},
            }
            assert live.multiprocess_mode()
            with connections["pooled"].cursor() as cursor:
                cursor.execute("SELECT 1")
            connections["pooled"].close()
            request_finished.send(sender=None)
            response = live.metrics_view(RequestFactory().get("/metrics"))
            print(response.content.decode())
            connections["pooled"].close_pool()
            """
        )
    )
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    values = samples(result.stdout)
    label = (("alias", "pooled"),)
    assert values[("dbtuning_pool_max_connections", label)] == 2
    assert values[("dbtuning_pool_requests_total", label)] >= 1
    # The cached server-side report is merged into the multiprocess registry.
    assert values[("dbtuning_up", (("alias", "default"),))] == 1
    assert any(metrics_dir.iterdir())

    # manage.py dbreport, another process, sums the workers' pools from the same files.
    report_script = tmp_path / "report.py"
    report_script.write_text(
        textwrap.dedent(
            """
            import django
            django.setup()
            from django.core.management import call_command
            from django.db import connections

            default = connections.settings["default"]
            connections.settings["pooled"] = {
                **default,
                "CONN_MAX_AGE": 0,
                "OPTIONS": {**default["OPTIONS"], "pool": {"min_size": 1, "max_size": 2}},
            }
            call_command("dbreport", "--database", "pooled", "--section", "pool")
            call_command(
                "dbreport", "--database", "pooled", "--section", "pool", "--format", "json"
            )
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(report_script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    text, _, document = result.stdout.partition("\n{")
    assert "workers (PROMETHEUS_MULTIPROC_DIR): 1 processes" in text
    workers = json.loads("{" + document)["databases"]["pooled"]["pool"]["workers"]
    assert workers["max"] == 2
    assert workers["requests"] >= 1
    assert workers["processes"] == 1


@pytest.mark.django_db
def test_metrics_view_single_process(rf, dbtuning):
    dbtuning(REPORT_METRICS_SECTIONS=["connections"])
    from django_dbtuning.report.live import metrics_view

    response = metrics_view(rf.get("/metrics"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    values = samples(response.content.decode())
    assert values[("dbtuning_up", (("alias", "default"),))] == 1


@pytest.mark.django_db
def test_django_prometheus_view_serves_the_same_series_where_installed(rf, dbtuning):
    exports = pytest.importorskip(
        "django_prometheus.exports",
        reason="django-prometheus is optional (2.5 requires Django<6.1)",
    )
    dbtuning(REPORT_METRICS_SECTIONS=["connections"])
    register_collectors()
    response = exports.ExportToDjangoView(rf.get("/metrics"))
    assert response.status_code == 200
    values = samples(response.content.decode())
    assert values[("dbtuning_up", (("alias", "default"),))] == 1
