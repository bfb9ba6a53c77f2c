"""Settings for the test suite: real PostgreSQL, from DATABASE_URL or the embedded wheel."""

from __future__ import annotations

import sys

from django_dbtuning.embedded import database_url
from django_dbtuning.exceptions import DbTuningError
from django_dbtuning.pool import database

SECRET_KEY = "not-secret-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
# pytest-django's live_server serves STATIC_URL from STATIC_ROOT (a test sets it to an app's
# static directory); without a STATIC_URL its handler fails on every request.
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# No pool for the test alias: Django's test runner drops and clones databases, and a pool
# holding connections to them would block that. Pool behaviour has its own tests.
try:
    DATABASES = {
        "default": database(
            database_url(),
            pool=False,
            conn_max_age=0,
            application_name="dbtuning-tests",
        ),
    }
except (
    DbTuningError
) as exc:  # a wrong DATABASE_URL or a missing wheel: one line, no traceback
    sys.exit(f"error: {exc}")
# The no-pool test alias is deliberate (see above), so its new-connection-per-request
# warning is noise here.
SILENCED_SYSTEM_CHECKS = ["dbtuning.W011"]
DATABASES["other"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}
# The test databases' statistics are seconds old: judge unused indexes at once (the 7-day
# default and its stats_too_young finding are tested in tests/report/test_noise.py).
DBTUNING = {"UNUSED_INDEX_MIN_AGE": "0s"}

INSTALLED_APPS = [
    # The admin: N+1 hints name a ModelAdmin's own knobs (tests/queries/hint_site.py).
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_dbtuning",
    "tests.testapp",
    "tests.reportapp",
    "tests.copyapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
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
            ]
        },
    },
    # Jinja2 templates in <app>/jinja2/: N+1s reported at the template line.
    {
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [],
        "APP_DIRS": True,
    },
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_dbtuning": {"level": "DEBUG"}},
}
