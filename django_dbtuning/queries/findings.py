"""Where a query came from, what it is, and whether a repetition is an N+1.

Two costs are kept apart. Per query, the recorder needs only a *call-site key*: the code
object and instruction offset of the first frame of user code. :func:`site_key` finds it with
one C-level ``sys._getframe(depth)`` at a depth learned per SQL string, checked against the
frame categories (a dict lookup per code object); only a miss walks the stack. The expensive
part, :func:`attribute` (the relation as ``app_label.Model.field``, ``path:line``, the template
line, the fix), runs once per group that reaches a threshold, on the live stack of that
execution.

Django's frames and objects are read as hints only: every lookup is guarded, so a Django
upgrade may lose detail but can never fail a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import sysconfig
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from types import CodeType, FrameType
from typing import Any, Literal

from django_dbtuning.queries.fingerprint import Shape, SqlInfo, display_sql

__all__ = ["Attribution", "Finding", "attribute", "site_key"]

# Frame categories.
LIBRARY = 0  # framework, site-packages, stdlib: skipped
USER = 1
TEMPLATE = 2  # django.template.base.Node.render_annotated: the node being rendered
HANDLER = 3  # django.core.handlers: nothing above it triggered the query
CURSOR = 4  # CursorWrapper._execute_with_wrappers: everything below it is wrappers
ORM = 5  # django.db and this package: never a call site, even as a fallback
HOP = 6  # asgiref's sync/async bridges: the caller is a coroutine, not this thread

FindingKind = Literal["n_plus_one", "n_plus_one_write", "duplicate"]

# Keyed by id(code): hashing a code object hashes its bytecode and constants (hundreds of
# ns); the entry keeps the code object alive and is checked by identity, so ids are safe.
_category: dict[int, tuple[CodeType, int]] = {}
# Keyed by id(code) (see _category); these functions live as long as Django does.
_special: dict[int, str] = {}
_special_codes: list[CodeType] = []
_special_loaded = False


def _roots() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    import django

    import django_dbtuning

    django_dir = os.path.dirname(django.__file__) + os.sep
    orm = (
        os.path.join(django_dir, "db") + os.sep,
        os.path.dirname(django_dbtuning.__file__) + os.sep,
    )
    handlers = (os.path.join(django_dir, "core", "handlers") + os.sep,)
    library = {django_dir}
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            library.add(os.path.realpath(paths[key]) + os.sep)
            library.add(paths[key] + os.sep)
    for entry in sys.path:
        if entry and ("site-packages" in entry or "dist-packages" in entry):
            library.add(entry.rstrip(os.sep) + os.sep)
    return orm, handlers, tuple(sorted(library, key=len, reverse=True))


_ORM_ROOTS: tuple[str, ...] = ()
_HANDLER_ROOTS: tuple[str, ...] = ()
_LIBRARY_ROOTS: tuple[str, ...] = ()


def _classify(code: CodeType) -> int:
    global _ORM_ROOTS, _HANDLER_ROOTS, _LIBRARY_ROOTS
    if not _LIBRARY_ROOTS:
        _ORM_ROOTS, _HANDLER_ROOTS, _LIBRARY_ROOTS = _roots()
    if not _special_loaded:
        _load_special()
    name = _special.get(id(code))
    if name == "template":
        category = TEMPLATE
    elif name == "cursor":
        category = CURSOR
    else:
        filename = code.co_filename
        if filename.startswith(_ORM_ROOTS):
            category = ORM
        elif filename.startswith(_HANDLER_ROOTS):
            category = HANDLER
        elif filename.endswith(os.path.join("asgiref", "sync.py")):
            category = HOP
        elif filename.startswith((*_LIBRARY_ROOTS, "<frozen")):
            category = LIBRARY
        else:
            category = USER
    if len(_category) > 50_000:
        _category.clear()
    _category[id(code)] = (code, category)
    return category


def category(code: CodeType) -> int:
    """The category of a code object (cached)."""
    found = _category.get(id(code))
    return found[1] if found is not None and found[0] is code else _classify(code)


def _load_special() -> None:
    """Code objects of the Django functions whose frames carry hints."""
    global _special_loaded
    _special_loaded = True
    table: list[tuple[str, str, str, str]] = [
        ("django.template.base", "Node", "render_annotated", "template"),
        (
            "django.db.backends.utils",
            "CursorWrapper",
            "_execute_with_wrappers",
            "cursor",
        ),
        (
            "django.db.models.fields.related_descriptors",
            "ForwardManyToOneDescriptor",
            "__get__",
            "forward",
        ),
        (
            "django.db.models.fields.related_descriptors",
            "ForwardManyToOneDescriptor",
            "get_object",
            "forward",
        ),
        (
            "django.db.models.fields.related_descriptors",
            "ForwardOneToOneDescriptor",
            "get_object",
            "forward",
        ),
        (
            "django.db.models.fields.related_descriptors",
            "ReverseOneToOneDescriptor",
            "__get__",
            "reverse_one",
        ),
        ("django.db.models.query_utils", "DeferredAttribute", "__get__", "deferred"),
        ("django.contrib.contenttypes.fields", "GenericForeignKey", "__get__", "gfk"),
        ("django.db.models.query", "", "prefetch_one_level", "prefetch"),
        ("django.db.models.base", "Model", "save", "save"),
        ("django.db.models.base", "Model", "delete", "delete"),
    ]
    for module_name, owner, attr, label in table:
        try:
            module = __import__(module_name, fromlist=["_"])
            target = getattr(module, owner) if owner else module
            function = getattr(target, attr) if attr else target
            _special[id(function.__code__)] = label
            _special_codes.append(function.__code__)
        except Exception:  # a renamed hook loses one hint, nothing else
            continue
    try:
        from django.db.models import Manager

        # Every proxied manager method (count, filter, get...) shares one code object.
        _special[id(Manager.count.__code__)] = "manager"
        _special_codes.append(Manager.count.__code__)
    except Exception:  # pragma: no cover - a Django refactor loses this hint only
        pass
    with contextlib.suppress(Exception):  # QuerySet always imports; guarded anyway
        from django.db.models.query import QuerySet

        for name in (
            "get",
            "count",
            "exists",
            "aggregate",
            "first",
            "last",
            "latest",
            "earliest",
            "__iter__",
            "__len__",
            "__bool__",
            "__getitem__",
            "iterator",
            "in_bulk",
            "create",
            "update",
            "delete",
            "get_or_create",
            "update_or_create",
            "contains",
        ):
            method = getattr(QuerySet, name, None)
            code = getattr(method, "__code__", None)
            if code is not None:
                _special[id(code)] = "qs:" + name
                _special_codes.append(code)
    _category.clear()


# --- call-site keys (per query) ----------------------------------------------------------


def site_key(frame: FrameType, info: SqlInfo, task: Any) -> Hashable:
    """A hashable key for the place in user code that issued this query.

    ``frame`` is the recorder's own frame; ``info.site_depth`` (learned per SQL string) says
    how far above it the anchor frame usually sits.
    """
    depth = info.site_depth
    if depth > 1:
        back = frame
        try:
            back = sys._getframe(depth)
        except ValueError:
            pass
        else:
            anchor = back.f_back
            if anchor is not None:
                code_below, code = back.f_code, anchor.f_code
                below = _category.get(id(code_below))
                found = _category.get(id(code))
                if (
                    below is not None
                    and found is not None
                    and below[0] is code_below
                    and found[0] is code
                    and below[1] != USER
                    and below[1] != TEMPLATE
                    and below[1] != HOP
                ):
                    if found[1] == USER:
                        line = _lines.get((id(code), anchor.f_lasti))
                        return line if line is not None else _line_key(anchor)
                    if found[1] == TEMPLATE:
                        return _template_key(anchor)
    elif depth == -1 and task is not None:
        key = _coroutine_key(task)
        if key is not None:
            return key
    key, depth = _walk_for_site(frame, task)
    info.site_depth = depth
    return key


def _template_key(frame: FrameType) -> Hashable:
    try:
        return ("template", id(frame.f_locals.get("self")))
    except Exception:
        return ("template", 0)


def _walk_for_site(frame: FrameType, task: Any) -> tuple[Hashable, int]:
    # Depths are counted from the caller of site_key(), which is how site_key() uses them.
    f: FrameType | None = frame
    depth = 0
    passed_cursor = False
    fallback: tuple[FrameType, int] | None = None
    while f is not None:
        kind = category(f.f_code)
        if kind == CURSOR:
            passed_cursor = True
        elif passed_cursor:
            if kind == USER:
                return _line_key(f), depth
            if kind == TEMPLATE:
                return _template_key(f), depth
            if kind == HANDLER:
                break
            if kind == HOP and task is not None:
                break
            if kind == LIBRARY and fallback is None:
                fallback = (f, depth)
        f = f.f_back
        depth += 1
    if not passed_cursor:
        # No CursorWrapper on the stack (a Django refactor, or a raw psycopg cursor): look at
        # every frame instead of losing the site.
        f, depth = frame, 0
        while f is not None:
            kind = category(f.f_code)
            if kind == USER:
                return _line_key(f), depth
            f, depth = f.f_back, depth + 1
    if task is not None:
        key = _coroutine_key(task)
        if key is not None:
            return key, -1
    if fallback is not None:
        return _line_key(fallback[0]), 0
    return None, 0


_lines: dict[tuple[int, int], tuple[int, int]] = {}
_line_codes: dict[int, CodeType] = {}


def _line_key(frame: FrameType) -> tuple[int, int]:
    # The instruction offset is cheap but not stable: 3.11's specialised calls may stop
    # at PRECALL or at CALL. (code, line) is; memoise the offset -> line mapping.
    code = frame.f_code
    offset = (id(code), frame.f_lasti)
    key = _lines.get(offset)
    if key is None or _line_codes.get(offset[0]) is not code:
        if len(_lines) > 100_000:
            _lines.clear()
            _line_codes.clear()
        _line_codes[offset[0]] = code  # keeps the id from being reused
        key = _lines[offset] = (offset[0], frame.f_lineno)
    return key


def _coroutine_chain(task: Any) -> list[FrameType]:
    """Frames of the coroutines ``task`` is suspended in, outermost first.

    In a ``sync_to_async`` worker thread the awaiting coroutine is not on the thread's
    stack; it is suspended in the event loop, so its frame and line are stable while the
    query runs.
    """
    frames: list[FrameType] = []
    try:
        coro = task.get_coro()
    except Exception:
        return frames
    _wait_until_suspended(coro)
    for _ in range(200):
        if coro is None:
            break
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            frame = getattr(coro, "ag_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
    return frames


def _wait_until_suspended(coro: Any) -> None:
    # sync_to_async hands the query to this thread before the event loop has suspended the
    # awaiting coroutines; until it has, their cr_await links are not set yet and the chain
    # would end at an outer frame. The loop suspends them within microseconds: yield the GIL
    # until it has (bounded). Not in the loop's own thread, where the task is always running.
    try:
        asyncio.get_running_loop()
        return
    except RuntimeError:
        pass
    for _ in range(2000):
        if not getattr(coro, "cr_running", False):
            return
        time.sleep(0)


def _coroutine_key(task: Any) -> Hashable | None:
    for frame in reversed(_coroutine_chain(task)):
        if category(frame.f_code) == USER:
            return _line_key(frame)
    return None


def current_task() -> Any:
    """The running asyncio task, if any (recorded when a unit of work starts)."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


# --- attribution (once per group that reaches a threshold) --------------------------------


@dataclass(slots=True)
class Attribution:
    """What the stack said about one repeated query."""

    callsite: str | None = None
    filename: str | None = None
    lineno: int | None = None
    function: str | None = None
    template: str | None = None
    relation: str | None = None
    relation_kind: str | None = None
    model: str | None = None  # the model whose instances own the relation
    accessor: str | None = None
    query_name: str | None = None
    path: str | None = None  # select_related / prefetch_related path from a root model
    root_model: str | None = None
    operation: str | None = None
    prefetched: bool = False
    view: str | None = None
    serializer: str | None = None  # Django REST framework: "BookSerializer.author"


_display_paths: dict[str, str] = {}


def _display_path(filename: str) -> str:
    shown = _display_paths.get(filename)
    if shown is None:
        try:
            relative = os.path.relpath(filename)
        except ValueError:
            relative = filename
        shown = filename if relative.startswith("..") else relative
        if len(_display_paths) > 10_000:
            _display_paths.clear()
        _display_paths[filename] = shown
    return shown


_COMPREHENSIONS = frozenset({"<listcomp>", "<genexpr>", "<dictcomp>", "<setcomp>"})


def _location(frame: FrameType) -> tuple[str, int, str]:
    function = frame.f_code.co_name
    outer = frame.f_back
    # Before 3.12 comprehensions are functions of their own; name the one around them.
    while function in _COMPREHENSIONS and outer is not None:
        function, outer = outer.f_code.co_name, outer.f_back
    return _display_path(frame.f_code.co_filename), frame.f_lineno, function


def _label(model: Any) -> str | None:
    try:
        return str(model._meta.label)
    except Exception:
        return None


def _self(frame: FrameType) -> Any:
    return frame.f_locals.get("self")


def attribute(frame: FrameType, task: Any) -> Attribution:
    """Resolve relation, call site, template and operation from the live stack."""
    result = Attribution()
    # Hints only: a surprise in Django's internals loses detail, never the request.
    with contextlib.suppress(Exception):
        _attribute(frame, task, result)
    return result


def _attribute(frame: FrameType, task: Any, result: Attribution) -> None:
    if not _special_loaded:
        _load_special()
    frames: list[FrameType] = []
    f: FrameType | None = frame
    while f is not None:
        frames.append(f)
        f = f.f_back
    start = 0
    for index, f in enumerate(frames):
        if _special.get(id(f.f_code)) == "cursor":
            start = index + 1
            break
    evidence: list[tuple[str, FrameType]] = []
    user_frame: FrameType | None = None
    template_frame: FrameType | None = None
    outer_user: FrameType | None = None
    for f in frames[start:]:
        kind = category(f.f_code)
        if kind == USER:
            if template_frame is None:
                user_frame = f
                break
            outer_user = f
            break
        if kind == HANDLER or (kind == HOP and task is not None):
            break
        if kind == TEMPLATE and template_frame is None:
            template_frame = f
        label = _special.get(id(f.f_code))
        if label is not None and template_frame is None:
            evidence.append((label, f))
    if user_frame is None and template_frame is None and task is not None:
        for coro_frame in reversed(_coroutine_chain(task)):
            if category(coro_frame.f_code) == USER:
                user_frame = coro_frame
                break
    anchor = user_frame or outer_user
    if anchor is not None:
        path, line, function = _location(anchor)
        result.callsite, result.filename, result.lineno = f"{path}:{line}", path, line
        result.function = function
    elif template_frame is None:
        for f in frames[start:]:
            if category(f.f_code) == LIBRARY:
                path, line, function = _location(f)
                result.callsite, result.filename, result.lineno = (
                    f"{path}:{line}",
                    path,
                    line,
                )
                result.function = function
                break
    if template_frame is not None:
        _template(template_frame, result)
    result.serializer = _serializer_path(frames[start:])
    instance = _relation(evidence, result)
    if instance is not None:
        _provenance(instance, user_frame, template_frame, result)


_DRF_METHODS = frozenset({"get_attribute", "to_representation"})


def _serializer_path(frames: list[FrameType]) -> str | None:
    """The innermost Django REST framework field being serialised, as a dotted path."""
    for f in frames[:80]:
        code = f.f_code
        if code.co_name not in _DRF_METHODS or "rest_framework" not in code.co_filename:
            continue
        field_obj = f.f_locals.get("self")
        if field_obj is None or not hasattr(field_obj, "field_name"):
            continue  # rest_framework.fields.get_attribute(), a plain function
        names: list[str] = []
        node = field_obj
        for _ in range(20):
            parent = getattr(node, "parent", None)
            if parent is None:
                break
            name = getattr(node, "field_name", None)
            if name and (not names or names[-1] != name):
                names.append(str(name))
            node = parent
        if type(node).__name__ == "ListSerializer":
            node = getattr(node, "child", node)
        return ".".join([type(node).__name__, *reversed(names)])
    return None


def _template(frame: FrameType, result: Attribution) -> None:
    node = _self(frame)
    origin = getattr(node, "origin", None)
    name = getattr(origin, "template_name", None) or getattr(origin, "name", None)
    token = getattr(node, "token", None)
    line = getattr(token, "lineno", None)
    if name:
        result.template = f"{name}:{line}" if line else str(name)


def _relation(evidence: list[tuple[str, FrameType]], result: Attribution) -> Any:
    """Fill the relation fields; return the model instance the relation was read on."""
    queryset_frames: list[tuple[str, Any]] = []
    manager: Any = None
    owner: Any = None
    for label, f in evidence:
        if label.startswith("qs:"):
            queryset_frames.append((label[3:], _self(f)))
            continue
        if label == "manager":
            manager = manager or _self(f)
            continue
        if result.relation is not None:
            continue
        local = f.f_locals
        if label == "forward":
            descriptor, instance = local.get("self"), local.get("instance")
            field_obj = getattr(descriptor, "field", None)
            _set_relation(result, "forward", instance, getattr(field_obj, "name", None))
            owner = instance
        elif label == "reverse_one":
            descriptor, instance = local.get("self"), local.get("instance")
            related = getattr(descriptor, "related", None)
            accessor = related.get_accessor_name() if related is not None else None
            _set_relation(result, "reverse_one", instance, accessor)
            owner = instance
        elif label == "deferred":
            descriptor, instance = local.get("self"), local.get("instance")
            field_obj = getattr(descriptor, "field", None)
            _set_relation(
                result, "deferred", instance, getattr(field_obj, "name", None)
            )
            owner = instance
        elif label == "gfk":
            descriptor, instance = local.get("self"), local.get("instance")
            _set_relation(result, "gfk", instance, getattr(descriptor, "name", None))
            owner = instance
        elif label == "prefetch":
            instances, lookup, level = (
                local.get("instances"),
                local.get("lookup"),
                local.get("level"),
            )
            through = getattr(lookup, "prefetch_through", "") or ""
            parts = through.split("__")
            if instances and isinstance(level, int) and level < len(parts):
                _set_relation(result, "prefetch", instances[0], parts[level])
                result.path = through
                if len(instances) > 1:
                    # A real prefetch_related batch; only a per-instance call is an N+1.
                    result.relation_kind = "prefetch_batch"
        elif label in ("save", "delete"):
            result.operation = label
    if queryset_frames:
        # The outermost QuerySet method is the one user code called.
        operation, queryset = queryset_frames[-1]
        if result.operation is None:
            result.operation = operation
        if result.relation is None:
            owner = _queryset_relation(queryset, manager, result)
        if result.model is None and queryset is not None:
            result.model = _label(getattr(queryset, "model", None))
    return owner


def _set_relation(
    result: Attribution, kind: str, instance: Any, accessor: str | None
) -> None:
    label = _label(type(instance)) if instance is not None else None
    if not label or not accessor:
        return
    result.relation = f"{label}.{accessor}"
    result.relation_kind = kind
    result.model = label
    result.accessor = accessor
    result.query_name = accessor
    prefetched = getattr(instance, "_prefetched_objects_cache", None) or {}
    result.prefetched = accessor in prefetched


def _queryset_relation(queryset: Any, manager: Any, result: Attribution) -> Any:
    hints = getattr(queryset, "_hints", None) or {}
    instance = hints.get("instance") or getattr(manager, "instance", None)
    target = getattr(queryset, "model", None)
    if instance is None and target is not None:
        _generic_relation(queryset, target, result)
        return None
    if instance is None or target is None:
        return None
    known = getattr(queryset, "_known_related_objects", None) or {}
    candidates = []
    for fk in known:
        rel = getattr(fk, "remote_field", None)
        if rel is not None:
            candidates.append(rel)
    if not candidates:
        for candidate in type(instance)._meta.get_fields():
            if not getattr(candidate, "is_relation", False):
                continue
            if not (candidate.one_to_many or candidate.many_to_many):
                continue
            related = candidate.related_model
            if isinstance(related, type) and issubclass(target, related):
                candidates.append(candidate)
            elif candidate.many_to_many and _through(candidate) is target:
                # ManyRelatedManager.count()/exists() query the through table directly.
                candidates.append(candidate)
    if not candidates:
        return None
    chosen = candidates[0]
    if len(candidates) > 1:
        cache_name = getattr(manager, "prefetch_cache_name", None)
        for candidate in candidates:
            if cache_name in (_accessor(candidate), getattr(candidate, "name", None)):
                chosen = candidate
    accessor = _accessor(chosen)
    kind = "m2m" if chosen.many_to_many else "reverse_fk"
    if type(chosen).__name__ == "GenericRelation":
        kind = "generic_relation"
    _set_relation(result, kind, instance, accessor)
    result.query_name = getattr(chosen, "name", None) or accessor
    prefetched = getattr(instance, "_prefetched_objects_cache", None) or {}
    result.prefetched = bool({accessor, result.query_name} & set(prefetched))
    return instance


def _generic_relation(queryset: Any, target: Any, result: Attribution) -> None:
    """A GenericRelation manager leaves no hints; its content-type filter names the owner."""
    from django.apps import apps
    from django.contrib.contenttypes.fields import GenericRelation

    candidates = [
        f
        for model in apps.get_models()
        for f in model._meta.private_fields
        if isinstance(f, GenericRelation) and f.related_model is target
    ]
    if not candidates:
        return
    chosen = candidates[0]
    if len(candidates) > 1:
        content_type_id = None
        for child in getattr(queryset.query.where, "children", ()):
            lhs = getattr(child, "lhs", None)
            target_field = getattr(lhs, "target", None)
            if getattr(target_field, "name", None) == chosen.content_type_field_name:
                content_type_id = getattr(child, "rhs", None)
        if content_type_id is None:
            return
        from django.contrib.contenttypes.models import ContentType

        for candidate in candidates:
            ct = ContentType.objects.get_for_model(
                candidate.model, for_concrete_model=False
            )
            if ct.pk == content_type_id:
                chosen = candidate
    result.relation = f"{chosen.model._meta.label}.{chosen.name}"
    result.relation_kind = "generic_relation"
    result.model = chosen.model._meta.label
    result.accessor = result.query_name = chosen.name


def _through(relation: Any) -> Any:
    through = getattr(relation, "through", None)
    if through is None:
        through = getattr(getattr(relation, "remote_field", None), "through", None)
    return through


def _accessor(relation: Any) -> str | None:
    get_accessor_name = getattr(relation, "get_accessor_name", None)
    if get_accessor_name is not None:
        return str(get_accessor_name())
    name = getattr(relation, "name", None)
    return str(name) if name else None


def _provenance(
    instance: Any,
    user_frame: FrameType | None,
    template_frame: FrameType | None,
    result: Attribution,
) -> None:
    """Find the loop's root: the local object whose cached relations hold ``instance``.

    ``for book in books: book.author.publisher`` queries on an Author; the fix belongs on
    the Book queryset, as ``select_related("author__publisher")``.
    """
    from django.db.models import Model

    values: list[Any] = []
    if user_frame is not None:
        values.extend(user_frame.f_locals.values())
    if template_frame is not None:
        context = template_frame.f_locals.get("context")
        for layer in list(getattr(context, "dicts", ()))[-8:]:
            if isinstance(layer, dict):
                values.extend(layer.values())
    roots = [v for v in values if isinstance(v, Model)]
    for root in roots:
        if root is instance:
            continue
        path = _find_path(root, instance, depth=3)
        if path:
            result.root_model = _label(type(root))
            result.path = "__".join([*path, result.accessor or ""])
            return


def _find_path(node: Any, instance: Any, *, depth: int) -> list[str] | None:
    if depth == 0:
        return None
    state = getattr(node, "_state", None)
    cache = getattr(state, "fields_cache", None) or {}
    for name, value in list(cache.items()):
        if value is None:
            continue
        if value is instance:
            return [name]
        deeper = _find_path(value, instance, depth=depth - 1)
        if deeper:
            return [name, *deeper]
    prefetched = getattr(node, "_prefetched_objects_cache", None) or {}
    for name, queryset in list(prefetched.items()):
        rows = getattr(queryset, "_result_cache", None) or []
        for row in rows:
            if row is instance:
                return [name]
        for row in rows[:50]:
            deeper = _find_path(row, instance, depth=depth - 1)
            if deeper:
                return [name, *deeper]
    return None


# --- findings ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One N+1 or duplicate-query finding, with everything needed to fix it."""

    kind: FindingKind
    fingerprint: str
    digest: str
    alias: str
    count: int
    duration: float
    hint: str
    callsite: str | None = None
    function: str | None = None
    relation: str | None = None
    template: str | None = None
    model: str | None = None
    operation: str | None = None
    view: str | None = None
    serializer: str | None = None
    filename: str | None = field(default=None, repr=False)
    lineno: int | None = field(default=None, repr=False)
    parameters: Any = field(default=None, repr=False)

    @property
    def location(self) -> str:
        """``path:line`` and/or ``template:line``; what a reader jumps to."""
        parts = [p for p in (self.callsite, self.template) if p]
        if self.callsite and self.template:
            where = f"{self.template} (rendered from {self.callsite})"
        else:
            where = " ".join(parts) or "an unknown location"
        if self.serializer:
            where += f" (serializing {self.serializer})"
        return where

    @property
    def message(self) -> str:
        """The one-paragraph, human-readable report of this finding."""
        what = {
            "n_plus_one": "N+1 query",
            "n_plus_one_write": "N+1 write",
            "duplicate": "Duplicate query",
        }[self.kind]
        subject = self.relation or (f"{self.model} rows" if self.model else None)
        head = f"{what}: {subject} " if subject else f"{what}: "
        where = self.location
        if self.function and self.callsite and not self.template:
            where += f" in {self.function}"
        alias = "" if self.alias == "default" else f" on {self.alias!r}"
        text = (
            f"{head}ran {self.count} times ({self.duration * 1000:.1f} ms){alias} at "
            f"{where}\n    fix: {self.hint}\n    sql: {display_sql(self.fingerprint)}"
        )
        if self.parameters is not None:
            text += f"\n    parameters: {self.parameters!r}"
        return text

    def __str__(self) -> str:
        return self.message


def _model_name(label: str | None) -> str:
    return label.rsplit(".", 1)[-1] if label else "the"


def hint_for(kind: FindingKind, shape: Shape, attribution: Attribution) -> str:
    """A concrete fix for a finding."""
    a = attribution
    model = _model_name(a.root_model or a.model)
    if kind == "duplicate":
        return (
            "the same query with the same parameters ran repeatedly: evaluate it once "
            "and reuse the result (or cache it)"
        )
    if kind == "n_plus_one_write":
        target = _model_name(a.model or _model_for_table(shape.table))
        if shape.text.upper().startswith("INSERT"):
            return f"create the rows in one go with {target}.objects.bulk_create([...])"
        if shape.text.upper().startswith("UPDATE"):
            return (
                f"{target}.objects.bulk_update(objs, fields) or one queryset "
                ".update() instead of save() per row"
            )
        return f"delete in one query: {target}.objects.filter(pk__in=ids).delete()"
    kind_ = a.relation_kind
    if kind_ in ("forward", "reverse_one"):
        path = a.path or a.accessor
        return f'add .select_related("{path}") to the {model} queryset'
    if kind_ == "gfk":
        return (
            f'add .prefetch_related("{a.path or a.accessor}") to the {model} queryset '
            "(GenericPrefetch to narrow it per content type)"
        )
    if kind_ == "deferred":
        return (
            f'"{a.accessor}" was deferred: add it to .only() or drop it from .defer() '
            f"on the {model} queryset"
        )
    if kind_ == "prefetch":
        return (
            f'call prefetch_related_objects(all_objects, "{a.path or a.accessor}") once, '
            "outside the loop"
        )
    if kind_ in ("reverse_fk", "m2m", "generic_relation"):
        q = a.query_name or a.accessor
        op = a.operation
        if op == "count":
            return (
                f'annotate the {model} queryset with Count("{q}") instead of '
                ".count() per row"
            )
        if op == "exists":
            return (
                f"annotate the {model} queryset with Exists(...) (or "
                f'Count("{q}")) instead of .exists() per row'
            )
        if op == "aggregate":
            return (
                f'annotate the {model} queryset (Sum/Avg/Max over "{q}__...") instead '
                "of .aggregate() per row"
            )
        if op in ("first", "last", "latest", "earliest", "__getitem__"):
            return (
                f'use Prefetch("{a.accessor}", queryset=<ordered>, to_attr="...") or '
                'a Subquery(OuterRef("pk")) annotation instead of one query per row'
            )
        if a.prefetched:
            return (
                f'"{a.accessor}" is prefetched but .filter()/.order_by() bypasses the '
                f'cache: use Prefetch("{a.accessor}", queryset=..., to_attr="...")'
            )
        return (
            f'add .prefetch_related("{a.path or a.accessor}") to the {model} queryset'
        )
    target = _model_name(a.model or _model_for_table(shape.table))
    if a.operation == "get":
        return (
            f"load them in one query: {target}.objects.in_bulk(ids) or "
            ".filter(pk__in=ids)"
        )
    if a.operation in ("count", "exists", "aggregate"):
        return (
            "compute it for all rows in one query with .annotate() or .values(...)"
            ".annotate(...)"
        )
    return (
        "fetch all the rows in one query (filter(..._in=...) or = ANY(%s)) outside "
        "the loop and look them up in a dict"
    )


_table_models: dict[str, str] = {}


def _model_for_table(table: str | None) -> str | None:
    if not table:
        return None
    if not _table_models:
        try:
            from django.apps import apps

            for model in apps.get_models(include_auto_created=True):
                _table_models[model._meta.db_table] = model._meta.label
        except Exception:
            return None
    return _table_models.get(table)


def build_finding(
    kind: FindingKind,
    shape: Shape,
    alias: str,
    count: int,
    duration: float,
    attribution: Attribution | None,
    *,
    parameters: Any = None,
) -> Finding:
    """Assemble a :class:`Finding` from a rule hit and its attribution."""
    a = attribution or Attribution()
    model = a.model or _model_for_table(shape.table)
    if a.model is None and model is not None:
        a = replace(a, model=model)
    hint = hint_for(kind, shape, a)
    if a.serializer and kind != "duplicate":
        hint += " (for a serializer: in the view's get_queryset())"
    return Finding(
        kind=kind,
        fingerprint=shape.text,
        digest=shape.digest,
        alias=alias,
        count=count,
        duration=duration,
        hint=hint,
        callsite=a.callsite,
        function=a.function,
        relation=a.relation,
        template=a.template,
        model=model,
        operation=a.operation,
        view=a.view,
        serializer=a.serializer,
        filename=a.filename,
        lineno=a.lineno,
        parameters=parameters,
    )


# --- allow-lists ---------------------------------------------------------------------------

ALLOW_KEYS = ("model", "field", "fingerprint", "view", "callsite")


def is_allowed(finding: Finding, entries: Iterable[Any]) -> bool:
    """Whether an ``ALLOW_N_PLUS_ONE`` entry covers ``finding`` (all given keys match)."""
    for entry in entries:
        if not isinstance(entry, dict) or not entry:
            continue
        if _entry_matches(entry, finding):
            return True
    return False


def _entry_matches(entry: dict[str, Any], finding: Finding) -> bool:
    model, _, field_name = (finding.relation or "").rpartition(".")
    checks = {
        "model": [model or (finding.model or "")],
        "field": [field_name] if finding.relation else [],
        "fingerprint": [finding.fingerprint, finding.digest],
        "view": [finding.view or ""],
        "callsite": [finding.callsite or "", finding.template or ""],
    }
    for key, pattern in entry.items():
        if key not in checks or not isinstance(pattern, str):
            return False
        if not any(fnmatchcase(value, pattern) for value in checks[key] if value):
            return False
    return True
