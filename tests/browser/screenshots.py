"""Screenshots of every console menu page for the docs (issue 19's proof): ``python -m
tests.browser.screenshots`` runs tests/browser/test_every_page.py with HOMECARE_DOCS_SCREENSHOTS set,
so that, signed in as each staff role through the identity provider, it saves each menu page at 1280
and 390 px wide into docs/screenshots/console/ (the first role whose menu has a page takes it), then
writes docs/guide/console-screenshots.md showing them. Needs what the browser tests need (the local
Keycloak, Kafka and PostgreSQL: HOMECARE_RUN_DIR, HOMECARE_CACHE_DIR; Chromium; node_modules).

The PNGs are kept small: cut to the top of the page, the wide ones scaled down, and reduced to a
palette of 128 colours (GOV.UK pages are flat colours), so the folder stays well under 5 MB."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "docs" / "screenshots" / "console"
MANIFEST = FOLDER / "pages.json"
PAGE = REPO / "docs" / "guide" / "console-screenshots.md"
WIDTHS = (1280, 390)
MAX_HEIGHT = {1280: 1400, 390: 1700}  # pixels of the page kept, from the top
SAVED_WIDTH = {1280: 960, 390: 390}  # the wide shots scaled down to this many pixels


def slug(href: str) -> str:
    return href.strip("/").replace("/", "-") or "home"


def file_name(href: str, width: int) -> str:
    return f"{slug(href)}-{width}.png"


def small_png(raw: bytes, width: int) -> bytes:
    """The screenshot cut to MAX_HEIGHT, scaled to SAVED_WIDTH and reduced to 128 colours."""
    from PIL import Image

    image = Image.open(io.BytesIO(raw)).convert("RGB")
    image = image.crop((0, 0, image.width, min(image.height, MAX_HEIGHT[width])))
    if image.width > SAVED_WIDTH[width]:
        height = round(image.height * SAVED_WIDTH[width] / image.width)
        image = image.resize((SAVED_WIDTH[width], height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return out.getvalue()


async def save(
    page: Any, folder: Path, href: str, role: str, manifest: dict[str, Any], *, title: str = "", via: str = ""
) -> None:
    """Save ``page`` (already open at ``href``, 1280 px wide) at both widths, once per page: the
    first role to reach it takes it; later roles are added to the manifest as seeing it too. A page
    reached by a form rather than a menu (``href`` a name of its own, like ``/packages/new/check``)
    has its ``title`` and ``via``, how it is reached."""
    entry = manifest.setdefault(href, {"roles": [], "files": {}})
    if via:
        entry |= {"title": title, "via": via}
    entry["roles"].append(role)
    if entry["files"]:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        if width != 1280:
            await page.set_viewport_size({"width": width, "height": 844})
        raw = await page.screenshot(full_page=True, animations="disabled", caret="hide")
        (folder / file_name(href, width)).write_bytes(small_png(raw, width))
        entry["files"][str(width)] = file_name(href, width)
    await page.set_viewport_size({"width": 1280, "height": 900})


def write_manifest(manifest: dict[str, Any], folder: Path) -> None:
    (folder / "pages.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def role_words(role: str) -> str:
    return role.replace("_", " ")


def render_page(manifest: dict[str, Any]) -> str:
    """docs/guide/console-screenshots.md from the manifest: each menu page, who sees it, both widths."""
    from services.console.api.pages import MENU

    labels = {href: label for _, href, label in MENU}
    order = {href: i for i, (_, href, _) in enumerate(MENU)}
    lines = [
        "# The console, page by page",
        "",
        "Every page of each staff role's menu, as the browser test `tests/browser/test_every_page.py` sees it:",
        "signed in through the identity provider as each role's demo user, at 1280 and 390 pixels wide (each",
        "page is also checked with axe-core there, and for sideways scroll at 390). The data is whatever the",
        "browser tests had made by then. Regenerate with `uv run python -m tests.browser.screenshots` (see",
        "[testing](../testing.md)); the pictures are cut to the top of each page and reduced in colour.",
        "",
    ]
    for href in sorted(manifest, key=lambda h: (order.get(h, 99), h)):
        entry = manifest[href]
        roles = ", ".join(role_words(r) for r in entry["roles"])
        title = entry.get("title") or labels.get(href, href)
        where = f"{entry['via']}, by: {roles}." if entry.get("via") else f"`{href}`, in the menu of: {roles}."
        lines += [f"## {title}", "", where, ""]
        for width in WIDTHS:
            name = entry["files"].get(str(width))
            if name:
                lines.append(f"![{title} at {width} px](../screenshots/console/{name})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    """Run the every-page browser test with screenshots on, then write the docs page."""
    for old in FOLDER.glob("*.png"):
        old.unlink()
    env = os.environ | {"HOMECARE_DOCS_SCREENSHOTS": str(FOLDER)}
    test = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/browser/test_every_page.py"]
    code = subprocess.run(test, cwd=REPO, env=env, check=False).returncode
    if code != 0 or not MANIFEST.exists():
        print("the every-page test failed: no screenshots written", file=sys.stderr)
        return code or 1
    PAGE.write_text(render_page(json.loads(MANIFEST.read_text())))
    total = sum(p.stat().st_size for p in FOLDER.glob("*.png"))
    print(f"{len(list(FOLDER.glob('*.png')))} screenshots, {total / 1e6:.2f} MB, in {FOLDER.relative_to(REPO)}")
    print(f"wrote {PAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
