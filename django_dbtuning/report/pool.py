"""Pool: each alias' pool configuration, the sizing arithmetic redone against the server's
live ``max_connections``, and this process' psycopg_pool statistics.

The report runs in its own process, so it sees the web workers' pools only through the
live metrics (:mod:`django_dbtuning.report.live`); here it shows the configuration and, when
called in-process (a view, a shell, the metrics collector), the pool's ``get_stats()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from django.db import connections

from django_dbtuning.pool import Deployment, server_budget
from django_dbtuning.pool.sizing import size_for
from django_dbtuning.report.probe import Probe

__all__ = ["collect", "configuration", "live_stats"]

# psycopg_pool's defaults when OPTIONS["pool"] is True or leaves a key out.
PSYCOPG_DEFAULTS: dict[str, Any] = {
    "min_size": 4,
    "max_size": None,
    "timeout": 30.0,
    "max_idle": 600.0,
    "max_lifetime": 3600.0,
    "max_waiting": 0,
}


def configuration(settings_dict: Mapping[str, Any]) -> dict[str, Any]:
    """How an alias connects: pool options or persistent connections, as configured."""
    options = settings_dict.get("OPTIONS") or {}
    pool = options.get("pool")
    config: dict[str, Any] = {
        "pooled": bool(pool),
        "conn_max_age": settings_dict.get("CONN_MAX_AGE", 0),
        "health_checks": bool(settings_dict.get("CONN_HEALTH_CHECKS", False)),
        "pgbouncer": bool(
            getattr(Deployment.from_entry(settings_dict), "pgbouncer", False)
            or settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
        ),
    }
    if pool:
        values = dict(PSYCOPG_DEFAULTS)
        if isinstance(pool, Mapping):
            values.update({k: v for k, v in pool.items() if k in PSYCOPG_DEFAULTS})
        if values["max_size"] is None:
            values["max_size"] = values["min_size"]
        config.update(values)
    return config


def live_stats(alias: str) -> dict[str, Any] | None:
    """This process' pool statistics for ``alias``, or None when it has no open pool.

    Reads Django's per-process pool registry directly: touching ``connection.pool`` would
    create (and later open) a pool in a process that never used the database.
    """
    wrapper_class = type(connections[alias])
    pools: Mapping[str, Any] = getattr(wrapper_class, "_connection_pools", {}) or {}
    pool = pools.get(alias)
    if pool is None:
        return None
    if getattr(pool, "closed", False):
        return {"open": False}
    # get_stats(), never pop_stats(): popping resets the counters for every other reader.
    stats = dict(pool.get_stats())
    stats["open"] = True
    return stats


# Multiprocess metric name -> key in the "workers" summary.
WORKER_METRICS = {
    "dbtuning_pool_open": "processes",
    "dbtuning_pool_open_connections": "open",
    "dbtuning_pool_in_use_connections": "in_use",
    "dbtuning_pool_idle_connections": "idle",
    "dbtuning_pool_waiting_requests": "waiting",
    "dbtuning_pool_max_connections": "max",
    "dbtuning_pool_requests_total": "requests",
    "dbtuning_pool_requests_queued_total": "queued",
    "dbtuning_pool_request_wait_seconds_total": "wait_seconds",
    "dbtuning_pool_request_errors_total": "errors",
    "dbtuning_pool_connect_errors_total": "connect_errors",
}


def workers_stats(alias: str) -> dict[str, float] | None:
    """The web workers' pool statistics for ``alias``, summed, when they run under
    gunicorn with ``PROMETHEUS_MULTIPROC_DIR`` (read from the multiprocess files)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(
        "prometheus_multiproc_dir"  # noqa: SIM112 (prometheus_client reads it)
    )
    if not path or not os.path.isdir(path):
        return None
    try:
        from prometheus_client import multiprocess
    except ImportError:  # pragma: no cover - the prometheus extra is not installed
        return None
    collector = multiprocess.MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]
    found: dict[str, float] = {}
    for metric in collector.collect():  # type: ignore[no-untyped-call]
        for sample in metric.samples:
            key = WORKER_METRICS.get(sample.name)
            if key is not None and sample.labels.get("alias") == alias:
                found[key] = found.get(key, 0.0) + float(sample.value)
    return found or None


def collect(probe: Probe) -> None:
    alias = probe.alias
    settings_dict = connections.settings[alias]
    section = probe.section("pool")
    config = configuration(settings_dict)
    deployment = Deployment.from_entry(settings_dict)
    section["configuration"] = config
    section["deployment"] = (
        {
            key: value
            for key, value in deployment.as_dict().items()
            if key not in ("rationale", "pgbouncer")
        }
        if deployment is not None
        else None
    )
    stats = live_stats(alias)
    section["live"] = stats
    workers = workers_stats(alias)
    section["workers"] = workers
    live_max = probe.server.get("max_connections")
    reserved = probe.server.get("reserved_connections") or 0
    section["server_max_connections"] = live_max
    section["server_reserved_connections"] = reserved
    if not live_max:
        return
    per_process = config["max_size"] if config["pooled"] else 1
    if deployment is not None:
        _with_deployment(probe, settings_dict, deployment, int(live_max), int(reserved))
    elif config["pooled"]:
        usable = server_budget(int(live_max), int(reserved))
        section["arithmetic"] = (
            f"max_size {per_process} per process; the server's {usable} usable "
            f"connections ({live_max} max_connections - {reserved} reserved) fit "
            f"{usable // max(1, per_process)} such processes at 100%, "
            f"{int(usable * 0.8) // max(1, per_process)} at the usual 80% headroom. "
            "Build the entry with django_dbtuning.pool.database(instances=..., "
            "processes=...) to get this checked against your deployment."
        )
    if stats and stats.get("open"):
        _live(probe, stats, config)
    elif workers:
        _live(
            probe,
            {
                "requests_errors": workers.get("errors", 0),
                "requests_waiting": workers.get("waiting", 0),
                "requests_queued": workers.get("queued", 0),
                "requests_num": workers.get("requests", 0),
                "requests_wait_ms": workers.get("wait_seconds", 0) * 1000,
            },
            config,
            where=f"the {int(workers.get('processes', 0))} worker processes",
        )


def _with_deployment(
    probe: Probe,
    settings_dict: Mapping[str, Any],
    deployment: Deployment,
    live_max: int,
    live_reserved: int,
) -> None:
    """The deployment's peak against the live server, and the sizing redone for it."""
    section = probe.section("pool")
    peak = deployment.peak_connections(settings_dict)
    usable = deployment.usable_connections(live_max, live_reserved)
    section["deployment_max_connections"] = peak
    section["server_usable_connections"] = usable
    live = replace(
        deployment,
        server_max_connections=live_max,
        reserved_connections=max(deployment.reserved_connections, live_reserved),
    )
    try:
        sizing = size_for(live)
    except ValueError as exc:
        section["arithmetic"] = str(exc)
        probe.add(
            "error",
            "pool_oversubscribed",
            f"{probe.alias}: the deployment cannot fit the server",
            detail=str(exc),
            hint="put PgBouncer in front (database(pgbouncer=True)) or raise max_connections",
            object=f"alias:{probe.alias}",
            deployment_max_connections=peak,
            usable_connections=usable,
        )
        return
    section["arithmetic"] = sizing.rationale
    section["recommended"] = {"min_size": sizing.min_size, "max_size": sizing.max_size}
    if not _oversubscribed(probe, settings_dict, live, sizing.max_size, usable):
        _sizing_stale(probe, settings_dict, deployment, live_max, sizing.max_size)


def _oversubscribed(
    probe: Probe,
    settings_dict: Mapping[str, Any],
    live: Deployment,
    recommended: int,
    usable: int,
) -> bool:
    """``pool_oversubscribed``: more connections at peak than the server allows (an
    error), or than the headroom leaves (a warning)."""
    per_process = live.connections_per_process(settings_dict)[0]
    peak = live.peak_connections(settings_dict)
    shape = (
        f"{live.instances} instances x {live.processes} processes x {live.aliases} "
        f"aliases x {per_process} connections"
    )
    figures: dict[str, Any] = {
        "object": f"alias:{probe.alias}",
        "recommended_max_size": recommended,
        "deployment_max_connections": peak,
        "usable_connections": usable,
    }
    if peak > usable:
        others = f" - {live.other_clients} other clients" if live.other_clients else ""
        probe.add(
            "error",
            "pool_oversubscribed",
            f"{probe.alias}: {peak} connections at peak, the server allows {usable}",
            detail=(
                f"{shape} = {peak} connections at peak, but the server has "
                f"max_connections {live.server_max_connections} - "
                f"{live.reserved_connections} reserved{others} = {usable}: under load "
                "new connections fail with 'too many clients already'."
            ),
            hint=(
                f"set max_size to {recommended} (database(..., "
                f"server_max_connections={live.server_max_connections}) computes it), "
                "or put PgBouncer in front"
            ),
            **figures,
        )
        return True
    if (settings_dict.get("OPTIONS") or {}).get("pool") and per_process > recommended:
        probe.add(
            "warning",
            "pool_oversubscribed",
            f"{probe.alias}: pool max_size {per_process} leaves no headroom",
            detail=(
                f"{shape} = {peak} of {usable} usable connections: more than "
                f"the {live.headroom:.0%} headroom that leaves room for migrations, "
                "cron jobs, a psql session and deploys (old and new workers overlap)."
            ),
            hint=f"max_size {recommended} per process fits the budget",
            **figures,
        )
        return True
    return False


def _sizing_stale(
    probe: Probe,
    settings_dict: Mapping[str, Any],
    deployment: Deployment,
    live_max: int,
    recommended: int,
) -> None:
    """``pool_sizing_stale``: the entry was sized for another ``max_connections``."""
    declared = deployment.server_max_connections
    if not declared or declared == live_max:
        return
    probe.add(
        "info",
        "pool_sizing_stale",
        f"{probe.alias}: sized for max_connections {declared}, the server has {live_max}",
        detail=(
            f"The DATABASES entry was built with server_max_connections={declared}; "
            f"redone with the live value the pool's max_size would be {recommended} "
            f"(it is {deployment.connections_per_process(settings_dict)[0]})."
        ),
        hint=f"database(..., server_max_connections={live_max})",
        object=f"alias:{probe.alias}",
        recommended_max_size=recommended,
    )


def _live(
    probe: Probe,
    stats: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    where: str = "this process",
) -> None:
    errors = int(stats.get("requests_errors", 0))
    waiting = int(stats.get("requests_waiting", 0))
    queued = int(stats.get("requests_queued", 0))
    requests = int(stats.get("requests_num", 0))
    wait_ms = float(stats.get("requests_wait_ms", 0))
    if errors or waiting:
        probe.add(
            "warning",
            "pool_exhausted",
            f"{probe.alias}: requests waited for or failed to get a connection",
            detail=(
                f"In {where} {errors:,} connection requests failed (pool timeout "
                f"{config.get('timeout')} s) and {waiting} are waiting now; {queued:,} of "
                f"{requests:,} requests had to queue, {wait_ms / 1000:.1f} s in total."
            ),
            hint=(
                "connections are held too long (slow queries, work inside atomic()) or "
                "max_size is below the thread count; check the statements and "
                "connections sections before raising max_size"
            ),
            object=f"alias:{probe.alias}",
            requests_errors=errors,
            requests_waiting=waiting,
        )
