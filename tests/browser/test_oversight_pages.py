"""Issue 19's read-only admin pages in the browser: a broker reads a person's details, and a manager
finds that read in the disclosure log (filtered, in UK time, linked to the package); a bad filter
shows every problem at once; the rate cards and the approval limits show the signed-in role's own
limit; a broker cannot open the disclosure log."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from services.runtime import clock
from tests.browser.test_console import roomiest_zone, summary_of
from tests.support import staff

pytestmark = [pytest.mark.infra, pytest.mark.browser]


async def test_a_managers_disclosure_log_shows_who_read_which_persons_details_and_when(stack, console, pages):
    zone, district = roomiest_zone(stack)
    body = {
        "zone": zone,
        "band": "urban",
        "postcode_district": district,
        "hours_per_week": "7",
        "visits": {"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7},
        "needs": ["personal_care"],
        "urgency": "community",
        "start_date": (dt.date.today() + dt.timedelta(days=3)).isoformat(),
        "person": {"full_name": "Lo Example", "address": "9 Mill Lane", "postcode": f"{district} 2AB",
                   "nhs_number": "9998765439"},
    }  # fmt: skip
    brokerage = stack.url("brokerage")
    created = httpx.post(f"{brokerage}/packages", json=body, timeout=10, auth=staff("demo-broker"))
    assert created.status_code == 201, created.text
    package_id = created.json()["package_id"]
    # The broker opens the package page: the person's details are read, and logged under their name.
    broker = await pages.signed_in("demo-broker-2")
    await broker.goto(f"{console}/packages/{package_id}")
    assert "Lo Example" in await broker.content()
    refused = await broker.goto(f"{console}/admin/disclosures")
    assert refused is not None and refused.status == 403, "brokers read persons; who read them is for managers"

    manager = await pages.signed_in("demo-manager")
    await manager.goto(f"{console}/admin/disclosures")
    await manager.fill("#package", package_id)
    await manager.select_option("#reader", "staff")
    await manager.fill("#from", clock.uk_today().isoformat())
    await manager.click("button:has-text('Show')")
    rows = manager.locator("#disclosures tbody tr")
    assert await rows.count() == 1
    row = await rows.first.inner_text()
    assert "demo-broker-2" in row and "Full name" in row and "NHS number" in row
    assert ("GMT" in row) or ("BST" in row), "UK local time"
    assert await manager.input_value("#package") == package_id, "the filters as typed"
    await pages.check(manager, "disclosure-log-filtered")
    await pages.narrow(manager, "disclosure-log-filtered")
    await manager.click(f"#disclosures a[href='/packages/{package_id}']")
    await manager.wait_for_url(f"{console}/packages/{package_id}")

    # Every problem with the filters at once, linked to its field; nothing listed.
    await manager.goto(f"{console}/admin/disclosures?package=abc&from=2026-02-30&to=yesterday")
    assert [f for f, _ in await summary_of(manager)] == ["package", "from", "to"]
    assert await manager.locator("#disclosures").count() == 0
    await pages.check(manager, "disclosure-log-problems")

    # The rate cards and approval limits: the manager's own limit.
    await manager.goto(f"{console}/admin/approval-limits")
    assert "As manager you may approve bids up to 15% above the band rate" in await manager.inner_text("#my-limit")
    assert "Your role" in await manager.inner_text("#limits")
    await manager.goto(f"{console}/admin/rate-cards")
    cards = httpx.get(f"{brokerage}/reference/rate-cards", timeout=10, auth=staff()).json()
    assert cards["in_force"] in await manager.inner_text("#in-force")
    assert await manager.locator("#rate-cards tbody tr").count() == len(cards["rate_cards"])
