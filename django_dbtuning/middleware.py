"""``django_dbtuning.middleware.QueryCountMiddleware``: the path ``MIDDLEWARE`` names."""

from __future__ import annotations

from django_dbtuning.queries.middleware import QueryCountMiddleware

__all__ = ["QueryCountMiddleware"]
