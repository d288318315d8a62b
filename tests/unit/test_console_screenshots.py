"""The docs' console screenshots (decision record 0125): the page shows exactly the pictures the
manifest lists, every one is in the folder, and the folder stays small."""

from __future__ import annotations

import json
import re

from tests.browser import screenshots


def test_the_screenshots_page_the_manifest_and_the_pictures_agree():
    manifest = json.loads(screenshots.MANIFEST.read_text())
    assert screenshots.PAGE.read_text() == screenshots.render_page(manifest), (
        "run: uv run python -m tests.browser.screenshots"
    )
    shown = set(re.findall(r"\.\./screenshots/console/([a-z0-9-]+\.png)", screenshots.PAGE.read_text()))
    listed = {name for entry in manifest.values() for name in entry["files"].values()}
    on_disk = {p.name for p in screenshots.FOLDER.glob("*.png")}
    assert shown == listed == on_disk
    assert all(set(entry["files"]) == {"1280", "390"} for entry in manifest.values()), "both widths"
    assert {"/admin/disclosures", "/admin/rate-cards", "/admin/approval-limits", "/board"} <= set(manifest)
    assert sum(p.stat().st_size for p in screenshots.FOLDER.glob("*.png")) < 5_000_000


def test_a_screenshot_is_cut_scaled_and_reduced_to_a_palette():
    import io

    from PIL import Image

    tall = Image.new("RGB", (1280, 3000), (255, 255, 255))
    for y in range(0, 3000, 10):
        tall.paste((11, 12, y % 255), (0, y, 1280, y + 5))
    raw = io.BytesIO()
    tall.save(raw, format="PNG")
    small = Image.open(io.BytesIO(screenshots.small_png(raw.getvalue(), 1280)))
    assert small.size == (960, round(1400 * 960 / 1280)) and small.mode == "P"
    narrow = Image.new("RGB", (390, 1000), (255, 255, 255))
    raw = io.BytesIO()
    narrow.save(raw, format="PNG")
    assert Image.open(io.BytesIO(screenshots.small_png(raw.getvalue(), 390))).size == (390, 1000)
