"""The deployment a ``DATABASES`` entry was built for, and the pool sizes it implies.

``database()`` records the deployment in the entry under ``"DBTUNING"``; the system checks,
``dbreport`` and the router read it back through :meth:`Deployment.from_entry`, so they
share one set of defaults and one way of counting connections at peak. :func:`pool_size`
sizes one alias' pool for it, with the arithmetic that produced the sizes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from django_dbtuning.validation import is_int, positive_float, positive_int

ROLES = ("primary", "replica", "bulkhead")
DEFAULT_HEADROOM = 0.8
# PostgreSQL's superuser_reserved_connections default.
DEFAULT_RESERVED_CONNECTIONS = 3
# psycopg_pool's min_size default, which is also its max_size when none is given.
PSYCOPG_POOL_SIZE = 4
DEFAULT_BURST = 2.0
UNKNOWN_CONCURRENCY_CAP = 10
# Written to the entry only when given, so that existing entries read back unchanged.
_ONLY_WHEN_GIVEN = ("throughput", "hold_time")


def server_budget(
    max_connections: int, reserved: int, other_clients: int = 0, headroom: float = 1.0
) -> int:
    """Connections the application may hold: (max - reserved - other clients) x headroom."""
    return math.floor((max_connections - reserved - other_clients) * headroom)


@dataclass(frozen=True)
class Deployment:
    """How many processes share a server, and what they know about it.

    Every field has :func:`django_dbtuning.pool.database`'s default, except
    ``server_max_connections``: None means the entry does not say (a hand-written
    ``"DBTUNING"``), and only the live server can tell.

    Raises:
        ValueError, TypeError: a value is out of range or of the wrong type (the message
            names the field, as :func:`~django_dbtuning.pool.pool_size` does).
    """

    instances: int = 1
    processes: int = 1
    threads: int | None = None
    aliases: int = 1
    server_max_connections: int | None = None
    reserved_connections: int = DEFAULT_RESERVED_CONNECTIONS
    other_clients: int = 0
    headroom: float = DEFAULT_HEADROOM
    throughput: float | None = None
    hold_time: float | None = None
    role: str = "primary"
    primary: str | None = None
    pgbouncer: bool = False
    rationale: str = ""

    def __post_init__(self) -> None:
        if self.server_max_connections is not None:
            positive_int("server_max_connections", self.server_max_connections)
        positive_int("reserved_connections", self.reserved_connections, minimum=0)
        positive_int("other_clients", self.other_clients, minimum=0)
        positive_int("instances", self.instances)
        positive_int("processes", self.processes)
        positive_int("aliases", self.aliases)
        if self.threads is not None:
            positive_int("threads", self.threads)
        if positive_float("headroom", self.headroom) > 1:
            raise ValueError(
                f"headroom is a share of the connections (0-1], got {self.headroom}"
            )
        if (self.throughput is None) != (self.hold_time is None):
            raise ValueError("give both throughput and hold_time, or neither")
        if self.throughput is not None:
            positive_float("throughput", self.throughput)
            positive_float("hold_time", self.hold_time)
        if self.role not in ROLES:
            raise ValueError(
                f"role must be one of {', '.join(ROLES)}, not {self.role!r}"
            )

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Deployment | None:
        """The deployment recorded in a ``DATABASES`` entry, or None when it has none.

        Keys left out take the defaults above; keys this version does not know are
        ignored. Raises ValueError or TypeError for a value that cannot be used.
        """
        record = entry.get("DBTUNING")
        if not isinstance(record, Mapping) or not record:
            return None
        known = {field.name for field in fields(cls)}
        values = {
            key: value
            for key, value in record.items()
            if key in known and value is not None
        }
        values["pgbouncer"] = bool(values.get("pgbouncer"))
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The ``"DBTUNING"`` record of an entry; :meth:`from_entry` reads it back."""
        record = asdict(self)
        for key in _ONLY_WHEN_GIVEN:
            if record[key] is None:
                del record[key]
        return record

    def primary_of(self, alias: str) -> str:
        """The alias whose data ``alias`` shows: itself for a primary."""
        return alias if self.role == "primary" else self.primary or "default"

    @property
    def holders(self) -> int:
        """Processes holding their own pool on the server: instances x processes x aliases."""
        return self.instances * self.processes * self.aliases

    @property
    def budget(self) -> int | None:
        """Connections the whole deployment may hold on the declared server, if declared."""
        if self.server_max_connections is None:
            return None
        return server_budget(
            self.server_max_connections,
            self.reserved_connections,
            self.other_clients,
            self.headroom,
        )

    def usable_connections(self, max_connections: int, reserved: int) -> int:
        """Connections the live server leaves the application (no headroom taken off)."""
        return server_budget(
            max_connections,
            max(self.reserved_connections, reserved),
            self.other_clients,
        )

    def connections_per_process(self, entry: Mapping[str, Any]) -> tuple[int, str]:
        """Connections one process may hold under ``entry``, and what bounds them.

        A pool's ``max_size`` (psycopg_pool's defaults for ``True`` or a missing key);
        without a pool, one persistent connection per thread (one when threads are not
        known). Raises ValueError or TypeError for pool sizes that are not numbers.
        """
        options = entry.get("OPTIONS") or {}
        pool = options.get("pool") if isinstance(options, Mapping) else None
        if pool is True or (isinstance(pool, Mapping) and pool):
            sizes: Mapping[str, Any] = pool if isinstance(pool, Mapping) else {}
            size = sizes.get("max_size")
            if size is None:
                size = sizes.get("min_size", PSYCOPG_POOL_SIZE)
            if not is_int(size):
                raise TypeError("the pool's max_size is not an int")
            return size, "pool max_size"
        if self.threads is not None:
            return self.threads, "threads"
        return 1, "one persistent connection"

    def peak_connections(self, entry: Mapping[str, Any]) -> int:
        """Connections the whole deployment can hold at once under ``entry``."""
        return self.connections_per_process(entry)[0] * self.holders


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
