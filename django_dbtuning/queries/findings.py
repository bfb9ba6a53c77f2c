"""Query findings: an N+1 or a duplicate as a user reads it, its fix, and the allow-list.

The N+1 and duplicate rules hand each hit here with what
:mod:`~django_dbtuning.queries.attribution` found on the stack; :func:`build_finding` turns
it into a :class:`QueryFinding` with its location and the fix, in the words of the ORM call
that removes it: a write in a loop becomes a bulk operation, a relation read per row
``select_related`` / ``prefetch_related`` on the loop's root queryset, a per-row
``.count()`` an annotation, a query nothing could name a batched lookup. ``NPlusOneError``
and ``QueryReport`` hold these.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any, Literal

import django

from django_dbtuning.queries.allow_usage import note_matched
from django_dbtuning.queries.attribution import Attribution, model_for_table
from django_dbtuning.queries.fingerprint import Shape, display_sql
from django_dbtuning.queries.hints import acting_hint, duplicate_hint

FindingKind = Literal["n_plus_one", "n_plus_one_write", "duplicate"]

_TITLES: dict[FindingKind, str] = {
    "n_plus_one": "N+1 query",
    "n_plus_one_write": "N+1 write",
    "duplicate": "Duplicate query",
}


@dataclass(frozen=True, slots=True)
class QueryFinding:
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
    # The callsite is code a template called (``{{ book.method }}``) rather than the line
    # that rendered it: ``template`` is the caller's line, ``rendered_from`` the renderer.
    template_call: bool = False
    rendered_from: str | None = None
    filename: str | None = field(default=None, repr=False)
    lineno: int | None = field(default=None, repr=False)
    parameters: Any = field(default=None, repr=False)

    @property
    def location(self) -> str:
        """``path:line`` and/or ``template:line``; what a reader jumps to."""
        if self.template_call and self.callsite:
            where = f"{self.callsite} in {self.function} (called from {self.template}"
            if self.rendered_from:
                where += f", rendered from {self.rendered_from}"
            where += ")"
        elif self.callsite and self.template:
            where = f"{self.template} (rendered from {self.callsite})"
        else:
            where = self.callsite or self.template or "an unknown location"
        if self.serializer:
            where += f" (serializing {self.serializer})"
        return where

    @property
    def message(self) -> str:
        """The one-paragraph, human-readable report of this finding."""
        what = _TITLES[self.kind]
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


def build_finding(
    kind: FindingKind,
    shape: Shape,
    alias: str,
    count: int,
    duration: float,
    attribution: Attribution | None,
    *,
    parameters: Any = None,
) -> QueryFinding:
    """Assemble a :class:`QueryFinding` from a rule hit and its attribution."""
    a = attribution or Attribution()
    if a.model is None:
        a = replace(a, model=model_for_table(shape.table))
    return QueryFinding(
        kind=kind,
        fingerprint=shape.text,
        digest=shape.digest,
        alias=alias,
        count=count,
        duration=duration,
        hint=_hint(kind, shape, a),
        callsite=a.callsite,
        function=a.function,
        relation=a.relation,
        template=a.template,
        model=a.model,
        operation=a.operation,
        serializer=a.serializer,
        template_call=a.template_call,
        rendered_from=a.rendered_from,
        filename=a.filename,
        lineno=a.lineno,
        parameters=parameters,
    )


# --- fixes: one table per decision, a new hint is one entry ------------------------------

_DUPLICATE = (
    "the same query with the same parameters ran repeatedly: evaluate it once "
    "and reuse the result (or cache it)"
)
# Fields: {model} the loop's root model, {path} the lookup path from it, {accessor} the
# relation's attribute, {query} its query name, {target} the model the query loads.
_WRITES = (
    ("INSERT", "create the rows in one go with {target}.objects.bulk_create([...])"),
    (
        "UPDATE",
        "{target}.objects.bulk_update(objs, fields) or one queryset .update() instead of "
        "save() per row",
    ),
)
_DELETE = "delete in one query: {target}.objects.filter(pk__in=ids).delete()"
_SELECT_RELATED = 'add .select_related("{path}") to the {model} queryset'
_PREFETCH_RELATED = 'add .prefetch_related("{path}") to the {model} queryset'
_BY_RELATION = {
    "forward": _SELECT_RELATED,
    "reverse_one": _SELECT_RELATED,
    "gfk": _PREFETCH_RELATED + " (GenericPrefetch to narrow it per content type)",
    "deferred": '"{accessor}" was deferred: add it to .only() or drop it from .defer() '
    "on the {model} queryset",
    "prefetch": 'call prefetch_related_objects(all_objects, "{path}") once, outside the loop',
}
# Django 6.1's QuerySet.fetch_mode(FETCH_PEERS) loads these for every row the queryset
# loaded together, on the first access; to-many managers and per-row prefetch calls it
# leaves as they are. Decided once, at import: the hint is built per finding.
_PEER_FETCHABLE = (
    frozenset({"forward", "reverse_one", "deferred", "gfk"})
    if django.VERSION >= (6, 1)
    else frozenset()
)
_OR_FETCH_PEERS = ", or .fetch_mode(models.FETCH_PEERS)"
_TO_MANY = frozenset({"reverse_fk", "m2m", "generic_relation"})
# A to-many relation (reverse foreign key, many-to-many, generic) queried once per row.
_TO_MANY_BY_OPERATION = {
    "count": 'annotate the {model} queryset with Count("{query}") instead of .count() '
    "per row",
    "exists": 'annotate the {model} queryset with Exists(...) (or Count("{query}")) '
    "instead of .exists() per row",
    "aggregate": 'annotate the {model} queryset (Sum/Avg/Max over "{query}__...") '
    "instead of .aggregate() per row",
    **dict.fromkeys(
        ("first", "last", "latest", "earliest", "__getitem__"),
        'use Prefetch("{accessor}", queryset=<ordered>, to_attr="...") or a '
        'Subquery(OuterRef("pk")) annotation instead of one query per row',
    ),
}
_PREFETCH_BYPASSED = (
    '"{accessor}" is prefetched but .filter()/.order_by() bypasses the cache: use '
    'Prefetch("{accessor}", queryset=..., to_attr="...")'
)
# No relation named: the same query per row, by primary key or otherwise.
_ANNOTATE = "compute it for all rows in one query with .annotate() or .values(...).annotate(...)"
_BY_OPERATION = {
    "get": "load them in one query: {target}.objects.in_bulk(ids) or .filter(pk__in=ids)",
    "count": _ANNOTATE,
    "exists": _ANNOTATE,
    "aggregate": _ANNOTATE,
}
_FETCH_ALL = (
    "fetch all the rows in one query (filter(..._in=...) or = ANY(%s)) outside the loop "
    "and look them up in a dict"
)


def _hint(kind: FindingKind, shape: Shape, attribution: Attribution) -> str:
    """A concrete fix for a finding (``attribution.model``: filled from the table)."""
    if kind == "duplicate":
        return duplicate_hint(attribution) or _DUPLICATE
    a = attribution
    peers = a.relation_kind in _PEER_FETCHABLE and not a.fetches_peers
    acting = acting_hint(kind, a, peers=peers)
    if acting is not None:
        return acting
    hint = _hint_template(kind, shape.text.upper(), a).format(
        model=_model_name(a.root_model or a.model),
        path=a.path or a.accessor,
        accessor=a.accessor,
        query=a.query_name or a.accessor,
        target=_model_name(a.model),
    )
    if (
        kind == "n_plus_one"
        and a.relation_kind in _PEER_FETCHABLE
        and not (a.fetches_peers or a.via_prefetch)
    ):
        hint += _OR_FETCH_PEERS
    if a.serializer:
        hint += " (for a serializer: in the view's get_queryset())"
    return hint


def _hint_template(kind: FindingKind, sql: str, a: Attribution) -> str:
    if kind == "n_plus_one_write":
        return next((t for word, t in _WRITES if sql.startswith(word)), _DELETE)
    relation_kind = a.relation_kind or ""
    if a.via_prefetch and relation_kind in ("forward", "reverse_one"):
        # The path starts with the prefetched to-many relation: select_related cannot
        # follow it, prefetch_related can ("author_set__profile").
        return _PREFETCH_RELATED
    if relation_kind in _BY_RELATION:
        return _BY_RELATION[relation_kind]
    if relation_kind in _TO_MANY:
        default = _PREFETCH_BYPASSED if a.prefetched else _PREFETCH_RELATED
        return _TO_MANY_BY_OPERATION.get(a.operation or "", default)
    return _BY_OPERATION.get(a.operation or "", _FETCH_ALL)


def _model_name(label: str | None) -> str:
    return label.rsplit(".", 1)[-1] if label else "the"


# --- allow-lists ---------------------------------------------------------------------------

ALLOW_KEYS = ("model", "field", "fingerprint", "view", "callsite")


def is_allowed(finding: QueryFinding, entries: Iterable[Any]) -> bool:
    """Whether an ``ALLOW_N_PLUS_ONE`` entry covers ``finding`` (all given keys match).

    Every entry that does is noted (not only the first): the pytest session summary lists
    the entries that never matched.
    """
    matched = [
        entry
        for entry in entries
        if isinstance(entry, dict) and entry and _entry_matches(entry, finding)
    ]
    if matched:
        note_matched(matched)
    return bool(matched)


def _entry_matches(entry: dict[str, Any], finding: QueryFinding) -> bool:
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
