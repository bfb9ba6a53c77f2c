"""QueryCountMiddleware: count every request's queries, name its N+1s, add timing headers.

A streamed response (``StreamingHttpResponse``, ``FileResponse``) sends its status and
headers before its body is produced, so its unit of work stays open until the body is
exhausted or the response is closed (a client that goes away included): the body's queries
count, and findings, budget, metrics and a summary record are reported then. Its
``X-DB-Query-Count`` and ``Server-Timing`` can only hold the queries run before the body.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import replace
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

from django_dbtuning.conf import Reaction
from django_dbtuning.exceptions import QueryProblemError
from django_dbtuning.queries.findings import QueryFinding
from django_dbtuning.queries.policy import Policy, conclude
from django_dbtuning.queries.recorder import internal_error
from django_dbtuning.queries.units import (
    QueryReport,
    Resumable,
    Unit,
    detach_unit,
    finish_unit,
    start_unit,
)

# One logger for the whole capability (was django_dbtuning.tracking / .middleware).
logger = logging.getLogger("django_dbtuning.queries")

# Each request's unit, for request_report(): held weakly, so it lives as long as the request.
_request_units: weakref.WeakKeyDictionary[HttpRequest, Unit] = (
    weakref.WeakKeyDictionary()
)
# The request's one QueryReport and the view it names: the debug toolbar's panel and the
# middleware's reaction read the same report, so its findings are evaluated once.
_request_reports: weakref.WeakKeyDictionary[
    HttpRequest, tuple[str | None, QueryReport]
] = weakref.WeakKeyDictionary()


def request_report(request: HttpRequest) -> QueryReport | None:
    """The :class:`QueryReport` of ``request``'s unit of work; None if not tracked.

    While the request runs (the debug toolbar's panel, inside ``QueryCountMiddleware``)
    it holds what ran so far; once the middleware returned, all of it. No second capture:
    this is the unit the middleware reports.
    """
    if not isinstance(request, HttpRequest):
        raise TypeError(
            f"request_report() takes an HttpRequest, not {type(request).__name__}"
        )
    unit = _request_units.get(request)
    if unit is None:
        return None
    return _shared_report(request, unit)


def _shared_report(request: HttpRequest, unit: Unit) -> QueryReport:
    """The request's report, made once (again only if its view was not known yet)."""
    view = _view_name(request)
    held = _request_reports.get(request)
    if held is not None and held[0] == view:
        return held[1]
    report = QueryReport(unit, view=view)
    _request_reports[request] = (view, report)
    return report


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
        unit = _request_units[request] = start_unit()
        try:
            response = self.get_response(request)
        except BaseException:
            finish_unit(unit, restore=True)
            raise
        assert isinstance(response, HttpResponseBase)
        return self._respond(request, response, unit)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        unit = _request_units[request] = start_unit()
        try:
            response = cast(HttpResponseBase, await self.get_response(request))  # type: ignore[misc]
        except BaseException:
            finish_unit(unit, restore=True)
            raise
        return self._respond(request, response, unit)

    def _respond(
        self, request: HttpRequest, response: HttpResponseBase, unit: Unit
    ) -> HttpResponseBase:
        if isinstance(response, StreamingHttpResponse):
            detach_unit(unit)
            try:
                _stream_in_unit(request, response, unit)
                return response
            except Exception:
                internal_error("wrapping a streamed response")
        # restore: a block the view opened and never closed must not outlive the request
        # in this thread's context.
        finish_unit(unit, restore=True)
        view = _view_name(request)
        try:
            _add_headers(response, unit)
        except Exception:
            internal_error("adding query headers")
        _report(_where(request, view), view, unit, can_raise=True, request=request)
        return response


def _add_headers(response: HttpResponseBase, unit: Unit) -> None:
    settings = unit.settings
    if settings.response_headers:
        response["X-DB-Query-Count"] = str(unit.count)
        response["X-DB-Query-Time-Ms"] = f"{unit.duration * 1000:.1f}"
    if settings.server_timing:
        entry = f'db;dur={unit.duration * 1000:.1f};desc="{unit.count} queries"'
        existing = response.get("Server-Timing")
        response["Server-Timing"] = f"{existing}, {entry}" if existing else entry


def _report(
    where: str,
    view: str | None,
    unit: Unit,
    *,
    can_raise: bool,
    request: HttpRequest | None = None,
) -> None:
    """Metrics and reactions of a closed unit (``can_raise``, ``request``: see conclude())."""
    report = (
        QueryReport(unit, view=view)
        if request is None
        else _shared_report(request, unit)
    )
    if unit.settings.metrics:
        try:
            from django_dbtuning.queries import metrics

            metrics.observe_request(view, report)
        except Exception:
            internal_error("recording request metrics")
    # Reactions last: "raise" is deliberate, so it is the one error we let through.
    try:
        conclude(
            report,
            _policy(report, unit, where, request),
            where,
            view=view,
            can_raise=can_raise,
            request=request,
        )
    except (QueryProblemError, Warning):
        raise
    except Exception:
        internal_error("reporting a request's findings")


# --- the debug toolbar's page ------------------------------------------------------------------

# What the N+1 panel showed on a request's page (toolbar.py tells us), per kind: the
# identities of its findings; for the budget, {True} when it said it was exceeded.
Shown = dict[str, frozenset[Hashable]]
_shown_in_toolbar: weakref.WeakKeyDictionary[HttpRequest, Shown] = (
    weakref.WeakKeyDictionary()
)
_RAISE_SETTINGS = (
    ("n_plus_one", "ON_N_PLUS_ONE"),
    ("duplicates", "ON_DUPLICATE"),
    ("over_budget", "ON_QUERY_BUDGET"),
)


def shown_in_toolbar(request: HttpRequest) -> list[str]:
    """Note that the debug toolbar puts its N+1 panel into ``request``'s HTML page.

    Called by the panel. While the request's unit is open (``QueryCountMiddleware`` first,
    so its reaction comes after the toolbar), a "raise" reaction would replace that page
    with Django's error page, toolbar and panel included: for this request it logs
    instead, as long as the panel shows every finding it would raise for (queries run
    after the panel may add one it does not show: that one still raises). Returns the
    settings set to "raise" that this spares so far, [] when none.
    """
    unit = _request_units.get(request)
    if unit is None or unit.closed:
        return []  # the toolbar is outside: the reaction already happened
    policy = Policy.from_settings(unit.settings)
    shown = _shown_in_toolbar[request] = _found(_shared_report(request, unit), policy)
    return [setting for _, setting in _spared(shown, shown, policy)]


def _found(report: QueryReport, policy: Policy) -> Shown:
    over = policy.max_queries is not None and report.count > policy.max_queries
    return {
        "n_plus_one": frozenset(_identity(f) for f in report.n_plus_one),
        "duplicates": frozenset(_identity(f) for f in report.duplicates),
        "over_budget": frozenset({True} if over else ()),
    }


def _identity(finding: QueryFinding) -> Hashable:
    return (finding.kind, finding.digest, finding.alias, finding.location)


def _spared(found: Shown, shown: Shown, policy: Policy) -> list[tuple[str, str]]:
    """``(kind, setting)`` of each "raise" with findings, all of them on the page."""
    return [
        (name, setting)
        for name, setting in _RAISE_SETTINGS
        if getattr(policy, name) == "raise"
        and found[name]
        and found[name] <= shown[name]
    ]


def _policy(
    report: QueryReport, unit: Unit, where: str, request: HttpRequest | None
) -> Policy:
    """The settings' policy; "raise" logs instead for what the toolbar's page shows."""
    policy = Policy.from_settings(unit.settings)
    shown = None if request is None else _shown_in_toolbar.get(request)
    if shown is None:
        return policy
    spared = _spared(_found(report, policy), shown, policy)
    if not spared:
        return policy
    names = [setting for _, setting in spared]
    logger.warning(
        "%s: not raised (%s = 'raise'): the debug toolbar shows this page's "
        "findings in its N+1 queries panel, which an error page would replace; "
        "each is logged below",
        where,
        ", ".join(names),
        extra={"not_raised": names},
    )
    kinds = {name for name, _ in spared}

    def reaction(name: str, configured: Reaction) -> Reaction:
        return "log" if name in kinds else configured

    return replace(
        policy,
        n_plus_one=reaction("n_plus_one", policy.n_plus_one),
        duplicates=reaction("duplicates", policy.duplicates),
        over_budget=reaction("over_budget", policy.over_budget),
    )


def _view_name(request: HttpRequest) -> str | None:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None
    return str(match.view_name or match._func_path)


def _where(request: HttpRequest, view: str | None) -> str:
    # The URL pattern, never the path: a path carries whatever the URL carries
    # (password-reset tokens, e-mail addresses, ids), and these lines reach logs and
    # exception trackers.
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    if route:
        shown = route if route.startswith("^") else "/" + route
    else:
        shown = "(no URL pattern matched)"
    return f"{request.method} {shown}" + (f" ({view})" if view else "")


# --- streamed responses ------------------------------------------------------------------------


def _stream_in_unit(
    request: HttpRequest, response: StreamingHttpResponse, unit: Unit
) -> None:
    """Run ``response``'s body inside ``unit`` and report the unit when the body ends."""
    view = _view_name(request)
    where = _where(request, view)
    before_body = unit.count
    _add_headers(response, unit)

    def end() -> None:
        finish_unit(unit)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s: streamed response finished after %d queries in %.1f ms "
                "(%d before the body, the X-DB-Query-Count header)",
                where,
                unit.count,
                unit.duration * 1000,
                before_body,
                extra={
                    "query_count": unit.count,
                    "query_time_ms": unit.duration * 1000,
                    "query_count_before_body": before_body,
                },
            )
        _report(where, view, unit, can_raise=False, request=request)

    kind = _AsyncStream if response.is_async else _SyncStream
    stream = kind(response.streaming_content, unit, end)
    # FileResponse drops file_to_stream when its content is replaced; keep it, so that a
    # WSGI server's wsgi.file_wrapper (sendfile) still serves the file. That path reads the
    # file without iterating us; the response's close() still ends the unit.
    file_to_stream = getattr(response, "file_to_stream", None)
    response.streaming_content = stream  # registers stream.close with response.close()
    if file_to_stream is not None:
        response.file_to_stream = file_to_stream  # type: ignore[attr-defined]


class _Stream:
    """Ends a streamed response's unit once: body exhausted, failed, or response closed.

    Each step of the body (``with self:``) runs in the request's unit.
    """

    def __init__(self, inner: Any, unit: Unit, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._scopes = Resumable(unit)
        self._on_end = on_end
        self._once = threading.Lock()

    def __enter__(self) -> None:
        self._scopes.resume()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._scopes.suspend()
        if (
            exc_type is not None
        ):  # exhausted, failed, or cancelled (the client went away)
            self._end()

    def close(self) -> None:
        """Called by ``response.close()`` (also when the client went away mid-body)."""
        self._end()

    def _end(self) -> None:
        if not self._once.acquire(blocking=False):
            return
        self._scopes.clear()
        try:
            self._on_end()
        except Warning:
            raise  # ON_N_PLUS_ONE="warn" under -W error: the test that reads the body sees it
        except Exception:
            internal_error("reporting a streamed response")


class _SyncStream(_Stream):
    def __iter__(self) -> _SyncStream:
        return self

    def __next__(self) -> bytes:
        with self:
            return cast(bytes, next(self._inner))


class _AsyncStream(_Stream):
    def __aiter__(self) -> _AsyncStream:
        return self

    async def __anext__(self) -> bytes:
        # One coroutine, run by one task: __enter__ and __exit__ see the same context.
        with self:
            return cast(bytes, await self._inner.__anext__())
