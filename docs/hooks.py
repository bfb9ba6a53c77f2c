"""MkDocs hooks for the docs site, and the generator of the settings table.

- docs/settings.md holds a table generated from ``django_dbtuning.conf.SETTINGS`` between two
  markers, so it reads on GitHub as it does on the site. ``python docs/hooks.py`` rewrites
  it; the site build fills it afresh from the registry; tests/docs checks that the committed
  table and the registry agree.
- docs/changelog.md is a stub that points at the root CHANGELOG.md on GitHub; on the site it
  is replaced by that file, so the changelog is written once.

Importing this module needs neither MkDocs nor Django settings.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_PAGE = ROOT / "docs" / "settings.md"
CHANGELOG = ROOT / "CHANGELOG.md"

BEGIN = (
    "<!-- BEGIN SETTINGS TABLE: generated from django_dbtuning.conf.SETTINGS "
    "by `python docs/hooks.py`; edit the registry, not this table -->"
)
END = "<!-- END SETTINGS TABLE -->"
BLOCK = re.compile(re.escape(BEGIN) + r"\n.*?" + re.escape(END), re.S)

TYPE_NAMES = {
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    list: "list",
    tuple: "tuple",
    dict: "dict",
}


def literal(value: Any) -> str:
    """A default as a reader would write it in settings.py."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        items = ", ".join(literal(item) for item in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (
            f"{value:_}" if isinstance(value, int) and value >= 10_000 else repr(value)
        )
    return repr(value)


def accepts(setting: Any) -> str:
    """What a setting accepts: choices, or types with a minimum; and None when nullable."""
    choices = getattr(setting, "choices", None)
    if choices:
        parts = [f"`{literal(choice)}`" for choice in choices]
    else:
        parts = [TYPE_NAMES.get(kind, kind.__name__) for kind in setting.types]
        minimum = getattr(setting, "minimum", None)
        if minimum is not None:
            parts[-1] += f" ≥ {minimum:g}"
    if getattr(setting, "nullable", False):
        parts.append("`None`")
    return (
        " or ".join(parts)
        if len(parts) < 3
        else f"{', '.join(parts[:-1])} or {parts[-1]}"
    )


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def settings_table() -> str:
    """The markdown table of every ``DBTUNING`` key, in the registry's order."""
    from django_dbtuning.conf import SETTINGS

    lines = [
        "| key | default | accepts | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for name, setting in SETTINGS.items():
        lines.append(
            f"| `{name}` | `{cell(literal(setting.default))}` | {cell(accepts(setting))} "
            f"| {cell(setting.description)} |"
        )
    return "\n".join(lines)


def fill(markdown: str) -> str:
    """``markdown`` with the settings block replaced by the registry's table."""
    if not BLOCK.search(markdown):
        raise ValueError(
            f"{SETTINGS_PAGE.name}: the settings table markers are missing"
        )
    block = f"{BEGIN}\n{settings_table()}\n{END}"
    return BLOCK.sub(lambda match: block, markdown, count=1)


# -- MkDocs hooks -----------------------------------------------------------------------


def on_page_read_source(page: Any, config: Any) -> str | None:
    if page.file.src_uri == "changelog.md":
        return CHANGELOG.read_text(encoding="utf-8")
    return None


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri == "settings.md":
        return fill(markdown)
    return markdown


def main() -> int:
    current = SETTINGS_PAGE.read_text(encoding="utf-8")
    updated = fill(current)
    if updated != current:
        SETTINGS_PAGE.write_text(updated, encoding="utf-8")
        print(f"updated {SETTINGS_PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
