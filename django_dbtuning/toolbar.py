"""``QueriesPanel``: the request's N+1s, duplicate queries and unused eager loads in the
django-debug-toolbar.

Nothing here captures a query: the panel reads the unit of work that ``QueryCountMiddleware``
opened for the request (:func:`~django_dbtuning.queries.request_report`). The toolbar calls
``generate_stats`` from inside its middleware; with ``QueryCountMiddleware`` first in
``MIDDLEWARE`` (outside the toolbar) the unit is still open then, and the panel shows what
ran so far, which is every query of the view, its templates and the middleware inside;
the middleware's reaction then reuses the same evaluation of the findings. On a page the
toolbar inserts itself into, the panel tells the middleware (``shown_in_toolbar``), so that a
"raise" reaction logs instead of putting Django's error page in place of the page.

This module imports ``debug_toolbar``: it is loaded only by a project that lists the panel in
``DEBUG_TOOLBAR_PANELS`` (nothing else in the package imports it).

The stats are plain strings and numbers (the toolbar's database store serialises them as
JSON, and the history panel renders them again later); the template escapes every value.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from debug_toolbar.panels import Panel
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from django_dbtuning.conf import get_settings
from django_dbtuning.queries.eager_findings import UnusedEagerLoad
from django_dbtuning.queries.findings import QueryFinding
from django_dbtuning.queries.fingerprint import display_sql
from django_dbtuning.queries.middleware import request_report, shown_in_toolbar
from django_dbtuning.queries.recorder import internal_error
from django_dbtuning.queries.units import QueryReport

_UNTRACKED: dict[str, Any] = {
    "tracked": False,
    "n_plus_one": [],
    "duplicates": [],
    "unused": [],
}
_KINDS = {
    "n_plus_one": "N+1 query",
    "n_plus_one_write": "N+1 write",
    "duplicate": "Duplicate query",
}


class QueriesPanel(Panel):
    """N+1 findings, duplicates and unused eager loads of the request, with their fixes."""

    is_async = True
    title = "N+1 queries (django-dbtuning)"
    nav_title = "N+1 queries"
    template = "django_dbtuning/toolbar/queries.html"

    @property
    def nav_subtitle(self) -> str:
        stats: dict[str, Any] = self.get_stats()  # type: ignore[no-untyped-call]
        return subtitle(stats) if stats else ""

    def generate_stats(self, request: HttpRequest, response: HttpResponseBase) -> None:
        try:
            stats = panel_stats(request_report(request))
            if stats["tracked"] and _toolbar_on_page(response):
                # "raise" would put Django's error page in place of this one.
                stats["not_raised"] = shown_in_toolbar(request)
        except Exception:
            # A bug here must not cost the developer the page and the other panels.
            internal_error("building the debug-toolbar panel")
            stats = {**_UNTRACKED, "failed": True}
        self.record_stats(stats)  # type: ignore[no-untyped-call]


def subtitle(stats: dict[str, Any]) -> str:
    """``"N+1: 3 · dup: 1"``, ``"no N+1"`` on a clean request."""
    if stats.get("failed"):
        return "failed (see the log)"
    if not stats.get("tracked"):
        return "not tracked"
    n_plus_one, duplicates = len(stats["n_plus_one"]), len(stats["duplicates"])
    if not (n_plus_one or duplicates):
        return "no N+1"
    return f"N+1: {n_plus_one} · dup: {duplicates}"


def panel_stats(report: QueryReport | None) -> dict[str, Any]:
    """What the panel shows, as JSON-ready values (None: the middleware missed it)."""
    if report is None:
        return dict(_UNTRACKED)
    budget = get_settings().query_budget
    return {
        "tracked": True,
        "count": report.count,
        "over_budget": budget if budget is not None and report.count > budget else None,
        "time_ms": round(report.duration * 1000, 1),
        "n_plus_one": [_finding(f) for f in report.n_plus_one],
        "duplicates": [_finding(f) for f in report.duplicates],
        "unused": [_unused(u) for u in report.unused_eager_loads],
    }


def _toolbar_on_page(response: HttpResponseBase) -> bool:
    """The toolbar inserts itself into this response (an HTML page with its marker)."""
    from debug_toolbar import settings as toolbar_settings
    from debug_toolbar.utils import is_processable_html_response

    if not (settings.DEBUG and is_processable_html_response(response)):  # type: ignore[no-untyped-call]
        return False
    marker = str(toolbar_settings.get_config()["INSERT_BEFORE"])
    content = getattr(response, "content", b"")
    return marker.lower().encode() in content.lower()


def _finding(finding: QueryFinding) -> dict[str, Any]:
    subject = finding.relation or (f"{finding.model} rows" if finding.model else "")
    locations = []
    if finding.callsite:
        label = "called from template" if finding.template_call else "code"
        locations.append(_location(label, finding.callsite, finding.function))
    if finding.template:
        locations.append(_location("template", finding.template, None, template=True))
    if finding.rendered_from:
        locations.append(_location("rendered from", finding.rendered_from, None))
    return {
        "kind": _KINDS[finding.kind],
        "subject": subject,
        "alias": finding.alias,
        "count": finding.count,
        "time_ms": round(finding.duration * 1000, 1),
        "hint": finding.hint,
        # The shape is masked: no parameter and no literal, whatever LOG_PARAMETERS says.
        "sql": display_sql(finding.fingerprint, limit=2000),
        "locations": locations or [_location("code", "an unknown location", None)],
        "serializer": finding.serializer or "",
    }


def _unused(load: UnusedEagerLoad) -> dict[str, Any]:
    locations = []
    if load.callsite:
        locations.append(_location("code", load.callsite, None))
    if load.template:
        locations.append(_location("template", load.template, None, template=True))
    if load.evaluated and load.evaluated != load.callsite:
        locations.append(_location("evaluated at", load.evaluated, None))
    return {
        "subject": load.relation or f"{load.model}.{load.lookup}",
        "method": load.method,
        "objects": load.objects,
        "hint": load.hint,
        "locations": locations or [_location("code", "an unknown location", None)],
    }


def _location(
    label: str, where: str, function: str | None, *, template: bool = False
) -> dict[str, str]:
    """``path/to/file.py:12`` split the way the toolbar prints a stack frame.

    ``url``: the ``EDITOR_URL`` link to the file, "" without one.
    """
    path, colon, line = where.rpartition(":")
    if not (colon and line.isdigit()):
        path, line = where, ""
    directory, slash, name = path.rpartition("/")
    return {
        "label": label,
        "directory": directory + slash,
        "file": name,
        "line": line,
        "function": function or "",
        "url": _editor_url(path, line, template=template),
    }


def _editor_url(path: str, line: str, *, template: bool) -> str:
    editor = get_settings().editor_url
    if editor is None or not path or path == "an unknown location":
        return ""
    filename = _template_file(path) if template else os.path.abspath(path)
    if filename is None:
        return ""
    try:
        return editor.format(path=quote(filename, safe="/:\\"), line=line or "1")
    except (ValueError, KeyError, IndexError, AttributeError):
        return ""  # reported by check dbtuning.E036


def _template_file(name: str) -> str | None:
    """The file a template name loads from; None when no engine finds it."""
    from django.template import loader

    try:
        origin = getattr(loader.get_template(name), "origin", None)
    except Exception:  # a hint only (TemplateDoesNotExist, a syntax error): never fail
        return None
    filename = getattr(origin, "name", None)
    return filename if isinstance(filename, str) and os.path.isfile(filename) else None
