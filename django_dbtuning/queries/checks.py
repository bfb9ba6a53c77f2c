"""System checks of query tracking: the middleware, the toolbar panel and the allow-list (dbtuning.E030-E039, W030-W039); the staff dashboard's W034 sits with the panel's."""

from __future__ import annotations

import difflib
import string
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from django_dbtuning.conf import get_settings
from django_dbtuning.queries.findings import ALLOW_KEYS

# --- Query tracking: E030-E039 / W030-W039 ---------------------------------------------------

QUERY_COUNT_MIDDLEWARE = "django_dbtuning.middleware.QueryCountMiddleware"
# Middleware that never runs a query, so it may sit before QueryCountMiddleware.
_QUERY_FREE_MIDDLEWARE = frozenset(
    {
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.gzip.GZipMiddleware",
        "django.middleware.http.ConditionalGetMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.locale.LocaleMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "corsheaders.middleware.CorsMiddleware",
        "debug_toolbar.middleware.DebugToolbarMiddleware",
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
    }
)


@register()
def check_query_tracking(**kwargs: Any) -> list[CheckMessage]:
    """The middleware's presence and position; the allow-list and ignored aliases."""
    messages: list[CheckMessage] = []
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    positions = [
        i for i, path in enumerate(middleware) if path == QUERY_COUNT_MIDDLEWARE
    ]
    if not positions and settings.DEBUG:
        messages.append(
            Warning(
                f"{QUERY_COUNT_MIDDLEWARE} is not in MIDDLEWARE: N+1 queries in views "
                "go unreported.",
                hint=f'Add "{QUERY_COUNT_MIDDLEWARE}" at the top of MIDDLEWARE.',
                id="dbtuning.W030",
            )
        )
    if len(positions) > 1:
        messages.append(
            Error(
                f"{QUERY_COUNT_MIDDLEWARE} is listed {len(positions)} times in MIDDLEWARE; "
                "every query would be counted more than once.",
                hint="Keep one entry, at the top of MIDDLEWARE.",
                id="dbtuning.E030",
            )
        )
    if positions:
        before = [
            path
            for path in middleware[: positions[0]]
            if path not in _QUERY_FREE_MIDDLEWARE
        ]
        if before:
            messages.append(
                Warning(
                    f"{QUERY_COUNT_MIDDLEWARE} comes after {', '.join(before)}; queries "
                    "these run (sessions, authentication...) are not counted.",
                    hint=f"Move {QUERY_COUNT_MIDDLEWARE} to the top of MIDDLEWARE.",
                    id="dbtuning.W031",
                )
            )
    if not positions:
        messages.extend(_check_toolbar_panel())
    messages.extend(_check_editor_url())
    messages.extend(_check_allow_list())
    aliases = getattr(settings, "DATABASES", {}) or {}
    for alias in get_settings().ignore_aliases:
        if alias not in aliases:
            messages.append(
                Warning(
                    f"DBTUNING['IGNORE_ALIASES'] names {alias!r}, which is not in "
                    "DATABASES.",
                    hint=f"Known aliases: {', '.join(sorted(aliases)) or 'none'}.",
                    id="dbtuning.W032",
                )
            )
    return messages


TOOLBAR_PANEL = "django_dbtuning.toolbar.QueriesPanel"


def _check_toolbar_panel() -> list[CheckMessage]:
    """The debug-toolbar panel shows the middleware's findings: without it, nothing.

    Reads the setting only: importing the panel would import debug_toolbar.
    """
    panels = getattr(settings, "DEBUG_TOOLBAR_PANELS", None) or ()
    if TOOLBAR_PANEL not in panels:
        return []
    return [
        Warning(
            f"{TOOLBAR_PANEL} is in DEBUG_TOOLBAR_PANELS but {QUERY_COUNT_MIDDLEWARE} "
            "is not in MIDDLEWARE: the panel has no findings to show.",
            hint=f'Add "{QUERY_COUNT_MIDDLEWARE}" at the top of MIDDLEWARE, before '
            "debug_toolbar.middleware.DebugToolbarMiddleware.",
            id="dbtuning.W033",
        )
    ]


DASHBOARD_URL_NAME = "django_dbtuning:overview"
# What the dashboard's pages and its sign-in need: the admin's templates, login and context.
DASHBOARD_APPS = (
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
)


@register(Tags.urls)
def check_dashboard(**kwargs: Any) -> list[CheckMessage]:
    """The staff dashboard, where the URLconf mounts it, needs the admin installed and mounted.

    Without it the pages (which extend the admin's templates and link to its index) fail,
    and anonymous users are sent to ``LOGIN_URL``, a 404 in most projects.
    """
    mounted = _reverse(DASHBOARD_URL_NAME)
    if mounted is None:
        return []
    from django.apps import apps

    missing = [app for app in DASHBOARD_APPS if not apps.is_installed(app)]
    admin_mounted = _reverse("admin:index") is not None
    if not missing and admin_mounted:
        return []
    fixes = []
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        problem = f"{', '.join(missing)} {verb} not in INSTALLED_APPS"
        fixes.append(f"{', '.join(repr(app) for app in missing)} to INSTALLED_APPS")
    else:
        problem = "the admin is not in the URLconf"
    if admin_mounted:
        login = "nor can the admin's login page that anonymous users are sent to"
    else:
        login_url = str(getattr(settings, "LOGIN_URL", ""))
        login = (
            f"and anonymous users are sent to LOGIN_URL ({login_url!r}) instead of "
            "the admin's login page"
        )
        fixes.append(
            'path("admin/", admin.site.urls) to your URLconf, next to '
            'include("django_dbtuning.urls")'
        )
    return [
        Warning(
            f"The staff dashboard is mounted at {mounted} but {problem}: its pages "
            f"extend the admin's templates and cannot render, {login}.",
            hint=f"Add {' and '.join(fixes)}; staff sign in through the admin.",
            id="dbtuning.W034",
        )
    ]


def _reverse(name: str) -> str | None:
    """``reverse(name)`` under ROOT_URLCONF; None when it has no such URL (or no URLconf)."""
    from django.urls import reverse

    if not getattr(settings, "ROOT_URLCONF", None):
        return None
    try:
        return reverse(name)
    except Exception:  # NoReverseMatch; a URLconf that fails to import: Django's check
        return None


def _check_editor_url() -> list[CheckMessage]:
    """``EDITOR_URL`` names the file with {path}; {line} is optional, nothing else."""
    template = get_settings().editor_url
    if template is None:
        return []
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        if "path" not in fields:
            raise ValueError("it has no {path}")
        template.format(path="/p", line=1)
    except (ValueError, KeyError, IndexError, AttributeError) as exc:
        return [
            Error(
                f"DBTUNING['EDITOR_URL'] = {template!r} is not a URL template the "
                f"panel can fill ({exc}).",
                hint='Use {path} and {line}, e.g. "vscode://file{path}:{line}" or '
                '"pycharm://open?file={path}&line={line}".',
                id="dbtuning.E036",
            )
        ]
    return []


def _check_allow_list() -> list[CheckMessage]:
    user = getattr(settings, "DBTUNING", {})
    entries = user.get("ALLOW_N_PLUS_ONE", ()) if isinstance(user, Mapping) else ()
    if not isinstance(entries, list | tuple):
        return []  # wrong type: already dbtuning.E002
    messages: list[CheckMessage] = []
    for index, entry in enumerate(entries):
        where = f"DBTUNING['ALLOW_N_PLUS_ONE'][{index}]"
        if not isinstance(entry, Mapping) or not entry:
            messages.append(
                Error(
                    f"{where} is {entry!r}; expected a non-empty dict.",
                    hint=f"Use keys among {', '.join(ALLOW_KEYS)}, e.g. "
                    '{"model": "shop.Order", "field": "customer"}.',
                    id="dbtuning.E031",
                )
            )
            continue
        for key, value in entry.items():
            if key not in ALLOW_KEYS:
                close = difflib.get_close_matches(str(key), ALLOW_KEYS, n=1)
                messages.append(
                    Error(
                        f"{where} has an unknown key {key!r}.",
                        hint=f"Did you mean {close[0]!r}?"
                        if close
                        else f"Known keys: {', '.join(ALLOW_KEYS)}.",
                        id="dbtuning.E032",
                    )
                )
            elif not isinstance(value, str) or not value:
                messages.append(
                    Error(
                        f"{where}[{key!r}] is {value!r}; expected a non-empty string "
                        "(glob patterns allowed).",
                        hint="For example 'shop.Order', 'customer', 'shop/views.py:*'.",
                        id="dbtuning.E033",
                    )
                )
        messages.extend(_check_allowed_model(entry, where))
    return messages


def _is_glob(value: str) -> bool:
    return any(char in value for char in "*?[")


def _check_allowed_model(entry: Mapping[str, Any], where: str) -> list[CheckMessage]:
    from django.apps import apps

    model_name, field_name = entry.get("model"), entry.get("field")
    if not isinstance(model_name, str) or not model_name or _is_glob(model_name):
        return []
    try:
        model = apps.get_model(model_name)
    except (LookupError, ValueError):
        return [
            Error(
                f"{where}['model'] is {model_name!r}, which is not an installed model.",
                hint="Use 'app_label.ModelName', as in INSTALLED_APPS' models.",
                id="dbtuning.E034",
            )
        ]
    if not isinstance(field_name, str) or not field_name or _is_glob(field_name):
        return []
    names = set()
    for model_field in model._meta.get_fields():
        names.add(model_field.name)
        accessor = getattr(model_field, "get_accessor_name", None)
        if accessor is not None:
            names.add(accessor())
    if field_name not in names:
        close = difflib.get_close_matches(
            field_name, sorted(n for n in names if n), n=1
        )
        return [
            Error(
                f"{where}['field'] is {field_name!r}, which {model_name} does not have.",
                hint=f"Did you mean {close[0]!r}?"
                if close
                else f"{model_name} has: {', '.join(sorted(n for n in names if n))}.",
                id="dbtuning.E035",
            )
        ]
    return []
