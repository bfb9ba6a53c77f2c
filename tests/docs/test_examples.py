"""Every Python example in README.md and docs/*.md runs here, so none can rot.

Each ```` ```python ```` block is executed as a module, each ```` ```pycon ```` block (or a
Python block that starts with ``>>>``) as a doctest, one test per block, named by file and
line (``queries.md:123``); a failure points at the markdown line. Shell, text and other
blocks are not executed; JSON blocks must parse.

What a block may take as given, as a reader would:

- the models of the examples' library app (``Publisher``, ``Author``, ``Book``, ``Tag``,
  ``Comment``), already imported, with three authors and five books in the database; on
  docs/copy.md the COPY examples' ``Item`` and its ``Publisher`` instead (``Item`` starts
  empty; the README has ``Item`` beside the library);
- ``DATABASE_URL``, ``REPLICA_URL`` and ``PGBOUNCER_URL`` in the environment (addresses of
  servers that do not exist: a settings fragment builds dicts and opens no connection);
- a scratch working directory, so ``copy_to("items.csv")`` writes a file there.

Blocks run inside a test transaction on the suite's real PostgreSQL (pytest-django's ``db``),
rolled back afterwards. A settings fragment must not raise, and what it builds is checked:
every ``DATABASES`` entry passes the system checks, every ``DBTUNING`` key exists and every
``MIDDLEWARE`` / ``DATABASE_ROUTERS`` path imports. A block that genuinely cannot run here is
marked in the markdown with ``<!-- not-run: reason -->`` right above its fence and is skipped
with that reason.
"""

from __future__ import annotations

import doctest
import io
import json
import linecache
import warnings
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.core.checks import run_checks
from django.test.utils import override_settings
from django.utils.module_loading import import_string

from tests.docs.blocks import Block, all_blocks

EXECUTED = [block for block in all_blocks() if block.runs]
JSON_BLOCKS = [block for block in all_blocks() if block.lang == "json"]

DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

ENVIRONMENT = {
    "DATABASE_URL": "postgres://app:secret@db:5432/shop",
    "REPLICA_URL": "postgres://app:secret@db-replica:5432/shop",
    "PGBOUNCER_URL": "postgres://app:secret@pgbouncer:6432/shop",
}


def library_namespace() -> dict[str, Any]:
    from tests.testapp import models

    return {
        name: getattr(models, name)
        for name in ("Publisher", "Author", "Book", "Tag", "Comment")
    }


def copy_namespace() -> dict[str, Any]:
    from tests.copyapp import models

    return {"Item": models.Item, "Publisher": models.Publisher}


def seed_library() -> None:
    from tests.testapp.models import Author, Book, Publisher

    publisher = Publisher.objects.create(name="Gollancz")
    shelves = {
        "Ursula K. Le Guin": ["A Wizard of Earthsea", "The Dispossessed"],
        "Terry Pratchett": ["Mort", "Small Gods"],
        "Iain M. Banks": ["Excession"],
    }
    for name, titles in shelves.items():
        author = Author.objects.create(name=name, publisher=publisher)
        for title in titles:
            Book.objects.create(title=title, author=author)


@pytest.fixture
def example_env(db, monkeypatch, tmp_path) -> Iterator[None]:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    seed_library()
    yield


def namespace_for(block: Block) -> dict[str, Any]:
    if block.path.name == "copy.md":
        names = copy_namespace()
    else:  # the README shows COPY too, into the same Item
        names = {**library_namespace(), "Item": copy_namespace()["Item"]}
    return {"__name__": "docs_example", "__file__": block.name, **names}


def run_python(block: Block, namespace: dict[str, Any]) -> None:
    # Padded so that a traceback, and a finding's call site, name the markdown file and the
    # block's own line; linecache lets the traceback show the source.
    source = "\n" * block.line + block.code
    lines = source.splitlines(keepends=True)
    linecache.cache[block.name] = (len(source), None, lines, block.name)
    exec(compile(source, block.name, "exec"), namespace)


def run_doctest(block: Block, namespace: dict[str, Any]) -> None:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(
        block.code, namespace, block.id, str(block.path), block.line
    )
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    report = io.StringIO()
    results = runner.run(test, out=report.write, clear_globs=False)
    if results.failed:
        pytest.fail(
            f"{block.id}: {results.failed} of {results.attempted} examples failed\n"
            + report.getvalue(),
            pytrace=False,
        )
    assert results.attempted, f"{block.id}: a pycon block without a >>> example"


def check_settings_fragment(block: Block, namespace: dict[str, Any]) -> None:
    """What a settings fragment builds must be what the package accepts."""
    from django_dbtuning.conf import SETTINGS

    dbtuning = namespace.get("DBTUNING")
    if isinstance(dbtuning, dict):
        unknown = sorted(set(dbtuning) - set(SETTINGS))
        assert not unknown, f"{block.id}: unknown DBTUNING keys {unknown}"
        with override_settings(DBTUNING=dbtuning):
            problems = dbtuning_messages(run_checks(databases=[]))
        assert not problems, f"{block.id}: {problems}"
    for name in ("MIDDLEWARE", "DATABASE_ROUTERS"):
        for path in namespace.get(name) or ():
            if isinstance(path, str):
                import_string(path)
    databases = namespace.get("DATABASES")
    if isinstance(databases, dict):
        for alias, entry in databases.items():
            assert entry["ENGINE"] in (
                "django.db.backends.postgresql",
                "django_dbtuning.pool.postgresql",  # database() with a pool
            ), alias
        if "default" in databases:
            # An entry built by database() passes every check. Django warns about
            # overriding DATABASES in a test; the checks only read the setting.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                with override_settings(DATABASES=databases):
                    problems = dbtuning_messages(run_checks(databases=[]))
            assert not problems, f"{block.id}: {problems}"


def dbtuning_messages(messages: list[Any]) -> list[str]:
    return [
        str(message)
        for message in messages
        if str(message.id).startswith("dbtuning.") and not message.is_silenced()
    ]


def marks_for(block: Block) -> list[pytest.MarkDecorator]:
    if block.not_run:
        return [pytest.mark.skip(reason=f"not-run: {block.not_run}")]
    if block.needs_django and django.VERSION[:2] < block.needs_django:
        needed = ".".join(map(str, block.needs_django))
        return [pytest.mark.skip(reason=f"needs Django {needed}+")]
    return []


@pytest.mark.parametrize(
    "block",
    [pytest.param(block, id=block.id, marks=marks_for(block)) for block in EXECUTED],
)
def test_example(block: Block, example_env: None) -> None:
    namespace = namespace_for(block)
    if block.is_doctest:
        run_doctest(block, namespace)
    else:
        run_python(block, namespace)
        check_settings_fragment(block, namespace)


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=[b.id for b in JSON_BLOCKS])
def test_json_block_parses(block: Block) -> None:
    json.loads(block.code)


def test_examples_were_found() -> None:
    files = {block.path.name for block in EXECUTED}
    assert "README.md" in files
    assert len(EXECUTED) >= 30, len(EXECUTED)
