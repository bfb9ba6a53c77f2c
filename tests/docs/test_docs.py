"""The docs agree with the code and with each other: sizes, generated tables, ids, links."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from tests.docs.blocks import (
    DOCS,
    README,
    ROOT,
    all_blocks,
    documents,
    not_run_markers,
)

README_LIMIT = 12_288
# Blocks that cannot run are the exception; raise this only with a reason in the markdown.
MOST_NOT_RUN = 3
CHECK_ID = re.compile(r"dbtuning\.[EW]\d{3}")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_at_most_12_kb() -> None:
    assert len(README.read_text(encoding="utf-8").encode()) <= README_LIMIT


def test_settings_table_matches_the_registry() -> None:
    hooks = load_hooks()
    page = hooks.SETTINGS_PAGE.read_text(encoding="utf-8")
    assert page == hooks.fill(page), (
        "docs/settings.md is out of date with django_dbtuning.conf.SETTINGS; "
        "run: .venv/bin/python docs/hooks.py"
    )


def test_settings_table_lists_every_setting_once() -> None:
    from django_dbtuning.conf import SETTINGS

    page = (DOCS / "settings.md").read_text(encoding="utf-8")
    for name in SETTINGS:
        assert page.count(f"| `{name}` |") == 1, name


def code_check_ids() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "django_dbtuning").rglob("*.py"):
        found.update(
            match[1:-1]
            for match in re.findall(r'"dbtuning\.[EW]\d{3}"', path.read_text("utf-8"))
        )
    return found


def test_every_check_id_in_the_code_is_documented() -> None:
    documented = set(CHECK_ID.findall((DOCS / "checks.md").read_text(encoding="utf-8")))
    in_code = code_check_ids()
    assert in_code, "no check ids found in django_dbtuning/"
    assert sorted(in_code - documented) == [], "missing from docs/checks.md"
    assert sorted(documented - in_code) == [], "docs/checks.md lists ids the code lacks"


def test_checks_page_has_one_row_per_id() -> None:
    rows = re.findall(
        r"^\| `(dbtuning\.[EW]\d{3})` \|",
        (DOCS / "checks.md").read_text(encoding="utf-8"),
        re.M,
    )
    assert len(rows) == len(set(rows)) == len(code_check_ids())


def test_site_nav_lists_every_page() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:") :]
    listed = re.findall(r":\s*([\w-]+\.md)\s*$", nav, re.M)
    pages = sorted(path.name for path in DOCS.glob("*.md"))
    assert sorted(listed) == pages
    expected = {
        "index.md",
        "pool.md",
        "queries.md",
        "copy.md",
        "dbreport.md",
        "settings.md",
        "checks.md",
        "benchmarks.md",
        "changelog.md",
    }
    assert expected <= set(pages)


def test_changelog_page_is_the_root_file_not_a_copy() -> None:
    hooks = load_hooks()
    stub = (DOCS / "changelog.md").read_text(encoding="utf-8")
    assert "../CHANGELOG.md" in stub
    assert len(stub) < 500, "docs/changelog.md must not duplicate CHANGELOG.md"

    class File:
        src_uri = "changelog.md"

    class Page:
        file = File()

    assert hooks.on_page_read_source(Page(), None) == (ROOT / "CHANGELOG.md").read_text(
        encoding="utf-8"
    )


def github_slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    # Headings outside fenced blocks.
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.S | re.M)
    return {github_slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    """Links between README and docs/ work on GitHub (mkdocs --strict checks the site)."""
    text = re.sub(
        r"^(```|~~~).*?^\1", "", path.read_text(encoding="utf-8"), flags=re.S | re.M
    )
    for match in LINK.finditer(text):
        target = match["target"]
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name}: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors_of(linked), f"{path.name}: {target}"


def test_readme_links_into_every_reference_page() -> None:
    readme = README.read_text(encoding="utf-8")
    for page in (
        "pool",
        "queries",
        "copy",
        "dbreport",
        "settings",
        "checks",
        "benchmarks",
    ):
        assert f"(docs/{page}.md" in readme, page


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.name)
def test_not_run_markers_sit_on_python_blocks(path: Path) -> None:
    marked = {
        block.line for block in all_blocks() if block.path == path and block.not_run
    }
    markers = not_run_markers(path)
    assert len(markers) == len(marked), (
        f"{path.name}: a not-run comment not above a block"
    )
    for block in all_blocks():
        if block.path == path and block.not_run:
            assert block.runs, f"{block.id}: not-run on a block that never runs"
            assert block.not_run.strip(), f"{block.id}: not-run needs a reason"


def test_not_run_blocks_stay_rare() -> None:
    not_run = [block.id for block in all_blocks() if block.not_run]
    assert len(not_run) <= MOST_NOT_RUN, not_run
