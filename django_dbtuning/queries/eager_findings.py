"""Unused eager loads: what a unit of work loaded eagerly, what it read, and the findings.

:mod:`~django_dbtuning.queries.eager` records each evaluation of a queryset with
``select_related`` / ``prefetch_related`` as a :class:`Load` of :class:`Level` s (one per
relation path) and marks a level read the first time code outside the ORM reads one of its
objects while a unit is open. Here a unit's loads become findings: loads from the same code
(the line that built the queryset, else the line or template that evaluated it) are judged
together, so a relation read on some rows only, or by one of two evaluations, is used.

A level is reported when it loaded at least one object (an empty prefetch or a null foreign
key on every row proves nothing: nplusone#13), none of them was read, and its parent level
was read (a nested path reports only its unread tail: nplusone#34). A level the capture
could not watch (a ``Prefetch(to_attr=...)`` attribute, lookups a ``Prefetch`` queryset
added) counts as read: a finding must never be wrong.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from django_dbtuning.queries.units import Unit

logger = logging.getLogger("django_dbtuning.queries")

Method = Literal["select_related", "prefetch_related"]


class Level:
    """One relation path of one eager load; read once code outside the ORM reads it."""

    __slots__ = ("judged", "objects", "path", "pending", "relation")

    def __init__(
        self, path: str, relation: str | None, units: list[Unit], *, judged: bool = True
    ) -> None:
        self.path = path
        self.relation = relation
        self.judged = judged
        self.objects = 0  # related objects loaded (None values not counted)
        # The units this load belongs to that have not seen a read of it yet: weak, so a
        # model instance cached for a day does not keep a request's unit alive.
        self.pending: tuple[weakref.ref[Unit], ...] = tuple(
            weakref.ref(u) for u in units
        )

    def mark_read(self) -> None:
        """A read: every unit of the load still open has now seen it used."""
        pending, self.pending = self.pending, ()
        for ref in pending:
            unit = ref()
            if unit is not None and not unit.closed and unit.eager is not None:
                unit.eager.read.add(self)


@dataclass(frozen=True, slots=True)
class Site:
    """Where a load's queryset was built (or, failing that, evaluated)."""

    callsite: str | None = None
    filename: str | None = None
    lineno: int | None = None
    template: str | None = None
    evaluated: str | None = None  # the evaluating line or template, when elsewhere

    @property
    def key(self) -> tuple[str | None, str | None]:
        return (self.callsite, self.template)


@dataclass(slots=True, eq=False)
class Load:
    """One evaluation of one queryset's select_related tree or prefetch lookups."""

    method: Method
    model: str
    site: Site
    levels: dict[str, Level] = field(default_factory=dict)
    # (the lookup as written, its path): select_related's requested paths, or each
    # prefetch_related lookup ('"tags"', 'Prefetch("books", to_attr="long")').
    lookups: tuple[tuple[str, str], ...] = ()
    everything: bool = False  # select_related() without names


class EagerState:
    """A unit's eager loads and the levels read while it was open."""

    __slots__ = ("loads", "read")

    def __init__(self) -> None:
        self.loads: list[Load] = []
        self.read: set[Level] = set()


@dataclass(frozen=True, slots=True)
class UnusedEagerLoad:
    """An info finding: a select_related path or prefetch_related lookup never read."""

    method: Method
    lookup: str
    relation: str | None
    model: str
    objects: int
    hint: str
    callsite: str | None = None
    template: str | None = None
    evaluated: str | None = None
    view: str | None = None
    filename: str | None = field(default=None, repr=False)
    lineno: int | None = field(default=None, repr=False)
    kind: str = field(default="unused_eager_load", repr=False)
    severity: str = field(default="info", repr=False)

    @property
    def location(self) -> str:
        where = self.callsite or self.template or "an unknown location"
        if self.evaluated and self.evaluated != where:
            where += f" (evaluated at {self.evaluated})"
        return where

    @property
    def message(self) -> str:
        subject = self.relation or f"{self.model}.{self.lookup}"
        return (
            f"Unused eager load: {subject} loaded by {self.method} ({self.objects} "
            f"objects), never read during the unit of work, at {self.location}\n"
            f"    fix: {self.hint}"
        )

    def __str__(self) -> str:
        return self.message


# --- judgement ---------------------------------------------------------------------------


def judge(state: EagerState) -> tuple[list[UnusedEagerLoad], set[tuple[Any, ...]]]:
    """A unit's findings, and the keys of every level it saw read (for session merges)."""
    groups: dict[tuple[Any, ...], list[Load]] = {}
    for load in state.loads:
        groups.setdefault((load.method, load.model, load.site.key), []).append(load)
    findings: list[UnusedEagerLoad] = []
    read_keys: set[tuple[Any, ...]] = set()
    for key, loads in groups.items():
        objects: dict[str, int] = {}
        relations: dict[str, str | None] = {}
        read: set[str] = set()
        lookups: dict[str, str] = {}
        for load in loads:
            lookups.update((text, path) for text, path in load.lookups)
            for path, level in load.levels.items():
                objects[path] = objects.get(path, 0) + level.objects
                relations[path] = level.relation
                if level in state.read or not level.judged:
                    read.add(path)
        for path in list(read):  # a nested read reads every level above it
            parts = path.split("__")
            read.update("__".join(parts[:i]) for i in range(1, len(parts)))
        read_keys.update((*key, path) for path in read)
        first = loads[0]
        for path in sorted(objects):
            parent = path.rpartition("__")[0]
            if path in read or not objects[path]:
                continue
            if parent and objects.get(parent) and parent not in read:
                continue  # the unread parent's finding covers it
            finding = _finding(
                first, path, parent, objects[path], relations[path], lookups
            )
            if first.everything:
                finding = replace(finding, hint=_name_them(path, read, objects, first))
            findings.append(finding)
    return findings, read_keys


def _name_them(path: str, read: set[str], objects: dict[str, int], load: Load) -> str:
    """The fix for select_related() without names: name the relations that are read."""
    kept = sorted(
        p
        for p in read
        if p in objects and not any(q.startswith(p + "__") for q in read)
    )
    model = load.model.rsplit(".", 1)[-1]
    head = f'select_related() follows every non-null foreign key and "{path}" is never read'
    if not kept:
        return f"{head}: drop select_related() on the {model} queryset"
    names = ", ".join(f'"{p}"' for p in kept)
    return (
        f"{head}: name the ones read, select_related({names}), on the {model} queryset"
    )


def _finding(
    load: Load,
    path: str,
    parent: str,
    objects: int,
    relation: str | None,
    lookups: dict[str, str],
) -> UnusedEagerLoad:
    below = [
        text for text, p in lookups.items() if p == path or p.startswith(path + "__")
    ] or [f'"{path}"']
    model = load.model.rsplit(".", 1)[-1]
    call = f"{load.method}(...)"
    written = ", ".join(below)
    if not parent:
        hint = f"drop {written} from {call}"
    elif load.method == "prefetch_related" and parent in lookups.values():
        hint = f"drop {written} from {call}"  # the parent has a lookup of its own
    else:  # the parent is read and loaded only through this path: keep it
        hint = f'replace {written} with "{parent}" in {call}'
    hint += f" on the {model} queryset"
    site = load.site
    return UnusedEagerLoad(
        method=load.method,
        lookup=path,
        relation=relation,
        model=load.model,
        objects=objects,
        hint=hint,
        callsite=site.callsite,
        template=site.template,
        evaluated=site.evaluated,
        filename=site.filename,
        lineno=site.lineno,
    )


# --- reactions ---------------------------------------------------------------------------


def log_findings(
    findings: list[UnusedEagerLoad], where: str | None, view: str | None
) -> None:
    """One INFO record per finding on ``django_dbtuning.queries`` (``record.finding``),
    and an :class:`~django_dbtuning.UnusedEagerLoadWarning` each with
    ``UNUSED_EAGER_LOADS = "warn"`` (so ``-W error::django_dbtuning.UnusedEagerLoadWarning``
    fails a test whose request loads what it never reads)."""
    if not findings:
        return
    from django_dbtuning.conf import get_settings

    warn = get_settings().unused_eager_loads == "warn"
    if not (warn or logger.isEnabledFor(logging.INFO)):
        return
    suffix = f"\n    request: {where}" if where else ""
    for finding in findings:
        if view:
            finding = UnusedEagerLoad(**{**_fields(finding), "view": view})
        logger.info("%s%s", finding.message, suffix, extra={"finding": finding})
        if warn:
            _warn(finding)


def _warn(finding: UnusedEagerLoad) -> None:
    """The warning, pointed at the line that asked for the load when it is known."""
    from django_dbtuning.exceptions import UnusedEagerLoadWarning

    warning = UnusedEagerLoadWarning(finding.message, finding)
    if finding.filename and finding.lineno:
        warnings.warn_explicit(
            warning,
            UnusedEagerLoadWarning,
            finding.filename,
            finding.lineno,
            registry=_warning_registry,
        )
    else:
        warnings.warn(warning, stacklevel=4)


# Per-line "once" bookkeeping for warn_explicit (Python's default filter shows a warning
# once per location; an explicit registry keeps that without touching module globals).
_warning_registry: dict[Any, Any] = {}


def _fields(finding: UnusedEagerLoad) -> dict[str, Any]:
    return {name: getattr(finding, name) for name in finding.__dataclass_fields__}


class SessionFindings:
    """Findings merged over many units (the pytest plugin's session): a level read by any
    unit is used, so a queryset shared by many tests is reported only if none read it."""

    def __init__(self) -> None:
        self.unused: dict[tuple[Any, ...], tuple[UnusedEagerLoad, list[str]]] = {}
        self.read: set[tuple[Any, ...]] = set()

    def add(self, state: EagerState, name: str) -> None:
        findings, read = judge(state)
        self.read |= read
        for finding in findings:
            key = (
                finding.method,
                finding.model,
                (finding.callsite, finding.template),
                finding.lookup,
            )
            entry = self.unused.setdefault(key, (finding, []))
            entry[1].append(name)

    def lines(self) -> list[str]:
        out: list[str] = []
        for key, (finding, names) in sorted(
            self.unused.items(), key=lambda item: item[1][0].location
        ):
            if key in self.read:
                continue
            tests = sorted(set(names))
            subject = finding.relation or finding.lookup
            out.append(finding.location)
            out.append(
                f"  {subject} ({finding.method}): never read in {len(tests)} test(s); "
                f"fix: {finding.hint}"
            )
            out.extend(f"    {nodeid}" for nodeid in tests[:3])
            if len(tests) > 3:
                out.append(f"    ... and {len(tests) - 3} more")
        return out

    def clear(self) -> None:
        self.unused.clear()
        self.read.clear()

    def export(self) -> dict[str, Any]:
        """Plain lists and dicts (what pytest-xdist carries from a worker): see merge()."""
        return {
            "unused": [
                [_plain(key), _fields(finding), names]
                for key, (finding, names) in self.unused.items()
            ],
            "read": [_plain(key) for key in self.read],
        }

    def merge(self, data: dict[str, Any]) -> None:
        """Add another process's export(): the session judged as one."""
        self.read |= {_key(key) for key in data.get("read", ())}
        for key, fields, names in data.get("unused", ()):
            entry = self.unused.setdefault(_key(key), (UnusedEagerLoad(**fields), []))
            entry[1].extend(names)


def _plain(key: tuple[Any, ...]) -> list[Any]:
    method, model, site, path = key
    return [method, model, list(site), path]


def _key(plain: list[Any]) -> tuple[Any, ...]:
    method, model, site, path = plain
    return (method, model, tuple(site), path)


SESSION = SessionFindings()
"""The pytest plugin's report mode: every test's eager loads, judged together."""
