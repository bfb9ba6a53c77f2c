"""Check dbtuning.W034: the dashboard mounted without the admin it needs (its templates,
its index, its login page), and where anonymous users go then."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from django.core.checks import run_checks

ADMIN_URLS = "tests.dashboard.urls"
DASHBOARD_ONLY = "tests.dashboard.dashboard_only_urls"


def w034() -> list:
    return [m for m in run_checks(tags=["urls"]) if m.id == "dbtuning.W034"]


@pytest.mark.urls(ADMIN_URLS)
def test_quiet_with_the_admin_installed_and_mounted():
    assert w034() == []


@pytest.mark.urls("tests.urls")
def test_quiet_when_the_dashboard_is_not_mounted(settings):
    settings.INSTALLED_APPS = [
        a for a in settings.INSTALLED_APPS if a != "django.contrib.admin"
    ]
    assert w034() == []


def test_quiet_without_a_root_urlconf(settings):
    del settings.ROOT_URLCONF
    assert w034() == []


@pytest.mark.urls(DASHBOARD_ONLY)
def test_warns_when_the_admin_is_not_mounted(settings):
    settings.LOGIN_URL = "/accounts/login/"
    (warning,) = w034()
    assert warning.msg.startswith(
        "The staff dashboard is mounted at /ops/db/ but the admin is not in the URLconf"
    )
    assert "anonymous users are sent to LOGIN_URL ('/accounts/login/')" in warning.msg
    assert warning.hint == (
        'Add path("admin/", admin.site.urls) to your URLconf, next to '
        'include("django_dbtuning.urls"); staff sign in through the admin.'
    )


@pytest.mark.urls(ADMIN_URLS)
def test_warns_when_the_admin_app_is_missing(settings):
    settings.INSTALLED_APPS = [
        a
        for a in settings.INSTALLED_APPS
        if a not in ("django.contrib.admin", "django.contrib.messages")
    ]
    (warning,) = w034()
    assert (
        "mounted at /dbtuning/ but django.contrib.admin, django.contrib.messages are "
        "not in INSTALLED_APPS"
    ) in warning.msg
    # The admin's URLs are mounted: its login page is where users go, and fails too.
    assert "nor can the admin's login page that anonymous users are sent to" in (
        warning.msg
    )
    assert warning.hint == (
        "Add 'django.contrib.admin', 'django.contrib.messages' to INSTALLED_APPS; "
        "staff sign in through the admin."
    )


def test_the_check_is_a_urls_check():
    """``check --tag models`` does not import the URLconf for it."""
    registered = {c.__name__: c for c in _registered()}
    assert "urls" in registered["check_dashboard"].tags


def _registered():
    from django.core.checks.registry import registry

    return registry.get_checks()


def test_warns_without_auth_and_the_urlconf_still_imports():
    """Without django.contrib.auth the dashboard's URLconf imports (auth is loaded only
    to send an anonymous user to the login), so the check can name what is missing."""
    code = textwrap.dedent(
        """
        import django
        from django.conf import settings
        settings.configure(
            SECRET_KEY="x",
            INSTALLED_APPS=["django_dbtuning"],
            ROOT_URLCONF="tests.dashboard.dashboard_only_urls",
        )
        django.setup()
        from django.core.checks import run_checks
        for m in run_checks(tags=["urls"]):
            print(m.id, m.msg)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert (
        "dbtuning.W034 The staff dashboard is mounted at /ops/db/ but "
        "django.contrib.admin, django.contrib.auth, django.contrib.contenttypes, "
        "django.contrib.sessions, django.contrib.messages are not in INSTALLED_APPS: "
        "its pages extend the admin's templates and cannot render, and anonymous "
        "users are sent to LOGIN_URL ('/accounts/login/')"
    ) in result.stdout


@pytest.mark.urls(DASHBOARD_ONLY)
@pytest.mark.django_db
def test_anonymous_users_go_to_login_url_without_the_admin(client, settings):
    settings.LOGIN_URL = "/sso/login/"
    response = client.get("/ops/db/indexes/")
    assert response.status_code == 302
    assert response["Location"] == "/sso/login/?next=/ops/db/indexes/"
    assert "no-store" in response["Cache-Control"]


@pytest.mark.urls(ADMIN_URLS)
@pytest.mark.django_db
def test_anonymous_users_go_to_the_admin_login_when_it_is_mounted(client, settings):
    settings.LOGIN_URL = "/sso/login/"
    response = client.get("/dbtuning/")
    assert response["Location"] == "/admin/login/?next=/dbtuning/"
