"""Every page of every staff role's menu, in the browser: each staff role of the permission table
(the provider's staff use the portal) signs in through the identity provider and lands on its
home; every page its menu offers answers 200 and is axe-core clean at 1280 and 390 px, with no
sideways scroll of the page at 390 px (issue 19's proof). New pages are covered by being in a menu."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.runtime import permissions
from tests.browser import screenshots
from tests.browser.test_console import fill_package, roomiest_zone
from tests.support import USER_OF_ROLE

pytestmark = [pytest.mark.infra, pytest.mark.browser]

STAFF = [role for role in permissions.STAFF_ROLES if role != permissions.PROVIDER_STAFF]
# Set by ``python -m tests.browser.screenshots``: a folder to save each menu page into for the docs.
DOCS_SCREENSHOTS = os.environ.get("HOMECARE_DOCS_SCREENSHOTS")
MANIFEST: dict = {}

# The read-only admin pages of issue 19 are in these roles' menus (and so opened and checked below).
OVERSIGHT = {
    "/admin/disclosures": {permissions.MANAGER, permissions.HEAD_OF_SERVICE, permissions.COUNCIL_ADMIN},
    "/admin/rate-cards": permissions.BROKERAGE_TEAM | {permissions.COUNCIL_ADMIN},
    "/admin/approval-limits": permissions.BROKERAGE_TEAM | {permissions.COUNCIL_ADMIN},
}


@pytest.mark.parametrize("role", STAFF)
async def test_every_page_of_each_roles_menu_opens_and_is_accessible_at_both_widths(console, pages, role):
    page = await pages.signed_in(USER_OF_ROLE[role])
    assert "/sign-in" not in page.url, f"{role} has no console home"
    menu = await page.eval_on_selector_all("#navigation a", "links => links.map(a => a.getAttribute('href'))")
    assert menu, f"{role}'s menu is empty"
    for href, roles in OVERSIGHT.items():
        assert (href in menu) == (role in roles), (role, href)
    for href in dict.fromkeys(menu):
        response = await page.goto(f"{console}{href}")
        assert response is not None and response.status == 200, (role, href, response and response.status)
        name = f"menu-{role}-{href.strip('/').replace('/', '-') or 'home'}"
        await pages.check(page, name)
        if DOCS_SCREENSHOTS:
            await screenshots.save(page, Path(DOCS_SCREENSHOTS), href, role, MANIFEST)
            screenshots.write_manifest(MANIFEST, Path(DOCS_SCREENSHOTS))
        await pages.narrow(page, name)


async def test_every_page_of_a_provider_admin_users_portal_menu_opens_and_is_accessible_at_both_widths(console, pages):
    """The provider's staff: a named user (the demo realm's demo-provider, an admin user of
    bluebell-care by deploy/reference/provider-staff.yaml) signs in to the portal through the
    identity provider; every page of the portal's menu, the users page included (decision 0126)."""
    page = await pages.new()
    await page.goto(f"{console}/portal/sign-in")
    await pages.through_identity_provider(page, USER_OF_ROLE[permissions.PROVIDER_STAFF])
    assert page.url.endswith("/portal/offers"), page.url
    menu = await page.eval_on_selector_all("#navigation a", "links => links.map(a => a.getAttribute('href'))")
    assert {"/portal/offers", "/portal/history", "/portal/users"} <= set(menu)
    for href in dict.fromkeys(menu):
        response = await page.goto(f"{console}{href}")
        assert response is not None and response.status == 200, (href, response and response.status)
        name = f"menu-provider_staff-{href.strip('/').replace('/', '-')}"
        await pages.check(page, name)
        await pages.narrow(page, name)


async def test_the_check_answers_page_of_a_package_request_is_accessible_at_both_widths(stack, console, pages):
    """The page between the request form and the brokerage (decision record 0132), reached by the
    form, not a menu: axe-clean at 1280 and 390 px with no sideways scroll; in the docs' screenshots."""
    page = await pages.signed_in(USER_OF_ROLE[permissions.BROKER])
    await page.goto(f"{console}/packages/new")
    zone, district = roomiest_zone(stack)
    await fill_package(page, zone=zone, district=district)
    await page.click("button:has-text('Continue')")
    assert await page.inner_text("h1") == "Check your answers before sending the request"
    await pages.check(page, "package-check-answers-page")
    if DOCS_SCREENSHOTS:
        await screenshots.save(
            page,
            Path(DOCS_SCREENSHOTS),
            "/packages/new/check",
            permissions.BROKER,
            MANIFEST,
            title="Check your answers (a package request)",
            via="`/packages/new`, the form's Continue",
        )
        screenshots.write_manifest(MANIFEST, Path(DOCS_SCREENSHOTS))
    await pages.narrow(page, "package-check-answers-page")
