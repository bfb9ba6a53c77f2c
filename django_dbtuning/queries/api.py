"""The public API: ``track_queries``, ``query_budget`` and ``allow_n_plus_one``.

Each is a context manager (``with`` and ``async with``); ``query_budget`` and
``allow_n_plus_one`` are decorators too, for sync, async, generator and async generator
functions (:func:`~django_dbtuning.queries.wrappers.decorate`). The instance holds only its
options: every entry opens an entry of its own, so one instance may be entered by many
threads, tasks and recursive calls at once.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, Generic, TypeVar, cast, overload

from django_dbtuning.conf import Reaction
from django_dbtuning.queries.policy import Policy, conclude
from django_dbtuning.queries.recorder import (
    SCOPED,
    Allowance,
    current_allowance,
    current_unit,
)
from django_dbtuning.queries.scopes import (
    Entries,
    close_scope,
    entry_to_exit,
    open_scope,
)
from django_dbtuning.queries.units import QueryReport, Unit, finish_unit, new_unit
from django_dbtuning.queries.wrappers import check_generator_block, decorate

F = TypeVar("F", bound=Callable[..., Any])
_Entered = TypeVar("_Entered")
_getframe = sys._getframe


class _AsyncWith(Generic[_Entered]):
    """``with`` and ``async with`` for a context manager whose work is synchronous."""

    def _enter(self, frame: FrameType) -> _Entered:
        """Open an entry; ``frame`` is the code that entered (see check_generator_block)."""
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def _exit(self, failed: bool) -> None:
        """Close the innermost entry this instance opened in this context."""
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def __enter__(self) -> _Entered:
        return self._enter(_getframe(1))

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._exit(exc_type is not None)

    async def __aenter__(self) -> _Entered:
        return self._enter(_getframe(1))

    async def __aexit__(
        self, exc_type: type[BaseException] | None, *exc: object
    ) -> None:
        self._exit(exc_type is not None)


class track_queries(_AsyncWith[QueryReport]):  # named like a function, by contract
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

    _name = "track_queries"

    def __init__(
        self,
        *,
        using: str | list[str] | tuple[str, ...] | None = None,
        threshold: int | None = None,
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

    def _new(self, owner: object = None) -> Unit:
        return new_unit(
            threshold=self._threshold, using=self._using, keep_queries=True, owner=owner
        )

    def _enter(self, frame: FrameType) -> QueryReport:
        check_generator_block(frame, self._name)
        unit = open_scope(current_unit, self._new(self))
        self._entered.add(unit)
        return QueryReport(unit)

    def _exit(self, failed: bool) -> None:
        unit = entry_to_exit(current_unit, self, self._entered, self._name)
        if unit is not None:
            finish_unit(unit)
            if not failed:
                self._judge(None, unit)

    def _judge(self, where: str | None, unit: Unit) -> None:
        """Nothing for a ``track_queries()`` block: it only records."""


class query_budget(track_queries):  # named like a function, by contract
    """Limit a block or function to ``max_queries`` and react to N+1s inside it.

    A context manager and a decorator, for sync and async functions::

        @query_budget(max_queries=10)
        def handle(...): ...

        with query_budget(n_plus_one="warn"):
            ...

    Every entry (each ``with``, each call of a decorated function) is checked on its own,
    so one instance may be shared by threads, asyncio tasks and recursive calls. What is
    checked, in which order and what each reaction does is
    :func:`~django_dbtuning.queries.policy.enforce`'s (the middleware's too); with
    ``UNUSED_EAGER_LOADS`` set, the block's unused eager loads are logged (and warned)
    first, as the middleware does for a request.

    On a generator or async generator function, the unit covers the generator's own
    steps (each ``next``/``send``/``throw``, each awaited ``__anext__``/``asend``/
    ``athrow``), not what its consumer runs between them, and is checked when the
    generator ends: exhausted (raised out of the last ``next()``) or closed early (raised
    out of ``close()``/``aclose()``). An exception out of the generator wins, as it does
    out of a function. A ``with`` block left open across a ``yield`` stays in force for
    the consumer while the generator is suspended (a RuntimeWarning says so): decorate
    the generator function instead.

    Args:
        max_queries: most statements allowed (None: no limit).
        n_plus_one: ``"raise"`` (default, :class:`~django_dbtuning.NPlusOneError`),
            ``"warn"``, ``"log"`` or ``"ignore"``.
        duplicates: the same choices for duplicate queries (default ``"ignore"``;
            :class:`~django_dbtuning.DuplicateQueriesError`).
        over_budget: the same choices for more than ``max_queries`` (default ``"raise"``;
            :class:`~django_dbtuning.QueryBudgetExceeded`).
        using, threshold: as for :func:`track_queries`.
    """

    _name = "query_budget"

    def __init__(
        self,
        max_queries: int | None = None,
        n_plus_one: Reaction = "raise",
        *,
        duplicates: Reaction = "ignore",
        over_budget: Reaction = "raise",
        using: str | list[str] | tuple[str, ...] | None = None,
        threshold: int | None = None,
    ) -> None:
        self.policy = Policy(n_plus_one, duplicates, max_queries, over_budget)
        super().__init__(using=using, threshold=threshold)

    def _judge(self, where: str | None, unit: Unit) -> None:
        conclude(QueryReport(unit), self.policy, where)

    @overload
    def __call__(self, func: Callable[..., Awaitable[Any]]) -> Callable[..., Any]: ...

    @overload
    def __call__(self, func: F) -> F: ...

    def __call__(self, func: Any) -> Any:
        # Each call holds its own unit in a local: no instance state, no lookup on exit.
        judge = functools.partial(self._judge, getattr(func, "__qualname__", None))
        return decorate(func, SCOPED, 0, self._new, judge, "query_budget(...)")


class allow_n_plus_one(_AsyncWith[None]):  # named like a function, by contract
    """Silence N+1 and duplicate detection for an intended loop (queries still count).

    A context manager and a decorator, sync and async, generator functions included (the
    allowance then covers the generator's own steps only; see :class:`query_budget`).
    One instance may be shared.
    """

    def __init__(self) -> None:
        self._entered: Entries[Allowance] = Entries()

    def _enter(self, frame: FrameType) -> None:
        check_generator_block(frame, "allow_n_plus_one")
        self._entered.add(open_scope(current_allowance, Allowance(self)))

    def _exit(self, failed: bool) -> None:
        allowance = entry_to_exit(
            current_allowance, self, self._entered, "allow_n_plus_one"
        )
        if allowance is not None:
            close_scope(current_allowance, allowance)

    def __call__(self, func: F) -> F:
        return cast(F, decorate(func, SCOPED, 1, Allowance, None, "allow_n_plus_one()"))
