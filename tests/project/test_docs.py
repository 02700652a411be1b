"""The README and the pages under docs/: links resolve, the README stays short, every command has a page."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from netdsl.cli import make_parser

# The repository root, found upwards so the file may move into a tests/ subfolder.
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]

# A markdown link's target: `[text](target)`; an image inside a link yields both targets.
LINK = re.compile(r"\]\(([^()\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


def _prose(text: str) -> str:
    """The text outside code blocks and inline code, where links can be."""
    return CODE.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub makes for a page's headings (a repeated one gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if not m:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(page: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(page.read_text(encoding="utf-8")))
            if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_links_are_found() -> None:
    """The link pattern sees the README's links to the pages (a guard on the test above)."""
    targets = _links(README)
    assert "docs/language.md" in targets
    assert "docs/README.md" in targets
    assert "../unet.svg" in _links(DOCS / "commands" / "export.md")


def test_readme_stays_short() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) < 220


def test_every_page_is_listed_in_the_index() -> None:
    index = set(_links(DOCS / "README.md"))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")} - {"README.md"}
    assert pages <= index, f"pages missing from docs/README.md: {sorted(pages - index)}"


def _commands() -> list[str]:
    """The subcommands `netdsl --help` offers, read from the CLI's own parser."""
    parser = make_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subs) == 1
    return list(subs[0].choices)


def test_every_command_has_a_page() -> None:
    commands = _commands()
    assert "build" in commands and "count" in commands
    missing = [c for c in commands if not (DOCS / "commands" / f"{c}.md").is_file()]
    assert not missing, f"commands without a page under docs/commands/: {missing}"
    readme = README.read_text(encoding="utf-8")
    unlinked = [c for c in commands if f"docs/commands/{c}.md" not in readme]
    assert not unlinked, f"commands the README does not link: {unlinked}"
