"""MkDocs hooks for the documentation site (``hooks:`` in mkdocs.yml).

Material draws Mermaid diagrams with mermaid.js, which it fetches from a CDN unless the page
already has it. The site serves its own copy instead - npm's ``mermaid`` package, pinned in
package-lock.json and installed by ``npm ci`` (deploy/setup.sh) - so the site reads offline.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
MERMAID = ROOT / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
MERMAID_URL = "assets/javascripts/mermaid.min.js"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Load the site's own mermaid.js on every page (Material uses it when it is there)."""
    config.extra_javascript.append(MERMAID_URL)
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add node_modules' mermaid.min.js to the site; missing, the build stops and says why."""
    if not MERMAID.exists():
        raise PluginError(f"{MERMAID} is missing: run `npm ci` (deploy/setup.sh does) before building the docs")
    files.append(File.generated(config, MERMAID_URL, abs_src_path=str(MERMAID)))
    return files
