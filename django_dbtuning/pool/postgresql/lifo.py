"""psycopg_pool's pool, handing out the connection returned last first.

psycopg_pool keeps its idle connections in a deque and hands them out first in, first
out: over a request's checkout and return, every thread of a process goes round all the
idle connections, so the one it gets has not been touched since several requests ago
(its objects, buffers and socket state are out of the CPU caches). HikariCP's
``ConcurrentBag`` hands a thread the connection it used last; last in, first out gets most
of that: a thread that returns its connection and asks again before another thread does
(the common case, one request after another) gets that same connection back.

Only which idle connection a checkout takes changes. A returned connection still goes to
a waiting client first (psycopg_pool's ``_add_to_pool``), in the order they came;
connections still expire at ``max_lifetime`` on return; the ``max_idle`` shrink still
closes the connection at the front, which is now the one idle longest (so it actually
shrinks a pool that has more connections than its load needs); the health check's bypass
window (:mod:`django_dbtuning.pool.health`) still looks at when each connection last
answered, so a connection left idle at the back gets its round trip when it is next used.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool


class LastInFirstOutPool(ConnectionPool[Any]):
    """A ``ConnectionPool`` whose checkout takes the most recently returned connection.

    psycopg_pool (3.2 to 3.3) calls ``_get_ready_connection`` under its lock to take a
    connection from the front of its deque ``_pool``, and ``_add_to_pool`` appends a
    returned one at the back. Moving the back to the front first makes psycopg_pool's own
    code (its minimum-idle accounting for ``max_idle``, ``max_waiting``) take the newest.
    Should a release rename either, the pool is psycopg_pool's, first in, first out.
    """

    def _get_ready_connection(self, timeout: float | None) -> Any:
        ready = self._pool
        if len(ready) > 1:
            ready.rotate(1)
        return super()._get_ready_connection(timeout)


def last_in_first_out(pool: object) -> None:
    """Make the pool Django just created a :class:`LastInFirstOutPool`, before its use.

    Django builds the pool in ``DatabaseWrapper.pool`` with arguments that differ between
    its versions; changing the class of the (not yet opened) pool keeps them all Django's.
    A pool of any other class (a future Django's, a subclass) is left as it is.
    """
    if type(pool) is ConnectionPool and hasattr(
        ConnectionPool, "_get_ready_connection"
    ):
        pool.__class__ = LastInFirstOutPool
