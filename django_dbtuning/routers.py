"""Route reads to replicas, writes to the primary, and slow reports to a bulkhead.

Configure the aliases with :func:`django_dbtuning.pool.database` (``role="replica"`` or
``role="bulkhead"``; hand-written entries can carry ``"DBTUNING": {"role": "replica",
"primary": "default"}``) and add the router::

    DATABASE_ROUTERS = ["django_dbtuning.routers.PrimaryReplicaRouter"]

Reads go to a random replica of the primary, except where they must see the primary's
latest writes: inside a transaction on the primary, after a write in the same request or
unit of work (replicas lag), and inside :func:`use_primary`. :func:`route_reads_to` sends
the reads of a block to a chosen alias, such as a bulkhead with its own small pool.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_started, setting_changed
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model

from django_dbtuning.pool import Deployment

__all__ = ["PrimaryReplicaRouter", "route_reads_to", "use_primary"]

# None: free to use replicas. An alias: reads pinned there for the rest of the unit of work.
_pinned: ContextVar[str | None] = ContextVar("dbtuning_pinned_reads", default=None)
_routed: ContextVar[str | None] = ContextVar("dbtuning_routed_reads", default=None)


@functools.cache
def _topology() -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, ...]]]:
    # Routing runs for every ORM query: read DATABASES once (and again only when a test
    # overrides it), not per call.
    roles: dict[str, tuple[str, str]] = {}
    for alias, entry in settings.DATABASES.items():
        try:
            deployment = Deployment.from_entry(entry)
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(
                f"DATABASES[{alias!r}]['DBTUNING']: {exc}"
            ) from None
        if deployment is None:
            roles[alias] = ("primary", alias)
        else:
            roles[alias] = (deployment.role, deployment.primary_of(alias))
    replicas: dict[str, list[str]] = {}
    for alias, (role, primary) in roles.items():
        if role == "replica":
            replicas.setdefault(primary, []).append(alias)
    return roles, {primary: tuple(aliases) for primary, aliases in replicas.items()}


def _role(alias: str) -> tuple[str, str]:
    return _topology()[0].get(alias, ("primary", alias))


def _primary(hints: dict[str, Any]) -> str:
    instance = hints.get("instance")
    if isinstance(instance, Model) and instance._state.db:
        return _role(instance._state.db)[1]
    return DEFAULT_DB_ALIAS


def _replicas_of(primary: str) -> tuple[str, ...]:
    return _topology()[1].get(primary, ())


def _forget_topology(*, setting: str, **kwargs: Any) -> None:
    if setting == "DATABASES":
        _topology.cache_clear()


setting_changed.connect(_forget_topology, dispatch_uid="dbtuning_router_topology")


@contextmanager
def use_primary() -> Iterator[None]:
    """Send every read in the block to the primary (read-your-writes)."""
    with route_reads_to(DEFAULT_DB_ALIAS):
        yield


@contextmanager
def route_reads_to(alias: str) -> Iterator[None]:
    """Send every read in the block to ``alias``, e.g. a bulkhead for a slow report.

    Raises:
        KeyError: ``alias`` is not in ``DATABASES``.
    """
    if alias not in settings.DATABASES:
        raise KeyError(f"route_reads_to({alias!r}): no such alias in DATABASES")
    token = _routed.set(alias)
    try:
        yield
    finally:
        _routed.reset(token)


def _forget_pin(**kwargs: Any) -> None:
    # Threads are reused across requests under WSGI; a write pins reads for one request only.
    _pinned.set(None)


request_started.connect(_forget_pin, dispatch_uid="dbtuning_router_forget_pin")


class PrimaryReplicaRouter:
    """Reads to replicas, writes and migrations to the primary, reports to bulkheads."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        routed = _routed.get()
        if routed is not None:
            return routed
        primary = _primary(hints)
        pinned = _pinned.get()
        if pinned is not None:
            return pinned
        if connections[primary].in_atomic_block:
            return primary
        replicas = _replicas_of(primary)
        return random.choice(replicas) if replicas else primary

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        primary = _primary(hints)
        _pinned.set(primary)
        return primary

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        first, second = obj1._state.db, obj2._state.db
        if first is None or second is None:
            return None
        return _role(first)[1] == _role(second)[1]

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        # Replicas and bulkheads show the primary's schema; migrating through them would
        # fail (read-only) or run the migration twice.
        return False if _role(db)[0] != "primary" else None
