"""pytest-django's ``live_server`` works under the test settings (they have a STATIC_URL,
without which its static handler failed every request) and serves STATIC_ROOT."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import django.contrib.admin
import pytest

pytestmark = pytest.mark.urls("tests.dashboard.urls")


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get(url: str) -> tuple[int, dict[str, str]]:
    opener = urllib.request.build_opener(NoRedirects)
    try:
        with opener.open(url, timeout=30) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def test_live_server_sends_anonymous_users_to_the_admin_login(live_server):
    status, headers = get(f"{live_server.url}/dbtuning/")
    assert status == 302
    assert headers["Location"] == "/admin/login/?next=/dbtuning/"


def test_live_server_serves_static_root(live_server, settings):
    settings.STATIC_ROOT = str(Path(django.contrib.admin.__file__).parent / "static")
    status, headers = get(f"{live_server.url}/static/admin/css/base.css")
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
