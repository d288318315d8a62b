"""Staff sign-in to the console through the identity provider (the real Keycloak's login page), in
Chromium: OpenID Connect authorization code with PKCE; sign-out ending the Keycloak session too;
a forged answer refused; the console's own passwords refused while they are off (the default)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from tests.browser.conftest import PASSWORD

pytestmark = [pytest.mark.infra, pytest.mark.browser]


async def test_a_broker_signs_in_through_keycloak_and_lands_on_the_board_with_their_name_and_role(console, pages):
    page = await pages.new()
    await page.goto(f"{console}/board")
    assert "/sign-in?next=/board" in page.url
    # Local accounts are off: only the identity provider's button, no password form.
    assert await page.is_visible("#sign-in-oidc")
    assert "Sign in with" in await page.inner_text("#sign-in-oidc")
    assert await page.locator("#password").count() == 0
    await pages.check(page, "sign-in-oidc")
    await page.click("#sign-in-oidc")
    await page.wait_for_selector("#kc-login")
    assert page.url.startswith(pages.idp_issuer)  # Keycloak's own page, not the console's
    query = dict(parse_qsl(urlsplit(page.url).query))
    assert query["code_challenge_method"] == "S256" and query["code_challenge"] and query["nonce"]
    await page.fill("#username", "demo-broker")
    await page.fill("#password", pages.idp_password)
    await page.click("#kc-login")
    await page.wait_for_url(f"{console}/board")
    assert "Amy Broker (broker)" in await page.inner_text(".console-who")
    assert await page.is_visible("text=New package")  # a broker's menu
    await pages.check(page, "board-after-oidc-sign-in")
    # The realm's newer roles map to the console's: a manager has a broker's pages, as a manager.
    manager = await pages.signed_in("demo-manager")
    assert manager.url.endswith("/board")
    assert "Mo Manager (manager)" in await manager.inner_text(".console-who")
    ops = await pages.signed_in("demo-ops")
    assert ops.url.endswith("/ops") and "(ops)" in await ops.inner_text(".console-who")  # the overview


async def test_a_review_officer_lands_on_the_review_queue_and_sees_only_what_the_review_team_may(console, pages):
    """Issue 18's review team (decision 0096): demo-reviewer's home is the review queue; the menu has
    the reviews alone; the board and the new-package form are refused."""
    page = await pages.signed_in("demo-reviewer")
    assert page.url.endswith("/reviews")
    assert "(review officer)" in (await page.inner_text(".console-who")).replace("_", " ")
    menu = await page.inner_text("nav")
    assert "Reviews" in menu and "Board" not in menu and "New package" not in menu
    await pages.check(page, "reviews-as-review-officer")
    board = await page.goto(f"{console}/board")
    assert board is not None and board.status == 403
    new = await page.goto(f"{console}/packages/new")
    assert new is not None and new.status == 403


async def test_an_answer_with_another_state_is_refused_and_signs_no_one_in(console, pages):
    page = await pages.new()

    async def forge_state(route):
        # Keycloak's answer to the login form is the redirect back to the console: its state is changed.
        answer = await route.fetch(max_redirects=0)
        headers = dict(answer.headers)
        if "location" in headers:
            parts = urlsplit(headers["location"])
            query = dict(parse_qsl(parts.query)) | {"state": "not-the-state-this-browser-sent"}
            headers["location"] = urlunsplit(parts._replace(query=urlencode(query)))
        await route.fulfill(response=answer, headers=headers)

    await page.route("**/login-actions/authenticate*", forge_state)
    await page.goto(f"{console}/sign-in")
    async with page.expect_response(lambda r: "/sign-in/callback" in r.url) as answer:
        await pages.through_identity_provider(page, "demo-broker")
    response = await answer.value
    assert response.status == 400
    assert "You could not be signed in" in await page.inner_text("h1")
    assert "did not come from this browser's request" in await page.inner_text("#error-message")
    await pages.check(page, "sign-in-refused")
    assert "not-the-state" in response.url
    await page.unroute("**/login-actions/authenticate*")
    await page.goto(f"{console}/board")
    assert "/sign-in" in page.url  # no session was opened
    # An answer arriving in a browser that began no sign-in (or a second time) is refused too.
    other = await pages.new()
    replay = await other.goto(f"{console}/sign-in/callback?code=anything&state=anything")
    assert replay.status == 400 and "not started in this browser" in await other.inner_text("#error-message")
    # The identity provider's own refusal: a plain message, never its description from the URL.
    refused = await other.goto(f"{console}/sign-in/callback?error=access_denied&error_description=<b>evil</b>")
    assert refused.status == 400 and "evil" not in await other.content()


async def test_someone_without_a_console_role_is_refused_with_a_plain_message(console, pages):
    page = await pages.new()
    await page.goto(f"{console}/sign-in")
    await pages.through_identity_provider(page, "demo-provider")  # provider_staff: the portal's, not the console's
    assert "sign in to the provider portal, at /portal/sign-in" in await page.inner_text("#error-message")
    await page.goto(f"{console}/board")
    assert "/sign-in" in page.url


async def test_signing_out_ends_the_keycloak_session_too(console, pages):
    page = await pages.signed_in("demo-broker")
    # While the Keycloak session lasts, signing in again needs no password (single sign-on)...
    await page.goto(f"{console}/sign-in")
    await page.click("#sign-in-oidc")
    await page.wait_for_url(f"{console}/**")
    assert "/sign-in" not in page.url and "Amy Broker" in await page.inner_text(".console-who")
    # ...signing out of the console ends it: the next sign-in asks for the password again.
    await page.click("button:has-text('Sign out')")
    await page.wait_for_url(f"{console}/sign-in")
    await page.click("#sign-in-oidc")
    await page.wait_for_selector("#kc-login")
    assert page.url.startswith(pages.idp_issuer)


async def test_with_local_accounts_off_the_password_form_is_refused(console, local_console, pages):
    # admin1's password is right: the console with local accounts on signs them in...
    admin = await pages.signed_in_locally(local_console, "admin1")
    assert admin.url.endswith("/admin/staff")
    # ...the console with them off (the default) refuses the same post, CSRF token and all.
    page = await pages.new()
    await page.goto(f"{console}/sign-in")
    csrf = next(c["value"] for c in await page.context.cookies() if c["name"] == "console_sign_in_csrf")
    form = {"csrf_token": csrf, "username": "admin1", "password": PASSWORD}
    refused = await page.request.post(f"{console}/sign-in", form=form)
    assert refused.status == 403
    assert "no passwords of its own" in await refused.text()
    assert not [c for c in await page.context.cookies() if c["name"] == "console_session"]
