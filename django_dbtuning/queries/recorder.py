"""The query recorder: one ``execute_wrapper`` on every connection, state in a ContextVar.

A *unit of work* (a request, a ``track_queries()`` block, a test) is a :class:`Unit` held in a
ContextVar. The recorder is installed once per connection object (``connection_created`` fires
in whichever thread connects, so the ASGI sync worker thread gets it too) and does nothing
but call through when no unit is active. ``asgiref`` runs ``sync_to_async`` code in a copy of
the caller's context, so queries of an async view land in the request's unit.

Units nest: each keeps the unit that was current when it started (``parent``) and a query
counts in every open unit of that chain. State belongs to the entry, never to the
``track_queries`` / ``query_budget`` / ``allow_n_plus_one`` instance, so one instance can be
entered by many threads, tasks and recursive calls at once; entries may end in any order
(see :func:`leave`), and once all have ended nothing records.

Per query the cost is a ContextVar read, a dict lookup for the fingerprint, a C-level frame
lookup for the call-site key and a few counters; stacks are read in full only when a group
reaches a threshold (see :mod:`django_dbtuning.queries.findings`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import warnings
from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from time import perf_counter
from types import FrameType, TracebackType
from typing import Any, Generic, Literal, TypeVar, cast, overload

from django.core.signals import setting_changed
from django.db import connections
from django.db.backends.signals import connection_created

from django_dbtuning.conf import Reaction, get_settings
from django_dbtuning.exceptions import (
    NPlusOneError,
    NPlusOneWarning,
    QueryBudgetExceeded,
)
from django_dbtuning.queries.attribution import Attribution, attribute
from django_dbtuning.queries.callsite import current_task, site_key
from django_dbtuning.queries.findings import QueryFinding, build_finding, is_allowed
from django_dbtuning.queries.fingerprint import (
    SqlInfo,
    cached_sql_info,
    display_sql,
    sql_info,
)
from django_dbtuning.queries.scopes import (
    Entries,
    Scope,
    check_generator_block,
    entry_to_exit,
    first_open,
    leave,
    wrap_generator_function,
)

__all__ = [
    "CapturedQuery",
    "QueryReport",
    "allow_n_plus_one",
    "install",
    "query_budget",
    "track_queries",
]

# The logger name users configure in LOGGING; kept when the module moved.
logger = logging.getLogger("django_dbtuning.tracking")

_unit: ContextVar[Unit | None] = ContextVar("django_dbtuning_unit", default=None)
_allowed: ContextVar[_Allowance | None] = ContextVar(
    "django_dbtuning_allowed", default=None
)
_getframe = sys._getframe

F = TypeVar("F", bound=Callable[..., Any])
_Entered = TypeVar("_Entered")


class _Allowance(Scope):
    """One open ``allow_n_plus_one()`` block."""

    __slots__ = ()


class _Site:
    __slots__ = ("attribution", "count", "duration", "first_params", "varied")

    def __init__(self, params_key: int) -> None:
        self.count = 0
        self.duration = 0.0
        self.first_params = params_key
        self.varied = False
        self.attribution: Attribution | None = None


class _Group:
    __slots__ = (
        "alias",
        "batch",
        "count",
        "duplicate_details",
        "duplicates",
        "duration",
        "full_pages",
        "info",
        "offsets",
        "single",
        "single_code",
        "single_offsets",
        "sites",
    )

    def __init__(self, alias: str, info: SqlInfo) -> None:
        self.alias = alias
        self.info = info
        self.count = 0
        self.duration = 0.0
        self.batch = 0
        self.full_pages = 0
        self.offsets: set[int] | None = None
        self.sites: dict[Hashable, _Site] = {}
        # Set once the first executions all came from one call site: later executions
        # are attributed to it without a frame lookup, re-checked every 16th time.
        self.single: _Site | None = None
        self.single_code: Any = None
        self.single_offsets: set[int] = set()
        # params key -> executions; the attribution (and parameters, if kept) of the
        # ones that reach DUPLICATE_THRESHOLD.
        self.duplicates: dict[int, int] = {}
        self.duplicate_details: dict[int, tuple[Attribution, Any]] = {}


class Unit(Scope):
    """The mutable state of one unit of work; reached through the ContextVar."""

    __slots__ = (
        "count",
        "duplicate_threshold",
        "duration",
        "groups",
        "ignored",
        "keep_parameters",
        "keep_queries",
        "query_aliases",
        "query_parameters",
        "query_sql",
        "query_times",
        "task",
        "threshold",
        "transactions",
        "using",
    )

    def __init__(
        self,
        *,
        parent: Unit | None,
        threshold: int,
        duplicate_threshold: int,
        using: frozenset[str] | None,
        ignored: frozenset[str],
        keep_parameters: bool,
        keep_queries: bool = True,
        owner: object = None,
    ) -> None:
        super().__init__(parent, owner)
        self.threshold = threshold
        self.duplicate_threshold = duplicate_threshold
        self.using = using
        self.ignored = ignored
        self.keep_parameters = keep_parameters
        # Requests need counts and groups only; the per-query log is for track_queries().
        self.keep_queries = keep_queries
        self.count = 0
        self.duration = 0.0
        self.transactions = 0
        # Parallel lists rather than a tuple per query: strings, floats and the shared
        # SqlInfo objects are not new GC-tracked objects, so a 1000-query request does not
        # push 1000 containers into the older generations (and trigger full collections).
        self.query_aliases: list[str] = []
        self.query_sql: list[str] = []
        self.query_times: list[float] = []
        self.query_parameters: list[Any] | None = [] if keep_parameters else None
        self.groups: dict[Any, _Group] = {}
        self.task = current_task()


def _recorder(
    execute: Callable[..., Any],
    sql: Any,
    params: Any,
    many: bool,
    context: dict[str, Any],
) -> Any:
    # A plain function (not a callable instance): the cheapest call Django's wrapper chain
    # can make, and one object, so installing it twice is a no-op.
    unit = _unit.get()
    if unit is not None and unit.closed:
        unit = _drop_closed()
    if unit is None:
        return execute(sql, params, many, context)
    start = perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        elapsed = perf_counter() - start
        try:
            _record(unit, sql, params, elapsed, context)
        except Exception:
            _internal_error("recording a query")


RECORDER = _recorder
"""The execute wrapper installed on every connection."""


def _drop_closed() -> Unit | None:
    # This context still holds a unit that was closed elsewhere (exited in another
    # context): forget it here, so it neither records nor stays alive through the context.
    unit = first_open(_unit.get())
    _unit.set(unit)
    return unit


def _params_key(sql: str, params: Any) -> int:
    if type(params) is list:
        params = tuple(params)
    try:
        return hash((sql, params))
    except TypeError:
        return hash((sql, repr(params)))


def _record(
    unit: Unit, sql: Any, params: Any, elapsed: float, context: dict[str, Any]
) -> None:
    info = cached_sql_info(sql) if type(sql) is str else None
    if info is None:
        info = sql_info(sql)
        sql = sql if type(sql) is str else info.shape.text
    alias: str = context["connection"].alias
    shape = info.shape
    if shape.kind == "transaction":
        u: Unit | None = unit
        while u is not None:
            if not u.closed:
                u.transactions += 1
            u = u.parent
        return
    key: Hashable = None
    params_key = 0
    hashed = located = False
    allowed = _allowed.get()
    if allowed is not None and allowed.closed:
        allowed = first_open(allowed)
        _allowed.set(allowed)
    u = unit
    while u is not None:
        if (
            u.closed
            or (u.ignored and alias in u.ignored)
            or (u.using is not None and alias not in u.using)
        ):
            u = u.parent
            continue
        u.count += 1
        u.duration += elapsed
        if u.keep_queries:
            u.query_aliases.append(alias)
            u.query_sql.append(sql)
            u.query_times.append(elapsed)
            if u.query_parameters is not None:
                u.query_parameters.append(params)
        if allowed is not None or shape.kind == "other":
            u = u.parent
            continue
        if not hashed:
            hashed = True
            if type(params) is tuple:
                try:
                    params_key = hash((sql, params))
                except TypeError:
                    params_key = _params_key(sql, params)
            else:
                params_key = _params_key(sql, params)
        group_key = shape if alias == "default" else (alias, shape)
        group = u.groups.get(group_key)
        if group is None:
            group = u.groups[group_key] = _Group(alias, info)
        group.count += 1
        group.duration += elapsed
        if info.batch:
            group.batch += 1
        if info.offset is not None:
            if group.offsets is None:
                group.offsets = set()
            group.offsets.add(info.offset)
        if info.keyset_limit is not None:
            rowcount = getattr(context.get("cursor"), "rowcount", -1)
            if rowcount == info.keyset_limit:
                group.full_pages += 1
        single = group.single
        anchor = None
        if single is not None:
            # The frame that located the single site sits at the same depth; its code and
            # instruction offset identify the site without the category and line lookups.
            try:
                anchor = _getframe(info.site_depth)
            except ValueError:
                anchor = None
            if (
                anchor is not None
                and anchor.f_code is group.single_code
                and anchor.f_lasti in group.single_offsets
            ):
                site = single
                if params_key != site.first_params:
                    site.varied = True
                site.count += 1
                site.duration += elapsed
                if site.count == u.threshold and site.attribution is None:
                    site.attribution = attribute(_getframe(), unit.task)
                duplicates = group.duplicates
                repeats = duplicates[params_key] = duplicates.get(params_key, 0) + 1
                if repeats == u.duplicate_threshold:
                    _count_duplicate(u, unit, group, site, params_key, params)
                u = u.parent
                continue
        if not located:
            located = True
            key = site_key(_getframe(), info, unit.task)
        found = group.sites.get(key)
        if found is None:
            site = group.sites[key] = _Site(params_key)
        else:
            site = found
            if params_key != site.first_params:
                site.varied = True
        site.count += 1
        site.duration += elapsed
        if single is not None:
            if (
                site is single
                and anchor is not None
                and anchor.f_code is group.single_code
            ):
                group.single_offsets.add(anchor.f_lasti)  # a specialised call's offset
            elif site is not single:
                group.single = None  # a second call site: locate every execution again
        elif (
            group.count >= u.threshold
            and len(group.sites) == 1
            and info.site_depth > 1
            and type(key) is tuple
            and type(key[0]) is int
        ):
            try:
                anchor = _getframe(info.site_depth)
            except ValueError:
                anchor = None
            if anchor is not None and id(anchor.f_code) == key[0]:
                group.single = site
                group.single_code = anchor.f_code
                group.single_offsets = {anchor.f_lasti}
        if site.count == u.threshold and site.attribution is None:
            site.attribution = attribute(_getframe(), unit.task)
        duplicates = group.duplicates
        repeats = duplicates[params_key] = duplicates.get(params_key, 0) + 1
        if repeats == u.duplicate_threshold:
            _count_duplicate(u, unit, group, site, params_key, params)
        u = u.parent


def _count_duplicate(
    u: Unit, unit: Unit, group: _Group, site: _Site, params_key: int, params: Any
) -> None:
    group.duplicate_details[params_key] = (
        site.attribution or attribute(_getframe(1), unit.task),
        params if u.keep_parameters else None,
    )


_error_logged = False


def _internal_error(action: str) -> None:
    """A bug in the detector must never fail the request: log it once, carry on."""
    global _error_logged
    if not _error_logged:
        _error_logged = True
        logger.exception(
            "django-dbtuning failed while %s; query tracking continues without it "
            "(please report this)",
            action,
        )


# --- installation ----------------------------------------------------------------------------


def _install_on(connection: Any) -> None:
    wrappers = connection.execute_wrappers
    if RECORDER not in wrappers:
        wrappers.append(RECORDER)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    try:
        _install_on(connection)
    except Exception:  # pragma: no cover - a foreign backend without execute_wrappers
        _internal_error("installing the query recorder")


_installed = False


def install() -> None:
    """Install the recorder on this thread's connections and on every future one."""
    global _installed
    if not _installed:
        _installed = True
        connection_created.connect(
            _on_connection_created, dispatch_uid="django_dbtuning.queries.recorder"
        )
    try:
        for connection in connections.all(initialized_only=True):
            _install_on(connection)
    except TypeError:  # pragma: no cover - Django < 4.1 has no initialized_only
        for connection in connections.all():
            _install_on(connection)


# --- settings snapshot -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    """The ``DBTUNING`` values a unit of work reads, resolved once per settings change."""

    threshold: int
    duplicate_threshold: int
    ignored: frozenset[str]
    keep_parameters: bool
    on_n_plus_one: Reaction
    on_duplicate: Reaction
    budget: int | None
    on_budget: Reaction
    headers: bool
    server_timing: bool
    metrics: bool


_config: Config | None = None


def config() -> Config:
    """The current snapshot (``conf`` reads settings on every access; requests need speed)."""
    global _config
    snapshot = _config
    if snapshot is None:
        snapshot = _config = Config(
            threshold=get_settings().n_plus_one_threshold,
            duplicate_threshold=get_settings().duplicate_threshold,
            ignored=frozenset(get_settings().ignore_aliases),
            keep_parameters=get_settings().log_parameters,
            on_n_plus_one=get_settings().n_plus_one_reaction,
            on_duplicate=get_settings().on_duplicate,
            budget=get_settings().query_budget,
            on_budget=get_settings().query_budget_reaction,
            headers=get_settings().response_headers,
            server_timing=get_settings().server_timing,
            metrics=get_settings().metrics,
        )
    return snapshot


def _settings_changed(setting: str, **kwargs: Any) -> None:
    global _config
    if setting in ("DBTUNING", "DEBUG"):
        _config = None


setting_changed.connect(
    _settings_changed, dispatch_uid="django_dbtuning.queries.recorder.config"
)


# --- units of work -----------------------------------------------------------------------------


def start_unit(
    *,
    threshold: int | None = None,
    duplicate_threshold: int | None = None,
    using: str | list[str] | tuple[str, ...] | None = None,
    keep_queries: bool = False,
    owner: object = None,
) -> Unit:
    """Open a unit of work in the current context (``finish_unit`` closes it)."""
    unit = new_unit(
        first_open(_unit.get()),
        threshold=threshold,
        duplicate_threshold=duplicate_threshold,
        using=using,
        keep_queries=keep_queries,
        owner=owner,
    )
    unit.token = _unit.set(unit)
    return unit


def new_unit(
    parent: Unit | None,
    *,
    threshold: int | None = None,
    duplicate_threshold: int | None = None,
    using: str | list[str] | tuple[str, ...] | None = None,
    keep_queries: bool = False,
    owner: object = None,
) -> Unit:
    """A unit of work not yet current anywhere (:func:`start_unit` makes it current)."""
    install()
    if isinstance(using, str):
        using = (using,)
    settings = config()
    return Unit(
        parent=parent,
        threshold=threshold or settings.threshold,
        duplicate_threshold=duplicate_threshold or settings.duplicate_threshold,
        using=frozenset(using) if using is not None else None,
        ignored=settings.ignored,
        keep_parameters=settings.keep_parameters,
        keep_queries=keep_queries,
        owner=owner,
    )


def finish_unit(unit: Unit, *, restore: bool = False) -> None:
    """Close ``unit``: it records nothing from now on (closing twice is a no-op).

    ``restore`` (the middleware, at the end of a request) also takes every unit opened
    inside it and left open out of this context, as it was before ``unit`` started.
    """
    if not unit.closed:
        unit.closed = True
        leave(_unit, unit, restore=restore)


def detach_unit(unit: Unit) -> None:
    """Take ``unit`` out of this context and leave it open (a response still streaming)."""
    leave(_unit, unit, restore=True)


class Resumable:
    """The units and allowance of code that runs in steps, carried between the steps.

    A streamed response's body runs chunk by chunk after the view has returned, in
    whatever context the server iterates it in (the request's thread under WSGI, a task or
    a ``sync_to_async`` thread under ASGI). ``resume()`` makes the request's unit current
    for one step and ``suspend()`` takes it away again, keeping what the step opened or
    closed (a ``track_queries()`` block spanning two chunks) for the next step.
    """

    __slots__ = ("allowance", "unit")

    def __init__(self, unit: Unit) -> None:
        self.unit: Unit | None = unit
        self.allowance = _allowed.get()

    def resume(self) -> tuple[Token[Unit | None], Token[_Allowance | None]]:
        return _unit.set(self.unit), _allowed.set(self.allowance)

    def suspend(
        self, tokens: tuple[Token[Unit | None], Token[_Allowance | None]]
    ) -> None:
        # Set and reset within one step, so in one context: these resets cannot fail.
        self.unit, self.allowance = _unit.get(), _allowed.get()
        _allowed.reset(tokens[1])
        _unit.reset(tokens[0])

    def clear(self) -> None:
        self.unit = self.allowance = None


def evaluate(
    unit: Unit, *, view: str | None = None
) -> tuple[list[QueryFinding], list[QueryFinding]]:
    """Apply the N+1 and duplicate rules to a unit: ``(n_plus_one, duplicates)``."""
    allow = get_settings().allow_n_plus_one
    n_plus_one: list[QueryFinding] = []
    duplicates: list[QueryFinding] = []
    for group in unit.groups.values():
        alias, shape = group.alias, group.info.shape
        flagged = False
        if not _is_batch_loop(group):
            kind: Literal["n_plus_one", "n_plus_one_write"] = (
                "n_plus_one_write" if shape.kind == "write" else "n_plus_one"
            )
            for site in group.sites.values():
                if site.count >= unit.threshold and site.varied:
                    attribution = site.attribution
                    if (
                        attribution is not None
                        and attribution.relation_kind == "prefetch_batch"
                    ):
                        continue
                    finding = _with_view(
                        build_finding(
                            kind, shape, alias, site.count, site.duration, attribution
                        ),
                        view,
                    )
                    flagged = True
                    if not is_allowed(finding, allow):
                        n_plus_one.append(finding)
        if flagged:
            continue
        for params_key, (attribution, parameters) in group.duplicate_details.items():
            count = group.duplicates[params_key]
            if count >= unit.duplicate_threshold:
                duration = group.duration * count / group.count
                finding = _with_view(
                    build_finding(
                        "duplicate",
                        shape,
                        alias,
                        count,
                        duration,
                        attribution,
                        parameters=parameters,
                    ),
                    view,
                )
                if not is_allowed(finding, allow):
                    duplicates.append(finding)
    n_plus_one.sort(key=lambda f: (-f.count, f.fingerprint))
    duplicates.sort(key=lambda f: (-f.count, f.fingerprint))
    return n_plus_one, duplicates


def _with_view(finding: QueryFinding, view: str | None) -> QueryFinding:
    if view is None:
        return finding
    from dataclasses import replace

    return replace(finding, view=view)


def _is_batch_loop(group: _Group) -> bool:
    """Pagination, keyset batches and bulk operations repeat one shape by design."""
    if group.batch * 2 >= group.count:
        return True
    if group.offsets is not None and len(group.offsets) > 1:
        return True
    return group.info.keyset_limit is not None and group.full_pages >= group.count - 1


# --- reports -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapturedQuery:
    """One executed statement (parameters only when ``LOG_PARAMETERS`` is on)."""

    alias: str
    sql: str
    fingerprint: str
    duration: float
    parameters: Any = None


class QueryReport:
    """What a unit of work ran: live inside the block, final after it."""

    def __init__(self, unit: Unit) -> None:
        self._unit = unit
        self._findings: tuple[list[QueryFinding], list[QueryFinding]] | None = None

    @property
    def count(self) -> int:
        """Statements executed (transaction control such as SAVEPOINT not counted)."""
        return self._unit.count

    @property
    def duration(self) -> float:
        """Total time spent executing them, in seconds."""
        return self._unit.duration

    @property
    def queries(self) -> list[CapturedQuery]:
        """Every statement in execution order."""
        unit = self._unit
        parameters = unit.query_parameters or [None] * len(unit.query_sql)
        return [
            CapturedQuery(alias, sql, sql_info(sql).shape.text, duration, params)
            for alias, sql, duration, params in zip(
                unit.query_aliases,
                unit.query_sql,
                unit.query_times,
                parameters,
                strict=True,
            )
        ]

    def _evaluate(self) -> tuple[list[QueryFinding], list[QueryFinding]]:
        if self._findings is not None:
            return self._findings
        findings = evaluate(self._unit)
        if self._unit.closed:
            self._findings = findings
        return findings

    @property
    def n_plus_one(self) -> list[QueryFinding]:
        """N+1 findings (reads and writes in loops), largest first."""
        return self._evaluate()[0]

    @property
    def duplicates(self) -> list[QueryFinding]:
        """Identical statements with identical parameters run repeatedly."""
        return self._evaluate()[1]

    def __repr__(self) -> str:
        return (
            f"<QueryReport {self.count} queries in {self.duration * 1000:.1f} ms, "
            f"{len(self.n_plus_one)} N+1, {len(self.duplicates)} duplicates>"
        )


class _AsyncWith(Generic[_Entered]):
    """``with`` and ``async with`` for a context manager whose work is synchronous."""

    def _enter(self, frame: FrameType) -> _Entered:
        """Open an entry; ``frame`` is the code that entered (see check_generator_block)."""
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def __enter__(self) -> _Entered:
        return self._enter(_getframe(1))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        raise NotImplementedError  # pragma: no cover

    async def __aenter__(self) -> _Entered:
        return self._enter(_getframe(1))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class _Block(_AsyncWith[QueryReport]):
    """What track_queries() and query_budget() share: a unit of work per entry.

    The instance holds only its options: each ``__enter__`` opens a unit of its own and
    ``__exit__`` closes the innermost unit this instance opened in the current context, so
    one instance may be entered by many threads, tasks and recursive calls at once.
    """

    _name = "track_queries"

    def __init__(
        self,
        using: str | list[str] | tuple[str, ...] | None,
        threshold: int | None,
    ) -> None:
        if threshold is not None and (type(threshold) is not int or threshold < 2):
            raise ValueError(f"threshold must be an int >= 2, not {threshold!r}")
        if using is not None and not isinstance(using, str | list | tuple):
            raise TypeError(
                f"using must be an alias or a list of aliases, not {using!r}"
            )
        self._using = using
        self._threshold = threshold
        self._entered: Entries[Unit] = Entries()

    def _start(self, owner: object) -> Unit:
        return start_unit(
            threshold=self._threshold,
            using=self._using,
            keep_queries=True,
            owner=owner,
        )

    def _enter(self, frame: FrameType) -> QueryReport:
        check_generator_block(frame, self._name)
        unit = self._start(self)
        self._entered.add(unit)
        return QueryReport(unit)

    def _exit_unit(self) -> Unit | None:
        unit = entry_to_exit(_unit, self, self._entered, self._name)
        if unit is not None:
            finish_unit(unit)
        return unit

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit_unit()


class track_queries(_Block):  # a context manager named like a function, by contract
    """Count and analyse the queries of a block: ``with track_queries() as report:``.

    Works in scripts, commands, Celery tasks and tests, in sync and async code (the report
    includes queries run through ``sync_to_async``). Nothing is logged or raised; read
    ``report.count``, ``.duration``, ``.queries``, ``.n_plus_one`` and ``.duplicates``.
    One instance may be shared (entered by several threads or tasks at once): each entry
    gets its own report.

    Args:
        using: only count these database aliases (default: all but ``IGNORE_ALIASES``).
        threshold: executions from one call site that make an N+1 (default
            ``N_PLUS_ONE_THRESHOLD``).
    """

    def __init__(
        self,
        *,
        using: str | list[str] | tuple[str, ...] | None = None,
        threshold: int | None = None,
    ) -> None:
        super().__init__(using, threshold)


# --- reactions ---------------------------------------------------------------------------------


NOT_RAISED = "(logged, not raised: the streamed response had already started)"
"""Appended to a "raise" reaction that comes too late to change the response."""


def react(
    findings: list[QueryFinding],
    reaction: Reaction,
    *,
    where: str | None = None,
    can_raise: bool = True,
) -> None:
    """Warn, log, raise or ignore ``findings`` as ``reaction`` says.

    ``can_raise=False`` (the end of a streamed response, whose status and headers are
    sent) turns "raise" into one ERROR record per finding.
    """
    if not findings or reaction == "ignore":
        return
    if reaction == "raise" and not can_raise:
        for finding in findings:
            logger.error(
                "%s\n    %s", finding.message, NOT_RAISED, extra={"finding": finding}
            )
        return
    if reaction == "raise":
        lead = f"{len(findings)} N+1 / duplicate query finding(s)"
        body = "\n".join(f.message for f in findings)
        raise NPlusOneError(
            f"{lead}{' in ' + where if where else ''}:\n{body}", findings
        )
    for finding in findings:
        logger.warning("%s", finding.message, extra={"finding": finding})
        if reaction == "warn":
            _warn(finding)


_warning_registry: dict[Any, Any] = {}


def _warn(finding: QueryFinding) -> None:
    message = NPlusOneWarning(finding.message)
    if finding.filename and finding.lineno:
        warnings.warn_explicit(
            message,
            NPlusOneWarning,
            finding.filename,
            finding.lineno,
            registry=_warning_registry,
        )
    else:
        warnings.warn(message, stacklevel=3)


def alias_counts(unit: Unit) -> dict[str, int]:
    """Statements per database alias (from the groups; one alias takes the whole count)."""
    counts: dict[str, int] = {}
    for group in unit.groups.values():
        counts[group.alias] = counts.get(group.alias, 0) + group.count
    if len(counts) <= 1:
        return {next(iter(counts), "default"): unit.count}
    return counts


def check_budget(
    count: int,
    budget: int | None,
    reaction: Reaction,
    *,
    unit: Unit,
    where: str | None,
    can_raise: bool = True,
) -> None:
    """React to ``count`` exceeding ``budget`` (None: no budget); see :func:`react`."""
    if budget is None or count <= budget or reaction == "ignore":
        return
    top: dict[str, int] = {}
    for group in unit.groups.values():
        text = group.info.shape.text
        top[text] = top.get(text, 0) + group.count
    lines = sorted(top.items(), key=lambda item: -item[1])[:5]
    detail = "\n".join(f"    {n} x {display_sql(text, limit=160)}" for text, n in lines)
    message = (
        f"{count} queries{' in ' + where if where else ''}, over the budget of {budget}; "
        f"most frequent:\n{detail}"
    )
    extra = {"query_count": count, "query_budget": budget}
    if reaction == "raise" and not can_raise:
        logger.error("%s\n    %s", message, NOT_RAISED, extra=extra)
        return
    if reaction == "raise":
        raise QueryBudgetExceeded(message, count=count, budget=budget)
    logger.warning("%s", message, extra=extra)
    if reaction == "warn":
        warnings.warn(message, NPlusOneWarning, stacklevel=3)


# --- query_budget and allow_n_plus_one -----------------------------------------------------------


class query_budget(_Block):  # named like a function: contract name
    """Limit a block or function to ``max_queries`` and react to N+1s inside it.

    A context manager and a decorator, for sync and async functions::

        @query_budget(max_queries=10)
        def handle(...): ...

        with query_budget(n_plus_one="warn"):
            ...

    Every entry (each ``with``, each call of a decorated function) is checked on its own,
    so one instance may be shared by threads, asyncio tasks and recursive calls.

    On a generator or async generator function, the unit covers the generator's own
    steps (each ``next``/``send``/``throw``, each awaited ``__anext__``/``asend``/
    ``athrow``), not what its consumer runs between them, and is checked when the
    generator ends: exhausted (raised out of the last ``next()``) or closed early (raised
    out of ``close()``/``aclose()``). An exception out of the generator wins, as it does
    out of a function. A ``with`` block left open across a ``yield`` stays in force for
    the consumer while the generator is suspended (a RuntimeWarning says so): decorate
    the generator function instead.

    Args:
        max_queries: most statements allowed (None: no limit); exceeding it raises
            :class:`~django_dbtuning.QueryBudgetExceeded`.
        n_plus_one: ``"raise"`` (default, :class:`~django_dbtuning.NPlusOneError`),
            ``"warn"``, ``"log"`` or ``"ignore"``.
        duplicates: the same choices for duplicate queries (default ``"ignore"``).
        using, threshold: as for :func:`track_queries`.
    """

    _name = "query_budget"

    def __init__(
        self,
        max_queries: int | None = None,
        n_plus_one: Reaction = "raise",
        *,
        duplicates: Reaction = "ignore",
        using: str | list[str] | tuple[str, ...] | None = None,
        threshold: int | None = None,
    ) -> None:
        if max_queries is not None and (
            type(max_queries) is not int or max_queries < 0
        ):
            raise ValueError(
                f"max_queries must be an int >= 0 or None, not {max_queries!r}"
            )
        for name, value in (("n_plus_one", n_plus_one), ("duplicates", duplicates)):
            if value not in ("warn", "log", "raise", "ignore"):
                raise ValueError(
                    f"{name} must be 'warn', 'log', 'raise' or 'ignore', not {value!r}"
                )
        super().__init__(using, threshold)
        self.max_queries = max_queries
        self.n_plus_one: Reaction = n_plus_one
        self.duplicates: Reaction = duplicates

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        unit = self._exit_unit()
        if exc_type is None and unit is not None:
            self._check(unit, None)

    def _check(self, unit: Unit, where: str | None) -> None:
        check_budget(unit.count, self.max_queries, "raise", unit=unit, where=where)
        n_plus_one, duplicates = evaluate(unit)
        react(n_plus_one, self.n_plus_one, where=where)
        react(duplicates, self.duplicates, where=where)

    @overload
    def __call__(self, func: Callable[..., Awaitable[Any]]) -> Callable[..., Any]: ...

    @overload
    def __call__(self, func: F) -> F: ...

    def __call__(self, func: Any) -> Any:
        where = getattr(func, "__qualname__", None)
        # Each call holds its own unit in a local: no instance state, no lookup on exit.
        generator = wrap_generator_function(
            func,
            _SCOPED,
            0,
            self._generator_unit,
            functools.partial(self._end, where),
            "query_budget(...)",
        )
        if generator is not None:
            return generator
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                unit = self._start(None)
                try:
                    result = await func(*args, **kwargs)
                finally:
                    finish_unit(unit)
                self._check(unit, where)
                return result

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            unit = self._start(None)
            try:
                result = func(*args, **kwargs)
            finally:
                finish_unit(unit)
            self._check(unit, where)
            return result

        return wrapper

    def _generator_unit(self) -> Unit:
        # A decorated generator's unit: current only during the generator's steps.
        return new_unit(
            None, threshold=self._threshold, using=self._using, keep_queries=True
        )

    def _end(self, where: str | None, unit: Unit, completed: bool) -> None:
        unit.closed = True  # current in no context between steps: nothing to leave
        if completed:
            self._check(unit, where)


class allow_n_plus_one(_AsyncWith[None]):  # named like a function: contract name
    """Silence N+1 and duplicate detection for an intended loop (queries still count).

    A context manager and a decorator, sync and async, generator functions included (the
    allowance then covers the generator's own steps only; see :class:`query_budget`).
    One instance may be shared.
    """

    def __init__(self) -> None:
        self._entered: Entries[_Allowance] = Entries()

    @staticmethod
    def _start(owner: object) -> _Allowance:
        allowance = _Allowance(first_open(_allowed.get()), owner)
        allowance.token = _allowed.set(allowance)
        return allowance

    @staticmethod
    def _finish(allowance: _Allowance) -> None:
        if not allowance.closed:
            allowance.closed = True
            leave(_allowed, allowance, restore=False)

    def _enter(self, frame: FrameType) -> None:
        check_generator_block(frame, "allow_n_plus_one")
        self._entered.add(self._start(self))

    def __exit__(self, *exc: object) -> None:
        allowance = entry_to_exit(_allowed, self, self._entered, "allow_n_plus_one")
        if allowance is not None:
            self._finish(allowance)

    def __call__(self, func: F) -> F:
        generator = wrap_generator_function(
            func, _SCOPED, 1, _new_allowance, _end_allowance, "allow_n_plus_one()"
        )
        if generator is not None:
            return cast(F, generator)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                allowance = self._start(None)
                try:
                    return await func(*args, **kwargs)
                finally:
                    self._finish(allowance)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            allowance = self._start(None)
            try:
                return func(*args, **kwargs)
            finally:
                self._finish(allowance)

        return cast(F, wrapper)


def _new_allowance() -> _Allowance:
    return _Allowance(None, None)


def _end_allowance(allowance: _Allowance, completed: bool) -> None:
    allowance.closed = True


_SCOPED: tuple[ContextVar[Any], ...] = (_unit, _allowed)
"""What a decorated generator carries between its steps: its units and its allowances."""


def iter_findings(report: QueryReport) -> Iterator[QueryFinding]:
    """All findings of a report, N+1s first."""
    yield from report.n_plus_one
    yield from report.duplicates
