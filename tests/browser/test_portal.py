"""Providers in the portal, on the providers service's provider API (each signed in with its own
credential): one accepts an offer and, once it has won, reads the person's details; another is
refused an offer that was not made to it and a person who is not its to see."""

from __future__ import annotations

import asyncio
import json
import re

import asyncpg
import httpx
import pytest

from tests.browser.test_console import fill_package
from tests.support import staff

pytestmark = [pytest.mark.infra, pytest.mark.browser]

ZONE = "castle-donington"


@pytest.fixture(scope="module")
async def portal_market(stack, database_url):
    """Every active provider of the zone answering through the portal, each with a credential;
    one provider from elsewhere with a credential too. Put back on their own adapters afterwards."""
    providers = httpx.get(f"{stack.url('providers')}/providers", timeout=10, auth=staff()).json()
    in_zone = [p["provider_id"] for p in providers if ZONE in p["zones"] and p["status"] == "active"]
    outsider = next(p["provider_id"] for p in providers if ZONE not in p["zones"] and p["status"] == "active")
    conn = await asyncpg.connect(database_url)
    try:
        original = {
            r["provider_id"]: json.loads(r["adapter"])
            for r in await conn.fetch(
                "SELECT provider_id, adapter FROM providers.providers WHERE provider_id = ANY($1)", in_zone
            )
        }
    finally:
        await conn.close()
    tokens = {}
    async with httpx.AsyncClient(base_url=stack.url("providers"), timeout=10) as client:
        for provider_id in [*in_zone, outsider]:
            r = await client.post(
                f"/providers/{provider_id}/credentials", auth=staff("demo-admin"), json={"label": "browser test"}
            )
            assert r.status_code in (200, 201), r.text
            tokens[provider_id] = r.json()["token"]
        for provider_id in in_zone:
            r = await client.put(f"/providers/{provider_id}/adapter", auth=staff("demo-admin"), json={"kind": "portal"})
            assert r.status_code == 200, r.text
    yield {"in_zone": in_zone, "outsider": outsider, "tokens": tokens}
    async with httpx.AsyncClient(base_url=stack.url("providers"), timeout=10) as client:
        for provider_id, adapter in original.items():
            r = await client.put(f"/providers/{provider_id}/adapter", auth=staff("demo-admin"), json=adapter)
            assert r.status_code == 200, r.text


async def portal_page(pages, console: str, provider_id: str, token: str):
    page = await pages.new()
    await page.goto(f"{console}/portal/sign-in")
    await page.fill("#provider_id", provider_id)
    await page.fill("#credential", token)
    await page.click("button:has-text('Sign in')")
    assert page.url.endswith("/portal/offers"), await page.content()
    return page


async def test_a_provider_accepts_an_offer_in_the_portal_and_the_broker_sees_it_placed_with_the_explanation(
    stack, console, pages, portal_market
):
    tokens = portal_market["tokens"]
    zone = httpx.get(f"{stack.url('brokerage')}/reference/zones", timeout=10, auth=staff()).json()
    district = next(z for z in zone if z["id"] == ZONE)["postcode_districts"][0]

    # A wrong credential is refused.
    page = await pages.new()
    await page.goto(f"{console}/portal/sign-in")
    await pages.check(page, "portal-sign-in")
    await page.fill("#provider_id", portal_market["in_zone"][0])
    await page.fill("#credential", "hcp_not-a-credential")
    await page.click("button:has-text('Sign in')")
    assert "is not right" in await page.inner_text(".govuk-error-summary")

    # Room for the package: each provider of the zone raises its capacity in the portal.
    for provider_id in portal_market["in_zone"]:
        provider_page = await portal_page(pages, console, provider_id, tokens[provider_id])
        await provider_page.goto(f"{console}/portal/profile")
        me = httpx.get(
            f"{stack.url('providers')}/me", headers={"Authorization": f"Bearer {tokens[provider_id]}"}, timeout=10
        ).json()
        room = float(me["committed_hours"]) + float(me["held_hours"]) + 40
        if provider_id == portal_market["in_zone"][0]:
            # A count out of range is said in the form's words at its field, and nothing changes.
            calls = await provider_page.input_value("#max_calls_per_day")
            await provider_page.fill("#max_calls_per_day", "-1")
            await provider_page.fill("#weekly_capacity_hours", "12345")
            await provider_page.click("button:has-text('Save')")
            assert "from 1 to 6" in await provider_page.inner_text(".govuk-error-summary")
            assert "Input should" not in await provider_page.content()
            # What was typed is kept (found by a new user: the saved values came back instead).
            assert await provider_page.input_value("#weekly_capacity_hours") == "12345"
            assert await provider_page.input_value("#max_calls_per_day") == "-1"
            await provider_page.fill("#max_calls_per_day", calls)
        await provider_page.fill("#weekly_capacity_hours", f"{room:.2f}")
        await provider_page.click("button:has-text('Save')")
        assert "Your details were updated" in await provider_page.inner_text(".govuk-notification-banner")
    await pages.check(provider_page, "portal-profile")

    broker = await pages.signed_in("demo-broker")
    await broker.goto(f"{console}/packages/new")
    await fill_package(broker, zone=ZONE, district=district)
    await broker.click("button:has-text('Continue')")
    await broker.click("#send-request")  # check your answers (decision record 0132)
    await broker.wait_for_url(re.compile(r"/packages/[0-9a-f-]{36}\?created=1"))
    created = re.search(r"/packages/([0-9a-f-]{36})", broker.url)
    assert created is not None
    package_id = created.group(1)

    async def first_round() -> list[str]:
        for _ in range(60):
            rounds = httpx.get(f"{stack.url('brokerage')}/packages/{package_id}", timeout=10, auth=staff()).json()[
                "offer_rounds"
            ]
            if rounds:
                return rounds[0]["provider_ids"]
            await asyncio.sleep(0.5)
        raise AssertionError("the package was never offered")

    offered = await first_round()
    winner, others = offered[0], offered[1:]
    outsider = portal_market["outsider"]

    # The winner sees the offer with its deadline and bids.
    provider = await portal_page(pages, console, winner, tokens[winner])
    for _ in range(60):  # the providers service records the offer when it reads the event
        if await provider.locator(f"#offer-{package_id}").count():
            break
        await asyncio.sleep(0.5)
        await provider.reload()
    offer = provider.locator(f"#offer-{package_id}")
    assert "Answer by" in await offer.inner_text()
    assert (await offer.locator(".console-time-left").inner_text()).endswith("left")  # time left, not a UTC time
    await pages.check(provider, "portal-offers")
    # A slip is safe: no default reason declines, and a mistyped rate is shown again to be put right.
    await offer.locator("button:has-text('Decline')").click()
    assert "Select why you are declining this offer" in await provider.inner_text("#answer-problems")
    offer = provider.locator(f"#offer-{package_id}")
    await offer.locator("input[name=rate]").fill("19,95")
    await offer.locator("button:has-text('Accept and bid')").click()
    assert "Enter the hourly rate in pounds and pence" in await provider.inner_text("#answer-problems")
    offer = provider.locator(f"#offer-{package_id}")
    assert await offer.locator("input[name=rate]").input_value() == "19,95"
    await pages.check(provider, "portal-answer-problems")
    band_rate = httpx.get(f"{stack.url('brokerage')}/packages/{package_id}", timeout=10, auth=staff()).json()
    await offer.locator("input[name=rate]").fill(band_rate["band_rate"])  # put right: the band rate
    # The others offered decline in the portal (first: a better-rated bid would close the round early).
    for provider_id in others:
        other = await portal_page(pages, console, provider_id, tokens[provider_id])
        for _ in range(60):
            if await other.locator(f"#offer-{package_id}").count():
                break
            await asyncio.sleep(0.5)
            await other.reload()
        await other.locator(f"#offer-{package_id}").locator("select[name=reason]").select_option("capacity")
        await other.locator(f"#offer-{package_id}").locator("button:has-text('Decline')").click()
        assert "Your decline was sent" in await other.inner_text(".govuk-notification-banner")

    await provider.bring_to_front()
    await offer.locator("button:has-text('Accept and bid')").click()
    assert "Your bid was sent" in await provider.inner_text(".govuk-notification-banner")

    # A provider the package was not offered to is refused it, even posting the form by hand.
    stranger = await portal_page(pages, console, outsider, tokens[outsider])
    assert await stranger.locator(f"#offer-{package_id}").count() == 0
    csrf = await stranger.get_attribute("form[action='/sign-out'] input[name=csrf_token]", "value")
    response = await stranger.request.post(
        f"{console}/portal/offers/{package_id}/bid",
        max_redirects=0,
        form={
            "csrf_token": csrf,
            "rate": "18.75",
            "earliest_start-day": "1",
            "earliest_start-month": "1",
            "earliest_start-year": "2030",
        },
    )
    # The refusal is the page again, in the portal's words (from the problem's status and code).
    assert response.status == 404
    assert "This package was not offered to you" in await response.text()
    await stranger.goto(f"{console}/portal/offers")
    await pages.check(stranger, "portal-refused")

    # The broker sees it placed with the winner, and why.
    for _ in range(60):
        await broker.reload()
        if (await broker.inner_text("#package-status")).strip() == "placed":
            break
        await asyncio.sleep(1)
    assert (await broker.inner_text("#package-status")).strip() == "placed"
    package = httpx.get(f"{stack.url('brokerage')}/packages/{package_id}", timeout=10, auth=staff()).json()
    assert package["provider_id"] == winner
    assert "Placed with" in await broker.inner_text("#explanation")
    answers = {a["provider_id"]: a for r in package["offer_rounds"] for a in r["answers"]}
    assert answers[winner]["adapter"] == "portal" and answers[winner]["kind"] == "bid"
    assert outsider not in answers

    # The winner finds it under its packages and reads the person's details (an audited disclosure)...
    await provider.goto(f"{console}/portal/packages")
    await pages.check(provider, "portal-packages")
    await provider.click(f"a[href='/portal/packages/{package_id}/person']")
    assert "Ada Example" in await provider.inner_text("#person")
    await pages.check(provider, "portal-person")
    # ...which no other provider can.
    response = await stranger.goto(f"{console}/portal/packages/{package_id}/person")
    assert response.status == 404 and "Ada Example" not in await stranger.content()
    if others:
        loser = await portal_page(pages, console, others[0], tokens[others[0]])
        response = await loser.goto(f"{console}/portal/packages/{package_id}/person")
        assert response.status == 403 and "Ada Example" not in await loser.content()


async def test_staff_sessions_do_not_open_the_portal_and_provider_sessions_do_not_open_staff_pages(
    console, pages, portal_market
):
    broker = await pages.signed_in("demo-broker")
    await broker.goto(f"{console}/portal/offers")
    assert "/portal/sign-in" in broker.url
    provider_id = portal_market["outsider"]
    provider = await portal_page(pages, console, provider_id, portal_market["tokens"][provider_id])
    await provider.goto(f"{console}/board")
    assert "/sign-in" in provider.url and "/portal" not in provider.url
