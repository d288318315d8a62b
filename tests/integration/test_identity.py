"""Access tokens from the real identity provider (the local Keycloak, or OIDC_ISSUER), checked by the
services' verifier (services/runtime/auth.py): what it accepts and everything it must refuse."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.runtime.auth import TokenVerifier, Unauthenticated
from services.runtime.oidc_client import OidcAuth, TokenError
from services.runtime.settings import load


def verifier(service: str = "brokerage", **overrides) -> TokenVerifier:
    return TokenVerifier(load(service, **overrides))  # type: ignore[arg-type]


async def test_a_brokers_token_names_the_broker_and_their_role(identity):
    principal = await verifier().principal(identity.token("demo-broker"))
    assert principal.actor == "demo-broker"
    assert principal.roles == {"broker"}


async def test_a_services_client_credentials_token_is_that_service(identity):
    principal = await verifier().principal(identity.client("providers").token())
    assert principal.actor == "service:providers"
    assert "service:providers" in principal.roles
    assert principal.client_id == "providers"


async def test_a_token_for_another_audience_is_refused(identity):
    # The providers service's token is for the brokerage's API only.
    token = identity.client("providers").token()
    with pytest.raises(Unauthenticated, match="not for this service"):
        await verifier("providers").principal(token)
    # A client whose tokens name no API at all (test-only client in the realm).
    with pytest.raises(Unauthenticated, match="not for this service"):
        await verifier().principal(identity.token("demo-broker", client_id="audience-probe"))


async def test_a_token_from_another_issuer_is_refused(identity):
    # Same keys, same realm, but asked for under another host name: its iss differs.
    other = identity.issuer.replace("127.0.0.1", "localhost")
    assert other != identity.issuer
    token = OidcAuth(
        other, "homecare-cli", username="demo-broker", password=identity.settings["HOMECARE_DEMO_PASSWORD"]
    ).token()
    assert jwt.decode(token, options={"verify_signature": False})["iss"] == other
    with pytest.raises(Unauthenticated, match="another issuer"):
        await verifier().principal(token)


async def test_a_forged_signature_is_refused(identity):
    good = identity.token("demo-manager")
    header, _payload, signature = good.split(".")
    # The same claims, signed by a key of our own under the issuer's key id.
    own = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode(claims, own, algorithm="RS256", headers={"kid": jwt.get_unverified_header(good)["kid"]})
    with pytest.raises(Unauthenticated, match="not valid"):
        await verifier().principal(forged)
    # The claims changed (a broker made head of service) under the issuer's own signature.
    claims["realm_access"] = {"roles": ["head_of_service"]}
    tampered = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated, match="not valid"):
        await verifier().principal(f"{header}.{tampered}.{signature}")
    # No signature at all, and a key id the issuer never had.
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(Unauthenticated, match="not accepted"):
        await verifier().principal(unsigned)
    unknown = jwt.encode(claims, own, algorithm="RS256", headers={"kid": "not-a-key-of-the-issuer"})
    with pytest.raises(Unauthenticated, match="not signed by a key of the issuer"):
        await verifier().principal(unknown)


async def test_an_expired_token_is_refused(identity):
    # The test-only client "short-lived" issues tokens that live 8 seconds.
    token = identity.token("demo-broker", client_id="short-lived")
    check = verifier(oidc_leeway_seconds=0)
    assert (await check.principal(token)).actor == "demo-broker"
    time.sleep(max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"] - time.time() + 1.1))
    with pytest.raises(Unauthenticated, match="expired"):
        await check.principal(token)


async def test_no_issuer_configured_refuses_every_token(identity):
    with pytest.raises(Unauthenticated, match="no identity provider"):
        await verifier(oidc_issuer=None).principal(identity.token("demo-broker"))


def test_a_wrong_password_or_secret_gets_no_token(identity):
    with pytest.raises(TokenError):
        OidcAuth(identity.issuer, "homecare-cli", username="no-such-user", password="not-the-password").token()
    with pytest.raises(TokenError):
        OidcAuth(identity.issuer, "providers", client_secret="not-the-secret").token()
