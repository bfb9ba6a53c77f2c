"""What a repeated query was: the relation it loads, the line, template and serializer field.

Runs once per group that reaches a threshold, on the live stack of that execution: the
frames of Django's descriptors, managers and QuerySet methods (labelled in ``callsite``)
name the relation as ``app_label.Model.field``, and the locals of the user's frame or the
template's context name the loop's root model, so a fix names the right queryset. Every
lookup is guarded: a Django upgrade may lose detail but can never fail a request.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import FrameType
from typing import Any

from django_dbtuning.queries import callsite, provenance
from django_dbtuning.queries.callsite import HANDLER, HOP, LIBRARY, TEMPLATE, USER
from django_dbtuning.queries.jinja import locate_template


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
    serializer: str | None = None  # Django REST framework: "BookSerializer.author"
    # Django 6.1 fetch modes: the owner already fetches its peers (so they were not loaded
    # together), or the path from the root crosses a prefetch_related (whose rows do not
    # inherit the root queryset's fetch mode): either way FETCH_PEERS would not batch it.
    fetches_peers: bool = False
    via_prefetch: bool = False
    # Who loaded the rows and who built their queryset (queries.provenance); a template
    # that called the user's frame (``{{ project.method }}``) and the line that rendered it.
    provenance: provenance.Provenance | None = None
    template_call: bool = False
    rendered_from: str | None = None


def attribute(frame: FrameType, task: Any) -> Attribution:
    """Resolve relation, call site, template and operation from the live stack."""
    result = Attribution()
    # Hints only: a surprise in Django's internals loses detail, never the request.
    with contextlib.suppress(Exception):
        _attribute(frame, task, result)
    return result


def _attribute(frame: FrameType, task: Any, result: Attribution) -> None:
    frames = _frames_above_cursor(frame)
    evidence: list[tuple[str, FrameType]] = []
    user: FrameType | None = None
    template_frame: FrameType | None = None
    user_index: int | None = None
    for index, f in enumerate(frames):
        kind = callsite.frame_category(f.f_code)
        if kind == USER:
            user, user_index = f, index
            break
        if kind == HANDLER or (kind == HOP and task is not None):
            break
        if template_frame is not None:
            continue
        if kind == TEMPLATE:
            template_frame = f
        else:
            label = callsite.frame_label(f.f_code)
            if label is not None:
                evidence.append((label, f))
    if user is None and template_frame is None and task is not None:
        user = callsite.coroutine_user_frame(task)
    anchor = user
    if anchor is None and template_frame is None:
        anchor = next(
            (f for f in frames if callsite.frame_category(f.f_code) == LIBRARY), None
        )
    if anchor is not None:
        path, line, function = callsite.location(anchor)
        result.callsite, result.filename, result.lineno = f"{path}:{line}", path, line
        result.function = function
    if template_frame is not None:
        _template(template_frame, result)
        user = None  # it rendered the template; the loop is the template's
    result.serializer = _serializer_path(frames)
    locate_template(frames, user, result)  # a Jinja2 template: its line, its renderer
    instance = _relation(evidence, result)
    _provenance(frames, user_index, instance, result)


def _frames_above_cursor(frame: FrameType) -> list[FrameType]:
    """The stack from ``frame`` outwards, from the frame that called the cursor on."""
    frames: list[FrameType] = []
    f: FrameType | None = frame
    while f is not None:
        frames.append(f)
        f = f.f_back
    labels = [callsite.frame_label(f.f_code) for f in frames]
    return frames[labels.index("cursor") + 1 :] if "cursor" in labels else frames


def _label(model: Any) -> str | None:
    try:
        return str(model._meta.label)
    except Exception:
        return None


def _self(frame: FrameType) -> Any:
    return frame.f_locals.get("self")


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


# --- the relation ----------------------------------------------------------------------------

_DESCRIPTORS = frozenset({"forward", "reverse_one", "deferred", "gfk"})


def _relation(evidence: list[tuple[str, FrameType]], result: Attribution) -> Any:
    """Fill the relation fields; return the model instance the relation was read on."""
    queryset_frames: list[tuple[str, Any]] = []
    manager: Any = None
    owner: Any = None
    for label, f in evidence:
        if label.startswith("qs:"):
            queryset_frames.append((label[3:], _self(f)))
        elif label == "manager":
            manager = manager or _self(f)
        elif result.relation is not None:
            continue
        elif label in _DESCRIPTORS:
            owner = f.f_locals.get("instance")
            accessor = _descriptor_accessor(label, _self(f))
            _set_relation(result, label, owner, accessor)
        elif label == "prefetch":
            _prefetch_relation(f.f_locals, result)
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


def _descriptor_accessor(label: str, descriptor: Any) -> str | None:
    if label == "reverse_one":
        return _accessor(getattr(descriptor, "related", None))
    if label == "gfk" and hasattr(descriptor, "name"):
        return str(descriptor.name)  # Django < 6.1: the GenericForeignKey itself
    return getattr(getattr(descriptor, "field", None), "name", None)


def _prefetch_relation(local: dict[str, Any], result: Attribution) -> None:
    instances, lookup, level = map(local.get, ("instances", "lookup", "level"))
    through = getattr(lookup, "prefetch_through", "") or ""
    parts = through.split("__")
    if instances and isinstance(level, int) and level < len(parts):
        _set_relation(result, "prefetch", instances[0], parts[level])
        result.path = through
        if len(instances) > 1:
            # A real prefetch_related batch; only a per-instance call is an N+1.
            result.relation_kind = "prefetch_batch"


def _set_relation(
    result: Attribution,
    kind: str,
    owner: Any,
    accessor: str | None,
    query_name: str | None = None,
) -> None:
    """Record ``owner``'s relation ``accessor`` (``owner``: an instance or a model)."""
    label = _label(owner) if owner is not None else None
    if not label or not accessor:
        return
    result.relation = f"{label}.{accessor}"
    result.relation_kind = kind
    result.model = label
    result.accessor = accessor
    result.query_name = query_name or accessor
    prefetched = getattr(owner, "_prefetched_objects_cache", None) or {}
    result.prefetched = bool({accessor, result.query_name} & set(prefetched))
    fetch_mode = getattr(getattr(owner, "_state", None), "fetch_mode", None)
    result.fetches_peers = bool(getattr(fetch_mode, "track_peers", False))


def _queryset_relation(queryset: Any, manager: Any, result: Attribution) -> Any:
    """A related manager's query (``author.books.count()``): its instance and relation."""
    hints = getattr(queryset, "_hints", None) or {}
    instance = hints.get("instance") or getattr(manager, "instance", None)
    target = getattr(queryset, "model", None)
    if instance is None and target is not None:
        _generic_relation(queryset, target, result)
        return None
    if instance is None or target is None:
        return None
    candidates = _reverse_relations(queryset, instance, target)
    if not candidates:
        return None
    chosen = candidates[0]
    if len(candidates) > 1:
        cache_name = getattr(manager, "prefetch_cache_name", None)
        for candidate in candidates:
            if cache_name in (_accessor(candidate), getattr(candidate, "name", None)):
                chosen = candidate
    kind = "m2m" if chosen.many_to_many else "reverse_fk"
    if type(chosen).__name__ == "GenericRelation":
        kind = "generic_relation"
    accessor = _accessor(chosen)
    _set_relation(result, kind, instance, accessor, getattr(chosen, "name", None))
    return instance


def _reverse_relations(queryset: Any, instance: Any, target: Any) -> list[Any]:
    """The to-many relations of ``instance`` that a query on ``target`` may be."""
    known = getattr(queryset, "_known_related_objects", None) or {}
    candidates = []
    for fk in known:
        rel = getattr(fk, "remote_field", None)
        if rel is not None:
            candidates.append(rel)
    if candidates:
        return candidates
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
    return candidates


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
    _set_relation(result, "generic_relation", chosen.model, chosen.name)


def _through(relation: Any) -> Any:
    through = getattr(relation, "through", None)
    if through is None:
        through = getattr(getattr(relation, "remote_field", None), "through", None)
    return through


def _accessor(relation: Any) -> str | None:
    get_accessor_name = getattr(relation, "get_accessor_name", None)
    name = (
        get_accessor_name()
        if get_accessor_name is not None
        else getattr(relation, "name", None)
    )
    return str(name) if name else None


# --- the loop's root ---------------------------------------------------------------------------


def _provenance(
    frames: list[FrameType], user_index: int | None, instance: Any, result: Attribution
) -> None:
    """The loop's root and the path from it (``book.author.publisher`` queries on an
    Author; the fix belongs on the Book queryset, ``select_related("author__publisher")``),
    and a template that called the user's frame."""
    found = provenance.trace(
        frames,
        user_index,
        instance,
        through_managers=result.relation_kind in ("forward", "reverse_one"),
    )
    result.provenance = found
    origin = found.origin
    if origin and origin.site and user_index is None and result.template is None:
        # Only library frames (DRF's fields) ran it: point at the view to change.
        result.filename, result.lineno = origin.site
        result.callsite = "{}:{}".format(*origin.site)
        result.function = type(origin.owner).__name__
    if found.template_line and result.template is None:
        result.template, result.template_call = found.template_line, True
        result.rendered_from = found.rendered_from
    if found.root_model is not None and found.segments:
        result.root_model = _label(found.root_model)
        result.via_prefetch = any(s.prefetch for s in found.segments)
        names = [s.name for s in found.segments]
        result.path = "__".join([*names, result.accessor or ""])


# --- the model a query loads -------------------------------------------------------------------

_table_models: dict[str, str] = {}


def model_for_table(table: str | None) -> str | None:
    """The label of the model stored in ``table`` (``"testapp.Book"``), if one is."""
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
