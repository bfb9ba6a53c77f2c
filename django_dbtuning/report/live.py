"""Live metrics: the report's numbers on the default registry, served at ``/metrics``.

:func:`metrics_view` serves ``/metrics`` with prometheus_client alone (the ``prometheus``
extra), in both modes below. django-prometheus is optional: where its Django range allows
and it is installed, its ``/metrics`` serves the same default registry in single-process
mode, so either route works there.

Single-process servers (runserver, gunicorn with one worker, uvicorn): one collector on
prometheus_client's default registry. Its ``describe()`` returns nothing, so registering
it runs no query; each scrape reads this process' psycopg pools (``get_stats()``, never
``pop_stats()``) and serves the server-side report, cached for ``REPORT_METRICS_TTL``
seconds so frequent scrapes do not re-run the catalog queries.

Multi-process servers (gunicorn with ``PROMETHEUS_MULTIPROC_DIR``): prometheus_client
drops custom collectors there, so each worker mirrors its pool statistics into
multiprocess ``Gauge``/``Counter`` files after every request, and :func:`metrics_view`
merges those files with the cached server-side report (django-prometheus's view serves
the files alone).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import connections
from django.http import HttpRequest, HttpResponse

from django_dbtuning.conf import get_settings
from django_dbtuning.report.exposition import (
    POOL_COUNTERS,
    POOL_GAUGES,
    families,
    pool_families,
)
from django_dbtuning.report.findings import SECTIONS, Report
from django_dbtuning.report.pool import live_stats
from django_dbtuning.report.runner import postgres_aliases, run_report

__all__ = [
    "DbReportCollector",
    "metrics_view",
    "multiprocess_mode",
    "register_collectors",
    "update_multiprocess_pool_metrics",
]

logger = logging.getLogger(__name__)

_registered: DbReportCollector | None = None
_registration_lock = threading.Lock()


def multiprocess_mode() -> bool:
    """Whether prometheus_client runs in multi-process mode (gunicorn workers)."""
    return bool(
        os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        or os.environ.get("prometheus_multiproc_dir")  # noqa: SIM112 (prometheus_client reads it)
    )


def _pooled_aliases() -> list[str]:
    return [
        alias
        for alias in connections.settings
        if (connections.settings[alias].get("OPTIONS") or {}).get("pool")
    ]


class DbReportCollector:
    """A prometheus_client collector for the dbreport metrics.

    Args:
        aliases: aliases to report on; default ``DBTUNING["REPORT_METRICS_ALIASES"]``, or
            every PostgreSQL alias.
        include_pool: serve this process' pool statistics (off where multi-process
            gauges carry them).
    """

    def __init__(
        self, *, aliases: Sequence[str] | None = None, include_pool: bool = True
    ) -> None:
        self.aliases = aliases
        self.include_pool = include_pool
        self._report: Report | None = None
        self._fetched = 0.0
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        # Returning nothing tells the registry not to call collect() at registration:
        # no query may run while Django starts.
        return []

    def collect(self) -> Iterator[Any]:
        if not get_settings().metrics:
            return
        if self.include_pool:
            yield from pool_families(
                {alias: live_stats(alias) for alias in _pooled_aliases()}
            )
        report = self.cached_report()
        if report is not None:
            yield from families(
                report, per_index=get_settings().report_per_index_metrics, pool=False
            )

    def cached_report(self) -> Report | None:
        """The server-side report, refreshed at most every ``REPORT_METRICS_TTL`` s."""
        ttl = get_settings().report_metrics_ttl
        if ttl <= 0:
            return None
        if self._report is not None and time.monotonic() - self._fetched < ttl:
            return self._report
        # One refresh at a time; concurrent scrapes get the previous report meanwhile.
        if not self._lock.acquire(blocking=self._report is None):
            return self._report
        try:
            if self._report is None or time.monotonic() - self._fetched >= ttl:
                self._report = self._run()
                self._fetched = time.monotonic()
        finally:
            self._lock.release()
        return self._report

    def _run(self) -> Report | None:
        aliases = (
            self.aliases or get_settings().report_metrics_aliases or postgres_aliases()
        )
        sections = [s for s in get_settings().report_metrics_sections if s in SECTIONS]
        try:
            return run_report(list(aliases), sections=sections, top=0)
        except Exception:
            logger.exception("dbreport metrics: the report failed")
            return self._report


def register_collectors(registry: Any = None) -> DbReportCollector | None:
    """Register the live collector (once); called from ``AppConfig.ready()``.

    Returns None when prometheus_client is missing or ``DBTUNING["METRICS"]`` is off. In
    multi-process mode it instead hooks ``request_finished`` to mirror the pool statistics
    into multiprocess metrics.
    """
    global _registered
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return None
    if not get_settings().metrics:
        return None
    with _registration_lock:
        if registry is None and _registered is not None:
            return _registered
        collector = DbReportCollector(include_pool=not multiprocess_mode())
        if registry is None:
            if multiprocess_mode():
                from django.core.signals import request_finished

                request_finished.connect(
                    _on_request_finished, dispatch_uid="dbtuning-pool-metrics"
                )
                _registered = collector
                return collector
            REGISTRY.register(collector)
            _registered = collector
        else:
            registry.register(collector)
        return collector


# -- multi-process mode ------------------------------------------------------------------------

_mp_metrics: dict[str, Any] | None = None
_mp_seen: dict[tuple[str, str], float] = {}
_mp_last_update = 0.0
_mp_lock = threading.Lock()
MULTIPROCESS_UPDATE_INTERVAL = 1.0


def _multiprocess_metrics() -> dict[str, Any]:
    global _mp_metrics
    if _mp_metrics is None:
        from prometheus_client import Counter, Gauge

        metrics: dict[str, Any] = {
            key: Gauge(name, doc, ["alias"], multiprocess_mode="livesum")
            for key, (name, doc) in POOL_GAUGES.items()
        }
        metrics["open"] = Gauge(
            "dbtuning_pool_open",
            "Processes whose pool is open.",
            ["alias"],
            multiprocess_mode="livesum",
        )
        metrics["in_use"] = Gauge(
            "dbtuning_pool_in_use_connections",
            "Connections lent out (or being opened).",
            ["alias"],
            multiprocess_mode="livesum",
        )
        for key, (name, doc, _) in POOL_COUNTERS.items():
            metrics[key] = Counter(name, doc, ["alias"])
        _mp_metrics = metrics
    return _mp_metrics


def update_multiprocess_pool_metrics(*, force: bool = False) -> None:
    """Mirror this worker's pool statistics into the multiprocess metric files."""
    global _mp_last_update
    now = time.monotonic()
    if not force and now - _mp_last_update < MULTIPROCESS_UPDATE_INTERVAL:
        return
    with _mp_lock:
        _mp_last_update = now
        metrics = _multiprocess_metrics()
        for alias in _pooled_aliases():
            stats = live_stats(alias)
            if stats is None:
                continue
            metrics["open"].labels(alias).set(1 if stats.get("open") else 0)
            if not stats.get("open"):
                continue
            for key in POOL_GAUGES:
                metrics[key].labels(alias).set(float(stats.get(key, 0)))
            metrics["in_use"].labels(alias).set(
                float(stats.get("pool_size", 0) - stats.get("pool_available", 0))
            )
            # get_stats() counters are cumulative per pool: add what is new since the
            # last look (a counter is summed across processes, dead ones included).
            for key, (_, _, scale) in POOL_COUNTERS.items():
                value = float(stats.get(key, 0)) * scale
                previous = _mp_seen.get((alias, key), 0.0)
                if value > previous:
                    metrics[key].labels(alias).inc(value - previous)
                _mp_seen[(alias, key)] = value


def _on_request_finished(**kwargs: Any) -> None:
    try:
        update_multiprocess_pool_metrics()
    except Exception:  # metrics must never break a request
        logger.exception("dbreport metrics: updating pool metrics failed")


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``/metrics`` from prometheus_client alone, in both modes (``path("metrics",
    metrics_view)``); under ``PROMETHEUS_MULTIPROC_DIR`` it also serves the server-side
    report, which django-prometheus's ``ExportToDjangoView`` would leave out."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
    )

    if multiprocess_mode():
        from prometheus_client import multiprocess

        update_multiprocess_pool_metrics(force=True)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        collector = _registered or DbReportCollector(include_pool=False)
        registry.register(collector)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
