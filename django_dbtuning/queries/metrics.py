"""Prometheus metrics for requests, created lazily; a no-op without prometheus_client.

``dbtuning_request_queries`` (histogram of statements per request),
``dbtuning_request_db_seconds`` (histogram of the time those statements took) and
``dbtuning_n_plus_one_total`` (counter of N+1 findings), all labelled by ``view`` (the URL
name, never the raw path) and ``alias``, on prometheus_client's default registry, which
``/metrics`` serves (``django_dbtuning.report.live.metrics_view``, or django-prometheus's
view where installed); tests pass their own ``CollectorRegistry`` to :func:`get_metrics`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from django_dbtuning.queries.units import QueryReport

QUERY_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
# Seconds of database time per request: from a cached lookup to a report's worth of work.
DB_SECONDS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class RequestMetrics(NamedTuple):
    queries: Any
    n_plus_one: Any
    db_seconds: Any


_default: RequestMetrics | None = None
_unavailable = False


def get_metrics(registry: Any = None) -> RequestMetrics | None:
    """The collectors (registered on first use), or None without prometheus_client."""
    global _default, _unavailable
    if registry is None and _default is not None:
        return _default
    if _unavailable:
        return None
    try:
        from prometheus_client import REGISTRY, Counter, Histogram
    except ImportError:
        _unavailable = True
        return None
    target = REGISTRY if registry is None else registry
    metrics = RequestMetrics(
        queries=Histogram(
            "dbtuning_request_queries",
            "SQL statements executed per request.",
            ["view", "alias"],
            buckets=QUERY_BUCKETS,
            registry=target,
        ),
        n_plus_one=Counter(
            "dbtuning_n_plus_one",
            "N+1 query patterns detected in requests.",
            ["view", "alias", "kind"],
            registry=target,
        ),
        db_seconds=Histogram(
            "dbtuning_request_db_seconds",
            "Time spent executing SQL statements per request, in seconds.",
            ["view", "alias"],
            buckets=DB_SECONDS_BUCKETS,
            registry=target,
        ),
    )
    if registry is None:
        _default = metrics
    return metrics


def observe_request(
    view: str | None, report: QueryReport, *, registry: Any = None
) -> None:
    """Record one request: its statements and their time per alias, its N+1 findings."""
    metrics = get_metrics(registry)
    if metrics is None:
        return
    label = view or "<unresolved>"
    for alias, count in report.by_alias().items():
        metrics.queries.labels(view=label, alias=alias).observe(count)
    for alias, seconds in report.duration_by_alias().items():
        metrics.db_seconds.labels(view=label, alias=alias).observe(seconds)
    for finding in report.n_plus_one:
        metrics.n_plus_one.labels(
            view=label, alias=finding.alias, kind=finding.kind
        ).inc()
