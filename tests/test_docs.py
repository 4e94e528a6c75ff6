"""The docs: the site builds strictly (a broken link or a missing page fails it), the nav lists every page,
and the README stays a short front page whose links all resolve."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_MAX_LINES = 200


def build_site(config: Path, site: Path) -> subprocess.CompletedProcess:
    """`make docs`'s build, into ``site``."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=120,
    )


def nav_pages(nav: Any) -> set[str]:
    """Every page a mkdocs nav names, however deeply nested in sections."""
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(nav_pages(item) for item in nav))
    if isinstance(nav, dict):
        return set().union(*(nav_pages(item) for item in nav.values()))
    return set()


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    result = build_site(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    built = {path.name for path in (tmp_path / "site").iterdir()}
    assert {"index.html", "changelog.html", "report.png", "scale.png"} <= built


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    with (tmp_path / "docs" / "index.md").open("a") as index:
        index.write("\n[a page that is not there](no-such-page.md)\n")
    result = build_site(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr


def test_the_nav_lists_every_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert nav_pages(config["nav"]) == pages


def test_the_readme_is_short_and_its_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [target.split("#")[0] for target in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", target)]
    assert relative, "the README links the docs pages"
    assert [target for target in relative if not (ROOT / target).exists()] == []


def test_the_site_index_is_the_readme() -> None:
    """docs/index.md repeats the README's top (links relative to docs/), so the two say the same until the
    list of pages."""
    readme = (ROOT / "README.md").read_text().replace("](docs/", "](")
    index = (DOCS / "index.md").read_text()
    assert index.split("\n## Pages\n")[0] == readme.split("\n## Documentation\n")[0]
