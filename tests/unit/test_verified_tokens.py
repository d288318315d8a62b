"""The verifier keeps the caller of a token it has checked until the token expires (decision 0092):
a token is checked once, not on every request, and the cache never lets through what a fresh
check would refuse - an expired token, a token whose signing key the issuer has dropped."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.runtime import auth
from services.runtime.auth import TokenVerifier, Unauthenticated
from services.runtime.settings import load
from tests import local_issuer


@pytest.fixture
def verifier(monkeypatch) -> TokenVerifier:
    local_issuer.serve_keys(monkeypatch)
    return TokenVerifier(load("brokerage", **local_issuer.settings(), oidc_leeway_seconds=0))


@pytest.fixture
def checks(monkeypatch) -> list[str]:
    """Every full check of a token's signature and claims, counted."""
    seen: list[str] = []
    real = auth.verified_claims

    async def counting(keys, token, **kwargs):
        seen.append(token)
        return await real(keys, token, **kwargs)

    monkeypatch.setattr(auth, "verified_claims", counting)
    return seen


def token_expiring_in(seconds: int, *, key=None, kid: str = local_issuer.KEY_ID) -> str:
    now = int(time.time())
    claims = {
        "iss": local_issuer.ISSUER,
        "aud": "brokerage",
        "sub": str(uuid.uuid4()),
        "preferred_username": "demo-broker",
        "realm_access": {"roles": ["broker"]},
        "iat": now,
        "exp": now + seconds,
    }
    return jwt.encode(claims, key or local_issuer._KEY, algorithm="RS256", headers={"kid": kid})


async def test_a_token_is_checked_once_and_its_caller_reused(verifier, checks):
    token = local_issuer.token("brokerage")
    first = await verifier.principal(token)
    again = await verifier.principal(token)
    assert again == first and first.actor == "demo-broker"
    assert checks == [token]
    other = local_issuer.token("brokerage", username="demo-manager", roles=("manager",))
    assert (await verifier.principal(other)).actor == "demo-manager"
    assert len(checks) == 2


async def test_a_cached_token_is_refused_once_it_has_expired(verifier, checks):
    token = token_expiring_in(2)
    assert (await verifier.principal(token)).actor == "demo-broker"
    await asyncio.sleep(2.5)
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.principal(token)
    assert checks == [token, token]  # checked again, not served from the cache


async def test_a_refused_token_is_never_cached(verifier, checks):
    forged = token_expiring_in(300, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await verifier.principal(forged)
    assert checks == [forged, forged]


async def test_when_the_issuer_drops_a_key_its_tokens_are_checked_again_and_refused(verifier, checks):
    token = local_issuer.token("brokerage")
    await verifier.principal(token)
    assert verifier.keys is not None
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = jwt.algorithms.RSAAlgorithm.to_jwk(rotated.public_key(), as_dict=True)
    verifier.keys.load({"keys": [public | {"kid": "rotated", "use": "sig", "alg": "RS256"}]})
    verifier.keys.min_refresh_seconds = 3600  # no fetch back of the old key
    with pytest.raises(Unauthenticated, match="not signed by a key of the issuer"):
        await verifier.principal(token)
    assert checks == [token, token]
    fresh = token_expiring_in(300, key=rotated, kid="rotated")
    assert (await verifier.principal(fresh)).actor == "demo-broker"
