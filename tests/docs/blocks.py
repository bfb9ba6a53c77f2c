"""Fenced code blocks of README.md and docs/*.md, as the doc tests read them.

A block is a fenced code block (```` ``` ```` or ``~~~``) with its language, the line of its
opening fence (1-based, for the test id ``queries.md:123`` and for tracebacks) and its
dedented code. A block preceded by ``<!-- not-run: reason -->`` (the nearest non-blank line
above its fence) is not executed, and the reason is kept.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)")
NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>.*?)\s*-->\s*$")
# A block about a newer Django than the one under test: <!-- needs: django>=5.1 -->.
NEEDS = re.compile(
    r"^\s*<!--\s*needs:\s*django\s*>=\s*(?P<major>\d+)\.(?P<minor>\d+)\s*-->\s*$"
)
# The languages whose blocks are executed: Python, and doctest sessions.
PYTHON = {"python", "py", "python3"}
PYCON = {"pycon"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str
    not_run: str | None
    needs_django: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def is_doctest(self) -> bool:
        return self.lang in PYCON or (
            self.lang in PYTHON and self.code.lstrip().startswith(">>>")
        )

    @property
    def runs(self) -> bool:
        return self.lang in PYTHON | PYCON


def documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


@cache
def blocks_of(path: Path) -> tuple[Block, ...]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        opening, fence = index, match["fence"]
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        index += 1
        while index < len(lines) and not close.match(lines[index]):
            index += 1
        body = "\n".join(lines[opening + 1 : index])
        found.append(
            Block(
                path=path,
                line=opening + 1,
                lang=match["lang"].lower(),
                code=textwrap.dedent(body) + "\n",
                not_run=_not_run_reason(lines, opening),
                needs_django=_needs_django(lines, opening),
            )
        )
        index += 1
    return tuple(found)


def _comments_above(lines: list[str], opening: int) -> list[str]:
    """The HTML comment lines right above a fence (blank lines between are allowed)."""
    found: list[str] = []
    above = opening - 1
    while above >= 0 and (
        not lines[above].strip() or lines[above].lstrip().startswith("<!--")
    ):
        if lines[above].strip():
            found.append(lines[above])
        above -= 1
    return found


def _not_run_reason(lines: list[str], opening: int) -> str | None:
    for line in _comments_above(lines, opening):
        if match := NOT_RUN.match(line):
            return match["reason"]
    return None


def _needs_django(lines: list[str], opening: int) -> tuple[int, int] | None:
    for line in _comments_above(lines, opening):
        if match := NEEDS.match(line):
            return int(match["major"]), int(match["minor"])
    return None


def all_blocks() -> list[Block]:
    return [block for path in documents() for block in blocks_of(path)]


def not_run_markers(path: Path) -> list[int]:
    """Lines (1-based) of every ``not-run`` comment in ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [number for number, line in enumerate(lines, 1) if NOT_RUN.match(line)]
