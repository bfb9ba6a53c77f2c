"""Where the instance behind a lazy load came from, and who built the queryset that loaded it.

A hint must name a queryset the user's code builds. The instance whose relation was read
per row is often not one: ``project.owner.profile`` reads ``profile`` on a ``User`` that
``project`` loaded, and a ``Member`` read in a loop over a prefetched ``member_set`` came
from the ``Project`` queryset's prefetch. Django keeps the way back: the parent's
``_state.fields_cache`` (``select_related`` and lazy loads), its
``_prefetched_objects_cache`` and ``Prefetch(to_attr=)`` lists hold the children, and a
queryset's ``_result_cache`` holds its rows. :func:`trace` walks up from the instance:
at each step the object holding it among what the running code holds (the locals of
every frame, outermost first, template contexts, the admin's ``ChangeList``, a
serializer's ``instance``), until a collection of rows holds it; that row is the root and
the steps are the lookup to give its queryset.

It also says who built the root queryset, so the fix is one the user can make: a
``ModelAdmin`` (changelist, inline, ``list_filter``), a Django REST framework view, or the
view that passed a template its context. Runs once per finding, never per query; nothing
here evaluates a queryset or a lazy object (every check is on ``type()``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from django.db.models import Model, QuerySet

from django_dbtuning.queries import callsite
from django_dbtuning.queries.callsite import HANDLER, HOP, TEMPLATE, USER
from django_dbtuning.queries.jinja import template_location

_MAX_NODES = 2000  # holders read per step: a bound, not a budget anyone reaches
_MAX_ROWS = 200  # rows read per queryset or prefetched list
_MAX_DEPTH = 4  # relations followed up from the instance
_MAX_FRAMES = 120  # frames read from the query out (a request stops at its handler)


@dataclass(slots=True)
class Segment:
    """One step of a lookup path: a cached relation or a prefetched one."""

    name: str
    prefetch: bool = False
    to_attr: bool = False  # a Prefetch(to_attr=) list: no lookup select_related takes
    model: Any = None  # the model of the rows this step reaches
    # A to-many relation the code iterated lazily (order.items.all per order): nothing
    # prefetches it yet, so the fix adds the whole lookup rather than replacing one.
    lazy: bool = False


@dataclass(slots=True)
class Origin:
    """Who built the queryset the user can change, and with which knob."""

    # "changelist", "inline", "list_filter", "change_form", "admin", "drf", "template"
    kind: str
    owner: Any = None  # the ModelAdmin / InlineModelAdmin / APIView instance
    # The list filter; a change form's BoundField; the template context's variable name.
    detail: Any = None
    # The view that built a template's context ("name (path:line)").
    view: str | None = None
    site: tuple[str, int] | None = None  # where the DRF view class is defined


@dataclass(slots=True)
class Provenance:
    """The root that loaded the instance and the lookup path from it."""

    root_model: Any = None  # a model class
    segments: list[Segment] = field(default_factory=list)
    queryset: Any = None  # the QuerySet whose rows hold the root, when one was found
    origin: Origin | None = None
    template_line: str | None = None  # a template that called the user frame (method)
    rendered_from: str | None = None  # the user frame that rendered that template


def is_model(value: Any) -> bool:
    """A model instance, never a lazy object standing in for one (no evaluation)."""
    return issubclass(type(value), Model)


def _is_queryset(value: Any) -> bool:
    return issubclass(type(value), QuerySet)


def _rows(value: Any) -> list[Any] | None:
    """The loaded model rows of a queryset, list, page or changelist, without a query."""
    if _is_queryset(value):
        rows = value._result_cache
    elif type(value) in (list, tuple):
        rows = value
    else:
        kind = type(value).__name__
        if kind == "Page":  # django.core.paginator.Page
            rows = getattr(value, "object_list", None)
            return _rows(rows) if rows is not None else None
        if kind == "ChangeList":
            return _rows(getattr(value, "result_list", None))
        return None
    if not rows or not is_model(rows[0]):
        return None
    return list(rows[:_MAX_ROWS])


# --- walking the caches ------------------------------------------------------------------------


def _held_by(holder: Any, node: Any) -> Segment | None:
    """How ``holder`` holds ``node`` in its caches (no query), or None: cached relations,
    prefetched rows, then ``Prefetch(to_attr=)`` lists. A segment is built only for the
    match: the fallback scans every row of the collections the code holds."""
    cache = getattr(getattr(holder, "_state", None), "fields_cache", None) or {}
    for name, value in list(cache.items()):
        if value is node and is_model(value):
            return Segment(str(name), model=type(value))
    prefetched = getattr(holder, "_prefetched_objects_cache", None) or {}
    for name, queryset in list(prefetched.items()):
        if any(row is node for row in getattr(queryset, "_result_cache", None) or ()):
            return Segment(str(name), prefetch=True, model=type(node))
    for name, value in list(getattr(holder, "__dict__", {}).items()):
        rows = value[:_MAX_ROWS] if type(value) is list and value else ()
        if rows and is_model(rows[0]) and any(row is node for row in rows):
            return Segment(str(name), prefetch=True, to_attr=True, model=type(node))
    return None


def _path_to(
    starts: list[Any], instance: Any, *, through_managers: bool = False
) -> tuple[Any, list[Segment], Any] | None:
    """Walk up from ``instance`` to its root: ``(root row, path from it, its queryset)``.

    Each step finds the object that holds the current one in its caches, among what the
    code holds (outermost first); failing that, a collection holding the row ends the
    walk (its queryset built the root), or one of its rows holds it. Each step reads small
    caches and scans rows by identity: no search over whole result caches.
    ``through_managers``: rows a related manager loaded per parent (``order.items.all``
    in a loop) lead up to that parent (see :func:`_lazy_parent`).
    """
    models: list[Any] = []
    collections: list[tuple[Any, list[Any]]] = []
    # Frames share values (a queryset is self in several): each is read once, in order.
    for value in {id(value): value for value in starts}.values():
        if is_model(value):
            models.append(value)
        if (rows := _rows(value)) is not None:
            collections.append((value, rows))
    node, chain = instance, {id(instance)}
    segments: list[Segment] = []
    for _ in range(_MAX_DEPTH):
        # An object holding it first: rows iterated from a prefetched manager
        # (tag.books.all) are also a collection, but the prefetch built them.
        step = _holder(node, models, chain)
        if step is None:
            lazy = (
                _lazy_parent(node, models, collections, chain)
                if through_managers
                else None
            )
            for value, rows in collections:
                if lazy is None and any(row is node for row in rows):
                    queryset = value if _is_queryset(value) else None
                    return node, segments[::-1], queryset
            step = lazy or _holder(
                node, [row for _, rows in collections for row in rows], chain
            )
        if step is None:
            break
        node, segment = step
        segments.append(segment)
        chain.add(id(node))
    if not segments and not any(v is instance for v in models):
        return None
    return node, segments[::-1], None


def _lazy_parent(
    node: Any,
    models: list[Any],
    collections: list[tuple[Any, list[Any]]],
    chain: set[int],
) -> tuple[Any, Segment] | None:
    """The parent whose related manager loaded ``node`` (``order.items.all`` in a loop).

    A reverse foreign key manager's rows carry their parent in their own cache (Django
    sets it from the manager's instance), so ``item.order`` is the very ``order`` the code
    holds: the step up is the parent's reverse accessor, not yet prefetched.
    """
    cache = getattr(getattr(node, "_state", None), "fields_cache", None) or {}
    held = {id(v) for v in models} | {id(r) for _, rows in collections for r in rows}
    for name, parent in list(cache.items()):
        if parent is None or not is_model(parent) or id(parent) not in held:
            continue
        if id(parent) in chain:
            continue
        try:
            field = type(node)._meta.get_field(str(name))
        except Exception:
            continue
        remote = getattr(field, "remote_field", None)
        if remote is None or not getattr(field, "many_to_one", False):
            continue
        accessor = remote.get_accessor_name()
        if not accessor or remote.hidden:
            continue
        segment = Segment(accessor, prefetch=True, model=type(node), lazy=True)
        return parent, segment
    return None


def _holder(
    node: Any, holders: list[Any], chain: set[int]
) -> tuple[Any, Segment] | None:
    """The first of ``holders`` that holds ``node`` in its caches (not one below it)."""
    for holder in holders[:_MAX_NODES]:
        if id(holder) not in chain and (segment := _held_by(holder, node)) is not None:
            return holder, segment
    return None


# --- what the running code holds ---------------------------------------------------------------


def _holdings(frame: FrameType) -> list[Any]:
    """The values a frame holds that may be (or hold) rows."""
    values: list[Any] = []
    if callsite.frame_category(frame.f_code) == TEMPLATE:
        context = frame.f_locals.get("context")
        for layer in list(getattr(context, "dicts", ()))[-12:]:
            if isinstance(layer, dict):
                values.extend(layer.values())
    else:
        local = frame.f_locals  # one snapshot: each read re-syncs the frame's locals
        values.extend(local.values())
        owner = local.get("self")
        if owner is not None and type(owner).__name__.endswith("Serializer"):
            values.append(getattr(owner, "instance", None))
    return values


def trace(
    frames: list[FrameType],
    first_user: int | None,
    instance: Any,
    *,
    through_managers: bool = False,
) -> Provenance:
    """The provenance of ``instance``; ``frames`` from the query outwards.

    ``through_managers``: follow rows a related manager loaded per parent up to that
    parent; right for a to-one relation read on them (one ``prefetch_related`` lookup
    loads both levels), not for a per-row ``.count()`` on them.
    """
    result = Provenance()
    with contextlib.suppress(Exception):  # hints only: never fail the request
        _trace(frames, first_user, instance, result, through_managers)
    return result


def _trace(
    frames: list[FrameType],
    first_user: int | None,
    instance: Any,
    result: Provenance,
    through_managers: bool,
) -> None:
    stack = _stack(frames)
    _template_caller(stack, first_user, result)
    result.origin = _origin(stack)
    if instance is None:
        return
    starts: list[Any] = []
    if result.origin is not None:
        starts.extend(_origin_rows(result.origin))
    for f in reversed(stack):  # outermost first
        starts.extend(_holdings(f))
    found = _path_to(starts, instance, through_managers=through_managers)
    if found is None:
        return
    root, result.segments, result.queryset = found
    result.root_model = type(root)
    if result.origin is not None and result.origin.kind == "template":
        result.origin.detail = _context_name(stack, result.queryset, root)


def _stack(frames: list[FrameType]) -> list[FrameType]:
    """The frames that belong to this unit: up to Django's request handler."""
    stack: list[FrameType] = []
    for f in frames[:_MAX_FRAMES]:
        kind = callsite.frame_category(f.f_code)
        if kind in (HANDLER, HOP):
            break
        stack.append(f)
    return stack


def _template_caller(
    stack: list[FrameType], first_user: int | None, result: Provenance
) -> None:
    """A template that called the user's frame (``{{ project.method }}``), and its view."""
    if first_user is None:
        return
    for index in range(first_user + 1, len(stack)):
        f = stack[index]
        if callsite.frame_category(f.f_code) == TEMPLATE:
            result.template_line = template_line(f)
            for outer in stack[index + 1 :]:
                if callsite.frame_category(outer.f_code) == USER:
                    path, line, _ = callsite.location(outer)
                    result.rendered_from = f"{path}:{line}"
                    break
            return


def template_line(frame: FrameType) -> str | None:
    """``name:line`` of the template node a ``render_annotated`` frame renders."""
    node = frame.f_locals.get("self")
    origin = getattr(node, "origin", None)
    name = getattr(origin, "template_name", None) or getattr(origin, "name", None)
    line = getattr(getattr(node, "token", None), "lineno", None)
    if not name:
        return None
    return f"{name}:{line}" if line else str(name)


# --- who built the root queryset ---------------------------------------------------------------

_ADMIN_PRIORITY = {"inline": 0, "list_filter": 1, "changelist": 2, "admin": 3}


def _origin(stack: list[FrameType]) -> Origin | None:
    admin: Origin | None = None
    bound: Any = None  # a form field rendering (an admin select's choices, say)
    bound_field = _bound_field_class()
    for f in stack:
        for value in _frame_objects(f):
            if bound is None and bound_field and issubclass(type(value), bound_field):
                bound = value
            found = _admin_origin(value, f)
            if found is not None and (
                admin is None
                or _ADMIN_PRIORITY[found.kind] < _ADMIN_PRIORITY[admin.kind]
            ):
                admin = found
            if admin is None and _is_api_view(value):
                return Origin("drf", owner=value, site=_class_site(value.__class__))
    if bound is not None and (admin is None or admin.kind == "admin"):
        form = _form_origin(stack, bound)
        if form is not None:
            return form
    if admin is not None:
        return admin
    for index, f in enumerate(stack):
        if callsite.frame_category(f.f_code) == TEMPLATE or template_location(f):
            return Origin("template", view=_view_of(stack[index:], f))
    return None


def _frame_objects(frame: FrameType) -> list[Any]:
    local = frame.f_locals
    return [local[name] for name in ("self", "cl", "model_admin") if name in local]


_admin_kinds: tuple[tuple[type, str], ...] = ()


def _admin_classes() -> tuple[tuple[type, str], ...]:
    """The admin's classes by kind, most specific first; () while the admin is not loaded
    (no admin frame can be on the stack then; never imported from here)."""
    global _admin_kinds
    if not _admin_kinds and "django.contrib.admin.views.main" in sys.modules:
        with contextlib.suppress(Exception):
            from django.contrib.admin import ListFilter
            from django.contrib.admin.helpers import InlineAdminFormSet
            from django.contrib.admin.options import BaseModelAdmin, InlineModelAdmin
            from django.contrib.admin.views.main import ChangeList

            _admin_kinds = (
                (ChangeList, "changelist"),
                (InlineAdminFormSet, "inline_formset"),
                (InlineModelAdmin, "inline"),
                (ListFilter, "list_filter"),
                (BaseModelAdmin, "admin"),
            )
    return _admin_kinds


def _admin_origin(value: Any, frame: FrameType) -> Origin | None:
    kind = type(value)
    for cls, name in _admin_classes():
        if not issubclass(kind, cls):
            continue
        if name == "changelist":
            return Origin("changelist", owner=value.model_admin, detail=value)
        if name == "inline_formset":
            return Origin("inline", owner=value.opts)
        if name == "list_filter":
            model_admin = frame.f_locals.get("model_admin")
            return Origin("list_filter", owner=model_admin, detail=value)
        return Origin(name, owner=value)
    return None


def _bound_field_class() -> type | None:
    """Django's ``BoundField`` once the admin is loaded (its forms are what we name)."""
    if "django.contrib.admin.helpers" not in sys.modules:
        return None
    from django.forms.boundfield import BoundField

    return BoundField


def _form_origin(stack: list[FrameType], bound: Any) -> Origin | None:
    """An admin form's field rendering its choices (a ``<select>``): the ModelAdmin or
    inline whose form it is, found as the ``AdminForm`` / ``InlineAdminForm`` in the
    template's context that holds the field's form; ``detail`` is the ``BoundField``."""
    from django.contrib.admin.helpers import AdminForm

    for f in reversed(stack):
        for layer in _context_layers(f):
            if not isinstance(layer, dict):
                continue
            for value in layer.values():
                if issubclass(type(value), AdminForm) and value.form is bound.form:
                    owner = getattr(value, "model_admin", None)
                    return Origin("change_form", owner=owner, detail=bound)
    return None


def _is_api_view(value: Any) -> bool:
    return any(
        c.__name__ == "GenericAPIView" and c.__module__ == "rest_framework.generics"
        for c in type(value).__mro__
    )


@functools.lru_cache(maxsize=256)
def _class_site(cls: type) -> tuple[str, int] | None:
    """``(path, line)`` of a class statement in user code: where a serializer's N+1 is
    fixed when no frame of user code is on the stack (DRF calls the fields itself)."""
    with contextlib.suppress(Exception):
        filename = inspect.getsourcefile(cls)
        # A code object compiled under that name is classified like the class's own code.
        if filename and callsite.frame_category(compile("", filename, "exec")) == USER:
            relative = os.path.relpath(filename)
            path = filename if relative.startswith("..") else relative
            return path, inspect.getsourcelines(cls)[1]
    return None


def _origin_rows(origin: Origin) -> list[Any]:
    if origin.kind == "changelist":
        return [getattr(origin.detail, "result_list", None)]
    return []


def _view_of(stack: list[FrameType], template: FrameType) -> str | None:
    """The view that built a template's context: the user frame that rendered it, or the
    request's resolved view (a TemplateResponse renders after the view returned)."""
    for f in stack[1:]:
        # A Jinja2 template's frames (blocks, macros) are user code by file name.
        if callsite.frame_category(f.f_code) == USER and not template_location(f):
            path, line, function = callsite.location(f)
            return f"{function} ({path}:{line})"
    context = template.f_locals.get("context")
    match = getattr(getattr(context, "request", None), "resolver_match", None)
    name = getattr(match, "_func_path", None)
    return str(name) if name else None


def _context_name(stack: list[FrameType], queryset: Any, root: Any) -> str | None:
    """The name under which the template context holds the root's rows."""
    for f in reversed(stack):
        for layer in _context_layers(f):
            if not isinstance(layer, dict):
                continue
            for name, value in layer.items():
                if value is queryset and queryset is not None:
                    return str(name)
                rows = _rows(value)
                if rows is not None and any(row is root for row in rows):
                    return str(name)
    return None


def _context_layers(frame: FrameType) -> list[Any]:
    """The dicts of the context a template frame renders with, outermost first: a Django
    ``Context``'s ``dicts``; a Jinja2 ``Context``'s ``parent`` (what the view passed, and
    the globals) and ``vars`` (what the template set)."""
    context = frame.f_locals.get("context")
    if callsite.frame_category(frame.f_code) == TEMPLATE:
        return list(getattr(context, "dicts", ()))
    if context is None or template_location(frame) is None:
        return []
    return [getattr(context, "parent", None), getattr(context, "vars", None)]
