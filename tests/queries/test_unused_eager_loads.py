"""Unused eager loads (UNUSED_EAGER_LOADS): select_related paths and prefetch_related lookups
whose objects a unit of work never read, and every case where nothing may be reported.

Real querysets on PostgreSQL inside ``track_queries()`` or a request; each test reads what a
user reads: ``report.unused_eager_loads``, the log record, the hint.
"""

# ruff: noqa: B018, F811  (bare attribute reads are how relations are read; the
# catalogue's library fixture is imported)

from __future__ import annotations

import inspect
import logging
import pickle
import threading

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.db import connection
from django.db.models import Prefetch, query
from django.template import Context, Template

import tests.queries.test_nplusone as catalogue
from django_dbtuning import track_queries
from django_dbtuning.queries import eager, eager_reads
from django_dbtuning.queries.units import QueryReport, finish_unit, start_unit
from tests.queries.test_nplusone import library  # noqa: F401  (the catalogue's data)
from tests.testapp.models import Author, Book, Comment, Profile, Tag

pytestmark = pytest.mark.django_db

HERE = "tests/queries/test_unused_eager_loads.py"


def line_of(marker: str, path: str = __file__) -> int:
    with open(path, encoding="utf-8") as source:
        for number, text in enumerate(source, start=1):
            if marker in text and "line_of(" not in text:
                return number
    raise AssertionError(marker)


@pytest.fixture
def on(dbtuning):
    dbtuning(UNUSED_EAGER_LOADS=True)
    yield
    dbtuning(UNUSED_EAGER_LOADS=False)


# Django 6.1 deprecates select_related() without arguments; it still runs until 2028.
NO_NAMES_DEPRECATED = pytest.mark.filterwarnings(
    r"ignore:Calling select_related\(\) with no arguments is deprecated"
)


def hints(report: QueryReport) -> list[str]:
    return [f.hint for f in report.unused_eager_loads]


# --- what is reported ----------------------------------------------------------------------


def test_unused_select_related(library, on):
    with track_queries() as report:
        books = Book.objects.select_related("author")  # BUILT_HERE
        titles = [book.title for book in books]  # EVALUATED_HERE
    assert len(titles) == 12
    [finding] = report.unused_eager_loads
    assert finding.relation == "testapp.Book.author"
    assert (finding.method, finding.lookup, finding.objects) == (
        "select_related",
        "author",
        12,
    )
    assert finding.hint == 'drop "author" from select_related(...) on the Book queryset'
    assert finding.callsite == f"{HERE}:{line_of('# BUILT_HERE')}"
    assert finding.evaluated == f"{HERE}:{line_of('# EVALUATED_HERE')}"
    assert (finding.kind, finding.severity) == ("unused_eager_load", "info")
    assert str(finding) == (
        "Unused eager load: testapp.Book.author loaded by select_related (12 objects), "
        f"never read during the unit of work, at {HERE}:{line_of('# BUILT_HERE')} "
        f"(evaluated at {HERE}:{line_of('# EVALUATED_HERE')})\n"
        '    fix: drop "author" from select_related(...) on the Book queryset'
    )


def test_unused_prefetch_related(library, on):
    with track_queries() as report:
        titles = [b.title for b in Book.objects.prefetch_related("tags")]  # ONE_LINE
    assert len(titles) == 12
    [finding] = report.unused_eager_loads
    assert finding.relation == "testapp.Book.tags"
    assert finding.hint == 'drop "tags" from prefetch_related(...) on the Book queryset'
    assert finding.callsite == f"{HERE}:{line_of('# ONE_LINE')}"
    assert finding.evaluated is None  # built and evaluated on one line


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda: Author.objects.select_related("profile"),
            'drop "profile" from select_related(...) on the Author queryset',
        ),
        (
            lambda: Comment.objects.prefetch_related("target"),
            'drop "target" from prefetch_related(...) on the Comment queryset',
        ),
        (
            lambda: Author.objects.prefetch_related("books"),
            'drop "books" from prefetch_related(...) on the Author queryset',
        ),
        (
            lambda: Tag.objects.prefetch_related("books__author"),
            'drop "books__author" from prefetch_related(...) on the Tag queryset',
        ),
        (
            lambda: Book.objects.prefetch_related(
                Prefetch("tags", queryset=Tag.objects.order_by("name"))
            ),
            'drop Prefetch("tags", queryset=...) from prefetch_related(...) on the Book '
            "queryset",
        ),
    ],
    ids=[
        "reverse-one-to-one",
        "generic-foreign-key",
        "reverse-fk",
        "m2m-nested",
        "Prefetch",
    ],
)
def test_every_relation_kind(library, on, build, expected):
    with track_queries() as report:
        rows = list(build())
    assert rows
    assert hints(report) == [expected]


def test_nested_lookup_reports_only_the_unread_tail(library, on):
    with track_queries() as report:
        books = Book.objects.select_related("author__publisher").prefetch_related(
            "tags__books"
        )
        for book in books:
            book.author.name
            [t.name for t in book.tags.all()]
    assert [f.relation for f in report.unused_eager_loads] == [
        "testapp.Author.publisher",
        "testapp.Tag.books",
    ]
    assert hints(report) == [
        'replace "author__publisher" with "author" in select_related(...) on the Book '
        "queryset",
        'replace "tags__books" with "tags" in prefetch_related(...) on the Book queryset',
    ]


def test_nested_prefetch_with_its_own_parent_lookup_is_dropped(library, on):
    with track_queries() as report:
        for book in Book.objects.prefetch_related("tags", "tags__books"):
            [t.name for t in book.tags.all()]
    assert hints(report) == [
        'drop "tags__books" from prefetch_related(...) on the Book queryset'
    ]


def test_a_nested_read_uses_every_level_above_it(library, on):
    # nplusone#34: prefetching "tags__books" and reading books through tags is a use of
    # tags, even though the loop never names tags on its own.
    with track_queries() as report:
        for book in Book.objects.prefetch_related("tags__books"):
            for tag in book.tags.all():
                [b.title for b in tag.books.all()]
    assert report.unused_eager_loads == []


def test_select_related_in_a_prefetch_queryset(library, on):
    with track_queries() as report:
        inner = Book.objects.select_related("author")  # INNER_LINE
        for tag in Tag.objects.prefetch_related(Prefetch("books", queryset=inner)):
            [b.title for b in tag.books.all()]
    [finding] = report.unused_eager_loads
    assert finding.hint == 'drop "author" from select_related(...) on the Book queryset'
    assert finding.callsite == f"{HERE}:{line_of('# INNER_LINE')}"


# --- must not be reported ------------------------------------------------------------------

# Every "must not flag" case of the N+1 catalogue (tests/queries/test_nplusone.py, 5B), run
# as it is with unused eager loads tracked around it.
MUST_NOT = [
    catalogue.test_eager_loaded_code_is_silent,
    catalogue.test_generic_prefetch_is_silent,
    catalogue.test_a_loop_of_distinct_queries_is_silent,
    catalogue.test_a_detail_view_path_is_silent,
    catalogue.test_the_same_statement_from_two_places_is_not_an_n_plus_one,
    catalogue.test_pagination_keyset_batches_and_chunked_iteration_are_silent,
    catalogue.test_bulk_operations_are_silent,
    catalogue.test_transaction_plumbing_is_neither_flagged_nor_counted,
    catalogue.test_cached_content_type_lookups_are_silent,
    catalogue.test_a_loop_below_the_threshold_is_silent,
    catalogue.test_allow_n_plus_one_context_manager_and_decorator,
    catalogue.test_allow_n_plus_one_async_decorator,
]
# The one catalogue case that does load something it never reads: its chunked iterator
# prefetches tags for a loop body of ``pass``. Reporting it is right.
TRUE_FINDINGS = {
    "test_pagination_keyset_batches_and_chunked_iteration_are_silent": [
        'drop "tags" from prefetch_related(...) on the Book queryset'
    ],
}


@pytest.mark.parametrize("case", MUST_NOT, ids=lambda case: case.__name__[5:])
def test_must_not_cases_of_the_catalogue(library, on, dbtuning, case):
    available = {"library": library, "dbtuning": dbtuning}
    arguments = {name: available[name] for name in inspect.signature(case).parameters}
    with track_queries() as report:
        case(**arguments)
    assert hints(report) == TRUE_FINDINGS.get(case.__name__, [])
    if case.__name__ in TRUE_FINDINGS:
        [finding] = report.unused_eager_loads
        assert finding.callsite.startswith("tests/queries/test_nplusone.py:")


def test_partial_use_is_use(library, on):
    with track_queries() as report:
        for i, book in enumerate(Book.objects.select_related("author__publisher")):
            if i == 7:
                book.author.publisher.name
        for i, book in enumerate(Book.objects.prefetch_related("tags")):
            if i == 3:
                list(book.tags.all())
    assert report.unused_eager_loads == []


@pytest.mark.parametrize(
    "read",
    [
        lambda b: b.tags.count(),
        lambda b: b.tags.exists(),
        lambda b: len(b.tags.all()),
        lambda b: b.tags.all()[0],
        lambda b: bool(b.tags.all()),
        lambda b: Tag.objects.first() in b.tags.all(),
        lambda b: repr(b.tags.all()),
    ],
    ids=["count", "exists", "len", "index", "bool", "in", "repr"],
)
def test_every_way_of_reading_a_prefetched_manager(library, on, read):
    with track_queries() as report:
        for book in Book.objects.prefetch_related("tags"):
            read(book)
    assert report.unused_eager_loads == []


def test_a_filter_on_a_prefetched_manager_does_not_read_the_prefetch(library, on):
    # Catalogue 5A #11: the prefetch is bypassed, so it is unused (and an N+1 as well).
    with track_queries() as report:
        for book in Book.objects.prefetch_related("tags"):
            list(book.tags.filter(name__startswith="tag"))
    assert hints(report) == [
        'drop "tags" from prefetch_related(...) on the Book queryset'
    ]
    assert report.n_plus_one


@pytest.mark.parametrize(
    "build",
    [
        lambda: Book.objects.select_related("author").only("title", "author__name"),
        lambda: Book.objects.select_related("author").defer("author__name"),
        lambda: Book.objects.select_related("author").only("id", "author__id"),
    ],
    ids=["only", "defer", "deferred-read"],
)
def test_only_and_defer(library, on, build):
    with track_queries() as report:
        for book in build():
            book.author.name  # a deferred field of a select_related object: still a read
    assert report.unused_eager_loads == []


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        (lambda a: [b.title for b in a.all_books], []),
        (lambda a: a.all_books, []),  # a bare read of the attribute is a read
        (lambda a: len(a.all_books), []),
        (
            lambda a: None,
            [
                'drop Prefetch("books", queryset=..., to_attr="all_books") from '
                "prefetch_related(...) on the Author queryset"
            ],
        ),
    ],
    ids=["iterated", "bare", "len", "never-read"],
)
def test_prefetch_to_attr(library, on, read, expected):
    with track_queries() as report:
        authors = Author.objects.prefetch_related(
            Prefetch("books", queryset=Book.objects.all(), to_attr="all_books")
        )
        for author in authors:
            read(author)
    assert hints(report) == expected
    assert "all_books" in Author.__dict__  # the read-noting descriptor, while on


def test_to_attr_descriptor_is_removed_and_values_stay(library, dbtuning):
    dbtuning(UNUSED_EAGER_LOADS=True)
    with track_queries():
        authors = list(
            Author.objects.prefetch_related(Prefetch("books", to_attr="all_books"))
        )
    dbtuning(UNUSED_EAGER_LOADS=False)
    assert "all_books" not in Author.__dict__
    assert [b.title for b in authors[0].all_books]
    authors[0].all_books = []
    assert authors[0].all_books == []


def test_to_attr_that_cannot_be_watched_is_never_reported(library, on):
    Book.tag_list = None  # a class attribute of the to_attr's name: left alone
    try:
        with track_queries() as report:
            list(Book.objects.prefetch_related(Prefetch("tags", to_attr="tag_list")))
            # A to-one to_attr holds an object, not a list: nothing can watch it.
            list(Book.objects.prefetch_related(Prefetch("author", to_attr="writer")))
        assert report.unused_eager_loads == []
        assert Book.__dict__["tag_list"] is None
        assert not isinstance(Book.__dict__.get("writer"), eager_reads.ToAttrReads)
    finally:
        del Book.tag_list


def test_values_read_in_a_template(library, on):
    template = Template("{% for b in books %}{{ b.author.name }}{% endfor %}")
    with track_queries() as report:
        books = Book.objects.select_related("author__profile")  # TEMPLATE_BUILT
        html = template.render(Context({"books": books}))
    assert "Author 0" in html
    [finding] = report.unused_eager_loads
    assert finding.relation == "testapp.Author.profile"
    assert finding.callsite == f"{HERE}:{line_of('# TEMPLATE_BUILT')}"
    assert finding.evaluated == "<unknown source>:1"


def test_null_foreign_keys_and_empty_prefetches_prove_nothing(library, on):
    # nplusone#13: nothing loaded means nothing to judge.
    Author.objects.update(publisher=None)
    Book.objects.get(title="Book 0").tags.clear()
    with track_queries() as report:
        list(Author.objects.select_related("publisher"))
        list(Book.objects.filter(title="Book 0").prefetch_related("tags"))
        list(Book.objects.none().prefetch_related("tags"))
        list(Book.objects.filter(pk=-1).select_related("author"))
    assert report.unused_eager_loads == []


def test_reading_a_null_relation_is_a_read(library, on):
    author = library["authors"][0]
    author.publisher = None
    author.save()
    with track_queries() as report:
        for a in Author.objects.select_related("publisher").order_by("pk"):
            if a.pk == author.pk:
                assert a.publisher is None
    assert report.unused_eager_loads == []


def test_the_same_queryset_evaluated_twice(library, on):
    def books():
        return Book.objects.select_related("author")  # SHARED_BUILDER

    with track_queries() as report:
        queryset = books()
        list(queryset)
        for book in queryset:  # its result cache: no second load
            book.author.name
        list(books())  # another evaluation of the same code, read by the first
    assert report.unused_eager_loads == []
    with track_queries() as report:
        list(books())
        list(books())
    [finding] = report.unused_eager_loads
    assert finding.objects == 24  # both evaluations, one finding
    assert finding.callsite == f"{HERE}:{line_of('# SHARED_BUILDER')}"


def test_objects_read_after_the_unit_ended_are_not_seen(library, on):
    with track_queries() as report:
        books = list(Book.objects.select_related("author"))
    [b.author.name for b in books]  # too late: the finding stands (see the docs)
    assert hints(report) == [
        'drop "author" from select_related(...) on the Book queryset'
    ]
    with track_queries() as outer:
        with track_queries() as inner:
            books = list(Book.objects.select_related("author"))
        [b.author.name for b in books]
    assert len(inner.unused_eager_loads) == 1
    assert outer.unused_eager_loads == []


@pytest.mark.parametrize(
    "store",
    [pickle.dumps, lambda books: cache.set("books", books)],
    ids=["pickle", "cache"],
)
def test_results_stored_for_later_count_as_read(library, on, store):
    with track_queries() as report:
        store(list(Book.objects.select_related("author").prefetch_related("tags")))
    assert report.unused_eager_loads == []
    again = pickle.loads(pickle.dumps(list(Book.objects.prefetch_related("tags"))))
    assert type(again[0]._state.fields_cache) is dict  # plain containers in the copy


def test_reads_in_another_thread_count(library, on):
    with track_queries() as report:
        books = list(Book.objects.select_related("author"))
        reader = threading.Thread(target=lambda: [b.author.name for b in books])
        reader.start()
        reader.join()
    assert report.unused_eager_loads == []


def test_a_queryset_evaluated_in_another_thread_is_not_tracked(library, on):
    results: list[object] = []

    def evaluate():  # a plain thread: not the unit's context, so not its unit
        try:
            results.extend(Book.objects.select_related("author"))
        finally:
            connection.close()  # this thread's own connection

    with track_queries() as report:
        worker = threading.Thread(target=evaluate)
        worker.start()
        worker.join()
    assert report.unused_eager_loads == []


def test_async_code(library, on):
    async def view():
        books = Book.objects.select_related("author__profile")  # ASYNC_LINE
        return [book.author.name async for book in books]

    async def run():
        async with track_queries() as report:
            names = await view()
        return report, names

    report, names = async_to_sync(run)()
    assert len(names) == 12
    [finding] = report.unused_eager_loads
    assert finding.relation == "testapp.Author.profile"
    assert finding.callsite == f"{HERE}:{line_of('# ASYNC_LINE')}"


def test_eager_loads_built_by_library_code_are_not_reported(library, on):
    # nplusone#27: the admin's own select_related is not the user's to drop.
    namespace: dict[str, object] = {"Book": Book}
    library_file = inspect.getfile(query).replace("query.py", "fake_library_module.py")
    library_file = library_file.replace("/django/db/", "/site_lib/")
    # A function whose frames look like a third-party package's.
    exec(
        compile(
            "def build():\n    return Book.objects.select_related('author')\n",
            library_file,
            "exec",
        ),
        namespace,
    )
    with track_queries() as report:
        list(namespace["build"]())  # type: ignore[operator]
    assert report.unused_eager_loads == []


# --- the setting ---------------------------------------------------------------------------


def test_off_by_default_nothing_installed(library):
    assert not eager.is_installed()
    assert (
        query.ModelIterable.__dict__["__iter__"].__module__ == "django.db.models.query"
    )
    with track_queries() as report:
        books = list(Book.objects.select_related("author").prefetch_related("tags"))
    assert report.unused_eager_loads == []
    assert type(books[0]._state.fields_cache) is dict
    assert type(books[0].tags.all()._result_cache) is list
    assert not eager.is_installed()


def test_installed_while_on_and_removed_when_turned_off(library, dbtuning):
    originals = {
        name: getattr(query, name)
        for name in ("prefetch_related_objects", "prefetch_one_level")
    }
    dbtuning(UNUSED_EAGER_LOADS=True)
    with track_queries():
        pass
    assert eager.is_installed()
    assert query.prefetch_one_level is not originals["prefetch_one_level"]
    dbtuning(UNUSED_EAGER_LOADS=False)
    assert not eager.is_installed()
    for name, function in originals.items():
        assert getattr(query, name) is function
    assert "__iter__" in query.ModelIterable.__dict__
    assert (
        query.ModelIterable.__dict__["__iter__"].__module__ == "django.db.models.query"
    )


def test_forced_unit_installs_until_it_ends(library):
    # The pytest plugin's report mode: tracked whatever the setting says.
    unit = start_unit(unused_eager_loads=True)
    try:
        assert eager.is_installed()
        list(Book.objects.prefetch_related("tags"))
    finally:
        finish_unit(unit)
    assert not eager.is_installed()
    assert hints(QueryReport(unit)) == [
        'drop "tags" from prefetch_related(...) on the Book queryset'
    ]


@pytest.mark.parametrize("value", ["yes", 1, None, []])
def test_wrong_setting_types_are_check_errors(settings, value):
    from django_dbtuning.checks import check_dbtuning_settings
    from django_dbtuning.conf import get_settings

    settings.DBTUNING = {"UNUSED_EAGER_LOADS": value}
    [error] = check_dbtuning_settings()
    assert error.id == "dbtuning.E002"
    assert "DBTUNING['UNUSED_EAGER_LOADS']" in error.msg
    assert "expected False or True or 'log' or 'warn'" in error.msg
    assert get_settings().unused_eager_loads is False  # falls back to the default


# --- the middleware ------------------------------------------------------------------------


@pytest.fixture
def eager_site(settings, on):
    settings.MIDDLEWARE = [
        "django_dbtuning.middleware.QueryCountMiddleware",
        *settings.MIDDLEWARE,
    ]
    settings.ROOT_URLCONF = "tests.queries.eager_urls"


def test_middleware_logs_an_info_record_per_finding(
    library, eager_site, client, caplog
):
    with caplog.at_level(logging.INFO, logger="django_dbtuning"):
        response = client.get("/eager/template/")
    assert response.status_code == 200
    [record] = [r for r in caplog.records if hasattr(r, "finding")]
    assert record.levelno == logging.INFO
    finding = record.finding
    assert finding.relation == "testapp.Author.profile"
    assert finding.view == "eager-template"
    views = "tests/queries/eager_urls.py"
    assert finding.callsite == f"{views}:{line_of('# EAGER_VIEW_LINE', views)}"
    assert finding.evaluated == "testapp/books.html:2"
    assert record.getMessage().endswith(
        "\n    request: GET /eager/template/ (eager-template)"
    )


def test_middleware_under_an_async_view(library, eager_site, async_client, caplog):
    async def get():
        return await async_client.get("/eager/async/")

    with caplog.at_level(logging.INFO, logger="django_dbtuning"):
        response = async_to_sync(get)()
    assert response.status_code == 200
    found = sorted(r.finding.hint for r in caplog.records if hasattr(r, "finding"))
    assert found == [
        'drop "author" from select_related(...) on the Book queryset',
        'drop "tags" from prefetch_related(...) on the Book queryset',
    ]


def test_another_tools_patch_on_top_is_kept(library, dbtuning):
    django_own = query.prefetch_one_level
    dbtuning(UNUSED_EAGER_LOADS=True)
    with track_queries():
        pass
    ours = query.prefetch_one_level

    def theirs(*args, **kwargs):  # e.g. another profiler, patched after us
        return ours(*args, **kwargs)

    query.prefetch_one_level = theirs
    try:
        dbtuning(UNUSED_EAGER_LOADS=False)
        assert query.prefetch_one_level is theirs  # left in place, ours below it
        dbtuning(UNUSED_EAGER_LOADS=True)
        assert query.prefetch_one_level is theirs
        with track_queries() as report:
            list(Book.objects.prefetch_related("tags"))
        assert hints(report) == [
            'drop "tags" from prefetch_related(...) on the Book queryset'
        ]
    finally:
        dbtuning(UNUSED_EAGER_LOADS=False)
        query.prefetch_one_level = django_own


@NO_NAMES_DEPRECATED
def test_select_related_without_names(library, on):
    with track_queries() as report:
        for (
            book
        ) in Book.objects.select_related():  # follows author (publisher is nullable)
            book.author.name
        for profile in Profile.objects.select_related():  # follows author, never read
            profile.bio
        for comment in Comment.objects.select_related():  # content_type, read
            comment.content_type.model
    assert hints(report) == [
        'select_related() follows every non-null foreign key and "author" is never read: '
        "drop select_related() on the Profile queryset"
    ]


@NO_NAMES_DEPRECATED
def test_select_related_without_names_keeps_what_is_read(library, on):
    with track_queries() as report:
        for profile in Profile.objects.select_related():
            profile.author.name  # author read; nothing below it is followed (nullable)
        for book in Book.objects.select_related("author__publisher"):
            book.title
    assert hints(report) == [
        'drop "author__publisher" from select_related(...) on the Book queryset'
    ]


@pytest.mark.django_db(transaction=True)
def test_threads_track_on_their_own(library):
    """Units that track and units that do not, in parallel threads: each sees its own."""
    barrier = threading.Barrier(4)
    results: dict[int, list[str]] = {}

    def work(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(5):
                unit = start_unit(unused_eager_loads=i % 2 == 0 or None)
                try:
                    books = list(Book.objects.select_related("author"))
                    if i == 2:
                        [b.author.name for b in books]
                finally:
                    finish_unit(unit)
                results[i] = hints(QueryReport(unit))
        finally:
            connection.close()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert results == {
        0: ['drop "author" from select_related(...) on the Book queryset'],
        1: [],
        2: [],
        3: [],
    }
    assert not eager.is_installed()


def test_middleware_under_a_drf_viewset(library, eager_site, client, caplog):
    pytest.importorskip("rest_framework")
    with caplog.at_level(logging.INFO, logger="django_dbtuning"):
        response = client.get("/api/books/")
    assert response.status_code == 200
    [finding] = [r.finding for r in caplog.records if hasattr(r, "finding")]
    assert finding.hint == 'drop "author" from select_related(...) on the Book queryset'
    views = "tests/queries/eager_urls.py"
    assert finding.callsite == f"{views}:{line_of('# API', views)}"  # get_queryset()


@pytest.mark.urls("tests.queries.hint_site")
def test_the_admins_own_eager_loads_are_not_reported(library, on, client):
    # nplusone#27: the admin index's recent actions (LogEntry with select_related of
    # content_type and user) and a changelist's list_select_related are the admin's.
    from django.contrib.admin.models import ADDITION, LogEntry
    from django.contrib.auth.models import User
    from django.contrib.contenttypes.models import ContentType

    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    book = Book.objects.first()
    for _ in range(3):
        LogEntry.objects.create(
            user=user,
            content_type=ContentType.objects.get_for_model(Book),
            object_id=str(book.pk),
            object_repr=str(book),
            action_flag=ADDITION,
        )
    with track_queries() as report:
        assert client.get("/admin/").status_code == 200
        assert client.get("/picky/testapp/book/").status_code == 200
    assert report.unused_eager_loads == []
