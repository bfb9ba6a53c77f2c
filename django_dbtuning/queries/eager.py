"""Capture for unused eager loads (``DBTUNING["UNUSED_EAGER_LOADS"]``): what was loaded, what read.

Why this wraps Django internals. Django has no public hook for either half: nothing signals
"a queryset loaded these related objects" or "a cached related object was read". The least
invasive design found, and its parts:

* **Loads.** ``ModelIterable.__iter__`` (the rows of a ``select_related`` queryset, with
  their related objects already in each row's field cache) and ``prefetch_related_objects``
  / ``prefetch_one_level`` in ``django.db.models.query`` (what each prefetch level stored, on
  which instances) are replaced by wrappers that call the original and then note what it
  loaded. ``QuerySet.select_related`` / ``prefetch_related`` are wrapped to remember the
  user line that asked for the eager load (on the ``Query``, which clones carry along).
* **Reads.** Each instance that received eager-loaded objects gets its field cache
  (``instance._state.fields_cache``, a plain dict) swapped for a dict subclass, and each
  prefetched manager cache's result list (and ``Prefetch(to_attr=...)`` list) for a list
  subclass, that note the first read of a watched entry and then behave as the originals.
  A to_attr list is a plain instance attribute, read without asking anyone, so for each
  to_attr name a data descriptor goes on the model class (only where the class has no
  attribute of that name) that notes the read and hands out the instance's value; it is
  the only change to a model class, and it leaves with the capture. A read counts
  when code outside ``django.db`` made it: Django's own prefetch traversal and ``save()``'s
  checks do not (they are recognised by their code objects). Pickling or copying an instance
  counts as a read (the copy may be read later, where we cannot see it) and yields plain
  containers.

Installed only while it can matter: when a unit of work that tracks eager loads starts
(``UNUSED_EAGER_LOADS`` on, or the pytest plugin's report mode) and removed again once the
setting is off and no such unit is open, so with the setting off (the default) nothing of this
is installed and no query or instance pays for it. Each wrapper first looks for a tracking
unit in the ``current_unit`` ContextVar (per thread and per asyncio task, copied into
``sync_to_async`` threads) and otherwise calls straight through; instances loaded while
tracking keep their containers after the unit ends, and those note nothing once their loads
are judged. A failure here is logged once and never breaks a query.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from types import FrameType
from typing import TYPE_CHECKING, Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from django_dbtuning.conf import get_settings
from django_dbtuning.queries.attribution import attribute
from django_dbtuning.queries.callsite import (
    LIBRARY,
    ORM,
    USER,
    frame_category,
    location,
)
from django_dbtuning.queries.eager_findings import EagerState, Level, Load, Method, Site
from django_dbtuning.queries.eager_reads import (
    TrackedList,
    load_internal_readers,
    tracked_cache,
    unwatch_to_attrs,
    watch_to_attr,
)
from django_dbtuning.queries.hints import quote
from django_dbtuning.queries.recorder import current_unit, internal_error

if TYPE_CHECKING:
    from django_dbtuning.queries.units import Unit

_getframe = sys._getframe
_MISSING = object()
_LIBRARY_BUILT = Site(callsite="<library>")  # a load built by Django or a third party
_SITES = "_dbtuning_eager_sites"  # attribute on django.db.models.sql.Query


# --- which units track ------------------------------------------------------------------------


def tracking_units(alias: str | None) -> list[Unit]:
    """The open units of this context that track eager loads (of ``alias``'s queries)."""
    found: list[Unit] = []
    unit = current_unit.get()
    while unit is not None:
        if (
            unit.eager is not None
            and not unit.closed
            and (
                alias is None
                or (
                    (unit.using is None or alias in unit.using)
                    and alias not in unit.ignored
                )
            )
        ):
            found.append(unit)
        unit = unit.parent
    return found


# --- installation -----------------------------------------------------------------------------

_lock = threading.Lock()
_forced: weakref.WeakSet[Unit] = weakref.WeakSet()
# What each wrapper calls: the function it replaced at the last install. Never cleared, so
# a call already inside a wrapper when another thread uninstalls still finds it.
_originals: dict[tuple[Any, str], Any] = {}
_by_name: dict[str, Any] = {}
_installed = False


def start(unit: Unit, *, forced: bool) -> EagerState:
    """A new unit tracks eager loads: make sure the capture is installed."""
    if forced:
        with _lock:
            _forced.add(unit)
    sync_installation()
    return EagerState()


def finished() -> None:
    """A tracking unit ended: uninstall if nothing needs the capture any more."""
    sync_installation()


def is_installed() -> bool:
    return _installed


def sync_installation() -> None:
    with _lock:
        wanted = get_settings().unused_eager_loads or any(not u.closed for u in _forced)
        if wanted and not _installed:
            try:
                _install()
            except Exception:
                _uninstall()
                internal_error("installing the unused eager load capture")
        elif not wanted and _installed:
            _uninstall()


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "DBTUNING" and _installed:
        sync_installation()


def _targets() -> list[tuple[Any, str, Callable[..., Any]]]:
    from django.db.models import query

    return [
        (query.ModelIterable, "__iter__", _model_iter),
        (query, "prefetch_related_objects", _prefetch_related_objects),
        (query, "prefetch_one_level", _prefetch_one_level),
        (query.QuerySet, "select_related", _select_related),
        (query.QuerySet, "prefetch_related", _prefetch_related),
    ]


def _install() -> None:
    global _installed
    load_internal_readers()
    _installed = True
    for owner, name, wrapper in _targets():
        current, saved = owner.__dict__[name], _originals.get((owner, name))
        if current is wrapper or (saved is not None and current is not saved):
            continue  # ours already, or another tool's patch on top of ours: keep it
        _originals[(owner, name)] = _by_name[name] = current
        setattr(owner, name, wrapper)


def _uninstall() -> None:
    global _installed
    _installed = False
    unwatch_to_attrs()
    for owner, name, wrapper in _targets():
        # Another tool that patched on top of us keeps its patch (ours stays below it,
        # calling straight through); otherwise Django gets its own function back.
        if owner.__dict__.get(name) is wrapper and (owner, name) in _originals:
            setattr(owner, name, _originals[(owner, name)])


def _original(name: str) -> Any:
    # Each target's name is unique among the five: one dict lookup per call.
    return _by_name[name]


# --- where a load comes from ------------------------------------------------------------------


def _build_site() -> Site | None:
    """The line that called select_related()/prefetch_related() (None: not user code)."""
    frame: FrameType | None = _getframe(2)
    while frame is not None:
        kind = frame_category(frame.f_code)
        if kind == USER:
            path, line, _ = location(frame)
            return Site(callsite=f"{path}:{line}", filename=path, lineno=line)
        if kind == LIBRARY:
            return _LIBRARY_BUILT
        if kind != ORM:
            return None
        frame = frame.f_back
    return None


def _remember_site(queryset: Any, method: Method) -> Any:
    try:
        if tracking_units(None):
            site = _build_site()
            if site is not None:
                query = queryset.query
                sites = dict(query.__dict__.get(_SITES, {}))
                sites[method] = site
                query.__dict__[_SITES] = sites
    except Exception:
        internal_error("noting where an eager load was asked for")
    return queryset


def _select_related(self: Any, *fields: Any) -> Any:
    return _remember_site(_original("select_related")(self, *fields), "select_related")


def _prefetch_related(self: Any, *lookups: Any) -> Any:
    return _remember_site(
        _original("prefetch_related")(self, *lookups), "prefetch_related"
    )


def _site(query: Any, method: Method, units: list[Unit]) -> Site:
    """The build site if known, with the evaluating line or template if elsewhere."""
    built: Site | None = (
        query.__dict__.get(_SITES, {}).get(method) if query is not None else None
    )
    if built == _LIBRARY_BUILT:
        return built
    found = attribute(_getframe(), units[0].task)
    evaluated = found.template or found.callsite
    if built is None:
        return Site(
            callsite=found.callsite,
            filename=found.filename,
            lineno=found.lineno,
            template=found.template,
        )
    if evaluated == built.callsite:
        return built
    return Site(built.callsite, built.filename, built.lineno, None, evaluated)


def _register(load: Load, units: list[Unit]) -> None:
    for unit in units:
        assert unit.eager is not None
        unit.eager.loads.append(load)


# --- select_related ---------------------------------------------------------------------------


class _Node:
    __slots__ = ("cache_name", "children", "level")

    def __init__(self, cache_name: str, level: Level) -> None:
        self.cache_name = cache_name
        self.level = level
        self.children: list[_Node] = []


def _model_iter(self: Any) -> Any:
    rows = _original("__iter__")(self)
    queryset = self.queryset
    tree = queryset.query.select_related
    if not tree or (tree is not True and type(tree) is not dict):
        return rows
    units = tracking_units(queryset.db)
    if not units:
        return rows
    try:
        site = _site(queryset.query, "select_related", units)
        if site == _LIBRARY_BUILT:
            return rows
        load = Load("select_related", queryset.model._meta.label, site)
        if tree is True:  # select_related() without names
            load.everything = True
            tree = _non_null_tree(queryset.model, queryset.query.max_depth, 1)
        nodes = _plan(queryset.model, tree, "", load, units)
    except Exception:
        internal_error("planning the unused eager load capture")
        return rows
    _register(load, units)
    return _tag_rows(rows, nodes)


def _non_null_tree(model: Any, max_depth: int, depth: int) -> dict[str, Any]:
    """What select_related() without names follows (Django's select_related_descend()):
    every non-null forward foreign key and one-to-one but parent links, ``max_depth`` deep.
    A relation Django did not follow leaves no cache entry and is skipped when tagging."""
    if depth > max_depth:
        return {}
    return {
        f.name: _non_null_tree(f.related_model, max_depth, depth + 1)
        for f in model._meta.fields
        if f.is_relation
        and f.remote_field is not None
        and not getattr(f.remote_field, "parent_link", False)
        and not f.null
    }


def _plan(
    model: Any, tree: dict[str, Any], prefix: str, load: Load, units: list[Unit]
) -> list[_Node]:
    nodes: list[_Node] = []
    for name, subtree in tree.items():
        path = prefix + name
        try:
            relation = model._meta.get_field(name)
        except Exception:
            continue  # a FilteredRelation alias: not judged, nor what lies below it
        if not relation.is_relation or not (
            relation.many_to_one or relation.one_to_one
        ):
            continue
        level = Level(path, f"{model._meta.label}.{name}", units)
        load.levels[path] = level
        node = _Node(relation.cache_name, level)
        if subtree:
            node.children = _plan(
                relation.related_model, subtree, path + "__", load, units
            )
        else:
            load.lookups = (*load.lookups, (f'"{path}"', path))
        nodes.append(node)
    return nodes


def _tag_rows(rows: Iterator[Any], nodes: list[_Node]) -> Iterator[Any]:
    for obj in rows:
        try:
            _tag(obj, nodes)
        except Exception:
            internal_error("watching eager-loaded objects")
        yield obj


def _tag(obj: Any, nodes: list[_Node]) -> None:
    cache = tracked_cache(obj)
    for node in nodes:
        value = dict.get(cache, node.cache_name, _MISSING)
        if value is _MISSING:
            continue
        cache.watch(node.cache_name, node.level)
        if value is not None:
            node.level.objects += 1
            if node.children:
                _tag(value, node.children)


# --- prefetch_related -------------------------------------------------------------------------


class _Session:
    """One prefetch_related_objects() call: its lookups as written, the levels it fetched."""

    __slots__ = ("load", "units")

    def __init__(self, load: Load, units: list[Unit]) -> None:
        self.load = load
        self.units = units


_session: ContextVar[_Session | None] = ContextVar(
    "django_dbtuning_prefetch", default=None
)


def _prefetch_related_objects(model_instances: Any, *related_lookups: Any) -> Any:
    original = _original("prefetch_related_objects")
    state = getattr(model_instances[0], "_state", None) if model_instances else None
    if not related_lookups or state is None:  # None: rows of .values(), not prefetched
        return original(model_instances, *related_lookups)
    units = tracking_units(getattr(state, "db", None))
    session = None
    if units:
        try:
            session = _new_session(model_instances, related_lookups, units)
        except Exception:
            internal_error("planning the unused eager load capture")
    if session is None:
        return original(model_instances, *related_lookups)
    token = _session.set(session)
    try:
        return original(model_instances, *related_lookups)
    finally:
        _session.reset(token)


def _new_session(
    instances: Any, lookups: tuple[Any, ...], units: list[Unit]
) -> _Session | None:
    caller = _getframe(2).f_locals.get("self")  # QuerySet._prefetch_related_objects
    query = getattr(caller, "query", None) if hasattr(caller, "_result_cache") else None
    site = _site(query, "prefetch_related", units)
    if site == _LIBRARY_BUILT:
        return None
    load = Load("prefetch_related", instances[0]._meta.label, site)
    load.lookups = tuple((_written(lookup), _path(lookup)) for lookup in lookups)
    _register(load, units)
    return _Session(load, units)


def _written(lookup: Any) -> str:  # names as Python literals: a to_attr may be any text
    if isinstance(lookup, str):
        return quote(lookup)
    queryset = ", queryset=..." if lookup.queryset is not None else ""
    to_attr = f", to_attr={quote(lookup.to_attr)}" if lookup.to_attr else ""
    return f"Prefetch({quote(lookup.prefetch_through)}{queryset}{to_attr})"


def _path(lookup: Any) -> str:
    return lookup if isinstance(lookup, str) else str(lookup.prefetch_to)


def _prefetch_one_level(
    instances: Any, prefetcher: Any, lookup: Any, level: int
) -> Any:
    original = _original("prefetch_one_level")
    session = _session.get()
    if session is None or not instances:
        return original(instances, prefetcher, lookup, level)
    first = instances[0]
    before = _cache_keys(first)
    result = original(instances, prefetcher, lookup, level)
    try:
        _watch_level(session, instances, lookup, level, before)
    except Exception:
        internal_error("watching prefetched objects")
    return result


def _watch_to_attr(instances: Any, name: str, level: Level) -> bool:
    """Watch a to_attr list on every instance; False (never judged) where we cannot:
    a to-one to_attr (an object, not a list), or a class with an attribute of that name."""
    values = [obj.__dict__.get(name) for obj in instances]
    if any(type(v) is not list for v in values):
        return False
    if not watch_to_attr(type(instances[0]), name):
        return False
    for obj, rows in zip(instances, values, strict=True):
        level.objects += len(rows)
        obj.__dict__[name] = TrackedList(rows, (level,))
    return True


def _cache_keys(obj: Any) -> tuple[set[str], set[str]]:
    prefetched = obj.__dict__.get("_prefetched_objects_cache") or {}
    return set(prefetched), set(obj._state.fields_cache)


def _watch_level(
    session: _Session, instances: Any, lookup: Any, level: int, before: Any
) -> None:
    path = lookup.get_current_prefetch_to(level)
    through = lookup.prefetch_through.split("__")[level]
    relation = f"{instances[0]._meta.label}.{through}"
    load = session.load
    # A lookup added by a Prefetch queryset's own prefetch_related(): never judged.
    judged = any(p == path or p.startswith(path + "__") for _, p in load.lookups)
    watched = Level(path, relation, session.units, judged=judged)
    load.levels[path] = watched
    to_attr, as_attr = lookup.get_current_to_attr(level)
    if as_attr and judged:
        watched.judged = _watch_to_attr(instances, to_attr, watched)
    if as_attr or not judged:
        return
    prefetched, cached = _cache_keys(instances[0])
    new_prefetched = prefetched - before[0]
    new_cached = cached - before[1]
    if len(new_prefetched) == 1:
        key = next(iter(new_prefetched))
        for obj in instances:
            queryset = obj._prefetched_objects_cache.get(key)
            rows = getattr(queryset, "_result_cache", None)
            if type(rows) is list:
                watched.objects += len(rows)
                queryset._result_cache = TrackedList(rows, (watched,))
    elif len(new_cached) == 1:
        key = next(iter(new_cached))
        for obj in instances:
            cache = tracked_cache(obj)
            value = dict.get(cache, key, _MISSING)
            if value is not _MISSING:
                cache.watch(key, watched)
                watched.objects += value is not None
    else:
        watched.judged = False  # stored somewhere we do not know: assume it is read
