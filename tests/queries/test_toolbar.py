"""The debug-toolbar panel, rendered the way the toolbar renders it: its middleware, its
store and its ``render_panel`` endpoint (the request the toolbar's JavaScript makes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from html import escape

import pytest
from asgiref.sync import async_to_sync
from django.core.checks import run_checks
from django.db import connection
from hypothesis import given
from hypothesis import strategies as st

from tests.testapp.models import Author, Book, Publisher

pytestmark = pytest.mark.urls("tests.queries.toolbar_urls")

PANEL = "django_dbtuning.toolbar.QueriesPanel"
QUERY_COUNT = "django_dbtuning.middleware.QueryCountMiddleware"
TOOLBAR = "debug_toolbar.middleware.DebugToolbarMiddleware"
# A table whose name is markup: the SQL shape shown in the panel carries it.
HOSTILE_TABLE = "<script>alert('x')</script>"


@pytest.fixture(autouse=True)
def toolbar(settings, dbtuning):
    settings.DEBUG = True
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "debug_toolbar"]
    settings.MIDDLEWARE = [QUERY_COUNT, TOOLBAR, *settings.MIDDLEWARE]
    settings.DEBUG_TOOLBAR_PANELS = [PANEL]
    settings.DEBUG_TOOLBAR_CONFIG = {
        "SHOW_TOOLBAR_CALLBACK": "tests.queries.toolbar_urls.show_toolbar",
        "IS_RUNNING_TESTS": False,
    }
    dbtuning(ON_N_PLUS_ONE="log", ON_DUPLICATE="log")


@pytest.fixture
def books(db):
    publisher = Publisher.objects.create(name="P")
    for i in range(4):
        author = Author.objects.create(name=f"A{i}", publisher=publisher)
        Book.objects.create(title=f"B{i}", author=author)


# debug_toolbar is imported only once the fixture installed it (its models need the app).
def get_store():
    from debug_toolbar.store import get_store

    return get_store()


def last_request_id() -> str:
    return list(get_store().request_ids())[-1]


def panel_content(client, request_id: str) -> str:
    response = client.get(
        "/__debug__/render_panel/",
        {"request_id": request_id, "panel_id": "QueriesPanel"},
    )
    assert response.status_code == 200
    return json.loads(response.content)["content"]


def subtitle(request_id: str) -> str:
    from debug_toolbar.toolbar import DebugToolbar

    stored = DebugToolbar.fetch(request_id, "QueriesPanel")
    assert stored is not None
    return stored.get_panel_by_id("QueriesPanel").nav_subtitle


def test_naive_view_shows_the_n_plus_one(client, books):
    response = client.get("/books/naive/")
    assert response.status_code == 200
    request_id = last_request_id()
    content = panel_content(client, request_id)
    assert "N+1 query" in content
    assert "<code>testapp.Book.author</code>" in content
    assert '<span class="djdt-file">views.py</span>' in content
    assert '<span class="djdt-path">tests/testapp/</span>' in content
    assert '<span class="djdt-func">books_naive</span>' in content
    assert "<td>4</td>" in content
    assert (
        "fix: add .select_related(&quot;author&quot;) to the Book queryset" in content
    )
    shape = 'SELECT … FROM "testapp_author" WHERE "testapp_author"."id" = %s LIMIT ?'
    assert f'<pre class="djdt-dbtuning-sql">{escape(shape)}</pre>' in content
    assert subtitle(request_id) == "N+1: 1 · dup: 0"


def test_template_line_is_shown(client, books):
    client.get("/books/template/")
    content = panel_content(client, last_request_id())
    assert "template:" in content
    assert '<span class="djdt-file">books.html</span>' in content


def test_fixed_view_shows_none(client, books):
    client.get("/books/fixed/")
    request_id = last_request_id()
    content = panel_content(client, request_id)
    assert "No N+1 and no duplicate query in this request." in content
    assert "1 query in" in content
    assert subtitle(request_id) == "no N+1"


@pytest.mark.django_db(transaction=True)
def test_async_view(async_client, books):
    async def get(path):
        return await async_client.get(path)

    async_to_sync(get)("/async/naive/")
    request_id = last_request_id()
    content = panel_content_async(async_client, request_id)
    assert '<span class="djdt-func">books_async_naive</span>' in content
    assert "testapp.Author rows" in content
    assert subtitle(request_id) == "N+1: 1 · dup: 0"
    async_to_sync(get)("/async/fixed/")
    assert subtitle(last_request_id()) == "no N+1"


def panel_content_async(async_client, request_id: str) -> str:
    async def get():
        return await async_client.get(
            "/__debug__/render_panel/",
            {"request_id": request_id, "panel_id": "QueriesPanel"},
        )

    return json.loads(async_to_sync(get)().content)["content"]


def test_duplicates(client, books):
    client.get("/twice/")
    request_id = last_request_id()
    content = panel_content(client, request_id)
    assert "Duplicate query" in content
    assert "<td>3</td>" in content
    assert "evaluate it once" in content
    assert "&#x27;B0&#x27;" not in content and "B0" not in content
    assert subtitle(request_id) == "N+1: 0 · dup: 1"


@pytest.fixture
def hostile_table(db):
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE "{HOSTILE_TABLE}" ("id" int, "note" text)')


def test_hostile_sql_is_escaped_and_parameters_never_shown(client, hostile_table):
    response = client.get("/hostile/")
    page = response.content.decode()
    assert "N+1: 0 · dup: 1" in page  # the nav subtitle in the toolbar inserted
    content = panel_content(client, last_request_id())
    assert "<script>" not in content
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in content
    assert "secret-42" not in content


def test_hostile_stats_are_escaped(client, books):
    """Whatever a stored finding holds (model, field, path names) is text, not markup."""
    client.get("/books/naive/")
    request_id = last_request_id()
    store = get_store()
    stats = store.panel(request_id, "QueriesPanel")
    evil = "<img src=x onerror=alert(1)>"
    for finding in stats["n_plus_one"]:
        finding.update(subject=evil, hint=evil, sql=evil, alias=evil, serializer=evil)
        for where in finding["locations"]:
            where.update(directory=evil, file=evil, function=evil, line=evil)
    store.save_panel(request_id, "QueriesPanel", stats)
    content = panel_content(client, request_id)
    assert "<img" not in content
    assert content.count("&lt;img src=x onerror=alert(1)&gt;") >= 8


def test_untracked_request_says_so(client, books, settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != QUERY_COUNT]
    client.get("/books/naive/")
    request_id = last_request_id()
    assert subtitle(request_id) == "not tracked"
    assert "QueryCountMiddleware" in panel_content(client, request_id)


def test_toolbar_outside_the_middleware_still_sees_the_findings(
    client, books, settings
):
    settings.MIDDLEWARE = [TOOLBAR, QUERY_COUNT, *settings.MIDDLEWARE[2:]]
    client.get("/books/naive/")
    assert subtitle(last_request_id()) == "N+1: 1 · dup: 0"


def test_check_warns_when_the_panel_has_no_middleware(settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != QUERY_COUNT]
    ids = [m.id for m in run_checks(databases=[])]
    assert "dbtuning.W033" in ids


def test_check_is_quiet_with_the_middleware(settings):
    ids = [m.id for m in run_checks(databases=[])]
    assert "dbtuning.W033" not in ids
    settings.DEBUG_TOOLBAR_PANELS = ["debug_toolbar.panels.sql.SQLPanel"]
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != QUERY_COUNT]
    assert "dbtuning.W033" not in [m.id for m in run_checks(databases=[])]


def test_nothing_imports_the_toolbar_unless_the_panel_is_configured():
    code = textwrap.dedent(
        """
        import sys
        import django
        from django.conf import settings
        from django.test import Client
        django.setup()
        import django_dbtuning.queries
        from django_dbtuning.middleware import QueryCountMiddleware
        from django_dbtuning.queries import request_report
        from django.core.checks import run_checks
        run_checks(databases=[])
        assert "debug_toolbar" not in sys.modules, sorted(
            m for m in sys.modules if "toolbar" in m
        )
        print("clean")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**_env(), "DJANGO_SETTINGS_MODULE": "tests.settings"},
        check=False,
    )
    assert result.stdout.strip() == "clean", result.stderr


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_editor_links_to_the_view_line_and_the_template_file(client, books, dbtuning):
    dbtuning(EDITOR_URL="pycharm://open?file={path}&line={line}")
    client.get("/books/template/")
    content = panel_content(client, last_request_id())
    views = os.path.abspath("tests/testapp/views.py")
    assert re.search(
        rf'href="pycharm://open\?file={re.escape(views)}&amp;line=\d+"', content
    ), content
    template = os.path.abspath("tests/testapp/templates/testapp/books.html")
    assert f'href="pycharm://open?file={template}&amp;line=4"' in content


def test_no_editor_links_by_default(client, books):
    client.get("/books/template/")
    assert "href=" not in panel_content(client, last_request_id())


def test_editor_url_with_hostile_path_is_quoted(client, books, dbtuning):
    dbtuning(EDITOR_URL='x://{path}"><script>{line}')
    client.get("/books/naive/")
    content = panel_content(client, last_request_id())
    assert "<script>" not in content
    assert "&quot;&gt;&lt;script&gt;" in content


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("vscode://file:{line}", "has no {path}"),
        ("vscode://file{path}:{file}", "'file'"),
        ("vscode://file{path}:{line", "expected '}'"),
        ("vscode://{0}{path}", "0"),
    ],
)
def test_check_rejects_a_wrong_editor_url(dbtuning, value, words):
    dbtuning(EDITOR_URL=value)
    (error,) = [m for m in run_checks(databases=[]) if m.id == "dbtuning.E036"]
    assert "EDITOR_URL" in error.msg and words in error.msg


def test_check_rejects_an_editor_url_of_the_wrong_type(dbtuning):
    dbtuning(EDITOR_URL=["vscode://file{path}"])
    (error,) = [m for m in run_checks(databases=[]) if m.id == "dbtuning.E002"]
    assert "EDITOR_URL" in error.msg


@pytest.mark.parametrize(
    "value",
    [None, "vscode://file{path}:{line}", "pycharm://open?file={path}&line={line}"],
)
def test_check_accepts_editor_urls(dbtuning, value):
    dbtuning(EDITOR_URL=value)
    assert not [
        m
        for m in run_checks(databases=[])
        if m.id in ("dbtuning.E036", "dbtuning.E002")
    ]


def test_unused_eager_loads_are_listed(client, books, dbtuning):
    dbtuning(UNUSED_EAGER_LOADS=True)
    client.get("/eager-unused/")
    request_id = last_request_id()
    content = panel_content(client, request_id)
    assert "Unused eager loads" in content
    assert "testapp.Book.author" in content
    assert "select_related" in content
    assert '<span class="djdt-func">' not in content.split("Unused eager loads")[1]
    assert subtitle(request_id) == "no N+1"


def test_no_unused_eager_load_section_when_off(client, books):
    client.get("/eager-unused/")
    assert "Unused eager loads" not in panel_content(client, last_request_id())


def test_a_failing_panel_keeps_the_page(client, books, monkeypatch, caplog):
    import django_dbtuning.toolbar as panel_module

    def broken(report):
        raise RuntimeError("boom")

    monkeypatch.setattr(panel_module, "request_report", broken)
    monkeypatch.setattr(panel_module, "internal_error", lambda action: None)
    response = client.get("/books/naive/")
    assert response.status_code == 200
    request_id = last_request_id()
    assert subtitle(request_id) == "failed (see the log)"
    assert "failed while building this panel" in panel_content(client, request_id)


@pytest.mark.parametrize("value", [None, "/books/", object()])
def test_request_report_needs_a_request(value):
    from django_dbtuning.queries import request_report

    with pytest.raises(TypeError, match="request_report\\(\\) takes an HttpRequest"):
        request_report(value)


@given(
    directory=st.lists(
        st.text(st.characters(blacklist_characters="/\x00"), min_size=1), max_size=4
    ),
    name=st.text(st.characters(blacklist_characters="/\x00"), min_size=1),
    line=st.one_of(st.none(), st.integers(min_value=1, max_value=10**6)),
)
def test_locations_split_back_into_what_they_were(directory, name, line):
    from django_dbtuning.toolbar import _location

    path = "/".join([*directory, name])
    where = path if line is None else f"{path}:{line}"
    parts = _location("code", where, None)
    line_part = f":{parts['line']}" if parts["line"] else ""
    assert parts["directory"] + parts["file"] + line_part == where
    if line is not None:
        assert (parts["file"], parts["line"]) == (name, str(line))


@pytest.fixture
def database_store(settings, db):
    from debug_toolbar.models import HistoryEntry

    with connection.schema_editor() as editor:
        editor.create_model(HistoryEntry)
    settings.DEBUG_TOOLBAR_CONFIG = {
        **settings.DEBUG_TOOLBAR_CONFIG,
        "TOOLBAR_STORE_CLASS": "debug_toolbar.store.DatabaseStore",
    }


def test_the_toolbars_database_store_is_not_counted(
    client, books, database_store, settings, caplog
):
    settings.DEBUG_TOOLBAR_PANELS = [
        "debug_toolbar.panels.timer.TimerPanel",
        "debug_toolbar.panels.headers.HeadersPanel",
        "debug_toolbar.panels.request.RequestPanel",
        "debug_toolbar.panels.sql.SQLPanel",
        PANEL,
        "debug_toolbar.panels.templates.TemplatesPanel",
        "debug_toolbar.panels.cache.CachePanel",
    ]
    response = client.get("/books/fixed/")
    # Each panel's stats are saved to debug_toolbar_historyentry during the request.
    assert response["X-DB-Query-Count"] == "1"
    assert not [r for r in caplog.records if hasattr(r, "finding")]
    request_id = last_request_id()
    assert subtitle(request_id) == "no N+1"
    assert "1 query in" in panel_content(client, request_id)
