"""A project's own ENGINE built on Django's PostgreSQL backend (as PostGIS is)."""

from __future__ import annotations

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    pass
