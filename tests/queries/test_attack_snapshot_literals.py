"""Adversarial pass over query snapshot files: no literal or parameter value of a query
ever reaches the file or the mismatch message, whatever the value holds (quotes,
backslashes, dollar quotes, unicode, arrays, JSON) and however the SQL spells it."""

from __future__ import annotations

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtuning.exceptions import QuerySnapshotMismatch
from django_dbtuning.queries.snapshots import snapshot_queries

pytestmark = pytest.mark.django_db

VALUES = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
        min_size=0,
        max_size=12,
    ),
    st.sampled_from(["'", "''", "\\", "$$", "$t$", "*/", "--", '"', "{", "☃", "\n"]),
)


def quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def spellings(secret: str) -> list[tuple[str, list[str]]]:
    """One statement per way SQL carries a value: literals of every kind, parameters."""
    lit = quoted(secret)
    out = [
        ("SELECT %s::text", [secret]),
        (f"SELECT {lit}::text", []),
        (f"SELECT E{quoted(secret.replace(chr(92), chr(92) * 2))}::text", []),
        (f"SELECT ARRAY[{lit}, %s]::text[]", [secret]),
        (f"SELECT jsonb_build_object('k', {lit}, 'n', %s::text)", [secret]),
        (f"SELECT 1 WHERE {lit} IN (%s, {lit})", [secret]),
        (f"SELECT {lit} /* a comment */ AS x", []),
    ]
    if "$q$" not in secret:
        out.append((f"SELECT $q${secret}$q$::text", []))
    return out


def run(statements: list[tuple[str, list[str]]]) -> None:
    with connection.cursor() as cursor:
        for statement, params in statements:
            # %% for literal percent signs psycopg would read as a placeholder.
            cursor.execute(statement.replace("%", "%%").replace("%%s", "%s"), params)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(VALUES, VALUES)
def test_no_value_reaches_the_file_or_the_diff(tmp_path_factory, value, other):
    secret = "Zq8841" + value
    path = tmp_path_factory.mktemp("s") / "test_x.queries.json"
    with snapshot_queries(path, "test_x", update=True):
        run(spellings(secret))
    text = path.read_text(encoding="utf-8")
    assert "Zq8841" not in text
    # Another value: the same shapes, no mismatch (but a backslash in a '…' literal,
    # which standard_conforming_strings = off would read differently, is masked with
    # the rest of the statement, "?…": a different line, still without the value).
    try:
        with snapshot_queries(path, "test_x", create=False):
            run(spellings("Zq9952" + other))
    except QuerySnapshotMismatch as exc:
        assert "\\" in other + value, exc
        assert "Zq" not in str(exc)
        return
    # Fewer statements: a diff that still holds no value.
    if "$q$" in secret or "$q$" in other:
        return
    with (
        pytest.raises(QuerySnapshotMismatch) as caught,
        snapshot_queries(path, "test_x", create=False),
    ):
        run(spellings("Zq7713" + other)[:3])
    assert "Zq" not in str(caught.value)
