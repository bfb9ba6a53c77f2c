"""Django's PostgreSQL ``DatabaseWrapper`` without the per-request work a pool makes moot.

With ``OPTIONS["pool"]`` and ``CONN_MAX_AGE=0``, Django "connects" on a request's first
query and "closes" at its end: a checkout from psycopg_pool and a return. Around that
checkout Django's ``connect()`` still does what a new connection needs: it rebuilds the
connection parameters (which the pool ignores: it connects with those it was built with),
parses ``OPTIONS["isolation_level"]`` through a caught ``KeyError``, opens the pool (taking
its lock), and sets autocommit through psycopg's locked generator machinery although the
pool hands out connections already in autocommit. That is about a third of the CPU a
checkout costs, on every request.

This backend keeps ``connect()`` and ``close()`` whole (flags, ``connection_created``,
health checks, error wrapping, ``putconn``) and overrides only the hooks a backend is meant
to override, each doing Django's work when it is not moot:

- :meth:`DatabaseWrapper.get_connection_params`: computed once per pool (a new pool, after
  ``close_pool()`` or a time-zone change, computes them again);
- :meth:`DatabaseWrapper.get_new_connection`: the checkout alone when ``OPTIONS`` has no
  ``isolation_level`` (with one, Django's own code runs);
- :meth:`DatabaseWrapper._set_autocommit`: nothing when the connection is already in that
  mode (psycopg would only check that no transaction is open).
- :attr:`DatabaseWrapper.pool`: Django's pool, handing out the connection returned last
  first (:mod:`~django_dbtuning.pool.postgresql.lifo`); once created, a dict lookup.

Without a pool every method is Django's. ``bench/bench_pool_cpu.py`` measures the saving.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base
from django.db.backends.postgresql.psycopg_any import IsolationLevel

from django_dbtuning.pool.postgresql.lifo import last_in_first_out


class DatabaseWrapper(base.DatabaseWrapper):
    """Django's PostgreSQL backend; a pooled checkout skips the work the pool already did."""

    # (the pool the parameters were computed for, the parameters)
    _params_for_pool: tuple[object, dict[str, Any]] | None = None

    def _current_pool(self) -> object | None:
        """This alias' pool if Django has created it, without creating it.

        ``self.pool`` would create it, and creating it calls
        :meth:`get_connection_params`.
        """
        pools: dict[str, Any] = getattr(type(self), "_connection_pools", {})
        return pools.get(self.alias)

    @property
    def pool(self) -> Any:
        """Django's pool for this alias, made last in, first out (``lifo.py``) at creation.

        Django's property checks the options and the persistent-connection conflict on
        each of its several calls per request; once the pool exists, a dict lookup does.
        """
        if self.settings_dict["OPTIONS"].get("pool"):
            pool = self._current_pool()
            if pool is not None:
                return pool
        pool = super().pool
        if pool is not None:
            last_in_first_out(pool)
        return pool

    def get_connection_params(self) -> dict[str, Any]:
        pool = self._current_pool()
        cached = self._params_for_pool
        if pool is not None and cached is not None and cached[0] is pool:
            return dict(cached[1])
        params: dict[str, Any] = super().get_connection_params()
        if pool is not None:
            self._params_for_pool = (pool, dict(params))
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        pool = self.pool
        if pool is None or "isolation_level" in self.settings_dict["OPTIONS"]:
            return super().get_new_connection(conn_params)
        # What Django sets when OPTIONS has no isolation_level; the pool ignores
        # conn_params (its connections use the parameters it was created with).
        self.isolation_level = IsolationLevel.READ_COMMITTED
        if pool.closed:
            pool.open()
        return pool.getconn()

    def _set_autocommit(self, autocommit: bool) -> None:
        if self.connection.autocommit != autocommit:
            # django-stubs omit this backend hook; Django's backends all define it.
            super()._set_autocommit(autocommit)  # type: ignore[misc]
