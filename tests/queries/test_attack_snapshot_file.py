"""Adversarial pass over the query snapshot file format: any text is a snapshot file or
one DbTuningError naming the file, never another exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_dbtuning.exceptions import DbTuningError
from django_dbtuning.queries.snapshots import parse, read, render

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["count", "alias", "sql"]) | st.text(max_size=4),
            inner,
            max_size=4,
        )
    ),
    max_leaves=25,
)


@given(JSON)
def test_any_json_is_a_snapshot_file_or_an_error_naming_it(document):
    try:
        snapshots = parse(json.dumps(document), "tests/test_x.queries.json")
    except DbTuningError as exc:
        assert str(exc).startswith("tests/test_x.queries.json is not a query snapshot")
        return
    assert parse(render(snapshots)) == snapshots


@given(st.text(max_size=60))
def test_any_text_is_a_snapshot_file_or_an_error_naming_it(text):
    try:
        parse(text, "f.queries.json")
    except DbTuningError as exc:
        assert "f.queries.json" in str(exc)


def test_a_deeply_nested_file_is_an_error_naming_it():
    with pytest.raises(DbTuningError, match="f.queries.json"):
        parse("[" * 100_000, "f.queries.json")


def test_a_file_that_is_not_utf8_is_an_error_naming_it(tmp_path):
    path = tmp_path / "test_x.queries.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(DbTuningError, match="test_x.queries.json"):
        read(path)
