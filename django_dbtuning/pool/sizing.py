"""Pool sizes for a deployment, with the arithmetic that produced them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from django_dbtuning.pool.deployment import (
    DEFAULT_HEADROOM,
    DEFAULT_RESERVED_CONNECTIONS,
    Deployment,
)
from django_dbtuning.validation import positive_float

__all__ = ["PoolSizing", "pool_size", "size_for"]

DEFAULT_BURST = 2.0
UNKNOWN_CONCURRENCY_CAP = 10


@dataclass(frozen=True)
class PoolSizing:
    """The result of :func:`pool_size`: sizes plus the arithmetic that produced them."""

    min_size: int
    max_size: int
    server_budget: int
    """Connections the whole deployment may hold: (max_connections - reserved) x headroom."""
    per_process_budget: int
    """``server_budget`` divided among every process and alias sharing the server."""
    demand: int | None
    """Per-process connections needed at the given throughput (Little's law), if known."""
    total_max: int
    """Connections the whole deployment can open at ``max_size``."""
    rationale: str
    warnings: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        return self.rationale


def pool_size(
    *,
    server_max_connections: int = 100,
    reserved_connections: int = DEFAULT_RESERVED_CONNECTIONS,
    other_clients: int = 0,
    instances: int = 1,
    processes: int = 1,
    threads: int | None = None,
    aliases: int = 1,
    headroom: float = DEFAULT_HEADROOM,
    throughput: float | None = None,
    hold_time: float | None = None,
    burst: float = DEFAULT_BURST,
) -> PoolSizing:
    """Size one alias' pool for a deployment, and explain the arithmetic.

    The ceiling is the server's connection budget shared by every process:
    ``floor((max_connections - reserved - other_clients) x headroom / (instances x processes
    x aliases))``. A process never needs more connections than it has threads, and, when
    ``throughput`` (requests/s across the deployment) and ``hold_time`` (seconds a request
    holds its connection, from first query to response) are given, Little's law gives the
    steady demand ``throughput x hold_time / (instances x processes)``, times ``burst`` for
    peaks.

    Args:
        server_max_connections: the server's ``max_connections``.
        reserved_connections: ``superuser_reserved_connections`` (+ ``reserved_connections``
            on PostgreSQL 16+).
        other_clients: connections used by anything else (Celery, cron, replication,
            monitoring, psql, migrations).
        instances: machines or containers running the app.
        processes: worker processes per instance (gunicorn ``--workers``).
        threads: threads per process (gunicorn ``--threads``); None when unknown.
        aliases: ``DATABASES`` aliases pointing at the same server (each has its own pool).
        headroom: share of the usable connections the app may take (0.8 leaves 20 %).
        throughput: requests per second across the whole deployment.
        hold_time: seconds a request holds a connection.
        burst: factor over the steady demand for peaks.

    Raises:
        ValueError: a value is out of range, or the deployment cannot get one connection
            per process.
        TypeError: a value has the wrong type.
    """
    # The arguments are Deployment's fields (it validates them), and the burst factor.
    inputs = dict(locals())
    burst = inputs.pop("burst")
    return size_for(Deployment(**inputs), burst=burst)


def size_for(deployment: Deployment, *, burst: float = DEFAULT_BURST) -> PoolSizing:
    """:func:`pool_size` for a :class:`Deployment` (its server must be declared)."""
    burst = positive_float("burst", burst)
    if burst < 1:
        raise ValueError(f"burst must be >= 1, got {burst}")
    d = deployment
    budget = d.budget
    if budget is None:
        raise ValueError("size_for() needs the deployment's server_max_connections")
    holders = d.holders
    per_process = budget // holders if budget > 0 else 0
    others = f" - {d.other_clients} other clients" if d.other_clients else ""
    lines = [
        f"server budget: ({d.server_max_connections} max_connections - "
        f"{d.reserved_connections} reserved{others}) x {d.headroom:g} headroom = {budget}",
        f"per process: {budget} // ({d.instances} instances x {d.processes} processes"
        f" x {d.aliases} aliases = {holders}) = {per_process}",
    ]
    if per_process < 1:
        raise ValueError(
            f"{holders} processes x aliases cannot share {budget} connections: "
            f"raise max_connections, lower processes/instances, or put PgBouncer in front "
            f"({'; '.join(lines)})"
        )
    max_size, limits, warnings = _concurrency_limit(d, per_process)
    demand, steady = _demand(d, burst, lines)
    if demand is not None:
        limits.append(f"demand {demand}")
        if demand < max_size:
            max_size = demand
        elif demand > per_process:
            warnings.append(
                f"demand {demand} per process exceeds the budget {per_process}: at "
                f"{d.throughput:g} req/s requests will wait for connections; add PgBouncer "
                "or raise max_connections"
            )
    min_size = min(max_size, steady) if steady is not None else max(1, max_size // 2)
    lines.append(f"max_size = min({', '.join(limits)}) = {max_size}")
    lines.append(
        f"min_size = {min_size} ("
        + ("steady demand" if steady is not None else "half of max_size, kept warm")
        + ")"
    )
    total = max_size * holders
    lines.append(
        f"whole deployment at max_size: {total} of {d.server_max_connections} "
        f"connections ({d.reserved_connections + d.other_clients} reserved for others)"
    )
    return PoolSizing(
        min_size=min_size,
        max_size=max_size,
        server_budget=budget,
        per_process_budget=per_process,
        demand=demand,
        total_max=total,
        rationale="\n".join(lines),
        warnings=tuple(warnings),
    )


def _concurrency_limit(
    d: Deployment, per_process: int
) -> tuple[int, list[str], list[str]]:
    """The budget, capped by the threads (or a default cap when nothing is known)."""
    max_size, limits, warnings = per_process, [f"budget {per_process}"], []
    if d.threads is not None:
        limits.append(f"{d.threads} threads")
        if d.threads < max_size:
            max_size = d.threads
        elif d.threads > per_process:
            warnings.append(
                f"{d.threads} threads share {per_process} connections: requests queue "
                "in the pool at peak (intended if the pool is the throttle)"
            )
    elif d.throughput is None:
        # Nothing says how many requests a process serves at once; a process rarely
        # benefits from more connections than this, and the server pays for each one.
        limits.append(
            f"default cap {UNKNOWN_CONCURRENCY_CAP} (pass threads= or throughput=)"
        )
        max_size = min(max_size, UNKNOWN_CONCURRENCY_CAP)
    return max_size, limits, warnings


def _demand(
    d: Deployment, burst: float, lines: list[str]
) -> tuple[int | None, int | None]:
    """Little's law: connections busy per process at the given throughput (peak, steady)."""
    if d.throughput is None or d.hold_time is None:
        return None, None
    processes = d.instances * d.processes
    busy = d.throughput * d.hold_time / processes
    demand = max(1, math.ceil(busy * burst))
    lines.append(
        f"Little's law: {d.throughput:g} req/s x {d.hold_time:g} s / {processes}"
        f" processes = {busy:.2f} busy per process; x {burst:g} burst = {demand}"
    )
    return demand, max(1, math.ceil(busy))
