"""Fixes worded for the code the user can change: a ModelAdmin, a DRF view, a template's view.

:func:`acting_hint` turns what :mod:`~django_dbtuning.queries.provenance` found (the root
queryset, the lookup path from it, who built it) into one sentence naming the admin's own
knob (``list_select_related``, ``get_queryset()``), the view's ``queryset`` /
``get_queryset()``, the view that passed a template its context, or a
``Prefetch(queryset=...)`` when the path crosses a prefetch. It returns None when the plain
hint (``findings``) already names the right queryset. Every name from the user's code is
quoted as a Python string literal, so a hostile field, ``to_attr`` or context name cannot
break the hint or the console line.
"""

from __future__ import annotations

import json
from typing import Any

from django_dbtuning.queries.attribution import Attribution
from django_dbtuning.queries.provenance import Origin, Provenance

_TO_ONE = frozenset({"forward", "reverse_one"})
_TO_MANY = frozenset({"reverse_fk", "m2m", "generic_relation", "gfk"})
_PEERS = ".fetch_mode(models.FETCH_PEERS)"
# Per-row to-many operations whose fix is not an eager load (findings words those).
_PLAIN_ONLY = frozenset(
    {"exists", "aggregate", "first", "last", "latest", "earliest", "__getitem__"}
)


def quote(name: str) -> str:
    """``name`` as a double-quoted Python string literal (escapes quotes, newlines...)."""
    return json.dumps(str(name), ensure_ascii=False)


def class_name(owner: Any) -> str:
    """The class of ``owner`` as the user wrote it (quoted when it is no identifier)."""
    name = type(owner).__name__
    return name if name.isidentifier() else quote(name)


def _model(model: Any) -> str:
    name = getattr(model, "__name__", "") or "the"
    return name if name.isidentifier() else quote(name)


def _manager(model: Any) -> str:
    manager = (
        getattr(getattr(model, "_default_manager", None), "name", None) or "objects"
    )
    return f"{_model(model)}.{manager}"


def acting_hint(kind: str, a: Attribution, *, peers: bool) -> str | None:
    """The fix in terms of the code that built the queryset, or None (the plain hint).

    ``peers``: Django 6.1's FETCH_PEERS would batch this relation (offered as well).
    """
    p = a.provenance
    if kind != "n_plus_one" or p is None or not a.accessor:
        return None
    if a.relation_kind not in _TO_ONE and a.relation_kind not in _TO_MANY:
        return None
    if p.root_model is None:
        return None
    call = _loader(a, p)
    if call is None:
        return None
    origin = p.origin
    if origin is not None and origin.kind == "change_form":
        return _change_form(origin, p, call)
    split = call.startswith(".prefetch_related(Prefetch(")
    if origin is not None and origin.kind == "admin" and _admins_object(origin, p):
        # A change form (or delete/history page): get_object() reads get_queryset().
        return _get_queryset(origin.owner, p, call)
    if origin is None or origin.kind == "admin":
        if not split:
            return None  # findings' plain hint names the root queryset already
        return _add(call, p, f"the {_model(p.root_model)} queryset")
    owner = origin.owner
    suffix = (
        f", or {_PEERS}" if peers and not any(s.prefetch for s in p.segments) else ""
    )
    if origin.kind == "changelist":
        return _changelist(owner, a, p, call) + (
            f", or return {_PEERS} from {class_name(owner)}.get_queryset()"
            if suffix
            else ""
        )
    if origin.kind == "inline":
        return _get_queryset(owner, p, call)
    if origin.kind == "list_filter":
        return _list_filter(origin, p, call)
    if origin.kind == "drf":
        return _drf(owner, a, p, call) + suffix
    if not origin.detail:
        # The rows are not the context's (the template built them, say with
        # author.books.all): no queryset of the view to name.
        return None
    return _template(origin, p, call) + suffix


def _add(call: str, p: Provenance, target: str) -> str:
    """``add .select_related("x") to <target>``, or for a Prefetch, which replaces the
    plain lookup the root queryset already prefetches (Django refuses both at once)."""
    if not call.startswith(".prefetch_related(Prefetch("):
        return f"add {call} to {target}"
    last = max(i for i, s in enumerate(p.segments) if s.prefetch)
    lookup = "__".join(s.name for s in p.segments[: last + 1])
    prefetch = call[len(".prefetch_related(") : -1]
    return f"replace {quote(lookup)} in .prefetch_related() on {target} with {prefetch}"


def _get_queryset(owner: Any, p: Provenance, call: str) -> str:
    admin = class_name(owner)
    if call.startswith(".prefetch_related(Prefetch("):
        return _add(call, p, f"the queryset {admin}.get_queryset() returns")
    return (
        f"override {admin}.get_queryset() to return super().get_queryset(request){call}"
    )


def _loader(a: Attribution, p: Provenance) -> str | None:
    """The queryset method call that loads the relation with the rows of the root."""
    names = [s.name for s in p.segments]
    last = max((i for i, s in enumerate(p.segments) if s.prefetch), default=-1)
    to_one = a.relation_kind in _TO_ONE
    accessor = str(a.accessor)
    if not to_one and (a.prefetched or a.operation in _PLAIN_ONLY):
        return None  # a bypassed prefetch, .first()/.exists() per row: the plain hint
    if a.operation == "count" and not to_one:
        if p.segments:
            return None
        return f".annotate(Count({quote(a.query_name or accessor)}))"
    if any(s.lazy for s in p.segments):
        # Nothing prefetches the to-many step yet: one lookup loads it and what is read
        # below it.
        return f".prefetch_related({quote('__'.join([*names, accessor]))})"
    if last < 0:
        method = "select_related" if to_one else "prefetch_related"
        return f".{method}({quote('__'.join([*names, accessor]))})"
    below = p.segments[last]
    rest = [s.name for s in p.segments[last + 1 :]] + [accessor]
    to_one_below = to_one and not any(s.prefetch for s in p.segments[last + 1 :])
    if not to_one_below or below.to_attr:
        return f".prefetch_related({quote('__'.join([*names, accessor]))})"
    lookup = "__".join(names[: last + 1])
    return (
        f".prefetch_related(Prefetch({quote(lookup)}, "
        f"queryset={_manager(below.model)}.select_related({quote('__'.join(rest))})))"
    )


def _changelist(owner: Any, a: Attribution, p: Provenance, call: str) -> str:
    admin = class_name(owner)
    if a.relation_kind in _TO_ONE and call.startswith(".select_related("):
        path = "__".join([*(s.name for s in p.segments), str(a.accessor)])
        current = getattr(owner, "list_select_related", False)
        if isinstance(current, list | tuple):
            return f"add {quote(path)} to {admin}.list_select_related"
        names = [path, *_list_display_relations(owner, p.root_model)]
        listed = ", ".join(quote(n) for n in dict.fromkeys(names))
        return f"set list_select_related = [{listed}] on {admin}"
    return _get_queryset(owner, p, call)


def _list_display_relations(owner: Any, model: Any) -> list[str]:
    """Foreign keys in list_display: the changelist joins them only while
    list_select_related is False, so a list that replaces it must name them too."""
    names = []
    for name in getattr(owner, "list_display", ()) or ():
        try:
            field = model._meta.get_field(name)
        except Exception:
            continue
        if getattr(field, "many_to_one", False) or getattr(field, "one_to_one", False):
            names.append(str(name))
    return names


def _list_filter(origin: Origin, p: Provenance, call: str) -> str:
    admin = class_name(origin.owner) if origin.owner is not None else "the ModelAdmin"
    field_path = getattr(origin.detail, "field_path", None)
    target = _model(p.root_model)
    where = f"the list_filter {quote(field_path)}" if field_path else "a list_filter"
    return (
        f"{where} of {admin} builds its {target} choices one query per row: give it a "
        f"RelatedFieldListFilter subclass whose field_choices() reads "
        f"{_manager(p.root_model)}{call}"
    )


def _drf(view: Any, a: Attribution, p: Provenance, call: str) -> str:
    name = class_name(view)
    defined = next(
        (
            c
            for c in type(view).__mro__
            if "get_queryset" in c.__dict__ or "queryset" in c.__dict__
        ),
        None,
    )
    uses_method = (
        defined is not None
        and "get_queryset" in defined.__dict__
        and not defined.__module__.startswith("rest_framework")
    )
    target = (
        f"the queryset {name}.get_queryset() returns"
        if uses_method
        else f"{name}.queryset"
    )
    serializer = f" (serializing {a.serializer})" if a.serializer else ""
    if call.startswith(".annotate("):
        return f"add {call} to {target} and read the annotation{serializer}"
    return _add(call, p, target) + serializer


def _template(origin: Origin, p: Provenance, call: str) -> str:
    target = f"the {_model(p.root_model)} queryset"
    if origin.view:
        target += f" that {origin.view} passes to the template"
    else:
        target += " passed to the template"
    return _add(call, p, f"{target} as {quote(origin.detail)}")


def _admins_object(origin: Origin, p: Provenance) -> bool:
    """The rows hang from the object a ModelAdmin (not an inline) loaded itself."""
    owner = origin.owner
    return (
        not hasattr(owner, "parent_model")
        and p.root_model is not None
        and getattr(owner, "model", None) is p.root_model
        and bool(p.segments)
    )


def _change_form(origin: Origin, p: Provenance, call: str) -> str | None:
    """A select on an admin form (or in each inline row) whose labels read a relation
    per choice: the admin's raw_id_fields / autocomplete_fields, or the choices' queryset."""
    bound = origin.detail
    field = getattr(bound, "field", None)
    choices = getattr(getattr(field, "queryset", None), "model", None)
    if choices is None or p.root_model is not choices:
        return None  # not the choices' rows: the plain hint
    from django.forms import ModelMultipleChoiceField

    admin = class_name(origin.owner) if origin.owner is not None else "the ModelAdmin"
    name = quote(getattr(bound, "name", ""))
    method = (
        "formfield_for_manytomany"
        if isinstance(field, ModelMultipleChoiceField)
        else "formfield_for_foreignkey"
    )
    read = (
        " and read the annotation in the label" if call.startswith(".annotate(") else ""
    )
    where = (
        f"each row of {admin}"
        if hasattr(origin.owner, "parent_model")  # an InlineModelAdmin
        else f"{admin}'s change form"
    )
    return (
        f"{where} renders {name} as a select whose labels read a relation per choice: "
        f"add {name} to {admin}.raw_id_fields or autocomplete_fields, or set "
        f'kwargs["queryset"] = {_manager(choices)}{call} for {name} in '
        f"{admin}.{method}(){read}"
    )


def duplicate_hint(a: Attribution) -> str | None:
    """The same choices query once per inline row: each row's select runs it again."""
    origin = a.provenance.origin if a.provenance is not None else None
    if origin is None or origin.kind != "change_form":
        return None
    bound = origin.detail
    choices = getattr(
        getattr(getattr(bound, "field", None), "queryset", None), "model", None
    )
    label = getattr(getattr(choices, "_meta", None), "label", None)
    if label is None or label != a.model or not hasattr(origin.owner, "parent_model"):
        return None
    admin = class_name(origin.owner)
    name = quote(getattr(bound, "name", ""))
    return (
        f"each row of {admin} renders {name} as a select that runs the same choices "
        f"query again: add {name} to {admin}.raw_id_fields or autocomplete_fields"
    )
