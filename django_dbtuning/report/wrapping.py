"""Text rules for findings in a terminal: wrap prose without breaking SQL or migration
code, and never let a database name drive the terminal."""

from __future__ import annotations

import re
import textwrap

from django_dbtuning.report.findings import Finding

WIDTH = 100

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes: a name holding a terminal
    escape sequence must not drive the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


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
