"""Every page of every staff role's menu, in the browser: each staff role of the permission table
(the provider's staff use the portal) signs in through the identity provider and lands on its
home; every page its menu offers answers 200 and is axe-core clean at 1280 and 390 px, with no
sideways scroll of the page at 390 px (issue 19's proof). New pages are covered by being in a menu."""

from __future__ import annotations

import pytest

from services.runtime import permissions
from tests.support import USER_OF_ROLE

pytestmark = [pytest.mark.infra, pytest.mark.browser]

STAFF = [role for role in permissions.STAFF_ROLES if role != permissions.PROVIDER_STAFF]


@pytest.mark.parametrize("role", STAFF)
async def test_every_page_of_each_roles_menu_opens_and_is_accessible_at_both_widths(console, pages, role):
    page = await pages.signed_in(USER_OF_ROLE[role])
    assert "/sign-in" not in page.url, f"{role} has no console home"
    menu = await page.eval_on_selector_all("#navigation a", "links => links.map(a => a.getAttribute('href'))")
    assert menu, f"{role}'s menu is empty"
    for href in dict.fromkeys(menu):
        response = await page.goto(f"{console}{href}")
        assert response is not None and response.status == 200, (role, href, response and response.status)
        name = f"menu-{role}-{href.strip('/').replace('/', '-') or 'home'}"
        await pages.check(page, name)
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
