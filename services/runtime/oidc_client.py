"""Getting access tokens from the identity provider, for a caller of the APIs.

:class:`OidcAuth` is an ``httpx.Auth``: give it to an ``httpx.Client`` or ``AsyncClient`` and every
request carries a current access token, fetched from the issuer's token endpoint (found in its
discovery document) and fetched again shortly before it expires or when an API answers 401:

- a service calling another service: OAuth2 client credentials (``client_id`` + ``client_secret``;
  the providers service asking the brokerage to disclose a person's details, the web console);
- the demo, the benchmark and the tests acting as a staff member: the resource owner password grant
  of the development-only ``homecare-cli`` client (``username`` + ``password``). A council's issuer
  has no such client: people sign in through the console (authorization code with PKCE).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from services.runtime.settings import ServiceSettings

REFRESH_BEFORE_SECONDS = 30.0


class TokenError(Exception):
    """The issuer refused to issue a token (wrong secret or password, unknown client...)."""


class OidcAuth(httpx.Auth):
    requires_response_body = True

    def __init__(
        self,
        issuer: str,
        client_id: str,
        *,
        client_secret: str | None = None,
        username: str | None = None,
        password: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.username = username
        self.password = password
        self.extra_headers = headers or {}
        self._token_url: str | None = None
        self._access: str | None = None
        self._expires_at = 0.0

    def _grant(self) -> dict[str, str]:
        form = {"client_id": self.client_id}
        if self.client_secret:
            form["client_secret"] = self.client_secret
        if self.username is not None:
            return form | {"grant_type": "password", "username": self.username, "password": self.password or ""}
        return form | {"grant_type": "client_credentials"}

    def _token_flow(self) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token_url is None:
            found = yield httpx.Request("GET", f"{self.issuer}/.well-known/openid-configuration")
            if found.status_code != 200:
                raise TokenError(f"the issuer {self.issuer} has no discovery document ({found.status_code})")
            self._token_url = found.json()["token_endpoint"]
        answer = yield httpx.Request("POST", self._token_url, data=self._grant())
        if answer.status_code != 200:
            raise TokenError(f"the issuer refused a token for {self.username or self.client_id}: {answer.text[:200]}")
        body: dict[str, Any] = answer.json()
        self._access = body["access_token"]
        self._expires_at = time.monotonic() + float(body.get("expires_in", 60))

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "Authorization" in request.headers:  # a credential of its own (a provider's, on the console's portal)
            yield request
            return
        if self._access is None or time.monotonic() > self._expires_at - REFRESH_BEFORE_SECONDS:
            yield from self._token_flow()
        request.headers["Authorization"] = f"Bearer {self._access}"
        request.headers.update(self.extra_headers)
        response = yield request
        if response.status_code == 401:  # revoked, or the issuer's keys rotated: one fresh token
            yield from self._token_flow()
            request.headers["Authorization"] = f"Bearer {self._access}"
            yield request

    def token(self) -> str:
        """A current access token, fetched synchronously (for callers that set headers themselves)."""
        if self._access is None or time.monotonic() > self._expires_at - REFRESH_BEFORE_SECONDS:
            flow = self._token_flow()
            with httpx.Client(timeout=30) as client:
                request = next(flow)
                try:
                    while True:
                        request = flow.send(client.send(request))
                except StopIteration:
                    pass
                except httpx.TransportError as exc:  # a traceback had ended in "Connection refused" alone
                    raise TokenError(
                        f"the identity provider at {request.url} cannot be reached ({exc.__class__.__name__}: "
                        f"{exc}): is it running (bash deploy/keycloak.sh status)? A Keycloak started on another "
                        "port needs the same HOMECARE_KEYCLOAK_PORT here, or set OIDC_ISSUER"
                    ) from None
        assert self._access is not None
        return self._access


CLI_CLIENT_ID = "homecare-cli"  # the realm's development-only client with the password grant

# One demo user per role in the local realm (deploy/keycloak/realm-homecare.json), for the demo,
# the benchmarks and the tests; they exist only where that realm is imported.
DEMO_USERS: dict[str, str] = {
    "broker": "demo-broker",
    "senior_broker": "demo-senior",
    "manager": "demo-manager",
    "head_of_service": "demo-head",
    "operations": "demo-ops",
    "council_admin": "demo-admin",
    "provider_staff": "demo-provider",
    "contracts_quality": "demo-quality",
    "safeguarding": "demo-safeguarding",
    "finance": "demo-finance",
    "review_officer": "demo-reviewer",
}


def identity_env() -> dict[str, str]:
    """The identity settings for processes started from here (the services, the CLI's own calls):
    ``OIDC_ISSUER`` and the clients' ids and secrets from the environment when it names an issuer,
    else those of the local Keycloak (``deploy/keycloak.sh env``: its generated secrets), else none."""
    if os.environ.get("OIDC_ISSUER"):
        return {k: v for k, v in os.environ.items() if "OIDC" in k or k == "HOMECARE_DEMO_PASSWORD"}
    script = Path(__file__).resolve().parents[2] / "deploy" / "keycloak.sh"
    printed = subprocess.run(["bash", str(script), "env"], capture_output=True, text=True, check=False)
    if printed.returncode != 0:
        return {}
    return dict(line.split("=", 1) for line in printed.stdout.splitlines() if "=" in line)


_users: dict[tuple[str, str, str], OidcAuth] = {}


def user_auth(username: str, env: dict[str, str] | None = None) -> OidcAuth:
    """A demo user signed in with the password grant (the demo, the benchmark; development only):
    ``OIDC_ISSUER``, ``HOMECARE_OIDC_CLI_CLIENT_ID`` (default homecare-cli) and the demo users'
    password ``HOMECARE_DEMO_PASSWORD``, from the environment or the local Keycloak."""
    env = env if env is not None else identity_env()
    if not env.get("OIDC_ISSUER") or not env.get("HOMECARE_DEMO_PASSWORD"):
        raise TokenError(
            "no identity provider: set OIDC_ISSUER and HOMECARE_DEMO_PASSWORD, or start deploy/keycloak.sh"
        )
    # One per user and issuer in this process: its token is reused until near expiry, not fetched
    # again by every caller (many sign-ins at once are what an identity provider's lockout watches).
    key = (env["OIDC_ISSUER"], username, env["HOMECARE_DEMO_PASSWORD"])
    if key not in _users:
        _users[key] = OidcAuth(
            env["OIDC_ISSUER"],
            env.get("HOMECARE_OIDC_CLI_CLIENT_ID", CLI_CLIENT_ID),
            username=username,
            password=env["HOMECARE_DEMO_PASSWORD"],
        )
    return _users[key]


def service_account(settings: ServiceSettings) -> OidcAuth | None:
    """A service's own access tokens (OAuth2 client credentials of ``<SERVICE>_OIDC_CLIENT_ID`` and
    ``_SECRET`` at ``OIDC_ISSUER``), for calling another service; None where they are not configured
    (the other service then answers 401, and the caller says what is missing)."""
    if not (settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret):
        return None
    return OidcAuth(settings.oidc_issuer, settings.oidc_client_id, client_secret=settings.oidc_client_secret)
