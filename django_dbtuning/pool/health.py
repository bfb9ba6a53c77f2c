"""The pool's health check without a round trip for a connection known alive a moment ago.

psycopg_pool's ``check`` (what Django's ``CONN_HEALTH_CHECKS`` turns on) sends an empty query
on every checkout: one round trip per request, about a tenth of a one-query view's
throughput. HikariCP skips validation for a connection used within the last 500 ms
(``aliveBypassWindowMs``); this does the same with two guards instead of one:

- time: the connection answered a round trip less than :data:`ALIVE_BYPASS_WINDOW` ago;
- its socket: nothing is waiting to be read. A backend ended by ``pg_terminate_backend``,
  ``idle_session_timeout`` or a server shutdown sends its FATAL error and closes the
  socket, which makes it readable; anything readable (a notice, a notification) gets the
  full round trip, which also consumes it. Polling reads nothing.

Django 6.1 lets ``OPTIONS["pool"]["check"]`` through, so :func:`check_unless_recent` is the
pool's ``check``. Django 5.2 and 6.0 pass their own ``check`` (psycopg_pool's
``check_connection``, which sends ``execute("")``); there :class:`ProbedConnection`, the
pool's ``connection_class``, answers that empty probe from the two guards.
"""

from __future__ import annotations

import select
from time import monotonic
from typing import Any

import psycopg
from psycopg.abc import Params, Query
from psycopg_pool import ConnectionPool

# HikariCP's aliveBypassWindowMs, in psycopg's unit.
ALIVE_BYPASS_WINDOW = 0.5

if hasattr(select, "poll"):

    def socket_quiet(fd: int) -> bool:
        """True when nothing (data, EOF, error) is waiting on the socket ``fd``."""
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)

else:  # pragma: no cover - Windows has no poll(); select() takes sockets there

    def socket_quiet(fd: int) -> bool:
        """True when nothing (data, EOF, error) is waiting on the socket ``fd``."""
        readable, _, failed = select.select([fd], [], [fd], 0)
        return not (readable or failed)


class PooledConnection(psycopg.Connection[Any]):
    """A connection that remembers when it last answered a round trip."""

    verified_at: float = float("-inf")

    def recently_verified(self) -> bool:
        """Alive a moment ago, and the server has said nothing since."""
        if monotonic() - self.verified_at >= ALIVE_BYPASS_WINDOW:
            return False
        try:
            return socket_quiet(self.fileno())
        except (OSError, ValueError, psycopg.OperationalError):
            return False  # closed, or no socket: let the round trip say what it is

    def verify(self) -> None:
        """psycopg_pool's own check (an empty query), then remember that it answered."""
        ConnectionPool.check_connection(self)
        self.verified_at = monotonic()


def check_unless_recent(conn: psycopg.Connection[Any]) -> None:
    """The pool's ``check`` (Django 6.1+): a round trip unless recently verified."""
    if not isinstance(conn, PooledConnection):
        ConnectionPool.check_connection(conn)
    elif not conn.recently_verified():
        conn.verify()


class ProbedConnection(PooledConnection):
    """``connection_class`` for Django 5.2/6.0, whose pool ``check`` is fixed.

    Django passes psycopg_pool's ``check_connection``, whose probe is ``execute("")``. An
    empty statement does nothing on a live server, so answering it without the round trip
    changes nothing but the time taken. Should a psycopg_pool release probe differently,
    every checkout gets its round trip again, as before this class.
    """

    # check_connection ignores the cursor execute() returns; one unused cursor per
    # connection answers every skipped probe instead of a new one per checkout.
    unused_cursor: psycopg.Cursor[Any] | None = None

    def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool = False,
    ) -> psycopg.Cursor[Any]:
        if query == "" and params is None and self.autocommit:
            if self.recently_verified():
                if self.unused_cursor is None:
                    self.unused_cursor = self.cursor()
                return self.unused_cursor
            cursor = super().execute("", prepare=prepare, binary=binary)
            self.verified_at = monotonic()
            return cursor
        # The one signature of psycopg's overloads (a Template takes no params) is
        # wider than each overload; psycopg checks the combination itself.
        return super().execute(query, params, prepare=prepare, binary=binary)  # type: ignore[arg-type]
