"""Prometheus metrics for requests, created lazily; a no-op without prometheus_client.

``dbtuning_request_queries`` (histogram of statements per request) and
``dbtuning_n_plus_one_total`` (counter of N+1 findings), both labelled by ``view`` (the URL
name, never the raw path) and ``alias``, on prometheus_client's default registry, which
``/metrics`` serves (``django_dbtuning.report.live.metrics_view``, or django-prometheus's
view where installed); tests pass their own ``CollectorRegistry`` to :func:`get_metrics`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from django_dbtuning.queries.units import QueryReport

QUERY_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class RequestMetrics(NamedTuple):
    queries: Any
    n_plus_one: Any


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
    )
    if registry is None:
        _default = metrics
    return metrics


def observe_request(
    view: str | None, report: QueryReport, *, registry: Any = None
) -> None:
    """Record one request: its statements per alias and its N+1 findings."""
    metrics = get_metrics(registry)
    if metrics is None:
        return
    label = view or "<unresolved>"
    for alias, count in report.by_alias().items():
        metrics.queries.labels(view=label, alias=alias).observe(count)
    for finding in report.n_plus_one:
        metrics.n_plus_one.labels(
            view=label, alias=finding.alias, kind=finding.kind
        ).inc()
