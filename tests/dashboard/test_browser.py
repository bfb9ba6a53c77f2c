"""The dashboard in headless Chromium (Debian's, driven by Playwright) against a live
server on the embedded PostgreSQL: log in through the admin's form, open every page, see
chart points, follow a statement to its own page; a non-staff user gets 403, an anonymous
one the login page.

``DBTUNING_SCREENSHOTS=1`` also writes docs/images/dashboard-*.png (1280x800), the
documentation's screenshots; without it nothing in the tree changes.
"""

from __future__ import annotations

import os
from pathlib import Path

import django.contrib.admin
import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from psycopg import sql

from tests.browser import chromium
from tests.report.test_report import admin_connection, dbreport

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # tox legs install the test group without playwright
    pytest.skip(
        "playwright is not installed (pip install playwright; it drives the system "
        "chromium)",
        allow_module_level=True,
    )

pytestmark = [
    pytest.mark.urls("tests.dashboard.urls"),
    pytest.mark.django_db(transaction=True),
]

ADMIN_STATIC = Path(django.contrib.admin.__file__).parent / "static"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
PAGES = {
    "overview": "",
    "indexes": "indexes/",
    "tables": "tables/",
    "statements": "statements/",
    "history": "history/",
}
PASSWORD = "browser-pw-demo"
TABLE = "browser_orders"


@pytest.fixture
def live_url(live_server, settings, transactional_db):
    """pytest-django's live server. It serves STATIC_URL from STATIC_ROOT: here the
    admin's own CSS and icons, so a screenshot shows its real look."""
    settings.STATIC_ROOT = str(ADMIN_STATIC)
    return live_server.url


@pytest.fixture
def browser_data(transactional_db):
    """A plain table growing between two snapshots, statements on it, and users."""
    with admin_connection() as conn:
        table = sql.Identifier(TABLE)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        # The history page lists the newest snapshot's top statements: after the rest of the
        # suite, this table's would not be among them.
        conn.execute("SELECT pg_stat_statements_reset()")
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, note text)").format(table)
        )
        for start in (0, 5000):
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} SELECT g, repeat('x', 200) "
                    "FROM generate_series(%s::int, %s::int) g"
                ).format(table),
                [start + 1, start + 5000],
            )
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
            conn.execute("SELECT pg_stat_force_next_flush()")
            out, err, code = dbreport("--save")
            assert code == 0, err
        permission = Permission.objects.get(codename="view_report")
        staff = User.objects.create_user("staff", password=PASSWORD, is_staff=True)
        staff.user_permissions.add(permission)
        member = User.objects.create_user("member", password=PASSWORD)
        member.user_permissions.add(permission)
        yield
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


def log_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/?next=/dbtuning/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state()


def test_dashboard_in_a_browser(live_url, browser_data):
    executable = chromium()
    shots = os.environ.get("DBTUNING_SCREENSHOTS") == "1"
    base = live_url
    # Before Playwright starts its event loop: the ORM refuses to run beside one.
    client = Client()
    client.force_login(User.objects.get(username="member"))
    session = client.cookies["sessionid"].value
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            # Anonymous: the admin's login page.
            page.goto(f"{base}/dbtuning/")
            assert "/admin/login/" in page.url
            assert page.locator("#id_username").count() == 1

            stylesheet = page.request.get(f"{base}/static/admin/css/base.css")
            assert stylesheet.status == 200

            log_in(page, base, "staff")
            assert page.url == f"{base}/dbtuning/"
            for name, path in PAGES.items():
                response = page.goto(f"{base}/dbtuning/{path}")
                assert response is not None and response.status == 200, name
                assert page.locator("#content-main").count() == 1
                assert page.locator("div.breadcrumbs a").first.inner_text() == "Home"
                if name == "history":
                    assert page.locator("svg polyline").count() >= 4
                    assert page.locator("svg circle.dbtuning-point").count() >= 10
                if name == "tables":
                    assert page.get_by_text(TABLE).count() >= 1
                if shots:
                    IMAGES.mkdir(exist_ok=True)
                    page.screenshot(path=str(IMAGES / f"dashboard-{name}.png"))

            # The history page (the last one opened) links each statement to its page.
            link = page.locator("td a", has_text=TABLE).first
            link.click()
            page.wait_for_load_state()
            assert "/dbtuning/statements/" in page.url
            assert page.locator("h2", has_text="Statement").count() >= 1
            assert page.locator("pre.dbtuning-sql").first.inner_text().count(TABLE)
            assert page.locator("svg circle.dbtuning-point").count() >= 1
            if shots:
                page.screenshot(path=str(IMAGES / "dashboard-statement.png"))

            # The admin's form turns non-staff users away: their session is made here.
            member = browser.new_context()
            member.add_cookies([{"name": "sessionid", "value": session, "url": base}])
            other = member.new_page()
            response = other.goto(f"{base}/dbtuning/")
            assert response is not None and response.status == 403
        finally:
            browser.close()
