"""The query recorder: one ``execute_wrapper`` on every connection, state in ContextVars.

The recorder is installed once per connection object (``connection_created`` fires in
whichever thread connects, so the ASGI sync worker thread gets it too) and does nothing but
call through when no unit of work (:mod:`django_dbtuning.queries.units`) is current.

Per query the cost is a ContextVar read, a dict lookup for the fingerprint, a C-level frame
lookup for the call-site key and a few counters, in every open unit of the current chain;
stacks are read in full only when a group reaches a threshold (see
:mod:`django_dbtuning.queries.attribution`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from time import perf_counter
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.db.backends.signals import connection_created

from django_dbtuning.queries.attribution import Attribution, attribute
from django_dbtuning.queries.callsite import site_key
from django_dbtuning.queries.fingerprint import SqlInfo, cached_sql_info, sql_info
from django_dbtuning.queries.scopes import Scope, first_open

if TYPE_CHECKING:
    from django_dbtuning.queries.units import Unit

# One logger for the whole capability (was django_dbtuning.tracking / .middleware).
logger = logging.getLogger("django_dbtuning.queries")

_getframe = sys._getframe
_UNLOCATED: Hashable = object()  # no call-site key looked up yet for this query


class Allowance(Scope):
    """One open ``allow_n_plus_one()`` block."""

    __slots__ = ()


current_unit: ContextVar[Unit | None] = ContextVar("django_dbtuning_unit", default=None)
current_allowance: ContextVar[Allowance | None] = ContextVar(
    "django_dbtuning_allowed", default=None
)
SCOPED: tuple[ContextVar[Any], ...] = (current_unit, current_allowance)
"""What a decorated generator carries between its steps: its units and its allowances."""


class Site:
    """The executions of one SQL shape from one call site."""

    __slots__ = ("attribution", "count", "duration", "first_params", "varied")

    def __init__(self, params_key: int) -> None:
        self.count = 0
        self.duration = 0.0
        self.first_params = params_key
        self.varied = False
        self.attribution: Attribution | None = None


class Group:
    """The executions of one SQL shape on one alias, by call site and by parameters."""

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
        "single_below",
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
        self.sites: dict[Hashable, Site] = {}
        # Set once the first executions all came from one call site: later executions
        # from the same code and instruction are attributed to it without a site lookup.
        self.single: Site | None = None
        self.single_code: Any = None
        self.single_below: Any = None  # the ORM function the pinned line calls
        self.single_offsets: set[int] = set()
        # params key -> executions; the attribution (and parameters, if kept) of the
        # ones that reach DUPLICATE_THRESHOLD.
        self.duplicates: dict[int, int] = {}
        self.duplicate_details: dict[int, tuple[Attribution, Any]] = {}


# --- recording -------------------------------------------------------------------------------


def _recorder(
    execute: Callable[..., Any],
    sql: Any,
    params: Any,
    many: bool,
    context: dict[str, Any],
) -> Any:
    # A plain function (not a callable instance): the cheapest call Django's wrapper chain
    # can make, and one object, so installing it twice is a no-op.
    unit = current_unit.get()
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
            internal_error("recording a query")


RECORDER = _recorder
"""The execute wrapper installed on every connection."""


def _drop_closed() -> Unit | None:
    # This context still holds a unit that was closed elsewhere (exited in another
    # context): forget it here, so it neither records nor stays alive through the context.
    unit = first_open(current_unit.get())
    current_unit.set(unit)
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
    """Count one statement in every open unit of the chain that takes its alias."""
    info = cached_sql_info(sql) if type(sql) is str else None
    if info is None:
        info = sql_info(sql)
        sql = sql if type(sql) is str else info.shape.text
    role = info.role
    if not role:
        return  # plumbing (SAVEPOINT, RELEASE, SET), a tool's own tables: never counted
    alias: str = context["connection"].alias
    allowed = current_allowance.get()
    if allowed is not None and allowed.closed:
        allowed = first_open(allowed)
        current_allowance.set(allowed)
    analyse = allowed is None and role == 2
    params_key = 0
    if analyse:
        if type(params) is tuple:
            try:
                params_key = hash((sql, params))
            except TypeError:
                params_key = _params_key(sql, params)
        else:
            params_key = _params_key(sql, params)
    key = _UNLOCATED  # looked up once per query, for the first unit that needs it
    u: Unit | None = unit
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
        if analyse:
            key = _analyse(
                u, unit, info, alias, params_key, params, elapsed, context, key
            )
        else:  # no group holds it: by_alias() still counts it on its alias
            count, duration = u.ungrouped.get(alias, (0, 0.0))
            u.ungrouped[alias] = (count + 1, duration + elapsed)
        u = u.parent


def _analyse(
    u: Unit,
    unit: Unit,
    info: SqlInfo,
    alias: str,
    params_key: int,
    params: Any,
    elapsed: float,
    context: dict[str, Any],
    key: Hashable,
) -> Hashable:
    """Count the statement in ``u`` by shape and call site; returns the site key if found.

    ``unit`` is the innermost unit (its task locates the call site); site_key() and the
    anchor lookup must stay in this function: ``site_depth`` is relative to its frame.
    """
    group_key = info.shape if alias == "default" else (alias, info.shape)
    group = u.groups.get(group_key)
    if group is None:
        group = u.groups[group_key] = Group(alias, info)
    group.count += 1
    group.duration += elapsed
    if not info.plain:
        _note_pages(group, info, context)
    site = single = group.single
    anchor = None
    if single is not None:
        # The frame that located the single site sits at the same depth above the same ORM
        # function (see site_key); code and offset identify the site without lookups.
        try:
            below = _getframe(info.site_depth - 1)
            anchor = below.f_back if below.f_code is group.single_below else None
        except ValueError:
            pass
        if (
            anchor is None
            or anchor.f_code is not group.single_code
            or anchor.f_lasti not in group.single_offsets
        ):
            site = None
    if site is None:
        if key is _UNLOCATED:
            key = site_key(_getframe(), info, unit.task)
        site = group.sites.get(key)
        if site is None:
            site = group.sites[key] = Site(params_key)
        if single is not None:
            if site is not single:
                group.single = None  # a second call site: locate every execution again
            elif anchor is not None and anchor.f_code is group.single_code:
                group.single_offsets.add(anchor.f_lasti)  # a specialised call's offset
        elif (
            group.count >= u.threshold
            and len(group.sites) == 1
            and info.site_below is not None  # found above an ORM function: depth > 1
            and type(key) is tuple
            and type(key[0]) is int
        ):
            _pin_single(group, site, key[0], info)
    if params_key != site.first_params:
        site.varied = True
    site.count += 1
    site.duration += elapsed
    if site.count == u.threshold and site.attribution is None:
        site.attribution = attribute(_getframe(), unit.task)
    repeats = group.duplicates[params_key] = group.duplicates.get(params_key, 0) + 1
    if repeats == u.duplicate_threshold:
        group.duplicate_details[params_key] = (
            site.attribution or attribute(_getframe(), unit.task),
            params if u.keep_parameters else None,
        )
    return key


def _note_pages(group: Group, info: SqlInfo, context: dict[str, Any]) -> None:
    """A batch, an OFFSET page, a full keyset page: what the finding's fix depends on."""
    if info.batch:
        group.batch += 1
    if info.offset is not None:
        if group.offsets is None:
            group.offsets = set()
        group.offsets.add(info.offset)
    if info.keyset_limit is not None and info.keyset_limit == getattr(
        context.get("cursor"), "rowcount", -1
    ):
        group.full_pages += 1


def _pin_single(group: Group, site: Site, code_id: int, info: SqlInfo) -> None:
    """Attribute the group's next executions to ``site`` while they run the same code."""
    try:
        below = _getframe(info.site_depth)  # +1 for this frame: the caller's depth - 1
    except ValueError:
        return
    anchor = below.f_back
    if (
        anchor is not None
        and below.f_code is info.site_below
        and id(anchor.f_code) == code_id
    ):
        group.single = site
        group.single_code = anchor.f_code
        group.single_below = below.f_code
        group.single_offsets = {anchor.f_lasti}


_error_logged = False


def internal_error(action: str) -> None:
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
        internal_error("installing the query recorder")


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
