"""Fork safety: a pool or connection opened before ``fork()`` must not be shared.

A child process inherits its parent's sockets. If both use them, their protocol streams
interleave and queries fail or return another process' rows; if the child closes them, it
closes the parent's connections too (psycopg/psycopg#395, celery/celery#9953). Call
:func:`close_before_fork` in the parent, or :func:`after_fork` in the child::

    # gunicorn.conf.py (needed with preload_app = True)
    from django_dbtuning.fork import after_fork, close_before_fork

    def pre_fork(server, worker):
        close_before_fork()

    def post_fork(server, worker):
        after_fork()

    # celery: from celery.signals import worker_process_init
    worker_process_init.connect(lambda **kwargs: after_fork())
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connections

__all__ = ["after_fork", "close_before_fork"]

logger = logging.getLogger(__name__)

# Inherited connections and pools are kept referenced forever: letting them be garbage
# collected would run libpq's PQfinish, which sends Terminate on the parent's sockets.
_inherited: list[Any] = []


def close_before_fork() -> None:
    """In the parent, close every connection and pool cleanly before forking."""
    for alias in connections:
        wrapper = connections[alias]
        wrapper.close()
        close_pool = getattr(wrapper, "close_pool", None)
        if close_pool is not None:
            close_pool()


def after_fork() -> None:
    """In a child, forget inherited connections and pools without touching their sockets.

    The next query opens a fresh connection (and a fresh pool) owned by this process.
    """
    for alias in connections:
        wrapper = connections[alias]
        if wrapper.connection is not None:
            _inherited.append(wrapper.connection)
            wrapper.connection = None
            # Django's own bookkeeping for a connection that is gone.
            wrapper.in_atomic_block = False
            wrapper.savepoint_ids = []
            wrapper.needs_rollback = False
        # Django 5.1+ keeps one pool per alias in a class attribute; guarded because it is
        # an implementation detail that may move.
        pools = getattr(type(wrapper), "_connection_pools", None)
        if isinstance(pools, dict) and alias in pools:
            _inherited.append(pools.pop(alias))
            logger.info(
                "dropped the pool of %r inherited from the parent process", alias
            )
