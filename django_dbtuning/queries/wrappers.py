"""Decorators' wrappers: each call of a function (each run of a generator) in its own entry.

:func:`decorate` serves ``query_budget`` and ``allow_n_plus_one`` over sync, async,
generator and async generator functions alike. Generators share the context of the code that
iterates them, so a ``with`` block left open across a ``yield`` stays current for that code
until the generator resumes; a decorated generator function instead keeps its entries aside
between its steps (:class:`Steps`), and :func:`check_generator_block` warns about the
``with`` form.
"""

from __future__ import annotations

import ast
import dis
import functools
import inspect
import textwrap
import warnings
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from contextvars import ContextVar
from types import CodeType, FrameType
from typing import Any, TypeVar

from django_dbtuning.queries.scopes import Scope, close_scope, first_open, open_scope

_S = TypeVar("_S", bound=Scope)


def decorate(
    func: Callable[..., Any],
    vars: Sequence[ContextVar[Any]],
    index: int,
    make: Callable[[], _S],
    judge: Callable[[_S], None] | None,
    name: str,
) -> Callable[..., Any]:
    """``func`` running each call in a new entry ``make()`` on ``vars[index]``.

    ``judge(entry)`` runs once the entry is closed, after a call that completed: returned,
    or a generator exhausted or closed early (it may raise then, out of the last ``next()``
    or out of ``close()``); never after an exception out of ``func``, which wins. The kind
    of ``func`` is decided once, here; the wrapper is of the same kind. ``TypeError`` when
    ``func`` only wraps a generator function (``name``: the decorator, for the message).
    """
    if inspect.isasyncgenfunction(func):
        return _wrap_async_generator(func, vars, index, make, judge)
    if inspect.isgeneratorfunction(func):
        return _wrap_generator(func, vars, index, make, judge)
    _refuse_wrapped_generator(func, name)
    var = vars[index]
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            entry = open_scope(var, make())
            try:
                result = await func(*args, **kwargs)
            finally:
                close_scope(var, entry)
            if judge is not None:
                judge(entry)
            return result

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        entry = open_scope(var, make())
        try:
            result = func(*args, **kwargs)
        finally:
            close_scope(var, entry)
        if judge is not None:
            judge(entry)
        return result

    return wrapper


class Steps:
    """The entries a decorated generator has open, kept aside while it is suspended.

    A generator runs step by step (each ``next``/``send``/``throw``, each awaited
    ``__anext__``/``asend``/``athrow``) in the context of whoever takes the step. A step
    starts with the generator's own entries put on top of that caller's (``__enter__``:
    the caller's open blocks enclose the step, so they count its queries, as they would a
    function's) and ends with them taken off again (``__exit__``: what the caller runs
    between steps is not the generator's). The lowest entry of the generator's own stack is
    re-parented onto the current caller's at every step: a generator advanced by several
    callers in turn is enclosed by whichever one takes the step.
    """

    __slots__ = ("_bases", "_before", "_tops", "_vars")

    def __init__(self, vars: Sequence[ContextVar[Any]], index: int, own: Scope) -> None:
        self._vars = vars
        # Per ContextVar: the generator's own innermost open entry and its lowest one
        # (None: it has none there), and the caller's value during a step.
        self._tops: list[Scope | None] = [None] * len(vars)
        self._bases: list[Scope | None] = [None] * len(vars)
        self._before: list[Any] = [None] * len(vars)
        self._tops[index] = self._bases[index] = own

    def __enter__(self) -> None:
        # A ContextVar set is the expensive part of a step (a new context mapping): a
        # variable the generator has no entry on is only read, here and in __exit__().
        tops, bases, before = self._tops, self._bases, self._before
        for i, var in enumerate(self._vars):
            current = before[i] = var.get()
            top = tops[i]
            if top is not None:
                base = bases[i]
                if base is not None:
                    base.parent = first_open(current)
                var.set(top)

    def __exit__(self, *exc_info: object) -> None:
        tops, before = self._tops, self._before
        for i, var in enumerate(self._vars):
            current, previous = var.get(), before[i]
            before[i] = None  # holds no caller's entry between steps
            top = tops[i]
            if current is (previous if top is None else top):
                if top is not None:
                    var.set(previous)
                continue
            self._keep(i, first_open(current), first_open(previous))
            var.set(previous)

    def _keep(self, i: int, top: Scope | None, below: Scope | None) -> None:
        """The step opened or ended entries on variable ``i``: what is the generator's."""
        base = top
        if top is below:
            top = base = None
        else:
            # The generator's own entries end where the caller's begin: the lowest one is
            # re-parented at each step.
            while base is not None and base.parent is not below:
                base = base.parent
        self._tops[i], self._bases[i] = top, base


def _end(own: _S, judge: Callable[[_S], None] | None) -> None:
    own.closed = True  # current in no context between steps: nothing to leave
    if judge is not None:
        judge(own)


def _wrap_generator(
    func: Callable[..., Generator[Any, Any, Any]],
    vars: Sequence[ContextVar[Any]],
    index: int,
    make: Callable[[], _S],
    judge: Callable[[_S], None] | None,
) -> Callable[..., Generator[Any, Any, Any]]:
    """A generator function running ``func``'s generator in an entry of its own.

    The entry is made when the generator first runs and is in force during each step only.
    Delegates like ``yield from``: sent values, thrown exceptions, ``close()`` and the
    return value reach ``func``'s generator unchanged.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        inner = func(*args, **kwargs)
        own = make()
        steps = Steps(vars, index, own)
        sent: Any = None
        thrown: BaseException | None = None
        closing: GeneratorExit | None = None
        result: Any = None
        try:
            while True:
                try:
                    with steps:
                        item = (
                            inner.send(sent) if thrown is None else inner.throw(thrown)
                        )
                except StopIteration as stop:
                    result = stop.value
                    break
                thrown = None
                try:
                    sent = yield item
                except GeneratorExit as exit_:
                    with steps:
                        inner.close()
                    closing = exit_
                    break
                except BaseException as exc:
                    sent, thrown = None, exc
        except BaseException:
            own.closed = True
            raise
        # Outside the except clauses: a budget exceeded by a generator closed early is
        # raised out of close() on its own, not as an error "during handling" of the close.
        _end(own, judge)
        if closing is not None:
            raise closing
        return result

    return wrapper


def _wrap_async_generator(
    func: Callable[..., AsyncGenerator[Any, Any]],
    vars: Sequence[ContextVar[Any]],
    index: int,
    make: Callable[[], _S],
    judge: Callable[[_S], None] | None,
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """:func:`_wrap_generator` for an async generator function.

    A step is one awaited ``__anext__``/``asend``/``athrow``/``aclose``, awaits inside it
    included (the step runs in the awaiting task, and ``sync_to_async`` code it awaits runs
    in a copy of that task's context).
    """

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        inner = func(*args, **kwargs)
        own = make()
        steps = Steps(vars, index, own)
        sent: Any = None
        thrown: BaseException | None = None
        closing: GeneratorExit | None = None
        try:
            while True:
                try:
                    with steps:
                        if thrown is None:
                            item = await inner.asend(sent)
                        else:
                            item = await inner.athrow(thrown)
                except StopAsyncIteration:
                    break
                thrown = None
                try:
                    sent = yield item
                except GeneratorExit as exit_:
                    with steps:
                        await inner.aclose()
                    closing = exit_
                    break
                except BaseException as exc:
                    sent, thrown = None, exc
        except BaseException:
            own.closed = True
            raise
        _end(own, judge)
        if closing is not None:
            raise closing

    return wrapper


def _refuse_wrapped_generator(func: Callable[..., Any], name: str) -> None:
    """Refuse a function that wraps a generator function without being one.

    ``@contextmanager``/``@asynccontextmanager`` (and any ``functools.wraps`` decorator
    over a generator function) make a plain function that returns an object running the
    generator later: a decorator above them would judge each call before any of the
    generator's queries ran, and check nothing. Decided once, at decoration time.
    """
    try:
        inner = inspect.unwrap(func)
    except ValueError:  # a __wrapped__ cycle: nothing to tell
        return
    if inner is func or not (
        inspect.isgeneratorfunction(inner) or inspect.isasyncgenfunction(inner)
    ):
        return
    what = getattr(func, "__qualname__", repr(func))
    raise TypeError(
        f"@{name} cannot check {what}(): it wraps the generator function "
        f"{getattr(inner, '__qualname__', repr(inner))}() without being one (as "
        "@contextmanager and @asynccontextmanager do), so it returns before the "
        "generator runs and the check would see none of its queries. Put "
        f"@{name} directly on the generator function, below @contextmanager: it then "
        "covers the generator's own code before and after its `yield`. To cover the "
        f"code inside the managed `with` block too, open `with {name}:` around the "
        "`yield` inside the generator instead."
    )


_IN_GENERATOR = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR
# Code that drives a generator as a context manager: there the block is meant to stay in
# force while the generator is suspended (@contextmanager, pytest yield fixtures), and in
# our own wrappers it is kept aside between steps.
_DRIVERS = frozenset({"contextlib", "_pytest", "pytest_asyncio", "django_dbtuning"})
# Django's code between a streamed body and whatever streams it (StreamingHttpResponse's
# adapters, GZipMiddleware's compressing generators): passed through, never a driver.
_DJANGO_STREAMS = frozenset(
    {"django.http.response", "django.middleware.gzip", "django.utils.text"}
)
# Read with .get(): an interpreter that renames an opcode makes _delegates() answer False
# (a warning too many), never fails the import.
_CACHE = dis.opmap.get("CACHE", 0)
_SEND = dis.opmap.get("SEND", -1)
_YIELD_VALUE = dis.opmap.get("YIELD_VALUE", -1)
_RESUME = dis.opmap.get("RESUME", -1)
_registry: dict[Any, Any] = {}
_ADVICE = {
    "track_queries": "Its queries count in this block. Open the block around the loop "
    "that iterates the generator instead, or decorate the generator function with "
    "@query_budget(...), which covers the generator's own steps only.",
    "query_budget": "Its queries count in this block. Decorate the generator function "
    "with @query_budget(...) instead: the decorator covers the generator's own steps only.",
    "allow_n_plus_one": "The N+1s and duplicates of that code are not reported. "
    "Decorate the generator function with @allow_n_plus_one() instead: the decorator "
    "covers the generator's own steps only.",
}


def check_generator_block(frame: FrameType, name: str) -> None:
    """Warn (once per line) about a ``with`` block in a generator that yields inside it.

    ``frame`` is the frame that entered the block. A generator suspended inside an open
    block leaves it in force for the code that iterates it until the generator resumes:
    ContextVars are per context, and a generator shares its caller's. Nothing can tell the
    block when its generator suspends, so it cannot be scoped to the generator's own steps
    from inside; the decorator form can (:func:`decorate`). Costs an attribute read
    per entry outside generators; the source of a generator is read once per ``with`` line.
    """
    code = frame.f_code
    if (
        not code.co_flags & _IN_GENERATOR
        or code.co_flags & inspect.CO_ITERABLE_COROUTINE
    ):
        return
    driver = _driver(frame)
    if driver is not None:
        module = str(driver.f_globals.get("__name__", ""))
        if module.partition(".")[0] in _DRIVERS:
            return
    lineno = _yielding_block(code, frame.f_lineno)
    if lineno is None:
        return
    where = f"{code.co_filename}:{lineno}"
    warnings.warn_explicit(
        f"{name}() block at {where} is open across a `yield` in the generator "
        f"{code.co_qualname}(): while the generator is suspended there, the block stays in "
        f"force for the code that iterates it. {_ADVICE[name]} If the generator is a context "
        "manager, this is intended: filter this warning out.",
        RuntimeWarning,
        code.co_filename,
        lineno,
        registry=_registry,
    )


def _driver(frame: FrameType) -> FrameType | None:
    """The frame that drives ``frame``'s generator: past ``yield from`` and Django.

    A generator reached through ``yield from`` runs on top of the generator delegating to
    it; the code that drives the outermost generator of the chain is what iterates it
    (contextlib for a ``@contextmanager`` that delegates to a helper, pytest for a yield
    fixture that does). A generator that iterates another with ``for`` or ``next()`` is
    that one's consumer, and is the driver.
    """
    driver = frame.f_back
    while driver is not None:
        if driver.f_globals.get("__name__") in _DJANGO_STREAMS or (
            driver.f_code.co_flags & inspect.CO_GENERATOR and _delegates(driver)
        ):
            driver = driver.f_back
        else:
            return driver
    return None


def _delegates(frame: FrameType) -> bool:
    """Whether generator ``frame`` is in a ``yield from``, running its delegate.

    Read from the instruction it stands at, as CPython's own ``gi_yieldfrom`` does: a
    ``send()`` goes through the delegating frame's SEND; a ``throw()`` goes straight to the
    delegate, the delegating frame left suspended at its YIELD_VALUE (3.11, 3.12) or at the
    RESUME after it (3.13), whose oparg 2 marks a ``yield from``.
    """
    code = frame.f_code.co_code
    at = frame.f_lasti
    if not 0 <= at < len(code):
        return False
    while at > 0 and code[at] == _CACHE:  # 3.12+ may stand on the SEND's inline cache
        at -= 2
    if code[at] == _SEND:
        return True
    if code[at] == _YIELD_VALUE:
        at += 2
    return at + 1 < len(code) and code[at] == _RESUME and code[at + 1] & 3 == 2


@functools.lru_cache(maxsize=256)
def _yielding_block(code: CodeType, lineno: int) -> int | None:
    """The line of the ``with`` at ``lineno`` in ``code`` if its body yields, else None.

    None too when the source cannot be read or parsed: no warning rather than a wrong one.
    """
    try:
        lines, first = inspect.getsourcelines(code)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError, ValueError):
        return None
    target = lineno - first + 1 if first else lineno
    block: ast.With | ast.AsyncWith | None = None
    for node in _own_nodes(tree.body[0] if tree.body else tree):
        if (
            isinstance(node, ast.With | ast.AsyncWith)
            and _starts_at(node, target)
            and (block is None or node.lineno >= block.lineno)  # the innermost one
        ):
            block = node
    if block is None:
        return None
    for statement in block.body:
        for node in _own_nodes(statement):
            if isinstance(node, ast.Yield | ast.YieldFrom):
                return block.lineno + first - 1 if first else block.lineno
    return None


def _starts_at(node: ast.With | ast.AsyncWith, line: int) -> bool:
    if node.lineno == line:
        return True
    return any(
        item.context_expr.lineno <= line <= (item.context_expr.end_lineno or line)
        for item in node.items
    )


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _own_nodes(root: ast.AST) -> Generator[ast.AST, None, None]:
    """``root`` and the nodes below it that run in its scope (not nested defs/lambdas)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, _SCOPES):
                stack.append(child)
