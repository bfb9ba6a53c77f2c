"""The panel in the real toolbar, in headless Chromium (Debian's, driven by Playwright):
the sidebar's subtitle, a click that loads the panel through the toolbar's JavaScript, and
what it shows.

``DBTUNING_SCREENSHOTS=1`` also writes docs/images/toolbar-panel.png (1280x800); without it
nothing in the tree changes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.test.testcases import FSFilesHandler, LiveServerThread

from tests.browser import chromium
from tests.queries.test_toolbar import PANEL, QUERY_COUNT, TOOLBAR

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # tox legs install the test group without playwright
    pytest.skip(
        "playwright is not installed (pip install playwright; it drives the system "
        "chromium)",
        allow_module_level=True,
    )

pytestmark = [
    pytest.mark.urls("tests.queries.toolbar_urls"),
    pytest.mark.django_db(transaction=True),
]

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


class ToolbarStatic(FSFilesHandler):
    """The toolbar's own CSS and JavaScript at /static/."""

    def get_base_dir(self) -> str:
        import debug_toolbar

        return str(Path(debug_toolbar.__file__).parent / "static")

    def get_base_url(self) -> str:
        return "/static/"


@pytest.fixture
def live_url(settings, transactional_db, dbtuning):
    """A server of its own, not pytest-django's session-wide ``live_server``: a server's
    handler builds its middleware chain once, when it starts, and this test needs the
    toolbar's middleware and QueryCountMiddleware in it."""
    settings.DEBUG = True
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "debug_toolbar"]
    settings.MIDDLEWARE = [QUERY_COUNT, TOOLBAR, *settings.MIDDLEWARE]
    settings.DEBUG_TOOLBAR_PANELS = [
        "debug_toolbar.panels.timer.TimerPanel",
        "debug_toolbar.panels.sql.SQLPanel",
        PANEL,
        "debug_toolbar.panels.templates.TemplatesPanel",
    ]
    settings.DEBUG_TOOLBAR_CONFIG = {
        "SHOW_TOOLBAR_CALLBACK": "tests.queries.toolbar_urls.show_toolbar",
        "IS_RUNNING_TESTS": False,
    }
    dbtuning(ON_N_PLUS_ONE="log")
    thread = LiveServerThread("localhost", ToolbarStatic)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield f"http://localhost:{thread.port}"
    thread.terminate()


@pytest.fixture
def books(transactional_db):
    from tests.testapp.models import Author, Book, Publisher

    publisher = Publisher.objects.create(name="Penguin")
    for title, name in [
        ("Dubliners", "James Joyce"),
        ("Middlemarch", "George Eliot"),
        ("Persuasion", "Jane Austen"),
        ("The Waves", "Virginia Woolf"),
    ]:
        author = Author.objects.create(name=name, publisher=publisher)
        Book.objects.create(title=title, author=author)


def test_the_panel_in_the_toolbar(live_url, books):
    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{live_url}/books/page/")
            nav = page.locator("#djdt-QueriesPanel")
            assert "N+1: 1 · dup: 0" in nav.inner_text()
            nav.locator("a").click()
            content = page.locator("#QueriesPanel .djdt-scroll")
            content.get_by_text("testapp.Book.author").wait_for()
            text = content.inner_text()
            assert "toolbar_urls.py" in text and "books_page" in text
            assert "books.html(6)" in text  # the template's line
            assert 'add .select_related("author") to the Book queryset' in text
            assert 'FROM "testapp_author"' in text
            if os.environ.get("DBTUNING_SCREENSHOTS") == "1":
                IMAGES.mkdir(exist_ok=True)
                page.screenshot(path=str(IMAGES / "toolbar-panel.png"))
        finally:
            browser.close()
