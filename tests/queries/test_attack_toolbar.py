"""Adversarial pass over the toolbar panel's template and locations: every value the
panel stores (finding rows, unused eager loads, locations, editor links) is text."""

from __future__ import annotations

import pytest
from django.template.loader import render_to_string

pytest.importorskip("debug_toolbar")

from types import SimpleNamespace

from django_dbtuning.queries.findings import QueryFinding
from django_dbtuning.toolbar import panel_stats

EVIL = "\"'><img src=x onerror=alert(1)>"


def stats() -> dict:
    where = {
        "label": EVIL,
        "directory": EVIL,
        "file": EVIL,
        "line": EVIL,
        "function": EVIL,
        "url": "x://open?f=" + EVIL,
    }
    row = {
        "kind": EVIL,
        "subject": EVIL,
        "alias": EVIL,
        "count": EVIL,
        "time_ms": EVIL,
        "hint": EVIL,
        "sql": EVIL,
        "locations": [where],
        "serializer": EVIL,
    }
    unused = {
        "subject": EVIL,
        "method": EVIL,
        "objects": EVIL,
        "hint": EVIL,
        "locations": [where],
    }
    return {
        "tracked": True,
        "count": 3,
        "time_ms": 1.0,
        "n_plus_one": [row],
        "duplicates": [row],
        "unused": [unused],
    }


def test_every_stored_value_is_text():
    content = render_to_string("django_dbtuning/toolbar/queries.html", stats())
    assert "<img" not in content
    assert "\"'>" not in content
    # 3 rows x (9 + 6 location values, the link included) at least.
    assert content.count("&lt;img src=x onerror=alert(1)&gt;") >= 30


@pytest.mark.parametrize(
    "where",
    [
        "templates/<script>.html:12",
        'app/"quoted" dir/views.py:7',
        "no line at all",
        "C:\\win\\path.py:3",
        "trailing:colon:",
        "",
    ],
)
def test_hostile_locations_render_as_text(where, dbtuning):
    dbtuning(EDITOR_URL="vscode://file{path}:{line}")
    finding = QueryFinding(
        kind="n_plus_one",
        fingerprint='SELECT "<script>t</script>"."id" FROM "<script>t</script>"',
        digest="d",
        alias="<i>alias</i>",
        count=3,
        duration=0.01,
        hint="<b>hint</b>",
        callsite=where or None,
        function="<b>f</b>",
        relation="<b>Book.author</b>",
        template=where or None,
        rendered_from=where or None,
    )
    report = SimpleNamespace(
        count=3,
        duration=0.01,
        n_plus_one=[finding],
        duplicates=[],
        unused_eager_loads=[],
    )
    found = panel_stats(report)
    for spot in found["n_plus_one"][0]["locations"]:
        assert spot["url"] == "" or spot["url"].startswith("vscode://file/")
        assert '"' not in spot["url"] and "<" not in spot["url"]
    content = render_to_string("django_dbtuning/toolbar/queries.html", found)
    assert "<script>" not in content and "<b>" not in content and "<i>" not in content
