"""Pool and connection settings: a correct ``DATABASES`` entry, sized from the deployment.

Importable from ``settings.py``: nothing here touches Django's settings or the database.
"""

from __future__ import annotations

from django_dbtuning.pool.entry import database
from django_dbtuning.pool.options import connection_kwargs
from django_dbtuning.pool.sizing import Deployment, PoolSizing, pool_size, server_budget
from django_dbtuning.pool.url import redact_url

__all__ = [
    "Deployment",
    "PoolSizing",
    "connection_kwargs",
    "database",
    "pool_size",
    "redact_url",
    "server_budget",
]
