"""A provider's named staff user in the portal (decision 0126), through the real Keycloak: signs in
with their own account (their name shown), adds a colleague (every problem at once first), removes
them after a confirmation page; a council broker cannot use the portal's sign-in as a provider."""

from __future__ import annotations

import uuid

import pytest

from tests.support import USER_OF_ROLE

pytestmark = [pytest.mark.infra, pytest.mark.browser]


async def test_an_admin_user_signs_in_with_their_own_account_and_adds_and_removes_a_colleague(console, pages):
    page = await pages.new()
    await page.goto(f"{console}/portal/sign-in")
    await pages.check(page, "portal-sign-in-named")
    await pages.through_identity_provider(page, USER_OF_ROLE["provider_staff"])
    assert page.url.endswith("/portal/offers")
    assert "Pat Provider-Staff (bluebell-care)" in await page.inner_text(".console-who")

    await page.goto(f"{console}/portal/users")
    await page.fill("#username", "has space")
    await page.click("button:has-text('Add the user')")
    summary = await page.inner_text(".govuk-error-summary")
    assert "Enter their username" in summary and "Enter their name" in summary  # every problem at once
    colleague = f"sam.carer-{uuid.uuid4().hex[:6]}"
    await page.fill("#username", colleague)
    await page.fill("#name", "Sam Carer")
    await page.click("button:has-text('Add the user')")
    assert "The user was added" in await page.inner_text(".govuk-notification-banner")
    assert colleague in await page.inner_text("#users")
    await pages.check(page, "portal-users")

    await page.click("a:has-text('Remove'):has-text('Sam Carer')")
    assert "Remove Sam Carer?" in await page.inner_text("h1")
    await pages.check(page, "portal-user-remove")
    await pages.narrow(page, "portal-user-remove")
    await page.click("button:has-text('Remove Sam Carer')")
    assert "The user was removed" in await page.inner_text(".govuk-notification-banner")
    assert colleague not in await page.inner_text("#users")

    await page.goto(f"{console}/portal/history")
    assert await page.locator("#history").count() == 1
    await pages.check(page, "portal-history")


async def test_someone_without_the_provider_staff_role_is_refused_the_portal(console, pages):
    page = await pages.new()
    await page.goto(f"{console}/portal/sign-in")
    await pages.through_identity_provider(page, USER_OF_ROLE["broker"])
    assert "not a provider's staff account" in await page.inner_text("main")
    await page.goto(f"{console}/portal/offers")
    assert "/portal/sign-in" in page.url
