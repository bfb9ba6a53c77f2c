"""UNUSED_EAGER_LOADS = "warn": an UnusedEagerLoadWarning per finding, and xdist merging."""

# ruff: noqa: F811  (the catalogue's library fixture is imported)

from __future__ import annotations

import importlib.util
import json
import logging
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_dbtuning import (
    NPlusOneWarning,
    QueryBudgetExceeded,
    QueryProblemWarning,
    UnusedEagerLoadWarning,
    query_budget,
)
from django_dbtuning.queries.eager_findings import SessionFindings, UnusedEagerLoad
from django_dbtuning.queries.units import finish_unit, start_unit
from tests.queries.test_nplusone import library  # noqa: F401  (the catalogue's data)
from tests.queries.test_pytest_plugin import run_pytest
from tests.queries.test_unused_eager_loads import line_of
from tests.testapp.models import Book

pytestmark = pytest.mark.django_db

VIEWS = "tests/queries/eager_urls.py"


@pytest.fixture
def eager_site(settings, dbtuning):
    settings.MIDDLEWARE = [
        "django_dbtuning.middleware.QueryCountMiddleware",
        *settings.MIDDLEWARE,
    ]
    settings.ROOT_URLCONF = "tests.queries.eager_urls"
    yield dbtuning
    dbtuning(UNUSED_EAGER_LOADS=False)


def test_warn_emits_a_warning_at_the_line_that_asked(library, eager_site, client):
    eager_site(UNUSED_EAGER_LOADS="warn")
    with pytest.warns(UnusedEagerLoadWarning) as caught:
        response = client.get("/eager/template/")
    assert response.status_code == 200
    [warning] = caught.list
    assert issubclass(warning.category, QueryProblemWarning)
    assert warning.filename.endswith(VIEWS)
    assert warning.lineno == line_of("# EAGER_VIEW_LINE", VIEWS)
    message = str(warning.message)
    assert message.startswith("Unused eager load: testapp.Author.profile loaded by")
    assert warning.message.finding.relation == "testapp.Author.profile"


def test_as_an_error_it_fails_the_request(library, eager_site, client):
    # What filterwarnings = error::django_dbtuning.UnusedEagerLoadWarning does in a test.
    eager_site(UNUSED_EAGER_LOADS="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedEagerLoadWarning)
        with pytest.raises(UnusedEagerLoadWarning, match="testapp.Author.profile"):
            client.get("/eager/template/")


@pytest.mark.parametrize("value", [True, "log"])
def test_true_and_log_only_log(library, eager_site, client, caplog, value):
    eager_site(UNUSED_EAGER_LOADS=value)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedEagerLoadWarning)
        with caplog.at_level(logging.INFO, logger="django_dbtuning"):
            response = client.get("/eager/template/")
    assert response.status_code == 200
    [record] = [r for r in caplog.records if hasattr(r, "finding")]
    assert record.levelno == logging.INFO


def test_warn_is_not_an_n_plus_one_warning(library, eager_site, client):
    # filterwarnings can target one or the other; QueryProblemWarning catches both.
    eager_site(UNUSED_EAGER_LOADS="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NPlusOneWarning)
        with pytest.warns(UnusedEagerLoadWarning):
            client.get("/eager/template/")


def _titles_with_unread_authors() -> list[str]:
    return [b.title for b in Book.objects.select_related("author")]  # BUDGET_LOAD


def test_query_budget_reports_like_the_middleware(library, dbtuning, caplog):
    """A query_budget block or decorated call is a unit that reacts: with the setting on,
    its unused eager loads are logged and warned at its end, as a request's are."""
    dbtuning(UNUSED_EAGER_LOADS="warn")
    here = "tests/queries/test_unused_eager_warning.py"
    with (
        caplog.at_level(logging.INFO, logger="django_dbtuning"),
        pytest.warns(UnusedEagerLoadWarning) as caught,
        query_budget(max_queries=5),
    ):
        _titles_with_unread_authors()
    [warning] = caught.list
    assert warning.filename.endswith(here)
    assert warning.lineno == line_of("# BUDGET_LOAD", here)
    assert "testapp.Book.author loaded by select_related" in str(warning.message)
    [record] = [r for r in caplog.records if hasattr(r, "finding")]
    assert record.levelno == logging.INFO
    assert record.finding.relation == "testapp.Book.author"

    decorated = query_budget(max_queries=5)(_titles_with_unread_authors)
    with pytest.warns(UnusedEagerLoadWarning, match="testapp.Book.author"):
        decorated()


def test_query_budget_raise_still_wins_over_the_warning(library, dbtuning):
    dbtuning(UNUSED_EAGER_LOADS="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedEagerLoadWarning)
        with (
            pytest.raises(QueryBudgetExceeded, match="over the budget of 0"),
            query_budget(max_queries=0),
        ):
            _titles_with_unread_authors()
        # Within budget, the warning (an error under this filter) is what comes out.
        with (
            pytest.raises(UnusedEagerLoadWarning, match="testapp.Book.author"),
            query_budget(max_queries=5),
        ):
            _titles_with_unread_authors()


def test_query_budget_says_nothing_when_off_or_read(library, dbtuning, caplog):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedEagerLoadWarning)
        with caplog.at_level(logging.INFO, logger="django_dbtuning"):
            with query_budget(max_queries=5):  # the setting is off
                _titles_with_unread_authors()
            dbtuning(UNUSED_EAGER_LOADS="warn")
            with query_budget(max_queries=5):
                assert [b.author.name for b in Book.objects.select_related("author")]
    assert not [r for r in caplog.records if hasattr(r, "finding")]


@pytest.mark.parametrize("value", ["yes", "Warn", "raise", 1])
def test_wrong_values_are_check_errors(settings, value):
    from django_dbtuning.checks import check_dbtuning_settings

    settings.DBTUNING = {"UNUSED_EAGER_LOADS": value}
    [error] = check_dbtuning_settings()
    assert error.id == "dbtuning.E002"
    assert "DBTUNING['UNUSED_EAGER_LOADS']" in error.msg
    assert "'warn'" in error.msg


# --- pytest-xdist: the workers' sessions merged into one summary ----------------------------


def _session(read: bool) -> SessionFindings:
    unit = start_unit(unused_eager_loads=True)
    try:
        for book in Book.objects.select_related("author").order_by("pk"):  # SHARED_LOAD
            if read:
                assert book.author.name
    finally:
        finish_unit(unit)
    session = SessionFindings()
    session.add(unit.eager, "test_read" if read else "test_unread")
    return session


def test_worker_findings_merge_like_one_session(library):
    unread, reader = _session(read=False), _session(read=True)
    assert unread.lines()  # alone, the worker that never read it would report it
    controller = SessionFindings()
    for worker in (unread, reader):
        # Through JSON: what execnet carries is plain lists, dicts and strings.
        controller.merge(json.loads(json.dumps(worker.export())))
    assert controller.lines() == []  # another worker's test read it: used
    controller = SessionFindings()
    controller.merge(json.loads(json.dumps(unread.export())))
    controller.merge(json.loads(json.dumps(_session(read=False).export())))
    lines = controller.lines()
    assert lines[0] == unread.lines()[0]
    assert lines[0].startswith("tests/queries/test_unused_eager_warning.py:")
    assert "never read in 1 test(s)" in lines[1]
    assert lines[2:] == ["    test_unread"]


XDIST_CHILD = """
import pytest
from tests.testapp.models import Author, Book, Publisher, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def books():
    publisher = Publisher.objects.create(name="P")
    tag = Tag.objects.create(name="t")
    for i in range(3):
        author = Author.objects.create(name=f"A{i}", publisher=publisher)
        Book.objects.create(title=f"B{i}", author=author).tags.add(tag)


def with_authors():
    return Book.objects.select_related("author")


@pytest.mark.parametrize("n", range(8))
def test_titles(books, n):
    if n == 0:  # one test of one worker reads the authors: used for the session
        assert [b.author.name for b in with_authors()]
    assert [b.title for b in with_authors().prefetch_related("tags")]
"""


@pytest.mark.skipif(
    importlib.util.find_spec("xdist") is None,
    reason="pytest-xdist is not installed (it belongs in the test dependency group)",
)
def test_xdist_workers_report_one_merged_summary(tmp_path):
    code, output = run_pytest(
        tmp_path, "--n-plus-one=report", "-n", "2", tests=XDIST_CHILD
    )
    assert code == 0, output
    assert "bringing up nodes" in output  # pytest-xdist ran it
    assert output.count("django-dbtuning: unused eager loads (info)") == 1
    # Tests of both workers never read the tags: one line counting all eight.
    assert "testapp.Book.tags (prefetch_related): never read in 8 test(s)" in output
    assert "testapp.Book.author" not in output  # read by test_titles[0], one worker


texts = st.text(max_size=20)
maybe = st.one_of(st.none(), texts)
keys = st.tuples(
    st.sampled_from(["select_related", "prefetch_related"]),
    texts,
    st.tuples(maybe, maybe),
    texts,
)
findings = st.builds(
    UnusedEagerLoad,
    method=st.sampled_from(["select_related", "prefetch_related"]),
    lookup=texts,
    relation=maybe,
    model=texts,
    objects=st.integers(min_value=1, max_value=10**6),
    hint=texts,
    callsite=maybe,
    template=maybe,
    evaluated=maybe,
    view=maybe,
    filename=maybe,
    lineno=st.one_of(st.none(), st.integers(min_value=1, max_value=10**5)),
)


@given(
    st.dictionaries(keys, st.tuples(findings, st.lists(texts, max_size=3)), max_size=4),
    st.sets(keys, max_size=4),
)
def test_a_session_survives_export_and_merge(unused, read):
    session = SessionFindings()
    session.unused = {
        key: (finding, list(names)) for key, (finding, names) in unused.items()
    }
    session.read = set(read)
    merged = SessionFindings()
    merged.merge(json.loads(json.dumps(session.export())))
    assert merged.unused == session.unused
    assert merged.read == session.read
    assert merged.lines() == session.lines()


FILTER_CHILD = """
import pytest
from tests.testapp.models import Author, Book, Profile, Publisher

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.queries.eager_urls")]


@pytest.fixture(autouse=True)
def site(settings):
    settings.MIDDLEWARE = [
        "django_dbtuning.middleware.QueryCountMiddleware", *settings.MIDDLEWARE
    ]
    settings.DBTUNING = {"UNUSED_EAGER_LOADS": "warn"}


def test_book_page(client):
    author = Author.objects.create(name="A", publisher=Publisher.objects.create(name="P"))
    Profile.objects.create(author=author, bio="b")
    Book.objects.create(title="B", author=author)
    assert client.get("/eager/template/").status_code == 200
"""


def test_filterwarnings_selects_the_warning_by_its_public_path(tmp_path):
    # The project's own ini has filterwarnings = error: the unused load fails the test...
    code, output = run_pytest(tmp_path, tests=FILTER_CHILD)
    assert code == 1, output
    assert (
        "django_dbtuning.UnusedEagerLoadWarning: Unused eager load: "
        "testapp.Author.profile loaded by select_related (1 objects)" in output
    )
    # ... and a filter naming the class by its public path is all it takes to allow it.
    ignore = "ignore::django_dbtuning.UnusedEagerLoadWarning"
    code, output = run_pytest(tmp_path, "-W", ignore, tests=FILTER_CHILD)
    assert code == 0, output
