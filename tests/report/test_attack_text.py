"""Adversarial pass over the text output: a name holding terminal escapes or invisible
characters that reorder or hide text (a right-to-left override, zero-width characters, a
line separator) is shown as escapes, in the report and in the dashboard's chart labels."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from django_dbtuning.report import Finding, Report, as_text
from django_dbtuning.report.findings import DatabaseReport

HIDDEN = ["\x1b[2J", "\u202e", "\u2066", "\u200b", "\u2028", "\ufeff", "\x85"]


@pytest.mark.parametrize("char", HIDDEN, ids=[hex(ord(c[-1])) for c in HIDDEN])
def test_names_holding_invisible_characters_are_escaped(char):
    name = f"shop_order{char}txt.exe"
    finding = Finding(
        database="default",
        severity="warning",
        code="unused_index",
        title=f"Unused index {name}",
        detail=f"{name} was never scanned",
        hint=f"DROP INDEX {name}",
        object=name,
        section="indexes",
    )
    report = Report(
        generated_at=datetime.now(UTC),
        sections=("indexes",),
        databases={"default": DatabaseReport(alias="default")},
        findings=[finding],
    )
    text = as_text(report)
    assert "shop_order" in text
    assert char not in text
    code = ord(char[-1]) if char != "\x1b[2J" else 0x1B
    assert (f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}") in text
