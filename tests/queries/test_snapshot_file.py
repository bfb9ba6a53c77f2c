"""Query snapshots: the file format, snapshot_queries() and the plugin in a child pytest."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_dbtuning import DbTuningError, QuerySnapshotMismatch, snapshot_queries
from django_dbtuning.queries.snapshots import entries_of, parse, render
from tests.queries.test_pytest_plugin import run_pytest
from tests.testapp.models import Author, Publisher


@pytest.fixture(autouse=True)
def _not_on_ci(monkeypatch):
    """These tests set ``CI`` themselves where it matters; the CI running them sets it too."""
    monkeypatch.delenv("CI", raising=False)


# --- the format ---------------------------------------------------------------------------

names = st.text(min_size=1, max_size=30)
entries = st.builds(
    lambda count, alias, sql: (
        {"count": count, **({"alias": alias} if alias else {}), "sql": sql}
    ),
    st.integers(min_value=1, max_value=10**6),
    st.one_of(st.none(), names.filter(lambda a: a != "default")),
    st.text(max_size=200),
)
snapshot_files = st.dictionaries(
    names, st.dictionaries(names, st.lists(entries, max_size=5), max_size=3), max_size=4
)


@given(snapshot_files)
def test_every_snapshot_file_round_trips(snapshots):
    text = render(snapshots)
    assert parse(text) == snapshots
    assert render(parse(text)) == text  # one canonical text per content
    assert json.loads(text) == snapshots  # plain JSON: any tool reads it
    text.encode("utf-8")  # always writable as UTF-8, lone surrogates escaped


@given(snapshot_files)
def test_tests_and_names_are_sorted_and_one_query_per_line(snapshots):
    text = render(snapshots)
    data = json.loads(text)
    assert list(data) == sorted(snapshots)
    for test, named in data.items():
        assert list(named) == sorted(snapshots[test])
    query_lines = [line for line in text.splitlines() if line.startswith("      {")]
    assert len(query_lines) == sum(
        len(e) for named in snapshots.values() for e in named.values()
    )


def test_the_empty_file():
    assert render({}) == "{\n}\n"
    assert parse(render({})) == {}


def test_runs_of_one_shape_fold_into_a_count_and_order_is_kept():
    shapes = [
        ("default", 'SELECT "a"."id", "a"."name", "a"."x", "a"."y", "a"."z" FROM "a"'),
        ("default", 'SELECT "b"."id" FROM "b" WHERE "b"."a_id" = %s'),
        ("default", 'SELECT "b"."id" FROM "b" WHERE "b"."a_id" = %s'),
        ("replica", 'SELECT "b"."id" FROM "b" WHERE "b"."a_id" = %s'),
        ("default", 'SELECT "b"."id" FROM "b" WHERE "b"."a_id" = %s'),
    ]
    assert entries_of(shapes) == [
        {"count": 1, "sql": 'SELECT … FROM "a"'},
        {"count": 2, "sql": 'SELECT "b"."id" FROM "b" WHERE "b"."a_id" = %s'},
        {
            "count": 1,
            "alias": "replica",
            "sql": 'SELECT "b"."id" FROM "b" WHERE "b"."a_id" = %s',
        },
        {"count": 1, "sql": 'SELECT "b"."id" FROM "b" WHERE "b"."a_id" = %s'},
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "not JSON"),
        ("[]", "the top level must be an object of tests"),
        ('{"t": []}', "'t' must be an object of snapshot names"),
        ('{"t": {"1": {}}}', "'t' / '1' must be a list of queries"),
        ('{"t": {"1": [{"count": 0, "sql": "S"}]}}', "is not a query"),
        ('{"t": {"1": [{"count": true, "sql": "S"}]}}', "is not a query"),
        ('{"t": {"1": [{"count": 1}]}}', "is not a query"),
        ('{"t": {"1": [{"count": 1, "sql": "S", "x": 1}]}}', "is not a query"),
        ('{"t": {"1": [{"count": 1, "sql": "S", "alias": "default"}]}}', "not a"),
    ],
)
def test_a_broken_file_names_itself_and_the_fix(text, reason):
    with pytest.raises(DbTuningError) as caught:
        parse(text, "tests/test_x.queries.json")
    message = str(caught.value)
    assert message.startswith("tests/test_x.queries.json is not a query snapshot file")
    assert reason in message
    assert "pytest --update-query-snapshots" in message


# --- snapshot_queries() ---------------------------------------------------------------------


@pytest.fixture
def publisher(db):
    return Publisher.objects.create(name="P")


def test_written_when_missing_then_checked(tmp_path, publisher, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    module = tmp_path / "test_views.py"
    with snapshot_queries(module, "test_list") as block:
        list(Publisher.objects.all())
    assert block.outcome == "written"
    path = tmp_path / "test_views.queries.json"
    assert json.loads(path.read_text()) == {
        "test_list": {"1": [{"count": 1, "sql": 'SELECT … FROM "testapp_publisher"'}]}
    }
    with snapshot_queries(module, "test_list") as block:
        list(Publisher.objects.filter(pk__in=[1, 2, 3]).filter(pk__gt=0)[:0])
        list(Publisher.objects.all())
    # An empty slice runs no query: the same single statement as recorded.
    assert block.outcome is None


def test_a_change_fails_with_a_unified_diff(tmp_path, publisher):
    path = tmp_path / "snaps.queries.json"
    with snapshot_queries(path, "test_list", "page"):
        list(Publisher.objects.all())
    before = path.read_text()
    with (
        pytest.raises(QuerySnapshotMismatch) as caught,
        snapshot_queries(path, "test_list", "page"),
    ):
        for publisher_ in Publisher.objects.all():
            list(Author.objects.filter(publisher=publisher_))
    error = caught.value
    assert isinstance(error, AssertionError)  # a failed test, in any runner
    where = str(path)
    assert str(error).splitlines()[:5] == [
        "the queries of 'test_list' / 'page' changed:",
        f"--- {where} (recorded)",
        "+++ this run",
        "@@ -1 +1,2 @@",
        ' {"count": 1, "sql": "SELECT … FROM \\"testapp_publisher\\""}',
    ]
    assert error.diff.splitlines()[-1].startswith('+{"count": 1, "sql": "SELECT …')
    assert "run pytest --update-query-snapshots and commit" in str(error)
    assert path.read_text() == before  # a failing check never writes


def test_update_records_the_new_queries(tmp_path, publisher):
    path = tmp_path / "snaps.queries.json"
    with snapshot_queries(path, "t"):
        Publisher.objects.count()
    with snapshot_queries(path, "t", update=True) as block:
        Publisher.objects.count()
        Publisher.objects.exists()
    assert block.outcome == "updated"
    assert [e["count"] for e in json.loads(path.read_text())["t"]["1"]] == [1, 1]
    with snapshot_queries(path, "t", update=True) as block:
        Publisher.objects.count()
        Publisher.objects.exists()
    assert block.outcome is None


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_missing_under_ci_fails_and_writes_nothing(
    tmp_path, publisher, monkeypatch, ci
):
    monkeypatch.setenv("CI", ci)
    path = tmp_path / "snaps.queries.json"
    with (
        pytest.raises(QuerySnapshotMismatch, match="CI is set, so none is written"),
        snapshot_queries(path, "t"),
    ):
        Publisher.objects.count()
    assert not path.exists()
    with snapshot_queries(path, "t", update=True) as block:  # update still writes
        Publisher.objects.count()
    assert block.outcome == "written"


@pytest.mark.parametrize("ci", ["", "0", "false", "No"])
def test_ci_off_values_create(tmp_path, publisher, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with snapshot_queries(tmp_path / "s.json", "t") as block:
        Publisher.objects.count()
    assert block.outcome == "written"


def test_a_failing_block_records_nothing(tmp_path, publisher):
    path = tmp_path / "s.json"
    with pytest.raises(ZeroDivisionError), snapshot_queries(path, "t"):
        Publisher.objects.count()
        1 / 0  # noqa: B018
    assert not path.exists()


def test_other_tests_entries_are_kept(tmp_path, publisher):
    path = tmp_path / "s.json"
    with snapshot_queries(path, "b"):
        Publisher.objects.count()
    with snapshot_queries(path, "a"):
        Publisher.objects.exists()
    assert list(json.loads(path.read_text())) == ["a", "b"]


def test_a_broken_file_fails_the_block_and_is_not_overwritten(tmp_path, publisher):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with (
        pytest.raises(DbTuningError, match="is not a query snapshot file"),
        snapshot_queries(path, "t"),
    ):
        Publisher.objects.count()
    assert path.read_text() == "{not json"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((None, "t"), "path must be a str or a path, not None"),
        (("s.json", ""), "test must be a non-empty str, not ''"),
        (("s.json", 3), "test must be a non-empty str, not 3"),
        (("s.json", "t", None), "name must be a non-empty str, not None"),
    ],
)
def test_wrong_arguments(args, error):
    with pytest.raises(TypeError, match=error):
        snapshot_queries(*args)


# --- the pytest plugin, in child sessions ---------------------------------------------------

CHILD = """
import pytest
from tests.testapp.models import Author, Book, Publisher

pytestmark = pytest.mark.django_db


@pytest.fixture
def books():
    publisher = Publisher.objects.create(name="P")
    for i in range(3):
        Book.objects.create(
            title=f"B{i}", author=Author.objects.create(name=f"A{i}", publisher=publisher)
        )


@pytest.mark.parametrize("n", [1, 2])
def test_books(books, query_snapshot, n):
    with query_snapshot("list"):
        for book in Book.objects.order_by("pk")[:n]:
            book.author.name
    with query_snapshot("count"):
        Book.objects.count()
"""
CHANGED = CHILD.replace(
    'Book.objects.order_by("pk")', 'Book.objects.select_related("author")'
)
DROPPED = CHILD.replace(
    '    with query_snapshot("count"):\n        Book.objects.count()\n', ""
)


def test_the_plugin_end_to_end(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    snapshot = tmp_path / "test_child.queries.json"
    # A missing snapshot is written, and the summary says so.
    monkeypatch.setenv("PYTHONHASHSEED", "1")
    code, output = run_pytest(tmp_path, tests=CHILD)
    assert code == 0, output
    assert "django-dbtuning: query snapshots" in output
    assert "written: test_books[1] / list" in output
    first = snapshot.read_bytes()
    assert sorted(json.loads(first)) == ["test_books[1]", "test_books[2]"]
    # Another hash seed, --update-query-snapshots: byte for byte the same file.
    monkeypatch.setenv("PYTHONHASHSEED", "4242")
    code, output = run_pytest(tmp_path, "--update-query-snapshots", tests=CHILD)
    assert code == 0, output
    assert snapshot.read_bytes() == first
    assert "query snapshots" not in output  # nothing changed, nothing to review
    # A change fails with the diff; the file stays as committed.
    code, output = run_pytest(tmp_path, tests=CHANGED)
    assert code == 1, output
    assert (
        "QuerySnapshotMismatch: the queries of 'test_books[2]' / 'list' changed:"
        in (output)
    )
    assert '-{"count": 2, "sql": "SELECT … FROM \\"testapp_author\\"' in output
    assert "+++ this run" in output
    assert snapshot.read_bytes() == first
    # CI: a test with no snapshot fails.
    monkeypatch.setenv("CI", "true")
    code, output = run_pytest(
        tmp_path, tests=CHILD.replace("def test_books", "def test_new_books")
    )
    assert code == 1, output
    assert "no query snapshot 'test_new_books[1]' / 'list'" in output
    assert snapshot.read_bytes() == first
    monkeypatch.delenv("CI")
    # Updating drops the blocks a passing test no longer has.
    code, output = run_pytest(tmp_path, "--update-query-snapshots", tests=DROPPED)
    assert code == 0, output
    assert "removed: test_books[1] / count" in output
    assert all(
        list(named) == ["list"] for named in json.loads(snapshot.read_text()).values()
    )


def test_a_name_used_twice_in_one_test_is_an_error(tmp_path):
    tests = CHILD.replace('query_snapshot("count")', 'query_snapshot("list")')
    code, output = run_pytest(tmp_path, tests=tests)
    assert code == 1, output
    assert "query snapshot 'list' is used twice in test_books[1]" in output


def test_literals_never_reach_the_file_and_hostile_names_round_trip(tmp_path, db):
    from django.db import connection

    path = tmp_path / "s.json"
    test = 'test_x[ünï "quoted"; DROP]'
    with snapshot_queries(path, test, 'Naïve; "name"'), connection.cursor() as cursor:
        cursor.execute(
            'SELECT \'hunter2\' AS "we""ird; Ünï", 424242 AS "Upper Case"'
            " WHERE 'x' = %s",
            ["parameter-secret"],
        )
    text = path.read_text(encoding="utf-8")
    for secret in ("hunter2", "424242", "parameter-secret"):
        assert secret not in text
    (entry,) = parse(text)[test]['Naïve; "name"']
    assert entry["sql"] == 'SELECT ? AS "we""ird; Ünï", ? AS "Upper Case" WHERE ? = %s'
    with (
        snapshot_queries(path, test, 'Naïve; "name"') as block,
        connection.cursor() as c,
    ):
        c.execute(
            'SELECT \'other\' AS "we""ird; Ünï", 7 AS "Upper Case" WHERE \'y\' = %s',
            ["z"],
        )
    assert block.outcome is None  # other literals, same shape


def test_update_drops_deleted_tests_only_when_every_test_was_collected(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("CI", raising=False)
    snapshot = tmp_path / "test_child.queries.json"
    gone = {"list": [{"count": 1, "sql": "SELECT 1"}]}
    unittest_key = "tests.test_child.BookTests.test_list"  # snapshot_queries(self.id())
    snapshot.write_text(
        render({"test_deleted": gone, "test_books[1]": {}, unittest_key: gone})
    )
    # A selection (-k, -m, --deselect...) cannot tell a deleted test from a deselected
    # one: kept, and said. (-k also matches directory names: only a test's id is safe.)
    code, output = run_pytest(
        tmp_path, "--update-query-snapshots", "-k", "not test_books[1]", tests=CHILD
    )
    assert code == 0, output
    assert "entries of tests this session did not collect are kept" in output
    assert json.loads(snapshot.read_text())["test_deleted"] == gone
    # So can node ids (every test of the module selected by id, still a selection).
    node_ids = [f"{tmp_path / 'test_child.py'}::test_books"]
    code, output = run_pytest(
        tmp_path, "--update-query-snapshots", *node_ids, tests=CHILD
    )
    assert code == 0, output
    assert "entries of tests this session did not collect are kept" in output
    assert json.loads(snapshot.read_text())["test_deleted"] == gone
    # The whole module under --update-query-snapshots: the deleted test's entries go.
    code, output = run_pytest(tmp_path, "--update-query-snapshots", tests=CHILD)
    assert code == 0, output
    assert "removed: test_deleted / list" in output
    assert "are kept" not in output
    # A key pytest cannot have made (a unittest id) is never taken for a deleted test.
    assert sorted(json.loads(snapshot.read_text())) == [
        "test_books[1]",
        "test_books[2]",
        unittest_key,
    ]
    # Without --update-query-snapshots nothing is ever pruned.
    snapshot.write_text(render({**parse(snapshot.read_text()), "test_deleted": gone}))
    code, output = run_pytest(tmp_path, tests=CHILD)
    assert code == 0, output
    assert json.loads(snapshot.read_text())["test_deleted"] == gone
