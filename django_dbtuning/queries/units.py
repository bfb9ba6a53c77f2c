"""Units of work: what a request, a ``track_queries()`` block or a test ran, and its report.

A *unit of work* is a :class:`Unit` held in the recorder's ``current_unit`` ContextVar;
the recorder (:mod:`django_dbtuning.queries.recorder`) counts each query in the current
unit, by SQL shape and call site (its ``Group`` and ``Site``).
``asgiref`` runs ``sync_to_async`` code in a copy of the caller's context, so queries of an
async view land in the request's unit.

Units nest: each keeps the unit that was current when it started (``parent``) and a query
counts in every open unit of that chain. State belongs to the entry, never to the
``track_queries`` / ``query_budget`` / ``allow_n_plus_one`` instance, so one instance can be
entered by many threads, tasks and recursive calls at once; entries may end in any order
(see :mod:`django_dbtuning.queries.scopes`), and once all have ended nothing records.

A unit reads the settings snapshot once, when it starts (:attr:`Unit.settings`); nothing on
the per-query path reads settings.
"""

from __future__ import annotations

from contextvars import Token
from dataclasses import dataclass, replace
from typing import Any, Literal

from django_dbtuning.conf import DbTuningSettings, get_settings
from django_dbtuning.queries import eager
from django_dbtuning.queries.callsite import current_task
from django_dbtuning.queries.eager_findings import EagerState, UnusedEagerLoad, judge
from django_dbtuning.queries.findings import QueryFinding, build_finding, is_allowed
from django_dbtuning.queries.fingerprint import sql_info
from django_dbtuning.queries.recorder import (
    Allowance,
    Group,
    current_allowance,
    current_unit,
    install,
)
from django_dbtuning.queries.scopes import Scope, close_scope, leave, open_scope


class Unit(Scope):
    """The mutable state of one unit of work; reached through ``current_unit``."""

    __slots__ = (
        "count",
        "duplicate_threshold",
        "duration",
        "eager",
        "groups",
        "ignored",
        "keep_parameters",
        "keep_queries",
        "query_aliases",
        "query_parameters",
        "query_sql",
        "query_times",
        "settings",
        "task",
        "threshold",
        "ungrouped",
        "using",
    )

    def __init__(
        self,
        settings: DbTuningSettings,
        *,
        threshold: int | None = None,
        using: frozenset[str] | None = None,
        keep_queries: bool = False,
        owner: object = None,
        unused_eager_loads: bool | None = None,
    ) -> None:
        super().__init__(owner)
        self.settings = settings
        # Copied out of the snapshot: the recorder reads them on every query.
        self.threshold = threshold or settings.n_plus_one_threshold
        self.duplicate_threshold = settings.duplicate_threshold
        self.using = using
        self.ignored = frozenset(settings.ignore_aliases)
        self.keep_parameters = settings.log_parameters
        # Requests need counts and groups only; the per-query log is for track_queries().
        self.keep_queries = keep_queries
        self.count = 0
        self.duration = 0.0
        # Parallel lists rather than a tuple per query: strings, floats and the shared
        # SqlInfo objects are not new GC-tracked objects, so a 1000-query request does not
        # push 1000 containers into the older generations (and trigger full collections).
        self.query_aliases: list[str] = []
        self.query_sql: list[str] = []
        self.query_times: list[float] = []
        self.query_parameters: list[Any] | None = [] if self.keep_parameters else None
        self.groups: dict[Any, Group] = {}
        # alias -> (statements, seconds) no group holds: allowed, or of kind "other".
        self.ungrouped: dict[str, tuple[int, float]] = {}
        self.task = current_task()
        # Unused eager loads (opt-in): None keeps the default path free of it.
        self.eager: EagerState | None = None
        if unused_eager_loads or (
            unused_eager_loads is None and settings.unused_eager_loads
        ):
            self.eager = eager.start(self, forced=bool(unused_eager_loads))


# --- lifecycle ---------------------------------------------------------------------------------


def new_unit(
    *,
    threshold: int | None = None,
    using: str | list[str] | tuple[str, ...] | None = None,
    keep_queries: bool = False,
    owner: object = None,
    unused_eager_loads: bool | None = None,
) -> Unit:
    """A unit of work not yet current anywhere (:func:`start_unit` makes one current).

    ``unused_eager_loads``: track them whatever ``UNUSED_EAGER_LOADS`` says (True, the
    pytest plugin's report mode) or never (False); None follows the setting.
    """
    install()
    if isinstance(using, str):
        using = (using,)
    if using is not None:
        _check_aliases(using)
    return Unit(
        get_settings(),
        threshold=threshold,
        using=frozenset(using) if using is not None else None,
        keep_queries=keep_queries,
        owner=owner,
        unused_eager_loads=unused_eager_loads,
    )


def _check_aliases(using: list[str] | tuple[str, ...]) -> None:
    """A misspelt alias would make a block that records nothing: a budget never exceeded,
    a query snapshot that always passes."""
    from django.conf import settings

    known = tuple(settings.DATABASES)
    for alias in using:
        if alias not in known:
            raise ValueError(
                f"using names {alias!r}, which is not in DATABASES "
                f"({', '.join(map(repr, known))})"
            )


def start_unit(*, unused_eager_loads: bool | None = None) -> Unit:
    """Open a unit of work in the current context (:func:`finish_unit` closes it)."""
    return open_scope(current_unit, new_unit(unused_eager_loads=unused_eager_loads))


def finish_unit(unit: Unit, *, restore: bool = False) -> None:
    """Close ``unit``: it records nothing from now on (closing twice is a no-op).

    ``restore`` (the middleware, at the end of a request) also takes every unit opened
    inside it and left open out of this context, as it was before ``unit`` started.
    """
    close_scope(current_unit, unit, restore=restore)
    if unit.eager is not None:
        eager.finished()


def detach_unit(unit: Unit) -> None:
    """Take ``unit`` out of this context and leave it open (a response still streaming)."""
    leave(current_unit, unit, restore=True)


class Resumable:
    """The units and allowance of code that runs in steps, carried between the steps.

    A streamed response's body runs chunk by chunk after the view has returned, in
    whatever context the server iterates it in (the request's thread under WSGI, a task or
    a ``sync_to_async`` thread under ASGI). ``resume()`` makes the request's unit current
    for one step and ``suspend()`` takes it away again, keeping what the step opened or
    closed (a ``track_queries()`` block spanning two chunks) for the next step.
    """

    __slots__ = ("allowance", "tokens", "unit")

    def __init__(self, unit: Unit) -> None:
        self.unit: Unit | None = unit
        self.allowance = current_allowance.get()
        self.tokens: tuple[Token[Unit | None], Token[Allowance | None]] | None = None

    def resume(self) -> None:
        self.tokens = current_unit.set(self.unit), current_allowance.set(self.allowance)

    def suspend(self) -> None:
        # Set and reset within one step, so in one context: these resets cannot fail.
        assert self.tokens is not None
        unit_token, allowance_token = self.tokens
        self.unit, self.allowance = current_unit.get(), current_allowance.get()
        current_allowance.reset(allowance_token)
        current_unit.reset(unit_token)

    def clear(self) -> None:
        self.unit = self.allowance = None


# --- findings ----------------------------------------------------------------------------------


def evaluate(
    unit: Unit, *, view: str | None = None
) -> tuple[list[QueryFinding], list[QueryFinding]]:
    """Apply the N+1 and duplicate rules to a unit: ``(n_plus_one, duplicates)``."""
    allow = unit.settings.allow_n_plus_one
    n_plus_one: list[QueryFinding] = []
    duplicates: list[QueryFinding] = []
    for group in unit.groups.values():
        found = _n_plus_one(unit, group, view)
        if found is not None:
            n_plus_one.extend(f for f in found if not is_allowed(f, allow))
            continue  # an N+1 explains its repeats: no duplicate finding as well
        for params_key, (attribution, parameters) in group.duplicate_details.items():
            count = group.duplicates[params_key]
            if count >= unit.duplicate_threshold:
                finding = build_finding(
                    "duplicate",
                    group.info.shape,
                    group.alias,
                    count,
                    group.duration * count / group.count,
                    attribution,
                    parameters=parameters,
                )
                finding = replace(finding, view=view) if view else finding
                if not is_allowed(finding, allow):
                    duplicates.append(finding)
    n_plus_one.sort(key=lambda f: (-f.count, f.fingerprint))
    duplicates.sort(key=lambda f: (-f.count, f.fingerprint))
    return n_plus_one, duplicates


def _n_plus_one(
    unit: Unit, group: Group, view: str | None
) -> list[QueryFinding] | None:
    """The N+1 findings of a group (allowed ones included); None when it has none."""
    if _is_batch_loop(group):
        return None
    shape = group.info.shape
    kind: Literal["n_plus_one", "n_plus_one_write"] = (
        "n_plus_one_write" if shape.kind == "write" else "n_plus_one"
    )
    found: list[QueryFinding] = []
    for site in group.sites.values():
        attribution = site.attribution
        if site.count < unit.threshold or not site.varied:
            continue
        if attribution is not None and attribution.relation_kind == "prefetch_batch":
            continue
        finding = build_finding(
            kind, shape, group.alias, site.count, site.duration, attribution
        )
        found.append(replace(finding, view=view) if view else finding)
    return found or None


def _is_batch_loop(group: Group) -> bool:
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

    def __init__(self, unit: Unit, *, view: str | None = None) -> None:
        self._unit = unit
        self._view = view
        self._findings: tuple[list[QueryFinding], list[QueryFinding]] | None = None
        self._evaluated_at = -1

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
        """Every statement in execution order (``track_queries()`` only)."""
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

    def most_common(self, n: int | None = None) -> list[tuple[str, int]]:
        """``(fingerprint, executions)`` of the ``n`` most frequent SQL shapes (None: all)."""
        counts: dict[str, int] = {}
        for group in self._unit.groups.values():
            text = group.info.shape.text
            counts[text] = counts.get(text, 0) + group.count
        return sorted(counts.items(), key=lambda item: -item[1])[:n]

    def by_alias(self) -> dict[str, int]:
        """Statements per database alias (``{"default": 0}`` when none ran)."""
        counts: dict[str, int] = {}
        for group in self._unit.groups.values():
            counts[group.alias] = counts.get(group.alias, 0) + group.count
        for alias, (count, _) in self._unit.ungrouped.items():
            counts[alias] = counts.get(alias, 0) + count
        return counts or {"default": 0}

    def duration_by_alias(self) -> dict[str, float]:
        """Seconds spent executing statements, per database alias (as :meth:`by_alias`)."""
        seconds: dict[str, float] = {}
        for group in self._unit.groups.values():
            seconds[group.alias] = seconds.get(group.alias, 0.0) + group.duration
        for alias, (_, duration) in self._unit.ungrouped.items():
            seconds[alias] = seconds.get(alias, 0.0) + duration
        return seconds or {"default": 0.0}

    def _evaluate(self) -> tuple[list[QueryFinding], list[QueryFinding]]:
        # Keyed on the query count: a unit's groups change only when it counts a query, so
        # a report read while the unit is open (the debug toolbar's panel) and again after
        # it closed (the middleware's reaction) evaluates once when nothing ran in between.
        count = self._unit.count
        if self._findings is None or self._evaluated_at != count:
            self._findings = evaluate(self._unit, view=self._view)
            self._evaluated_at = count
        return self._findings

    @property
    def n_plus_one(self) -> list[QueryFinding]:
        """N+1 findings (reads and writes in loops), largest first."""
        return self._evaluate()[0]

    @property
    def duplicates(self) -> list[QueryFinding]:
        """Identical statements with identical parameters run repeatedly."""
        return self._evaluate()[1]

    @property
    def unused_eager_loads(self) -> list[UnusedEagerLoad]:
        """select_related paths / prefetch_related lookups never read (info findings).

        Empty unless the unit tracked them (``UNUSED_EAGER_LOADS``, the pytest plugin's
        report mode). Reads after the unit ended are not seen.
        """
        state = self._unit.eager
        return [] if state is None else judge(state)[0]

    def __repr__(self) -> str:
        return (
            f"<QueryReport {self.count} queries in {self.duration * 1000:.1f} ms, "
            f"{len(self.n_plus_one)} N+1, {len(self.duplicates)} duplicates>"
        )
