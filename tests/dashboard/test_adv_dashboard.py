"""Adversarial pass (session 20) on the dashboard: a role that sees other roles'
statements only as ``<insufficient privilege>`` rows (queryid NULL)."""

from __future__ import annotations

import psycopg
import pytest
from django.contrib.auth.models import User
from django.db import connections

from django_dbtuning.report.probe import connection_kwargs
from tests.dashboard.conftest import PAGES
from tests.report.test_report import admin_connection, extra_alias

pytestmark = [pytest.mark.urls("tests.dashboard.urls"), pytest.mark.django_db]

ROLE = "dash_adv_limited"
ROLE_PASSWORD = "dash-Adv-pw-31"
OWN = "SELECT %s::int AS dash_adv_marker"


@pytest.fixture
def limited_alias(planted):
    """An alias whose role has no pg_read_all_stats; the superuser's statements took
    more time than the role's own one, so they rank first, hidden from it."""
    with admin_connection() as conn:
        conn.execute(f"DROP ROLE IF EXISTS {ROLE}")
        conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_PASSWORD}'")
        conn.execute("SELECT pg_stat_statements_reset()")
        for _ in range(3):
            conn.execute("SELECT pg_sleep(0.005)")
    kwargs = {
        **connection_kwargs(connections.settings["default"]),
        "user": ROLE,
        "password": ROLE_PASSWORD,
    }
    with psycopg.connect(**kwargs, autocommit=True) as own:
        for number in range(3):
            own.execute(OWN, [number])
        queryid = own.execute(
            "SELECT queryid FROM pg_stat_statements WHERE query LIKE %s",
            ["%dash_adv_marker%"],
        ).fetchone()[0]
    try:
        with extra_alias("limited", USER=ROLE, PASSWORD=ROLE_PASSWORD):
            yield int(queryid)
    finally:
        with admin_connection() as conn:
            conn.execute(f"DROP OWNED BY {ROLE}")
            conn.execute(f"DROP ROLE {ROLE}")


def test_a_statement_page_among_hidden_statements(limited_alias, staff_client):
    # Before: int(None) on the first hidden row raised TypeError (a 500).
    response = staff_client.get(
        f"/dbtuning/statements/{limited_alias}/?database=limited"
    )
    assert response.status_code == 200, response.content[:300]
    page = response.content.decode()
    assert "dash_adv_marker" in page
    assert ROLE_PASSWORD not in page
    missing = staff_client.get("/dbtuning/statements/12345/?database=limited")
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("backend", "status"),
    [
        # Django's default backend drops a deactivated user's session: the login page.
        ("django.contrib.auth.backends.ModelBackend", 302),
        # A backend that keeps inactive users signed in: refused by the view itself.
        ("django.contrib.auth.backends.AllowAllUsersModelBackend", 403),
    ],
)
@pytest.mark.parametrize("page", PAGES)
def test_a_deactivated_superuser_sees_nothing(
    client, db, settings, backend, status, page
):
    settings.AUTHENTICATION_BACKENDS = [backend]
    user = User.objects.create_superuser("gone", password="x-not-shown")
    client.force_login(user, backend=backend)
    user.is_active = False
    user.save()
    response = client.get(f"/dbtuning/{page}")
    assert response.status_code == status
    if status == 302:
        assert "login" in response["Location"]
    assert (
        response["Cache-Control"].startswith("max-age=0")
        or "no-store" in (response["Cache-Control"])
    )
