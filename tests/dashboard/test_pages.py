"""The dashboard from a user's side: every page, its content, who may see it, and what it
must never show (passwords, SQL literals, unescaped names)."""

from __future__ import annotations

import html

import pytest
from django.db import connection

from tests.dashboard.conftest import (
    COLUMN,
    DUPLICATE,
    INDEX,
    PAGES,
    PASSWORD,
    SECRET,
    TABLE,
)

pytestmark = [pytest.mark.urls("tests.dashboard.urls"), pytest.mark.django_db]


def text(response) -> str:
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def test_overview_shows_findings_by_severity_with_hints(planted, staff_client):
    page = text(staff_client.get("/dbtuning/"))
    assert "Duplicate index" in page
    # The hint's DROP INDEX names the hostile index quoted for SQL, escaped for HTML.
    assert html.escape("DROP INDEX CONCURRENTLY IF EXISTS ") in page
    assert html.escape(f'"{DUPLICATE}"') in page
    assert 'id="findings-warning"' in page or 'id="findings-info"' in page
    # Findings on contrib apps' tables (auth's overlapping indexes) are folded away.
    folded = page.split('<details class="dbtuning-third-party">', 1)[1]
    assert "auth_group_permissions" in folded.split("</details>", 1)[0]
    assert "Pool of this process" in page
    assert "a new connection per request (CONN_MAX_AGE=0)" in page  # the test alias
    assert "Connections" in page
    assert 'href="/admin/"' in page  # the admin's breadcrumbs


def test_indexes_page_lists_the_planted_index(planted, staff_client):
    page = text(staff_client.get("/dbtuning/indexes/"))
    # Named as SQL names it (quoted, quotes doubled), escaped for HTML.
    assert html.escape(INDEX.replace('"', '""')) in page
    assert "Largest indexes" in page


def test_tables_page_lists_the_planted_table(planted, staff_client):
    page = text(staff_client.get("/dbtuning/tables/"))
    assert html.escape(TABLE) in page


def test_statements_page_shows_the_statement_masked(planted, staff_client):
    page = text(staff_client.get("/dbtuning/statements/"))
    assert COLUMN in page
    assert "EXPLAIN" in page
    if connection.pg_version >= 160000:
        assert "dbtuning-plan" in page


def test_history_draws_points_after_two_snapshots(snapshots, staff_client):
    page = text(staff_client.get("/dbtuning/history/"))
    assert "2 snapshots" in page
    assert page.count('class="dbtuning-point"') >= 10  # 5 charts, 2 snapshots
    assert "<polyline" in page
    assert html.escape(TABLE) in page  # a growing table named in a legend and the table


def test_history_without_snapshots_says_how_to_take_them(staff_client):
    page = text(staff_client.get("/dbtuning/history/"))
    assert "dbreport --save" in page


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_users_go_to_the_admin_login(client, path):
    response = client.get(f"/dbtuning/{path}")
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next=/dbtuning/{path}"
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("who", ["not staff", "no permission"])
@pytest.mark.parametrize("path", PAGES)
def test_users_without_staff_and_permission_get_403(client, users, who, path):
    client.force_login(users[who])
    response = client.get(f"/dbtuning/{path}")
    assert response.status_code == 403
    assert response["Cache-Control"].count("no-store")


def test_a_superuser_may_view(client, db):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("root", password="x-not-shown"))
    assert client.get("/dbtuning/history/").status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_nothing_changes_anything(staff_client, method):
    response = getattr(staff_client, method)("/dbtuning/")
    assert response.status_code == 405
    assert "no-store" in response["Cache-Control"]


def test_head_is_served(staff_client):
    assert staff_client.head("/dbtuning/history/").status_code == 200


@pytest.mark.parametrize("path", PAGES)
def test_responses_are_never_cached(staff_client, path):
    response = staff_client.get(f"/dbtuning/{path}")
    assert "no-store" in response["Cache-Control"]


def test_database_parameter_is_validated(staff_client):
    assert staff_client.get("/dbtuning/history/?database=other").status_code == 200
    response = staff_client.get("/dbtuning/history/?database=<script>nope")
    assert response.status_code == 400
    assert "no-store" in response["Cache-Control"]
    assert b"<script>nope" not in response.content


def test_no_password_literal_or_raw_name_on_any_page(
    snapshots, staff_client, monkeypatch
):
    # The embedded server trusts local connections: a planted password is sent, not needed.
    monkeypatch.setitem(connection.settings_dict, "PASSWORD", PASSWORD)
    for path in PAGES:
        page = text(staff_client.get(f"/dbtuning/{path}?database=default"))
        assert PASSWORD not in page, path
        assert SECRET not in page, path
        assert "<script>alert(" not in page, path
        assert "user-pw-not-shown" not in page, path


def test_an_unreachable_database_is_shown_not_raised(staff_client, monkeypatch):
    from django.db import connections

    # A copy: in tests the "other" alias shares default's settings dict (a mirror).
    broken = {**connections["other"].settings_dict, "PORT": 1, "PASSWORD": PASSWORD}
    monkeypatch.setitem(connections.settings, "other", broken)
    monkeypatch.setattr(connections["other"], "settings_dict", broken)
    page = text(staff_client.get("/dbtuning/?database=other"))
    assert "unreachable" in page
    assert PASSWORD not in page
