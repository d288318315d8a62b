"""An identity provider's signing key of the tests' own, for the in-process handler tests (no
network there; the end-to-end tests use the real Keycloak). Its tokens are real RS256 JWTs, checked
by the services' own verifier (services/runtime/auth.py): only the fetch of the JWKS document over
HTTP is replaced (:func:`serve_keys`)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.runtime.auth import SigningKeys

ISSUER = "https://issuer.handler-tests.invalid/realms/homecare"
KEY_ID = "handler-tests"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks() -> dict[str, Any]:
    """The issuer's JWKS document (RFC 7517): its one public signing key."""
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_KEY.public_key()))
    return {"keys": [public | {"kid": KEY_ID, "use": "sig", "alg": "RS256"}]}


def settings() -> dict[str, str]:
    """The settings a service needs to trust this issuer (for ``settings.load(name, **...)``)."""
    return {"oidc_issuer": ISSUER, "oidc_jwks_url": f"{ISSUER}/protocol/openid-connect/certs"}


def serve_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Services built in this test fetch this issuer's keys instead of calling it over HTTP."""

    async def fetch(keys: SigningKeys) -> None:
        keys.load(jwks())

    monkeypatch.setattr(SigningKeys, "_fetch", fetch)


def token(
    audience: str, username: str = "demo-broker", roles: Iterable[str] = ("broker",), provider_id: str | None = None
) -> str:
    """An access token for ``audience`` (a service's name), shaped like Keycloak's; ``provider_id``:
    the organisation a provider staff user's account names (the realm's mapper, decision 0165)."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": audience,
        "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, username)),
        "preferred_username": username,
        "realm_access": {"roles": sorted(roles)},
        "azp": "homecare-cli",
        "iat": now,
        "exp": now + 300,
    }
    if provider_id is not None:
        claims["provider_id"] = provider_id
    return jwt.encode(claims, _KEY, algorithm="RS256", headers={"kid": KEY_ID})


def headers(
    audience: str, username: str = "demo-broker", roles: Iterable[str] = ("broker",), provider_id: str | None = None
) -> dict[str, str]:
    """``Authorization`` header with :func:`token`."""
    return {"Authorization": f"Bearer {token(audience, username, roles, provider_id)}"}
