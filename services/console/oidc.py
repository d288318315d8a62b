"""Staff sign-in through the identity provider: OpenID Connect, authorization code flow with PKCE (S256).

Any standard issuer works by configuration (``OIDC_ISSUER``; the console's confidential client
``CONSOLE_OIDC_CLIENT_ID``/``CONSOLE_OIDC_CLIENT_SECRET``, the same client whose service account
calls the APIs): its endpoints come from ``<issuer>/.well-known/openid-configuration``.

The protocol's messages (the authorization URL with state, nonce and the S256 code challenge; the
code exchange with the client secret and the code verifier) are authlib's httpx client
(``AsyncOAuth2Client``). The ID token is validated here with PyJWT against the issuer's signing keys,
cached by the same :class:`services.runtime.auth.SigningKeys` the APIs use: signature, issuer,
audience (this console's client), authorized party, expiry, and the nonce this sign-in sent.
Sign-out ends the session at the identity provider too (RP-initiated logout).

Nothing here logs a token, a code or a verifier: failures are logged by their reason code only.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError  # type: ignore[import-untyped]

from services.console import domain
from services.console.handlers import StaffIdentity
from services.runtime.auth import PROVIDER_STAFF_ROLE, SigningKeys, TokenInvalid, claim_at, provider_of, verified_claims
from services.runtime.http import ProblemError

if TYPE_CHECKING:
    from services.runtime.settings import ServiceSettings

DISCOVERY_TTL_SECONDS = 3600.0


class SignInFailed(Exception):
    """A sign-in through the identity provider that cannot go on. ``reason`` is a fixed code for the
    log (never a token or anything the browser sent); ``message`` the plain words for the person."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message
        self.status = status


TRY_AGAIN = "Go back to the sign-in page and try again."
UNAVAILABLE = SignInFailed(
    "idp_unreachable", f"The sign-in service cannot be reached at the moment. {TRY_AGAIN}", status=503
)


@dataclass(frozen=True)
class Authorization:
    """Where to send the browser, and what to keep until it comes back."""

    url: str
    state: str
    nonce: str
    code_verifier: str


class OidcSignIn:
    """The console's client of the identity provider, for signing staff in and out."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.issuer = settings.oidc_issuer.rstrip("/") if settings.oidc_issuer else None
        self.client_id = settings.oidc_client_id or settings.oidc_console_client_id
        self.client_secret = settings.oidc_client_secret
        self.scopes = settings.oidc_scopes
        self.roles_claim = settings.oidc_roles_claim
        self.provider_claim = settings.oidc_provider_claim
        self.leeway = settings.oidc_leeway_seconds
        self.provider_name = settings.oidc_provider_name
        self.keys = SigningKeys(self.issuer, settings.oidc_jwks_url) if self.issuer else None
        self._metadata: dict[str, Any] | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return bool(self.issuer and self.client_id and self.client_secret)

    async def metadata(self) -> dict[str, Any]:
        """The issuer's discovery document (cached for an hour); it must name this issuer (OIDC Discovery 4.3)."""
        if self._metadata is not None and time.monotonic() - self._fetched_at < DISCOVERY_TTL_SECONDS:
            return self._metadata
        async with self._lock:
            if self._metadata is None or time.monotonic() - self._fetched_at >= DISCOVERY_TTL_SECONDS:
                try:
                    async with httpx.AsyncClient(timeout=10) as http:
                        answer = await http.get(f"{self.issuer}/.well-known/openid-configuration")
                        answer.raise_for_status()
                        found = answer.json()
                except (httpx.HTTPError, ValueError):
                    raise UNAVAILABLE from None
                if not isinstance(found, dict) or str(found.get("issuer", "")).rstrip("/") != self.issuer:
                    raise SignInFailed(
                        "discovery_issuer_mismatch", f"The sign-in service is not set up correctly. {TRY_AGAIN}", 502
                    )
                self._metadata, self._fetched_at = found, time.monotonic()
        return self._metadata

    def _client(self, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            scope=self.scopes,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=10,
        )

    async def authorization(self, redirect_uri: str) -> Authorization:
        """A new sign-in: the authorization endpoint's URL with a fresh state, nonce and S256 challenge."""
        endpoint = (await self.metadata())["authorization_endpoint"]
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        async with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(endpoint, state=state, code_verifier=verifier, nonce=nonce)
        return Authorization(url=url, state=state, nonce=nonce, code_verifier=verifier)

    async def exchange(self, code: str, *, code_verifier: str, redirect_uri: str) -> dict[str, Any]:
        """The token endpoint's answer for an authorization code (client secret and code verifier sent)."""
        endpoint = (await self.metadata())["token_endpoint"]
        try:
            async with self._client(redirect_uri) as client:
                token = await client.fetch_token(
                    endpoint, grant_type="authorization_code", code=code, code_verifier=code_verifier
                )
        except OAuthError:
            raise SignInFailed(
                "code_refused", f"The sign-in service did not accept this sign-in. {TRY_AGAIN}"
            ) from None
        except httpx.HTTPError:
            raise UNAVAILABLE from None
        if not isinstance(token, dict) or not isinstance(token.get("id_token"), str):
            raise SignInFailed("no_id_token", f"The sign-in service did not say who you are. {TRY_AGAIN}", 502)
        return dict(token)

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        """The token endpoint's answer for a session's refresh token: new tokens while the identity
        provider still has the person signed in (decision 0166). Raises SignInFailed
        ``refresh_refused`` when it does not (account disabled, signed out there, session expired or
        revoked), and SignInFailed ``idp_unreachable`` (503) when it cannot be asked."""
        endpoint = (await self.metadata())["token_endpoint"]
        try:
            async with self._client("") as client:
                token = await client.fetch_token(endpoint, grant_type="refresh_token", refresh_token=refresh_token)
        except OAuthError:
            raise SignInFailed("refresh_refused", "The sign-in service has ended your session.", 401) from None
        except httpx.HTTPError:
            raise UNAVAILABLE from None
        if not isinstance(token, dict) or not isinstance(token.get("id_token"), str):
            raise SignInFailed("refresh_refused", "The sign-in service did not say who you are.", 401)
        return dict(token)

    async def identity(self, id_token: str, *, nonce: str) -> StaffIdentity:
        """Who signed in, as :meth:`checked_identity`, refused unless they have a console role."""
        identity = await self.checked_identity(id_token, nonce=nonce)
        if identity.role is None and identity.provider_staff:
            raise SignInFailed(
                "provider_staff_at_console",
                "Your account is a provider's staff account: sign in to the provider portal, at /portal/sign-in.",
                403,
            )
        if identity.role is None:
            raise SignInFailed("no_console_role", f"Your account has no role in this console. {ASK_ADMIN}", 403)
        return identity

    async def provider_staff_identity(self, id_token: str, *, nonce: str) -> StaffIdentity:
        """Who signed in to the provider portal (decision 0126), as :meth:`checked_identity`, refused
        unless the identity provider gives them the role provider_staff and names the provider they
        work for (its OIDC_PROVIDER_CLAIM claim, decision 0165: ``no_provider_claim``); whether they
        may answer for it is the providers service's to say (its membership)."""
        identity = await self.checked_identity(id_token, nonce=nonce)
        if not identity.provider_staff:
            raise SignInFailed(
                "no_provider_staff_role", f"Your account is not a provider's staff account. {ASK_ADMIN}", 403
            )
        if identity.provider_id is None:
            raise SignInFailed(
                "no_provider_claim",
                "Your account does not say which provider you work for. Ask the council's administrators to set "
                "it, then sign in again.",
                403,
            )
        return identity

    async def checked_identity(self, id_token: str, *, nonce: str | None) -> StaffIdentity:
        """Who an ID token says signed in, once it is shown to be this issuer's, for this console, current
        and for this sign-in (its nonce; None for a token the console's own refresh fetched from the token
        endpoint, which OpenID Connect Core 12.2 does not bind to one); and their console role
        (domain.role_from_idp).

        Raises SignInFailed: ``id_token_invalid`` (signature, issuer, audience, authorized party,
        expiry or missing claims), ``nonce_mismatch``, ``no_username``, ``no_console_role``."""
        assert self.keys is not None and self.issuer is not None
        refused = SignInFailed("id_token_invalid", f"The sign-in could not be checked. {TRY_AGAIN}")
        try:
            claims = await verified_claims(self.keys, id_token, audience=self.client_id, leeway=self.leeway)
        except TokenInvalid as exc:
            raise SignInFailed(f"id_token_invalid:{exc.error}", refused.message) from None
        except ProblemError as problem:  # no such key (401) or the keys cannot be fetched (503)
            raise (UNAVAILABLE if problem.status == 503 else refused) from None
        # OpenID Connect Core 3.1.3.7: with other audiences too, the authorized party must be this client.
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != self.client_id:
            raise SignInFailed("id_token_invalid:azp", refused.message)
        if nonce is not None and not secrets.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise SignInFailed("nonce_mismatch", refused.message)
        username = claims.get("preferred_username")
        if not isinstance(username, str) or not username.strip() or len(username) > 100:
            raise SignInFailed("no_username", f"Your account has no username the console can use. {ASK_ADMIN}", 403)
        roles = claim_at(claims, self.roles_claim)
        role = domain.role_from_idp(roles)
        name = claims.get("name") or " ".join(
            str(claims[c]) for c in ("given_name", "family_name") if isinstance(claims.get(c), str)
        )
        return StaffIdentity(
            subject=str(claims["sub"]),
            username=username,
            display_name=str(name or username)[:200],
            role=role,
            provider_staff=isinstance(roles, list) and PROVIDER_STAFF in roles,
            provider_id=provider_of(claims, self.provider_claim),
        )

    async def end_session_url(self, *, id_token: str | None, post_logout_redirect_uri: str) -> str | None:
        """Where to send the browser to end its session at the identity provider too (OpenID Connect
        RP-Initiated Logout), or None when the issuer has no ``end_session_endpoint``."""
        try:
            endpoint = (await self.metadata()).get("end_session_endpoint")
        except SignInFailed:
            return None
        if not endpoint:
            return None
        query = {"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if id_token:
            query["id_token_hint"] = id_token
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"


PROVIDER_STAFF = PROVIDER_STAFF_ROLE  # the realm role of providers' named users (decision 0126)
ASK_ADMIN = "Ask your administrator to give it one, then sign in again."
