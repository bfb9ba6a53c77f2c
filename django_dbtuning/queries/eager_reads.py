"""Reads of eager-loaded objects: the containers that notice them, and whose reads count.

Part of the unused-eager-load capture (:mod:`django_dbtuning.queries.eager`, whose
docstring says why it exists). An instance that received eager-loaded objects gets its field
cache swapped for a :class:`TrackedCache`, a prefetched manager's result list becomes a
:class:`TrackedList`; both behave as the dict and list they replace and note the first read
of a watched entry. A read counts when code outside ``django.db`` made it (:func:`is_use`).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from django_dbtuning.queries.callsite import ORM, frame_category
from django_dbtuning.queries.eager_findings import Level

_getframe = sys._getframe

# Django functions that read cached relations for their own bookkeeping, not for the user.
_INTERNAL_READERS: set[int] = set()
_PASS_THROUGH: set[int] = set()  # descriptors outside django.db (generic foreign keys)
_OURS = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def load_internal_readers() -> None:
    if _INTERNAL_READERS:
        return
    from django.db.models import Model, query

    for function in (
        query.prefetch_related_objects,
        query.prefetch_one_level,
        query.get_prefetcher,
        Model._prepare_related_fields_for_save,  # type: ignore[attr-defined]
    ):
        _INTERNAL_READERS.add(id(function.__code__))
    try:
        from django.contrib.contenttypes import fields as ct
    except ImportError:  # pragma: no cover - contenttypes is always importable
        return
    for name in ("GenericForeignKey", "GenericForeignKeyDescriptor"):
        get = getattr(getattr(ct, name, None), "__get__", None)
        if get is not None and hasattr(get, "__code__"):
            _PASS_THROUGH.add(id(get.__code__))


def is_use(frame: FrameType | None) -> bool:
    """Whether the read whose innermost caller is ``frame`` is the user's.

    Not when Django's prefetch traversal or ``save()`` read it for their own bookkeeping,
    nor this package (the N+1 attribution inspecting a queryset).
    """
    for _ in range(16):
        if frame is None:
            return True
        code = frame.f_code
        if id(code) in _INTERNAL_READERS or code.co_filename.startswith(_OURS):
            return False
        if frame_category(code) != ORM and id(code) not in _PASS_THROUGH:
            return True
        frame = frame.f_back
    return True


def _seen(levels: tuple[Level, ...], frame: FrameType | None) -> bool:
    """Note a read of ``levels``; True once nothing is left to note for them."""
    if not any(level.pending for level in levels):
        return True
    if not is_use(frame):
        return False
    for level in levels:
        level.mark_read()
    return True


class TrackedCache(dict[str, Any]):
    """An instance's field cache that notes the first read of each watched entry."""

    __slots__ = ("watched",)

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.watched: dict[str, tuple[Level, ...]] = {}

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        levels = self.watched.get(key)
        if levels and _seen(levels, _getframe(1)):
            self.watched.pop(key, None)
        return value

    def watch(self, key: str, level: Level) -> None:
        self.watched[key] = (*self.watched.get(key, ()), level)

    def copy(self) -> dict[str, Any]:
        # Model.__getstate__ (pickle, copy): the copy may be read where we cannot see it.
        for levels in self.watched.values():
            for level in levels:
                level.mark_read()
        self.watched.clear()
        return dict(self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (dict, (self.copy(),))


class TrackedList(list[Any]):
    """A prefetched manager's result list that notes its first read."""

    __slots__ = ("levels",)

    def __init__(self, data: list[Any], levels: tuple[Level, ...]) -> None:
        super().__init__(data)
        self.levels = levels

    def _read(self) -> None:
        if self.levels and _seen(self.levels, _getframe(2)):
            self.levels = ()

    def __iter__(self) -> Iterator[Any]:
        self._read()
        return list.__iter__(self)

    def __len__(self) -> int:
        self._read()
        return list.__len__(self)

    def __getitem__(self, index: Any) -> Any:
        self._read()
        return list.__getitem__(self, index)

    def __contains__(self, item: object) -> bool:
        self._read()
        return list.__contains__(self, item)

    def __reversed__(self) -> Iterator[Any]:
        self._read()
        return list.__reversed__(self)

    def __repr__(self) -> str:
        self._read()
        return list.__repr__(self)

    def copy(self) -> list[Any]:
        self._read()
        return list.copy(self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        for level in self.levels:
            level.mark_read()
        self.levels = ()
        return (list, (list.copy(self),))


def tracked_cache(obj: Any) -> TrackedCache:
    state = obj._state
    cache = state.fields_cache
    if type(cache) is not TrackedCache:
        cache = TrackedCache(cache)
        state.fields_cache = cache
    return cache


# --- Prefetch(to_attr=...) --------------------------------------------------------------------


class ToAttrReads:
    """A data descriptor for one ``to_attr`` name on one model class, while tracking.

    A ``Prefetch(to_attr=...)`` list is a plain instance attribute: Python hands it out
    without asking anyone, so reading ``author.recent_books`` alone would go unseen. This
    descriptor stands in front of the instance's ``__dict__`` (it stores nothing itself)
    and notes the read of a tracked list. Installed only on a model class that has no
    attribute of that name, and removed with the rest of the capture.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        try:
            value = obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None
        if (
            type(value) is TrackedList
            and value.levels
            and _seen(value.levels, _getframe(1))
        ):
            value.levels = ()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value

    def __delete__(self, obj: Any) -> None:
        try:
            del obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None


_to_attr_lock = threading.Lock()
_to_attr_installed: list[tuple[type, str, ToAttrReads]] = []


def watch_to_attr(cls: type, name: str) -> bool:
    """Put a :class:`ToAttrReads` on ``cls`` for ``name``; False where that cannot be."""
    with _to_attr_lock:
        current = cls.__dict__.get(name)
        if isinstance(current, ToAttrReads):
            return True
        if any(name in klass.__dict__ for klass in cls.__mro__):
            return False  # the class has an attribute of that name: leave it alone
        descriptor = ToAttrReads(name)
        setattr(cls, name, descriptor)
        _to_attr_installed.append((cls, name, descriptor))
        return True


def unwatch_to_attrs() -> None:
    """Take every :class:`ToAttrReads` off its class (the values stay on the instances)."""
    with _to_attr_lock:
        for cls, name, descriptor in _to_attr_installed:
            if cls.__dict__.get(name) is descriptor:
                delattr(cls, name)
        _to_attr_installed.clear()
