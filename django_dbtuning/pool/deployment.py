"""The deployment a ``DATABASES`` entry was built for, and the connection figures it implies.

``database()`` records the deployment in the entry under ``"DBTUNING"``; the system checks,
``dbreport`` and the router read it back through :meth:`Deployment.from_entry`, so they
share one set of defaults and one way of counting connections at peak.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from django_dbtuning.validation import is_int, positive_float, positive_int

__all__ = ["ROLES", "Deployment", "server_budget"]

ROLES = ("primary", "replica", "bulkhead")
DEFAULT_HEADROOM = 0.8
# PostgreSQL's superuser_reserved_connections default.
DEFAULT_RESERVED_CONNECTIONS = 3
# psycopg_pool's min_size default, which is also its max_size when none is given.
PSYCOPG_POOL_SIZE = 4
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
