"""The contracts and quality team's console pages in a real browser (decision 0103): the role signs
in through Keycloak to the register, reviews a provider's local risk, uploads a malformed CQC file
and is shown the refused rows with nothing changed, and reads the market reports; every page
axe-core clean, also at 390 px. A broker cannot open them."""

from __future__ import annotations

import httpx

from tests.support import staff


async def test_the_quality_team_keeps_the_register_and_a_malformed_cqc_file_changes_nothing(
    stack, console, pages, tmp_path
):
    quality = await pages.signed_in("demo-quality")
    await quality.click("#navigation >> text=Quality register")  # in the role's menu (its home: applications)
    await quality.wait_for_load_state()
    assert "Provider quality and risk register" in await quality.inner_text("h1")
    menu = await quality.inner_text("#navigation")
    assert "Quality register" in menu and "Board" not in menu
    await pages.check(quality, "quality-register")
    await pages.narrow(quality, "quality-register")

    # A provider's entry: the score explained; a risk review recorded under the signed-in user.
    first = quality.locator("#quality-register tbody a").first
    name = await first.inner_text()
    await first.click()
    await quality.wait_for_load_state()
    assert name in await quality.inner_text("h1")
    assert "points x 0.6" in await quality.inner_text("#quality-summary")
    await pages.check(quality, "quality-provider")
    await quality.check("#risk-medium")
    await quality.select_option("#reason", "staffing")
    await quality.fill("#note", "two coordinators left in October")
    await quality.click("button:has-text('Record the review')")
    await quality.wait_for_load_state()
    assert "The review is recorded" in await quality.inner_text("main")
    assert "reviewed by demo-quality" in await quality.inner_text("#quality-summary")
    assert "two coordinators left in October" in await quality.inner_text("#quality-history")
    provider_id = quality.url.split("/quality/providers/")[1].split("?")[0]

    # A malformed CQC file: the refused rows listed, nothing changed.
    async with httpx.AsyncClient(base_url=stack.url("providers"), auth=staff("demo-quality"), timeout=10) as api:
        before = (await api.get(f"/providers/{provider_id}/quality")).json()
    bad = tmp_path / "cqc.csv"
    bad.write_text(
        "Location ID,Location Name,Location Latest Overall Rating,Publication Date\n"
        f"{before['cqc_location_id'] or '1-1'},X,Inadequate,01/02/2026\n"
        "not-an-id,Y,Good,01/02/2026\n"  # a malformed location id: the file is broken
    )
    await quality.goto(f"{console}/quality/import")
    await pages.check(quality, "quality-import")
    await quality.set_input_files("#file", str(bad))
    await quality.click("button:has-text('Import')")
    await quality.wait_for_load_state()
    assert "Nothing was changed" in await quality.inner_text("#import-report")
    refused = await quality.inner_text("#import-refused")
    assert "Location ID" in refused and "not-an-id" in refused
    await pages.check(quality, "quality-import-refused")
    async with httpx.AsyncClient(base_url=stack.url("providers"), auth=staff("demo-quality"), timeout=10) as api:
        after = (await api.get(f"/providers/{provider_id}/quality")).json()
    assert (after["cqc_rating"], after["cqc_inspected_on"]) == (before["cqc_rating"], before["cqc_inspected_on"])

    await quality.goto(f"{console}/quality/reports")
    assert "Coverage gaps" in await quality.inner_text("main")
    await pages.check(quality, "quality-reports")
    await pages.narrow(quality, "quality-reports")

    broker = await pages.signed_in("demo-broker")
    for path in ("/quality", "/quality/import", "/quality/reports", f"/quality/providers/{provider_id}"):
        response = await broker.goto(f"{console}{path}")
        assert response.status == 403, path
