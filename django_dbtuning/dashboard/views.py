"""The dashboard's pages: each runs the report's collectors for its sections only.

``?database=<alias>`` picks the ``DATABASES`` alias (PostgreSQL ones only, like
``dbreport --database``); the default is ``default`` when it is PostgreSQL, else the first
PostgreSQL alias.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import BadRequest
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import urlencode

from django_dbtuning.dashboard import trends
from django_dbtuning.dashboard.access import staff_view
from django_dbtuning.report.findings import SEVERITIES, Finding
from django_dbtuning.report.render import to_dict
from django_dbtuning.report.runner import postgres_aliases, run_report

PAGES = (
    ("overview", "Overview"),
    ("indexes", "Indexes"),
    ("tables", "Tables"),
    ("statements", "Statements"),
    ("history", "History"),
)
TOP = 50
"""Rows per list on the indexes, tables and statements pages."""
EXPLAIN = 10
"""Top statements planned on the statements page (PostgreSQL 16+)."""


def database_alias(request: HttpRequest) -> tuple[str, list[str]]:
    """The alias ``?database=`` names (400 when it is not a PostgreSQL one), and all
    PostgreSQL aliases."""
    aliases = postgres_aliases()
    if not aliases:
        raise Http404("no PostgreSQL database is configured")
    chosen = request.GET.get("database")
    if chosen is None:
        return ("default" if "default" in aliases else aliases[0]), aliases
    if chosen not in aliases:
        # Not echoed back: the message names the parameter, never its value.
        raise BadRequest("database: not a PostgreSQL alias of DATABASES")
    return chosen, aliases


def render_page(
    request: HttpRequest,
    page: str,
    context: dict[str, Any],
    alias: str,
    aliases: list[str],
) -> HttpResponse:
    """``django_dbtuning/<page>.html`` in the admin's frame; ``context`` may set its own
    ``title`` (a page that is not a tab)."""
    titles = dict(PAGES)
    admin_context = admin.site.each_context(request)
    # A staff user with only view_report has no model to list: no empty sidebar.
    admin_context["is_nav_sidebar_enabled"] = bool(
        admin_context.get("is_nav_sidebar_enabled")
        and admin_context.get("available_apps")
    )
    query = "?" + urlencode({"database": alias}) if len(aliases) > 1 else ""
    return render(
        request,
        f"django_dbtuning/{page}.html",
        {
            **admin_context,
            "title": f"Database: {titles.get(page, page)}",
            "page": page,
            "pages": PAGES,
            "alias": alias,
            "aliases": aliases,
            "query": query,
            **context,
        },
    )


def _by_severity(
    findings: list[Finding],
) -> list[tuple[str, int, list[Finding], list[Finding]]]:
    """Per severity, error first: the project's findings, and those on third-party apps'
    tables (folded away on the page, as the text report folds them into one line)."""
    groups: list[tuple[str, int, list[Finding], list[Finding]]] = []
    for severity in reversed(SEVERITIES):
        found = [f for f in findings if f.severity == severity]
        if found:
            own = [f for f in found if not f.third_party]
            others = [f for f in found if f.third_party]
            groups.append((severity, len(found), own, others))
    return groups


def _report(alias: str, sections: list[str] | None, **options: Any) -> dict[str, Any]:
    """The report of one alias: its JSON document's database part and its findings."""
    report = run_report([alias], sections=sections, **options)
    document = to_dict(report)
    return {
        "db": document["databases"][alias],
        "groups": _by_severity(report.findings),
        "findings_count": len(report.findings),
        "generated_at": report.generated_at,
    }


@staff_view
def overview(request: HttpRequest) -> HttpResponse:
    alias, aliases = database_alias(request)
    return render_page(
        request, "overview", _report(alias, None, top=10), alias, aliases
    )


@staff_view
def indexes(request: HttpRequest) -> HttpResponse:
    alias, aliases = database_alias(request)
    context = _report(alias, ["indexes"], top=TOP)
    return render_page(request, "indexes", context, alias, aliases)


@staff_view
def tables(request: HttpRequest) -> HttpResponse:
    alias, aliases = database_alias(request)
    context = _report(alias, ["tables"], top=TOP)
    return render_page(request, "tables", context, alias, aliases)


@staff_view
def statements(request: HttpRequest) -> HttpResponse:
    alias, aliases = database_alias(request)
    context = _report(alias, ["statements"], top=TOP, explain=EXPLAIN)
    return render_page(request, "statements", context, alias, aliases)


@staff_view
def history(request: HttpRequest) -> HttpResponse:
    alias, aliases = database_alias(request)
    return render_page(
        request, "history", {"trends": trends.trends(alias)}, alias, aliases
    )
