"""Per-context stacks whose entries may end in any order, and may be shared.

A unit of work and an ``allow_n_plus_one()`` block are entries of a stack kept in a
ContextVar (:mod:`django_dbtuning.queries.units`). Each entry belongs to the ``__enter__``
that opened it, never to the instance, so one instance can be entered by many threads,
asyncio tasks and recursive calls at once. Entries can end out of order (``a`` entered,
``b`` entered, ``a`` exited, ``b`` exited; a generator suspended inside a block; an
exception in between) and in another context than the one that started them: whatever the
order, an entry counts only while it is open, and once every entry has ended the context
holds none. Decorated functions and generators are scoped by
:mod:`django_dbtuning.queries.wrappers`.
"""

from __future__ import annotations

import threading
import weakref
from contextvars import ContextVar, Token
from typing import Any, Generic, Self, TypeVar

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

    def __init__(self, owner: object = None) -> None:
        self.parent = None  # set by open_scope(), or at each step of a generator
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


def open_scope(var: ContextVar[_S | None], scope: _S) -> _S:
    """Make ``scope`` this context's current entry, above the nearest open one."""
    scope.parent = first_open(var.get())
    scope.token = var.set(scope)
    return scope


def close_scope(
    var: ContextVar[_S | None], scope: _S, *, restore: bool = False
) -> None:
    """End ``scope`` (ending it twice is a no-op) and take it off this context's stack.

    ``restore`` also takes every entry opened inside it and left open out of this context,
    as it was before ``scope`` started (see :func:`leave`).
    """
    if not scope.closed:
        scope.closed = True
        leave(var, scope, restore=restore)


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
