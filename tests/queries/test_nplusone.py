"""The N+1 pattern catalogue (patterns that must be caught, and look-alikes that must not be flagged).

Every test runs real queries on PostgreSQL inside ``track_queries()`` and checks what a user
reads in the finding: the relation, the line of their code (or template), the fix.
"""

# ruff: noqa: B018  (bare attribute reads are how N+1s happen)

from __future__ import annotations

import inspect
from dataclasses import replace

import django
import pytest
from asgiref.sync import async_to_sync
from django import forms
from django.contrib.contenttypes.models import ContentType
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.db.models import Count, Prefetch, prefetch_related_objects
from django.template.loader import render_to_string

from django_dbtuning import allow_n_plus_one, track_queries
from tests.testapp.models import Author, Book, Comment, Profile, Publisher, Tag

pytestmark = pytest.mark.django_db

HERE = "tests/queries/test_nplusone.py"
# Django 6.1+: a relation its fetch modes batch also offers FETCH_PEERS (test_fetch_modes.py).
OR_PEERS = ", or .fetch_mode(models.FETCH_PEERS)" if django.VERSION >= (6, 1) else ""


def line_of(marker: str) -> int:
    """The line of this file that contains ``marker`` (a comment at the loop)."""
    source = inspect.getsource(inspect.getmodule(line_of))
    for number, text in enumerate(source.splitlines(), start=1):
        if marker in text and "line_of(" not in text:
            return number
    raise AssertionError(marker)


@pytest.fixture
def library():
    publishers = [Publisher.objects.create(name=f"Publisher {i}") for i in range(3)]
    authors = []
    for i in range(6):
        author = Author.objects.create(name=f"Author {i}", publisher=publishers[i % 3])
        Profile.objects.create(author=author, bio=f"bio {i}")
        authors.append(author)
    tags = [Tag.objects.create(name=f"tag{i}") for i in range(4)]
    for i in range(12):
        book = Book.objects.create(
            title=f"Book {i}", author=authors[i % 6], pages=100 + i
        )
        book.tags.set(tags[i % 4 : i % 4 + 2])
        Comment.objects.create(target=book, text=f"comment on {i}")
    ContentType.objects.get_for_model(Book)  # warm the cache, as any running site has
    return {"publishers": publishers, "authors": authors, "tags": tags}


def single(report):
    assert len(report.n_plus_one) == 1, [f.message for f in report.n_plus_one]
    return report.n_plus_one[0]


# --- 5A: must catch ----------------------------------------------------------------------


def test_forward_foreign_key_in_a_loop(library):
    with track_queries() as report:
        for book in Book.objects.all():
            book.author.name  # 5A-1
    finding = single(report)
    assert finding.kind == "n_plus_one"
    assert finding.relation == "testapp.Book.author"
    assert finding.callsite == f"{HERE}:{line_of('# 5A-1')}"
    assert finding.count == 12
    assert (
        finding.hint == 'add .select_related("author") to the Book queryset' + OR_PEERS
    )
    assert finding.fingerprint.startswith("SELECT")
    assert '"testapp_author"' in finding.fingerprint
    assert finding.duration > 0
    assert report.count == 13


def test_reverse_foreign_key_manager_in_a_loop(library):
    with track_queries() as report:
        for author in Author.objects.all():
            list(author.books.all())  # 5A-2
    finding = single(report)
    assert finding.relation == "testapp.Author.books"
    assert finding.callsite == f"{HERE}:{line_of('# 5A-2')}"
    assert '.prefetch_related("books")' in finding.hint


@pytest.mark.parametrize(
    ("side", "relation"),
    [("forward", "testapp.Book.tags"), ("reverse", "testapp.Tag.books")],
)
def test_many_to_many_in_a_loop_from_either_side(library, side, relation):
    with track_queries() as report:
        if side == "forward":
            for book in Book.objects.all():
                [tag.name for tag in book.tags.all()]
        else:
            for tag in Tag.objects.all():
                [book.title for book in tag.books.all()]
    finding = single(report)
    assert finding.relation == relation
    assert f'prefetch_related("{relation.rsplit(".", 1)[1]}")' in finding.hint


def test_nested_relation_names_the_full_path(library):
    with track_queries() as report:
        for book in Book.objects.select_related("author"):
            book.author.publisher.name  # 5A-4 / 5A-20: partial select_related
    finding = single(report)
    assert finding.relation == "testapp.Author.publisher"
    assert finding.callsite == f"{HERE}:{line_of('# 5A-4')}"
    assert (
        finding.hint
        == 'add .select_related("author__publisher") to the Book queryset' + OR_PEERS
    )


def test_nested_relation_below_a_prefetch(library):
    with track_queries() as report:
        for publisher in Publisher.objects.prefetch_related("author_set"):
            for author in publisher.author_set.all():
                author.profile.bio
    finding = single(report)
    assert finding.relation == "testapp.Author.profile"
    # select_related cannot follow the reverse foreign key the path starts with; the
    # prefetch's own queryset can, in the same query.
    assert finding.hint == (
        'replace "author_set" in .prefetch_related() on the Publisher queryset with '
        'Prefetch("author_set", queryset=Author.objects.select_related("profile"))'
    )


@pytest.mark.parametrize("access", ["attribute", "hasattr"])
def test_reverse_one_to_one_in_a_loop(library, access):
    with track_queries() as report:
        for author in Author.objects.all():
            if access == "attribute":
                author.profile.bio
            else:
                hasattr(author, "profile")
    finding = single(report)
    assert finding.relation == "testapp.Author.profile"
    assert (
        finding.hint
        == 'add .select_related("profile") to the Author queryset' + OR_PEERS
    )


def test_generic_foreign_key_in_a_loop(library):
    with track_queries() as report:
        for comment in Comment.objects.all():
            comment.target  # 5A-6
    finding = single(report)
    assert finding.relation == "testapp.Comment.target"
    assert finding.callsite == f"{HERE}:{line_of('# 5A-6')}"
    assert 'prefetch_related("target")' in finding.hint


def test_generic_relation_in_a_loop(library):
    with track_queries() as report:
        for book in Book.objects.all():
            list(book.comments.all())
    finding = single(report)
    assert finding.relation == "testapp.Book.comments"
    assert 'prefetch_related("comments")' in finding.hint


def test_template_loop_names_template_and_line(library):
    with track_queries() as report:
        render_to_string("testapp/books.html", {"books": Book.objects.all()})  # 5A-8
    finding = single(report)
    assert finding.relation == "testapp.Book.author"
    assert finding.template == "testapp/books.html:4"
    assert finding.callsite == f"{HERE}:{line_of('# 5A-8')}"
    assert (
        finding.location == f"testapp/books.html:4 (rendered from {finding.callsite})"
    )


class BookSerializer:
    """The shape of a DRF SerializerMethodField: a method per row in user code."""

    def to_representation(self, author):
        return {"name": author.name, "books": self.get_books(author)}

    def get_books(self, author):
        return author.books.count()  # 5A-9


def test_serializer_method_per_row_points_at_the_method(library):
    serializer = BookSerializer()
    with track_queries() as report:
        [serializer.to_representation(a) for a in Author.objects.all()]
    finding = single(report)
    assert finding.relation == "testapp.Author.books"
    assert finding.callsite == f"{HERE}:{line_of('# 5A-9')}"
    assert finding.function == "get_books"


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda a: a.books.count(), 'Count("books")'),
        (lambda a: a.books.exists(), "Exists("),
        (lambda a: a.books.aggregate(n=Count("pk")), "Sum/Avg/Max"),
        (lambda a: a.books.order_by("-pages").first(), "to_attr"),
        (lambda a: a.books.latest("pages"), "Subquery"),
    ],
    ids=["count", "exists", "aggregate", "first", "latest"],
)
def test_aggregates_and_single_rows_per_row(library, call, expected):
    with track_queries() as report:
        for author in Author.objects.all():
            call(author)
    finding = single(report)
    assert finding.relation == "testapp.Author.books"
    assert expected in finding.hint


def test_prefetch_bypassed_by_filter_suggests_prefetch_to_attr(library):
    with track_queries() as report:
        for author in Author.objects.prefetch_related("books"):
            list(author.books.filter(pages__gt=105))
    finding = single(report)
    assert finding.relation == "testapp.Author.books"
    assert "bypasses the cache" in finding.hint
    assert 'Prefetch("books"' in finding.hint


def test_model_property_reports_the_property_line(library):
    with track_queries() as report:
        [book.author_name for book in Book.objects.all()]
    finding = single(report)
    assert finding.relation == "testapp.Book.author"
    assert finding.callsite.startswith("tests/testapp/models.py:")
    assert finding.function == "author_name"


def test_deferred_field_loaded_per_row(library):
    with track_queries() as report:
        for book in Book.objects.only("id"):
            book.title
    finding = single(report)
    assert finding.relation == "testapp.Book.title"
    assert ".only()" in finding.hint


def _to_one_loops():
    for book in Book.objects.all():
        book.author.name
    for author in Author.objects.all():
        author.profile.bio
    for book in Book.objects.only("id"):
        book.title
    for comment in Comment.objects.all():
        comment.target


def _to_many_loops():
    for author in Author.objects.all():
        list(author.books.all())
    for book in Book.objects.all():
        list(book.tags.all())
    for book in Book.objects.all():
        list(book.comments.all())


def test_fetch_peers_is_offered_for_to_one_relations_on_django_61_only(library):
    with track_queries() as report:
        _to_one_loops()
    hints = {f.relation: f.hint for f in report.n_plus_one}
    assert set(hints) == {
        "testapp.Book.author",
        "testapp.Author.profile",
        "testapp.Book.title",
        "testapp.Comment.target",
    }
    for hint in hints.values():
        assert hint.endswith(OR_PEERS)
        assert ("FETCH_PEERS" in hint) is (django.VERSION >= (6, 1))


def test_fetch_peers_is_never_offered_for_to_many_relations(library):
    # Django 6.1's FETCH_PEERS leaves related managers alone: prefetch_related stays.
    with track_queries() as report:
        _to_many_loops()
    assert len(report.n_plus_one) == 3
    for finding in report.n_plus_one:
        assert "prefetch_related(" in finding.hint
        assert "FETCH_PEERS" not in finding.hint


def test_get_in_a_loop_suggests_in_bulk(library):
    ids = [a.pk for a in library["authors"]]
    with track_queries() as report:
        for pk in ids:
            Author.objects.get(pk=pk)  # 5A-14
    finding = single(report)
    assert finding.relation is None
    assert finding.model == "testapp.Author"
    assert finding.callsite == f"{HERE}:{line_of('# 5A-14')}"
    assert "in_bulk(ids)" in finding.hint


def test_per_instance_prefetch_related_objects(library):
    with track_queries() as report:
        for author in Author.objects.all():
            prefetch_related_objects([author], "books")
    finding = single(report)
    assert finding.relation == "testapp.Author.books"
    assert "prefetch_related_objects(all_objects" in finding.hint


def test_async_loop_points_at_the_coroutine_line(library):
    async def load():
        names = []
        async for book in Book.objects.all():
            author = await Author.objects.aget(pk=book.author_id)  # 5A-17
            names.append(author.name)
        return names

    async def run():
        with track_queries() as report:
            await load()
        return report

    report = async_to_sync(run)()
    finding = single(report)
    assert finding.model == "testapp.Author"
    assert finding.callsite == f"{HERE}:{line_of('# 5A-17')}"
    assert finding.function == "load"


@pytest.mark.parametrize(
    ("write", "hint"),
    [("create", "bulk_create"), ("save", "bulk_update")],
)
def test_writes_in_a_loop_are_their_own_kind(library, write, hint):
    books = list(Book.objects.all())
    with track_queries() as report:
        for i, book in enumerate(books):
            if write == "create":
                Tag.objects.create(name=f"new{i}")
            else:
                book.pages += 1
                book.save()
    finding = single(report)
    assert finding.kind == "n_plus_one_write"
    assert hint in finding.hint


def test_model_choice_field_per_form_is_a_duplicate(library):
    class TagForm(forms.Form):
        tag = forms.ModelChoiceField(queryset=Tag.objects.all())

    with track_queries() as report:
        for _ in range(4):
            str(TagForm()["tag"])
    assert report.n_plus_one == []
    (duplicate,) = report.duplicates
    assert duplicate.kind == "duplicate"
    assert duplicate.count == 4
    assert duplicate.model == "testapp.Tag"
    assert "evaluate it once" in duplicate.hint


def test_findings_name_a_non_default_alias(library):
    with track_queries() as report:
        for book in Book.objects.all():
            book.author.name
    finding = replace(single(report), alias="replica")
    assert "ran 12 times" in finding.message
    assert "on 'replica'" in finding.message


def test_raw_sql_in_a_loop_is_caught_by_shape(library):
    ids = [a.pk for a in library["authors"]]
    with track_queries() as report, connection.cursor() as cursor:
        for pk in ids:
            cursor.execute(f"SELECT name FROM testapp_author WHERE id = {pk}")
    finding = single(report)
    assert finding.fingerprint == "SELECT name FROM testapp_author WHERE id = ?"
    assert finding.model == "testapp.Author"


# --- 5B: must not flag --------------------------------------------------------------------


def test_eager_loaded_code_is_silent(library):
    with track_queries() as report:
        for book in Book.objects.select_related("author__publisher").prefetch_related(
            "tags", "comments"
        ):
            book.author.publisher.name
            [t.name for t in book.tags.all()]
            list(book.comments.all())
        for author in Author.objects.prefetch_related(
            Prefetch(
                "books", queryset=Book.objects.filter(pages__gt=105), to_attr="long"
            )
        ).select_related("profile"):
            author.long
            author.profile.bio
        for comment in Comment.objects.prefetch_related("target"):
            comment.target
        for author in Author.objects.annotate(n=Count("books")):
            author.n
    assert report.n_plus_one == []
    assert report.duplicates == []
    assert report.count == 8


def test_generic_prefetch_is_silent(library):
    try:
        from django.contrib.contenttypes.prefetch import GenericPrefetch
    except ImportError:  # Django < 5.0
        pytest.skip("GenericPrefetch needs Django 5.0")
    with track_queries() as report:
        for comment in Comment.objects.prefetch_related(
            GenericPrefetch("target", [Book.objects.all()])
        ):
            comment.target
    assert report.n_plus_one == []


def test_a_loop_of_distinct_queries_is_silent(library):
    with track_queries() as report:
        for model in (Author, Book, Tag, Publisher, Profile):
            model.objects.count()
    assert report.n_plus_one == []
    assert report.count == 5


def test_a_detail_view_path_is_silent(library):
    with track_queries() as report:
        book = Book.objects.get(pk=Book.objects.first().pk)
        book.author.publisher.name
    assert report.n_plus_one == []


def test_the_same_statement_from_two_places_is_not_an_n_plus_one(library):
    pk = library["authors"][0].pk
    with track_queries() as report:
        Author.objects.get(pk=pk)
        Author.objects.get(pk=pk)
    assert report.n_plus_one == []
    assert report.duplicates == []  # below DUPLICATE_THRESHOLD


def test_pagination_keyset_batches_and_chunked_iteration_are_silent(library):
    with track_queries() as report:
        paginator = Paginator(Book.objects.order_by("pk"), 2)
        for number in paginator.page_range:
            list(paginator.page(number))
        last = 0
        while batch := list(Book.objects.filter(pk__gt=last).order_by("pk")[:3]):
            last = batch[-1].pk
        for _book in Book.objects.prefetch_related("tags").iterator(chunk_size=4):
            pass
    assert report.n_plus_one == [], [f.message for f in report.n_plus_one]


def test_bulk_operations_are_silent(library):
    with track_queries() as report:
        Tag.objects.bulk_create([Tag(name=f"bulk{i}") for i in range(10)], batch_size=3)
        books = list(Book.objects.all())
        for book in books:
            book.pages += 1
        Book.objects.bulk_update(books, ["pages"], batch_size=4)
        Author.objects.in_bulk([a.pk for a in library["authors"]])
        Author.objects.filter(pk=library["authors"][0].pk).delete()
    assert report.n_plus_one == [], [f.message for f in report.n_plus_one]


def test_transaction_plumbing_is_neither_flagged_nor_counted(library):
    with track_queries() as report:
        for i in range(5):
            with transaction.atomic():
                Tag.objects.filter(name=f"tag{i}").exists()
    savepoints = [q for q in report.queries if "SAVEPOINT" in q.sql]
    assert savepoints == []
    assert report.count == 5  # the five EXISTS queries, not the savepoints
    assert [f.relation for f in report.n_plus_one] == [None]  # exists() per row


def test_cached_content_type_lookups_are_silent(library):
    with track_queries() as report:
        for _ in range(10):
            ContentType.objects.get_for_model(Author)
    assert report.n_plus_one == []
    assert report.count <= 1


@pytest.mark.parametrize("using", ["other", ["other"]])
def test_ignored_or_unselected_aliases_are_not_counted(library, dbtuning, using):
    dbtuning(IGNORE_ALIASES=["default"])
    with track_queries() as report:
        for book in Book.objects.all():
            book.author.name
    assert report.count == 0
    dbtuning(IGNORE_ALIASES=[])
    with track_queries(using=using) as report:
        for book in Book.objects.all():
            book.author.name
    assert report.count == 0
    assert report.n_plus_one == []


def test_a_loop_below_the_threshold_is_silent(library, dbtuning):
    dbtuning(N_PLUS_ONE_THRESHOLD=7)
    with track_queries() as report:
        for author in Author.objects.all():
            author.profile.bio
    assert report.n_plus_one == []
    with track_queries(threshold=6) as report:
        for author in Author.objects.all():
            author.profile.bio
    assert len(report.n_plus_one) == 1


def test_allow_n_plus_one_context_manager_and_decorator(library):
    @allow_n_plus_one()
    def intended():
        for author in Author.objects.all():
            author.profile.bio

    with track_queries() as report:
        with allow_n_plus_one():
            for book in Book.objects.all():
                book.author.name
        intended()
    assert report.n_plus_one == []
    assert report.count == 13 + 7  # still counted


def test_allow_n_plus_one_async_decorator(library):
    @allow_n_plus_one()
    async def intended():
        async for book in Book.objects.all():
            await Author.objects.aget(pk=book.author_id)

    async def run():
        with track_queries() as report:
            await intended()
        return report

    assert async_to_sync(run)().n_plus_one == []


@pytest.mark.parametrize(
    "entry",
    [
        {"model": "testapp.Book", "field": "author"},
        {"model": "testapp.*"},
        {"callsite": f"{HERE}:*"},
        {"fingerprint": 'SELECT * FROM "testapp_author"*'},
    ],
)
def test_allow_list_entries(library, dbtuning, entry):
    dbtuning(ALLOW_N_PLUS_ONE=[entry])
    with track_queries() as report:
        for book in Book.objects.all():
            book.author.name
    assert report.n_plus_one == []


def test_allow_list_entry_for_another_field_does_not_hide(library, dbtuning):
    dbtuning(ALLOW_N_PLUS_ONE=[{"model": "testapp.Book", "field": "tags"}])
    with track_queries() as report:
        for book in Book.objects.all():
            book.author.name
    assert len(report.n_plus_one) == 1


def test_one_shape_from_two_lines_is_two_findings(library):
    ids = [a.pk for a in library["authors"]]
    with track_queries() as report:
        for pk in ids:
            Author.objects.get(pk=pk)  # site one
            Author.objects.get(pk=ids[-1 - ids.index(pk)])  # site two
    lines = sorted(f.callsite for f in report.n_plus_one)
    assert lines == sorted(
        [f"{HERE}:{line_of('# site one')}", f"{HERE}:{line_of('# site two')}"]
    )
    assert [f.count for f in report.n_plus_one] == [6, 6]


def test_a_late_second_call_site_is_still_found(library):
    ids = [a.pk for a in library["authors"]] * 4
    with track_queries() as report:
        for pk in ids:
            Author.objects.get(pk=pk)  # early site
        for pk in ids[:6]:
            Author.objects.get(pk=pk)  # late site
    counts = {f.callsite: f.count for f in report.n_plus_one}
    assert counts[f"{HERE}:{line_of('# early site')}"] == 24
    assert counts[f"{HERE}:{line_of('# late site')}"] >= 3


def test_drf_nested_serializer_names_the_serializer_field(library):
    serializers = pytest.importorskip("rest_framework.serializers")

    class AuthorSerializer(serializers.Serializer):
        name = serializers.CharField()

    class BookListSerializer(serializers.Serializer):
        title = serializers.CharField()
        author = AuthorSerializer()
        n_tags = serializers.SerializerMethodField()

        def get_n_tags(self, book):
            return book.tags.count()  # 5A-9 method field

    with track_queries() as report:
        BookListSerializer(Book.objects.all(), many=True).data  # 5A-9 DRF
    by_relation = {f.relation: f for f in report.n_plus_one}
    author = by_relation["testapp.Book.author"]
    assert author.serializer == "BookListSerializer.author"
    assert author.callsite == f"{HERE}:{line_of('# 5A-9 DRF')}"
    assert "(serializing BookListSerializer.author)" in author.message
    assert "get_queryset()" in author.hint
    tags = by_relation["testapp.Book.tags"]
    assert tags.callsite == f"{HERE}:{line_of('# 5A-9 method field')}"
    assert tags.serializer == "BookListSerializer.n_tags"
    assert 'Count("tags")' in tags.hint


def test_errors_and_reports_hold_query_findings(library):
    from django_dbtuning import NPlusOneError, query_budget
    from django_dbtuning.queries import QueryFinding
    from django_dbtuning.queries.findings import QueryFinding as defined

    assert QueryFinding is defined

    with pytest.raises(NPlusOneError) as info, query_budget():
        for book in Book.objects.all():
            book.author.name  # a QueryFinding
    (finding,) = info.value.findings
    assert type(finding) is QueryFinding
    assert finding.callsite == f"{HERE}:{line_of('# a QueryFinding')}"
    with track_queries() as report:
        for book in Book.objects.all():
            book.author.name
    assert [type(f) for f in report.n_plus_one] == [QueryFinding]
