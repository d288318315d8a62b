"""Every decision record and guide page is reachable: listed in the decisions index and in the
site's navigation (mkdocs --strict only reports pages left out of the nav, it does not fail)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


class _Loader(yaml.SafeLoader):
    """mkdocs.yml names Python objects (!!python/name:...): read them as plain text."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def _nav_pages(node) -> set[str]:
    if isinstance(node, str):
        return {node}
    if isinstance(node, list):
        return set().union(*(_nav_pages(n) for n in node)) if node else set()
    if isinstance(node, dict):
        return set().union(*(_nav_pages(v) for v in node.values()))
    return set()


def test_every_decision_record_is_in_the_index_and_the_nav():
    nav = _nav_pages(yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)["nav"])
    index = (ROOT / "docs/decisions/index.md").read_text()
    for record in sorted((ROOT / "docs/decisions").glob("[0-9]*.md")):
        assert f"({record.name})" in index, f"{record.name} is missing from docs/decisions/index.md"
        assert f"decisions/{record.name}" in nav, f"{record.name} is missing from mkdocs.yml's nav"


def test_every_guide_page_is_in_the_nav():
    nav = _nav_pages(yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)["nav"])
    for page in sorted((ROOT / "docs").rglob("*.md")):
        relative = page.relative_to(ROOT / "docs").as_posix()
        if relative.startswith(("decisions/", "bench/", "screenshots/")):
            continue
        assert relative in nav, f"docs/{relative} is not in mkdocs.yml's nav"
