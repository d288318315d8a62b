"""The finance team's console home (decision records 0096, 0109) in Chromium, signed in through the real
Keycloak: demo-finance lands on /finance with only the finance menu, the week's commitment and the
import file form, accessible (axe-core); the CSV it hands on has the documented columns; a finance
user cannot open the board (no person, no package pages)."""

from __future__ import annotations

import pytest

from services.brokerage import domain

pytestmark = [pytest.mark.infra, pytest.mark.browser]


async def test_finance_signs_in_to_the_commitment_and_the_import_file(console, pages):
    page = await pages.signed_in("demo-finance")
    assert page.url.endswith("/finance"), page.url
    assert "(finance)" in await page.inner_text(".console-who")
    assert await page.is_visible("h1:has-text('Finance')")
    assert "Commitment for the week" in await page.inner_text("main")
    assert not await page.is_visible("text=New package") and not await page.is_visible("a:has-text('Board')")
    await pages.check(page, "finance-home")
    exported = await page.request.get(f"{console}/finance/export.csv")
    assert exported.status == 200 and exported.headers["content-type"].startswith("text/csv")
    assert (await exported.text()).splitlines()[0].split(",") == list(domain.EXPORT_COLUMNS)
    # A refused export is the finance page again, the problem at its field and the dates as typed
    # (found by an attack: a bare text page before).
    for query, field, typed in (
        ("recorded_from=2026-12-02&recorded_to=2026-12-01", "recorded_to", "2026-12-01"),
        ("recorded_from=2026-99-99", "recorded_from", "2026-99-99"),
    ):
        shown = await page.goto(f"{console}/finance/export.csv?{query}")
        assert shown is not None and shown.status == 422, query
        assert shown.headers["content-type"].startswith("text/html"), query
        assert await page.is_visible("text=The import file was not made"), query
        assert await page.is_visible(f"#{field}-error"), query
        assert "Input should be" not in await page.inner_text(f"#{field}-error"), query
        assert await page.input_value(f"#{field}") == typed, query
    board = await page.goto(f"{console}/board")
    assert board is not None and board.status == 403, "the board shows packages: not the finance team's"
