"""The console's checks of a sign-in through the identity provider, against the real Keycloak:
authorization codes obtained through Keycloak's own login form (as a browser would, with httpx),
exchanged with PKCE, and ID tokens that must be this issuer's, for the console, with this sign-in's
nonce (services/console/oidc.py). The browser tests drive the same flow through the callback page."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from services.console.domain import Role
from services.console.oidc import Authorization, OidcSignIn, SignInFailed
from services.runtime.settings import load

pytestmark = pytest.mark.infra

# A loopback redirect URI on any port is registered for the console client (RFC 8252 7.3): nothing
# listens here, the code is read from Keycloak's redirect.
REDIRECT = "http://127.0.0.1:9/sign-in/callback"


@pytest.fixture
def oidc(identity) -> OidcSignIn:
    return OidcSignIn(load("console"))


async def sign_in_at_keycloak(identity, oidc: OidcSignIn, username: str) -> tuple[str, Authorization]:
    """The authorization code Keycloak sends back after ``username`` signs in on its login form."""
    authorization = await oidc.authorization(REDIRECT)
    async with httpx.AsyncClient(timeout=30) as browser:
        login = await browser.get(authorization.url)
        form = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', login.text)
        assert form, f"no Keycloak login form: {login.status_code}"
        # Keycloak marks its cookies Secure even on http://127.0.0.1 (browsers count loopback as a secure
        # context and send them; httpx does not): sent by hand, as a browser would.
        cookies = "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar)
        answer = await browser.post(
            html.unescape(form.group(1)),
            data={"username": username, "password": identity.settings["HOMECARE_DEMO_PASSWORD"]},
            headers={"Cookie": cookies},
        )
    assert answer.status_code == 302, answer.text[:300]
    location = answer.headers["location"]
    assert location.startswith(REDIRECT)
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [authorization.state]
    return query["code"][0], authorization


async def id_token_of(identity, oidc: OidcSignIn, username: str) -> tuple[str, Authorization]:
    code, authorization = await sign_in_at_keycloak(identity, oidc, username)
    tokens = await oidc.exchange(code, code_verifier=authorization.code_verifier, redirect_uri=REDIRECT)
    return tokens["id_token"], authorization


async def test_a_real_sign_in_gives_the_staff_member_their_name_and_console_role(identity, oidc):
    id_token, authorization = await id_token_of(identity, oidc, "demo-manager")
    who = await oidc.identity(id_token, nonce=authorization.nonce)
    assert (who.username, who.display_name, who.role) == ("demo-manager", "Mo Manager", Role.manager)
    assert who.subject and who.subject != "demo-manager"  # the issuer's stable id
    id_token, authorization = await id_token_of(identity, oidc, "demo-admin")
    assert (await oidc.identity(id_token, nonce=authorization.nonce)).role == Role.admin


async def test_the_code_needs_this_sign_ins_verifier_and_is_used_once(identity, oidc):
    code, authorization = await sign_in_at_keycloak(identity, oidc, "demo-broker")
    with pytest.raises(SignInFailed) as wrong_verifier:  # PKCE: a stolen code is no use without it
        await oidc.exchange(code, code_verifier="x" * 64, redirect_uri=REDIRECT)
    assert wrong_verifier.value.reason == "code_refused"
    code, authorization = await sign_in_at_keycloak(identity, oidc, "demo-broker")
    assert await oidc.exchange(code, code_verifier=authorization.code_verifier, redirect_uri=REDIRECT)
    with pytest.raises(SignInFailed) as again:
        await oidc.exchange(code, code_verifier=authorization.code_verifier, redirect_uri=REDIRECT)
    assert again.value.reason == "code_refused"


async def test_an_id_token_with_another_nonce_audience_or_issuer_or_a_broken_signature_is_refused(identity, oidc):
    id_token, authorization = await id_token_of(identity, oidc, "demo-broker")
    assert (await oidc.identity(id_token, nonce=authorization.nonce)).role == Role.broker  # the real one passes

    with pytest.raises(SignInFailed) as replayed:  # another sign-in's nonce: a replayed token
        await oidc.identity(id_token, nonce="the-nonce-of-another-sign-in")
    assert replayed.value.reason == "nonce_mismatch"

    for_another_client = OidcSignIn(load("console", oidc_client_id="brokerage"))
    with pytest.raises(SignInFailed) as audience:
        await for_another_client.identity(id_token, nonce=authorization.nonce)
    assert audience.value.reason == "id_token_invalid:InvalidAudienceError"

    jwks = (await oidc.metadata())["jwks_uri"]
    other_issuer = OidcSignIn(load("console", oidc_issuer=identity.issuer + "-elsewhere", oidc_jwks_url=jwks))
    with pytest.raises(SignInFailed) as issuer:
        await other_issuer.identity(id_token, nonce=authorization.nonce)
    assert issuer.value.reason == "id_token_invalid:InvalidIssuerError"

    header, payload, signature = id_token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]  # the first 6 bits of the signature changed
    with pytest.raises(SignInFailed) as forged:
        await oidc.identity(f"{header}.{payload}.{flipped}", nonce=authorization.nonce)
    assert forged.value.reason.startswith("id_token_invalid")


async def test_an_id_token_issued_to_another_client_is_refused(identity, oidc):
    """The development client's ID token (the password grant, audience homecare-cli), right user and nonce-less."""
    async with httpx.AsyncClient(timeout=30) as http:
        token_endpoint = (await oidc.metadata())["token_endpoint"]
        answer = await http.post(
            token_endpoint,
            data={
                "grant_type": "password",
                "client_id": "homecare-cli",
                "username": "demo-broker",
                "password": identity.settings["HOMECARE_DEMO_PASSWORD"],
                "scope": "openid",
            },
        )
    id_token = answer.json()["id_token"]
    with pytest.raises(SignInFailed) as refused:
        await oidc.identity(id_token, nonce="")
    assert refused.value.reason.startswith("id_token_invalid")


async def test_someone_with_no_console_role_is_refused(identity, oidc):
    # A provider's staff user (no console role) is sent to the portal's sign-in (found by a new user).
    id_token, authorization = await id_token_of(identity, oidc, "demo-provider")
    with pytest.raises(SignInFailed) as refused:
        await oidc.identity(id_token, nonce=authorization.nonce)
    assert (refused.value.reason, refused.value.status) == ("provider_staff_at_console", 403)
    assert "/portal/sign-in" in refused.value.message


async def test_a_provider_users_id_token_names_their_organisation(identity, oidc):
    """Decision 0165: the realm's user-profile attribute provider_id, set by the council's
    administrators alone, reaches the ID token through the console client's mapper."""
    id_token, authorization = await id_token_of(identity, oidc, "demo-provider")
    who = await oidc.provider_staff_identity(id_token, nonce=authorization.nonce)
    assert (who.username, who.provider_staff, who.provider_id) == ("demo-provider", True, "bluebell-care")


async def test_a_provider_user_whose_account_names_no_provider_is_refused_the_portal(identity, oidc, monkeypatch):
    # The same real token read where an installation's issuer puts no such claim.
    id_token, authorization = await id_token_of(identity, oidc, "demo-provider")
    monkeypatch.setattr(oidc, "provider_claim", "no_such_claim")
    with pytest.raises(SignInFailed) as refused:
        await oidc.provider_staff_identity(id_token, nonce=authorization.nonce)
    assert (refused.value.reason, refused.value.status) == ("no_provider_claim", 403)
