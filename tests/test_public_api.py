from __future__ import annotations

import subprocess
import sys

import pytest
from django.db import DataError, IntegrityError, OperationalError

import django_dbtuning
from django_dbtuning import (
    CopyConcurrencyError,
    CopyDataError,
    CopyError,
    CopyIntegrityError,
    DbTuningError,
    DuplicateQueriesError,
    DuplicateQueriesWarning,
    NPlusOneError,
    NPlusOneWarning,
    QueryBudgetExceeded,
    QueryBudgetWarning,
    QueryProblemError,
    QueryProblemWarning,
    UnusedEagerLoadWarning,
)


def test_all_is_sorted_and_importable():
    assert django_dbtuning.__all__ == sorted(django_dbtuning.__all__)
    for name in django_dbtuning.__all__:
        assert getattr(django_dbtuning, name) is not None


@pytest.mark.parametrize(
    "cls",
    [
        QueryProblemError,
        NPlusOneError,
        DuplicateQueriesError,
        QueryBudgetExceeded,
        CopyError,
        CopyDataError,
        CopyIntegrityError,
        CopyConcurrencyError,
    ],
)
def test_errors_share_one_base_and_show_the_public_path(cls):
    assert issubclass(cls, DbTuningError)
    assert f"{cls.__module__}.{cls.__qualname__}" == f"django_dbtuning.{cls.__name__}"


def test_copy_errors_are_also_django_database_errors():
    error = CopyIntegrityError(
        "row 3: duplicate key", row=3, column="sku", pg_message="dup"
    )
    assert isinstance(error, IntegrityError)
    assert isinstance(error, CopyError)
    assert (error.row, error.column, error.pg_message) == (3, "sku", "dup")
    assert issubclass(CopyDataError, DataError)
    assert issubclass(CopyConcurrencyError, OperationalError)


@pytest.mark.parametrize(
    "cls",
    [
        QueryProblemWarning,
        NPlusOneWarning,
        DuplicateQueriesWarning,
        QueryBudgetWarning,
        UnusedEagerLoadWarning,
    ],
)
def test_warnings_are_user_warnings_and_show_the_public_path(cls):
    assert issubclass(cls, UserWarning)
    assert issubclass(cls, QueryProblemWarning)
    assert cls.__module__ == "django_dbtuning"


def test_importing_needs_no_configured_django():
    code = (
        "import django_dbtuning, django_dbtuning.pool;"
        "from django.conf import settings;"
        "assert not settings.configured;"
        "print(django_dbtuning.__version__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
