"""Per-context stacks whose entries may end in any order, and may be shared.

A unit of work and an ``allow_n_plus_one()`` block are entries of a stack kept in a
ContextVar (:mod:`django_dbtuning.queries.recorder`). Each entry belongs to the ``__enter__`` that
opened it, never to the instance, so one instance can be entered by many threads, asyncio
tasks and recursive calls at once. Entries can end out of order (``a`` entered, ``b``
entered, ``a`` exited, ``b`` exited; a generator suspended inside a block; an exception in
between) and in another context than the one that started them: whatever the order, an
entry counts only while it is open, and once every entry has ended the context holds none.

Generators share the context of the code that iterates them, so a ``with`` block left open
across a ``yield`` stays current for that code until the generator resumes. A decorated
generator function (:func:`wrap_generator`, :func:`wrap_async_generator`) instead keeps its
entries aside between its steps; :func:`check_generator_block` warns about the ``with`` form.
"""

from __future__ import annotations

import ast
import dis
import functools
import inspect
import textwrap
import threading
import warnings
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from contextvars import ContextVar, Token
from types import CodeType, FrameType
from typing import Any, Generic, Self, TypeVar

__all__ = [
    "Entries",
    "Scope",
    "Steps",
    "check_generator_block",
    "entry_to_exit",
    "first_open",
    "leave",
    "wrap_async_generator",
    "wrap_generator",
    "wrap_generator_function",
]

_S = TypeVar("_S", bound="Scope")


class Scope:
    """An entry of a per-context stack (a unit of work, an ``allow_n_plus_one`` block).

    The stack is a linked list held in a ContextVar: ``parent`` is the entry that was open
    when this one started, so a copied context (an asyncio task, ``sync_to_async``) shares
    the entries above it. Entries can end in any order; a closed entry stays in the chains
    of entries started after it, and everything that walks a chain skips it.
    """

    __slots__ = ("__weakref__", "closed", "owner", "parent", "token")

    parent: Self | None

    def __init__(self, parent: Self | None, owner: object) -> None:
        self.parent = parent
        # The instance whose __enter__ opened it: its __exit__ finds it again by identity,
        # so one instance can be entered many times at once (threads, tasks, recursion).
        self.owner = owner
        self.closed = False
        self.token: Token[Any] | None = None


def first_open(scope: _S | None) -> _S | None:
    while scope is not None and scope.closed:
        scope = scope.parent
    return scope


def leave(var: ContextVar[_S | None], scope: _S, *, restore: bool) -> None:
    """Take ``scope`` off this context's stack after it ended (or was detached).

    In order (``scope`` is the current entry) the context gets back the entry that was
    current when ``scope`` started, or the nearest open one below it if that one ended out
    of order meanwhile. Out of order (an entry started later is still open here) the
    context keeps that entry: it goes on recording and skips ``scope`` in its chain.
    """
    current = var.get()
    if current is not scope and not restore:
        if current is not None and current.closed:
            var.set(first_open(current))
        return
    token, scope.token = scope.token, None
    if token is None:  # detached earlier: its token is spent
        var.set(first_open(scope.parent))
        return
    try:
        var.reset(token)
    except ValueError:
        # The token belongs to the Context that started ``scope``; this one is another
        # (a task or a sync_to_async thread that copied it, a generator resumed
        # elsewhere). Set here what the reset would have restored there; that context,
        # if it still holds ``scope``, drops it when it next records a query.
        var.set(first_open(scope.parent))
        return
    restored = var.get()
    if restored is not None and restored.closed:
        var.set(first_open(restored))


class Entries(Generic[_S]):
    """The entries an instance opened with ``__enter__`` and has not exited yet.

    Only needed for an ``__exit__`` in another context than its ``__enter__`` (an async
    generator resumed by another task), where the context's own stack cannot say which
    entry ends. Held weakly: an entry that nothing references any more records nothing,
    and a shared instance entered but never exited must not keep its units alive.
    """

    __slots__ = ("_lock", "_lost", "_refs")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: list[weakref.ref[_S]] = []
        self._lost = 0  # entries garbage-collected before their __exit__

    def _died(self, ref: weakref.ref[_S]) -> None:
        # A GC callback, possibly while this thread holds the lock: no lock here.
        self._lost += 1

    def add(self, scope: _S) -> None:
        with self._lock:
            self._refs = [r for r in self._refs if r() is not None]
            self._refs.append(weakref.ref(scope, self._died))

    def remove(self, scope: _S) -> None:
        with self._lock:
            self._refs = [r for r in self._refs if r() is not scope]

    def latest_open(self) -> _S | None:
        with self._lock:
            refs = self._refs[:]
        for ref in reversed(refs):
            scope = ref()
            if scope is not None and not scope.closed:
                return scope
        return None

    def forget_lost(self) -> bool:
        if self._lost:
            self._lost -= 1
            return True
        return False


def entry_to_exit(
    var: ContextVar[_S | None], owner: object, entered: Entries[_S], name: str
) -> _S | None:
    """The open entry of ``owner`` that an ``__exit__`` in this context ends.

    None when that entry was garbage-collected meanwhile: there is nothing left to end.
    """
    scope = var.get()
    while scope is not None and (scope.owner is not owner or scope.closed):
        scope = scope.parent
    if scope is None:
        # Not on this context's stack: exited in another context than the one that
        # entered it. The latest open entry of this instance is the one; it is the only
        # one unless the instance is also shared by several contexts at once.
        scope = entered.latest_open()
        if scope is None:
            if entered.forget_lost():
                return None
            raise RuntimeError(
                f"{name}() exited without a matching entry: __exit__ was called more "
                "often than __enter__ on this instance"
            )
    entered.remove(scope)
    return scope


# --- generators ----------------------------------------------------------------------------


class Steps:
    """The entries a decorated generator has open, kept aside while it is suspended.

    A generator runs step by step (each ``next``/``send``/``throw``, each awaited
    ``__anext__``/``asend``/``athrow``) in the context of whoever takes the step. A step
    starts with the generator's own entries put on top of that caller's (:meth:`resume`: the
    caller's open blocks enclose the step, so they count its queries, as they would a
    function's) and ends with them taken off again (:meth:`suspend`: what the caller runs
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

    def resume(self) -> None:
        # A ContextVar set is the expensive part of a step (a new context mapping): a
        # variable the generator has no entry on is only read, here and in suspend().
        tops, bases, before = self._tops, self._bases, self._before
        for i, var in enumerate(self._vars):
            current = before[i] = var.get()
            top = tops[i]
            if top is not None:
                base = bases[i]
                if base is not None:
                    base.parent = first_open(current)
                var.set(top)

    def suspend(self) -> None:
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


def wrap_generator_function(
    func: Callable[..., Any],
    vars: Sequence[ContextVar[Any]],
    index: int,
    start: Callable[[], _S],
    end: Callable[[_S, bool], None],
    name: str,
) -> Callable[..., Any] | None:
    """``func`` wrapped by :func:`wrap_generator` or :func:`wrap_async_generator`.

    None when ``func`` is neither a generator nor an async generator function. Decided
    once, at decoration time; the wrapper is a generator (async generator) function too.
    ``TypeError`` when ``func`` only wraps one (``name``: the decorator, for the message).
    """
    if inspect.isasyncgenfunction(func):
        return wrap_async_generator(func, vars, index, start, end)
    if inspect.isgeneratorfunction(func):
        return wrap_generator(func, vars, index, start, end)
    _refuse_wrapped_generator(func, name)
    return None


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


def wrap_generator(
    func: Callable[..., Generator[Any, Any, Any]],
    vars: Sequence[ContextVar[Any]],
    index: int,
    start: Callable[[], _S],
    end: Callable[[_S, bool], None],
) -> Callable[..., Generator[Any, Any, Any]]:
    """A generator function running ``func``'s generator in an entry of its own.

    ``start()`` makes the entry (on ``vars[index]``) when the generator first runs; it is
    in force during each step only. ``end(entry, completed)`` runs once when the generator
    finishes: ``completed`` unless an exception propagates out of it (exhausted, returned,
    or closed early: ``end`` may raise then, out of the last ``next()`` or out of
    ``close()``). Delegates like ``yield from``: sent values, thrown exceptions, ``close()``
    and the return value reach ``func``'s generator unchanged.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        inner = func(*args, **kwargs)
        own = start()
        steps = Steps(vars, index, own)
        sent: Any = None
        thrown: BaseException | None = None
        closing: GeneratorExit | None = None
        result: Any = None
        try:
            while True:
                steps.resume()
                try:
                    item = inner.send(sent) if thrown is None else inner.throw(thrown)
                except StopIteration as stop:
                    result = stop.value
                    break
                finally:
                    thrown = None
                    steps.suspend()
                try:
                    sent = yield item
                except GeneratorExit as exit_:
                    steps.resume()
                    try:
                        inner.close()
                    finally:
                        steps.suspend()
                    closing = exit_
                    break
                except BaseException as exc:
                    sent, thrown = None, exc
        except BaseException:
            end(own, False)
            raise
        # Outside the except clauses: a budget exceeded by a generator closed early is
        # raised out of close() on its own, not as an error "during handling" of the close.
        end(own, True)
        if closing is not None:
            raise closing
        return result

    return wrapper


def wrap_async_generator(
    func: Callable[..., AsyncGenerator[Any, Any]],
    vars: Sequence[ContextVar[Any]],
    index: int,
    start: Callable[[], _S],
    end: Callable[[_S, bool], None],
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """:func:`wrap_generator` for an async generator function.

    A step is one awaited ``__anext__``/``asend``/``athrow``/``aclose``, awaits inside it
    included (the step runs in the awaiting task, and ``sync_to_async`` code it awaits runs
    in a copy of that task's context).
    """

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        inner = func(*args, **kwargs)
        own = start()
        steps = Steps(vars, index, own)
        sent: Any = None
        thrown: BaseException | None = None
        closing: GeneratorExit | None = None
        try:
            while True:
                steps.resume()
                try:
                    if thrown is None:
                        item = await inner.asend(sent)
                    else:
                        item = await inner.athrow(thrown)
                except StopAsyncIteration:
                    break
                finally:
                    thrown = None
                    steps.suspend()
                try:
                    sent = yield item
                except GeneratorExit as exit_:
                    steps.resume()
                    try:
                        await inner.aclose()
                    finally:
                        steps.suspend()
                    closing = exit_
                    break
                except BaseException as exc:
                    sent, thrown = None, exc
        except BaseException:
            end(own, False)
            raise
        end(own, True)
        if closing is not None:
            raise closing

    return wrapper


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
    from inside; the decorator form can (:func:`wrap_generator`). Costs an attribute read
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
