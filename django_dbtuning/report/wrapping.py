"""Text rules for findings in a terminal: wrap prose without breaking SQL or migration
code, and never let a database name drive the terminal."""

from __future__ import annotations

import re
import textwrap

from django_dbtuning.report.findings import Finding

WIDTH = 100

# C0 and C1 controls; and the invisible characters that reorder or hide text where a
# report is read (CI logs in a browser, editors): bidirectional marks, embeddings,
# overrides and isolates, zero-width characters, line/paragraph separators, BOM.
_CONTROL = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes: a name holding a terminal
    escape sequence must not drive the terminal, nor a right-to-left override make a
    line read as something else."""
    return _CONTROL.sub(_escape, text)


def snippets(finding: Finding) -> list[str]:
    found = [s for s in finding.data.get("sql") or [] if isinstance(s, str)]
    migration = finding.data.get("migration")
    if isinstance(migration, str):
        found.append(migration)
    # Longest first: a statement inside the migration code is kept with it.
    return sorted(found, key=len, reverse=True)


def wrap(
    text: str, first: str, rest: str | None = None, *, keep: list[str] | None = None
) -> str:
    """Wrap prose, but never inside a word or inside ``keep`` (the hint's SQL and
    migration code): a line break inside a quoted identifier or a Python string would
    change what is pasted."""
    kept: dict[str, str] = {}
    for number, snippet in enumerate(keep or []):
        if snippet in text:
            # As long as the snippet and without spaces: wrapped like one long word.
            token = chr(0xE000 + number) * len(snippet)
            kept[token] = snippet
            text = text.replace(snippet, token)
    wrapped = textwrap.fill(
        text,
        width=WIDTH,
        initial_indent=first,
        subsequent_indent=rest if rest is not None else first,
        break_long_words=False,
        break_on_hyphens=False,
    )
    wrapped = printable(wrapped)
    for token, snippet in kept.items():
        # A name holding a control character is shown escaped even here (JSON's
        # data.sql has it exactly).
        wrapped = wrapped.replace(token, printable(snippet))
    return wrapped
