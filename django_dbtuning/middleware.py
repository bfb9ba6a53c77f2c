"""QueryCountMiddleware: count every request's queries, name its N+1s, add timing headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from django_dbtuning.exceptions import NPlusOneError, QueryBudgetExceeded
from django_dbtuning.tracking import (
    Unit,
    _internal_error,
    check_budget,
    config,
    evaluate,
    finish_unit,
    react,
    start_unit,
)

__all__ = ["QueryCountMiddleware"]


class QueryCountMiddleware:
    """Track each request as a unit of work; react to N+1s, duplicates and the budget.

    Put it first in ``MIDDLEWARE`` so the queries of every other middleware count too.
    Works under WSGI and ASGI (the recorder lives on the sync worker thread's connections).
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            # Django checks this attribute to call us as a coroutine function.
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        unit = start_unit()
        try:
            response = self.get_response(request)
        finally:
            finish_unit(unit, restore=True)
        assert isinstance(response, HttpResponseBase)
        self._finish(request, response, unit)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        unit = start_unit()
        try:
            response = cast(HttpResponseBase, await self.get_response(request))  # type: ignore[misc]
        finally:
            finish_unit(unit, restore=True)
        self._finish(request, response, unit)
        return response

    def _finish(
        self, request: HttpRequest, response: HttpResponseBase, unit: Unit
    ) -> None:
        view = _view_name(request)
        where = f"{request.method} {request.path}" + (f" ({view})" if view else "")
        try:
            n_plus_one, duplicates = evaluate(unit, view=view)
        except Exception:
            _internal_error("analysing a request's queries")
            n_plus_one, duplicates = [], []
        settings = config()
        try:
            if settings.headers:
                response["X-DB-Query-Count"] = str(unit.count)
                response["X-DB-Query-Time-Ms"] = f"{unit.duration * 1000:.1f}"
            if settings.server_timing:
                entry = f'db;dur={unit.duration * 1000:.1f};desc="{unit.count} queries"'
                existing = response.get("Server-Timing")
                response["Server-Timing"] = (
                    f"{existing}, {entry}" if existing else entry
                )
            if settings.metrics:
                from django_dbtuning import metrics

                metrics.observe_request(view, unit, n_plus_one)
        except Exception:
            _internal_error("adding query headers and metrics")
        # Reactions last: "raise" is deliberate, so it is the one error we let through.
        try:
            react(n_plus_one, settings.on_n_plus_one, where=where)
            react(duplicates, settings.on_duplicate, where=where)
            check_budget(
                unit.count, settings.budget, settings.on_budget, unit=unit, where=where
            )
        except (NPlusOneError, QueryBudgetExceeded, Warning):
            raise
        except Exception:
            _internal_error("reporting a request's findings")


def _view_name(request: HttpRequest) -> str | None:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None
    return str(match.view_name or match._func_path)
