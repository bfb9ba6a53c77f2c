"""The pytest plugin, run in a child pytest session against the same server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]

TESTS = """
import pytest
from tests.testapp.models import Author, Book, Publisher

pytestmark = pytest.mark.django_db


@pytest.fixture
def books():
    publisher = Publisher.objects.create(name="P")
    for i in range(3):
        author = Author.objects.create(name=f"A{i}", publisher=publisher)
        Book.objects.create(title=f"B{i}", author=author)


def naive():
    for book in Book.objects.all():
        book.author.name


@pytest.mark.no_n_plus_one
def test_marked_naive(books):
    naive()


@pytest.mark.no_n_plus_one
def test_marked_fixed(books):
    for book in Book.objects.select_related("author"):
        book.author.name


def test_unmarked_naive(books):
    naive()


@pytest.mark.allow_n_plus_one
def test_allowed_naive(books):
    naive()
"""


def run_pytest(tmp_path, *args, tests=TESTS):
    """Run ``tests`` as ``test_child.py`` in a child pytest: (exit code, output)."""
    test_file = tmp_path / "test_child.py"
    test_file.write_text(tests)
    env = dict(os.environ)
    url = env.get("DATABASE_URL")
    if url:  # the same server, another test database than ours
        parts = urlsplit(url)
        env["DATABASE_URL"] = urlunsplit(parts._replace(path="/dbtuning_plugin"))
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(test_file),
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
            "-q",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "failed", "passed"),
    [
        ((), ["test_marked_naive"], 3),
        (("--n-plus-one=fail",), ["test_marked_naive", "test_unmarked_naive"], 2),
        (("--n-plus-one=report",), ["test_marked_naive"], 3),
        (("-o", "n_plus_one=fail"), ["test_marked_naive", "test_unmarked_naive"], 2),
    ],
    ids=["marker", "option-fail", "option-report", "ini-fail"],
)
def test_plugin_modes(tmp_path, args, failed, passed):
    code, output = run_pytest(tmp_path, *args)
    assert code == 1, output
    for name in failed:
        assert f"FAILED test_child.py::{name}" in output or f"::{name} - " in output, (
            output
        )
    assert f"{passed} passed" in output, output
    assert "NPlusOneError" in output
    assert "testapp.Book.author ran 3 times" in output
    if args:
        assert "django-dbtuning: N+1 queries" in output
        assert 'fix: add .select_related("author") to the Book queryset' in output


def test_plugin_rejects_an_unknown_mode(tmp_path):
    code, output = run_pytest(tmp_path, "-o", "n_plus_one=sometimes")
    assert code != 0
    assert "n_plus_one = 'sometimes'" in output
