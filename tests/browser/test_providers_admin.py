"""A council administrator runs the framework's providers from the console (issue 19): a status
change checked on its own page first, every problem at once; a credential issued (shown once, and
it works) and revoked (and it no longer does)."""

from __future__ import annotations

import httpx
import pytest

from tests.support import staff

pytestmark = [pytest.mark.infra, pytest.mark.browser]


async def test_an_admin_suspends_and_reinstates_a_provider_and_issues_and_revokes_a_credential(stack, console, pages):
    providers_api = stack.url("providers")
    admin = await pages.signed_in("demo-admin")
    await admin.goto(f"{console}/admin/providers")
    await pages.check(admin, "admin-providers")
    provider = httpx.get(f"{providers_api}/providers", timeout=10, auth=staff("demo-admin")).json()[-1]
    provider_id = provider["provider_id"]
    assert provider["status"] == "active"
    await admin.click(f"a[href='/admin/providers/{provider_id}']")
    await pages.check(admin, "admin-provider")
    await pages.narrow(admin, "admin-provider")

    # Every problem at once, nothing sent.
    await admin.click("button:has-text('Continue')")
    summary = await admin.inner_text(".govuk-error-summary")
    assert "Select the provider's new status" in summary and "Say why" in summary

    async def change(status: str, reason: str) -> None:
        await admin.check(f"input[name=status][value={status}]")
        await admin.fill("#reason", reason)
        await admin.click("button:has-text('Continue')")
        assert "Check the change before it is made" in await admin.inner_text("h1")
        # Not made before it is confirmed.
        assert (
            httpx.get(f"{providers_api}/providers/{provider_id}", timeout=10, auth=staff()).json()["status"] != status
        )
        await admin.click("button:has-text('Confirm the change')")
        assert "The provider's status was changed." in await admin.inner_text("#done")
        assert (await admin.inner_text("#provider-status")).strip() == status

    await change("suspended", "CQC inspection found concerns")
    await pages.check(admin, "admin-provider-suspended")
    await change("active", "CQC re-inspection rated it Good")
    history = httpx.get(f"{providers_api}/providers/{provider_id}/status-history", timeout=10, auth=staff()).json()
    assert [h["status"] for h in history][-2:] == ["suspended", "active"]
    assert history[-1]["decided_by"] == "demo-admin"  # the signed-in administrator, from the identity provider

    # A credential: shown once, works; revoked, refused.
    await admin.fill("#label", "rostering system")
    await admin.click("button:has-text('Issue a credential')")
    token = (await admin.inner_text("#token")).strip()
    me = httpx.get(f"{providers_api}/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert me.status_code == 200 and me.json()["provider_id"] == provider_id
    await admin.goto(f"{console}/admin/providers/{provider_id}")
    assert token not in await admin.content()  # never shown again
    row = admin.locator("#credentials tr", has_text="rostering system")
    await row.locator("button:has-text('Revoke')").click()
    assert "The credential was revoked." in await admin.inner_text("#done")
    me = httpx.get(f"{providers_api}/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert me.status_code == 401

    await admin.goto(f"{console}/admin/change-requests")
    await pages.check(admin, "admin-change-requests")
    # Brokers have none of it.
    broker = await pages.signed_in("demo-broker")
    response = await broker.goto(f"{console}/admin/providers/{provider_id}")
    assert response is not None and response.status == 403
