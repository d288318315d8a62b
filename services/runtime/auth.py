"""Who is calling: OpenID Connect access tokens checked on every HTTP operation, in one place.

Every service's app gets :func:`authorization` (from ``create_app``): a dependency on every route that

1. reads ``Authorization: Bearer <JWT>``,
2. validates it with PyJWT against the issuer's signing keys (its JWKS, fetched once, cached, and
   fetched again when a token names a key id it does not know - the issuer rotated its keys):
   signature (RS256/ES256... never ``none`` or HMAC), issuer (``OIDC_ISSUER``), audience (this
   service's ``<SERVICE>_OIDC_AUDIENCE``, default its name), expiry and not-before,
3. asks :mod:`services.runtime.permissions` whether the token's roles may call this route, and
4. leaves the :class:`Principal` (subject, username, roles) in ``request.state.principal`` for the
   route to record as the actor: the actor of any change is the token's, never a body field.

No token or a bad one is a 401 with ``WWW-Authenticate: Bearer``; a good token without the role is
a 403. With no ``OIDC_ISSUER`` configured nothing validates, so every protected route is refused.

A service account's token (client credentials; realm role ``service``) gets the pseudo-role
``service:<client id>`` so that the table can allow one service and not another. The web console's
service account may say which signed-in staff member it acts for (``X-Acting-User`` and
``X-Acting-Role``): see :func:`_acting_for` and docs/guide/security.md.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cachetools
import httpx
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from schemas.events import PROVIDER_ID_PATTERN
from services.runtime import permissions
from services.runtime.http import BEARER_CHALLENGE, INVALID_TOKEN_CHALLENGE, TOKEN_REQUIRED, ProblemError
from services.runtime.logging import get_logger

if TYPE_CHECKING:
    from services.runtime.settings import ServiceSettings

log = get_logger(__name__)

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
SERVICE_ROLE = "service"
ACTING_USER_HEADER = "X-Acting-User"
ACTING_ROLE_HEADER = "X-Acting-Role"
# With X-Acting-Role: provider_staff, the provider the signed-in user's ID token names (decision 0165).
ACTING_PROVIDER_HEADER = "X-Acting-Provider"
PROVIDER_STAFF_ROLE = "provider_staff"

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="oidc",
    bearerFormat="JWT",
    description=(
        "An OpenID Connect access token from the council's identity provider (OIDC_ISSUER), issued for this "
        "service's audience: a staff member's (authorization code with PKCE in the console, or the password grant "
        "of the development-only homecare-cli client) or a service's (client credentials)."
    ),
)


@dataclass(frozen=True)
class Principal:
    """The caller, from a validated token.

    ``actor`` is what is recorded as who did something: the staff member's username (or, for a
    service account, ``service:<client id>``); ``subject`` is the issuer's stable id for them."""

    subject: str
    actor: str
    roles: frozenset[str]
    client_id: str | None = None
    via: str | None = None  # the console's client id when the console acts for a signed-in staff member
    claims: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # The provider a provider staff user works for, as the identity provider asserts it (the
    # OIDC_PROVIDER_CLAIM claim, decision 0165); None when the token says none.
    provider_id: str | None = None


class Unauthenticated(ProblemError):
    """A 401: no token, or one that does not validate (RFC 6750's challenge in the header: with no
    token at all it names no error, section 3.1; ``missing=False`` says ``invalid_token``)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(401, message, headers=BEARER_CHALLENGE if missing else INVALID_TOKEN_CHALLENGE)


class SigningKeys:
    """The issuer's JWKS, cached; fetched again (at most every ``min_refresh_seconds``) when a token
    names an unknown key id, so a key rotation is picked up and a flood of made-up key ids costs one
    fetch, not one per request."""

    def __init__(self, issuer: str, jwks_url: str | None = None, *, min_refresh_seconds: float = 10.0) -> None:
        self.issuer = issuer.rstrip("/")
        self.jwks_url = jwks_url
        self.min_refresh_seconds = min_refresh_seconds
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self.generation = 0  # bumped when the keys change: what was verified with the old ones is checked again
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            if not self.jwks_url:
                discovery = await client.get(f"{self.issuer}/.well-known/openid-configuration")
                discovery.raise_for_status()
                self.jwks_url = discovery.json()["jwks_uri"]
            response = await client.get(self.jwks_url)
            response.raise_for_status()
        self.load(response.json())

    def load(self, document: dict[str, Any]) -> None:
        """Take the signing keys of a JWKS document (RFC 7517) as the issuer's current keys."""
        keys = {}
        for jwk in jwt.PyJWKSet.from_dict(document).keys:
            if jwk.key_id and jwk.public_key_use in (None, "sig"):
                keys[jwk.key_id] = jwk.key
        if keys.keys() != self._keys.keys():
            self.generation += 1
        self._keys = keys
        self._fetched_at = time.monotonic()
        log.info("signing keys fetched", issuer=self.issuer, keys=sorted(keys))

    async def key(self, kid: str | None) -> Any:
        if kid is None:
            raise Unauthenticated("the token names no signing key (kid)")
        found = self._keys.get(kid)
        if found is not None:
            return found
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at >= self.min_refresh_seconds:
                try:
                    await self._fetch()
                except (httpx.HTTPError, KeyError, ValueError, jwt.PyJWTError) as exc:
                    log.warning("signing keys could not be fetched", issuer=self.issuer, error=repr(exc))
                    raise ProblemError(503, "the identity provider's signing keys cannot be fetched now") from None
        found = self._keys.get(kid)
        if found is None:
            raise Unauthenticated("the token is not signed by a key of the issuer")
        return found


class TokenInvalid(Exception):
    """A JWT that is not valid for the audience: ``error`` names the check that failed (a PyJWT
    error class name, or ``not_a_jwt`` / ``algorithm``), ``message`` says it in words."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


async def verified_claims(keys: SigningKeys, token: str, *, audience: str, leeway: float) -> dict[str, Any]:
    """The claims of a JWT signed by one of the issuer's keys (RS256/ES256, :data:`ALGORITHMS`), for
    ``audience``, from ``keys.issuer``, current (``leeway`` seconds allowed), with exp, iat, iss, sub
    and aud present. The one place tokens are checked: the services' access tokens
    (:class:`TokenVerifier`) and the console's ID tokens (services/console/oidc.py).

    Raises :class:`TokenInvalid`; and what :meth:`SigningKeys.key` raises when the token names no
    key of the issuer (401) or the keys cannot be fetched (503)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenInvalid("not_a_jwt", "the bearer token is not a JWT") from None
    if header.get("alg") not in ALGORITHMS:
        raise TokenInvalid("algorithm", f"tokens signed with {header.get('alg')!r} are not accepted")
    key = await keys.key(header.get("kid"))
    try:
        return jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=keys.issuer,
            leeway=leeway,
            options={"require": ["exp", "iat", "iss", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        message = "the token has expired"
        error: Exception = exc
    except jwt.MissingRequiredClaimError as exc:
        message = (
            f"the token is not for this service (audience {audience})"
            if exc.claim == "aud"
            else f"the token has no {exc.claim!r} claim"
        )
        error = exc
    except jwt.InvalidAudienceError as exc:
        message, error = f"the token is not for this service (audience {audience})", exc
    except jwt.InvalidIssuerError as exc:
        message, error = "the token is from another issuer", exc
    except jwt.PyJWTError as exc:
        message, error = f"the token is not valid: {type(exc).__name__}", exc
    raise TokenInvalid(type(error).__name__, message)


class TokenVerifier:
    """Validates access tokens for one audience (one service).

    A client sends the same token on every call until it expires (five minutes at Keycloak's
    default), so the caller of each token verified is kept until the token's expiry (plus the
    leeway the check itself allows), up to ``VERIFIED_TOKENS`` tokens: a signature check and two
    base64 decodes per request were about a tenth of the brokerage's CPU under load (decision
    0092). A cached caller is only reused while the issuer's keys are the ones it was checked
    with (a rotation drops them), and a token that failed is never cached."""

    VERIFIED_TOKENS = 4096

    def __init__(self, settings: ServiceSettings) -> None:
        self.issuer = settings.oidc_issuer.rstrip("/") if settings.oidc_issuer else None
        self.audience = settings.oidc_audience or settings.service
        self.roles_claim = settings.oidc_roles_claim
        self.provider_claim = settings.oidc_provider_claim
        self.leeway = settings.oidc_leeway_seconds
        self.console_client_id = settings.oidc_console_client_id
        self.keys = SigningKeys(self.issuer, settings.oidc_jwks_url) if self.issuer else None
        # (key generation, token) -> (caller, expiry in epoch seconds); each entry dropped at its expiry.
        self._verified: cachetools.TLRUCache[tuple[int, str], tuple[Principal, float]] = cachetools.TLRUCache(
            maxsize=self.VERIFIED_TOKENS, ttu=lambda _key, value, now: value[1], timer=time.time
        )

    async def principal(self, token: str) -> Principal:
        """The caller of a valid token. Raises :class:`Unauthenticated` (401) for anything else."""
        if self.keys is None or self.issuer is None:
            raise Unauthenticated("no identity provider is configured (OIDC_ISSUER): every call is refused")
        key = (self.keys.generation, token)
        cached = self._verified.get(key)
        if cached is not None:
            return cached[0]
        try:
            claims = await verified_claims(self.keys, token, audience=self.audience, leeway=self.leeway)
        except TokenInvalid as exc:
            raise Unauthenticated(exc.message) from None
        principal = self._principal_of(claims)
        # exp is required and numeric once verified; the same leeway the check itself allows.
        self._verified[(self.keys.generation, token)] = (principal, float(claims["exp"]) + self.leeway)
        return principal

    def _principal_of(self, claims: dict[str, Any]) -> Principal:
        roles = claim_at(claims, self.roles_claim)
        roles = frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else frozenset()
        client_id = claims.get("azp") or claims.get("client_id")
        username = claims.get("preferred_username") or claims["sub"]
        if SERVICE_ROLE in roles and client_id:
            # A service account: the table names services by their client id.
            roles = roles | {f"{SERVICE_ROLE}:{client_id}"}
            username = f"{SERVICE_ROLE}:{client_id}"
        return Principal(
            subject=claims["sub"],
            actor=username,
            roles=roles,
            client_id=client_id,
            claims=claims,
            provider_id=provider_of(claims, self.provider_claim),
        )


def provider_of(claims: dict[str, Any], path: str) -> str | None:
    """The provider id a token asserts at ``path`` (decision 0165), or None when it asserts none
    that could be one: a list of one (Keycloak's multivalued form) is read as its element."""
    value = claim_at(claims, path)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str) and re.fullmatch(PROVIDER_ID_PATTERN, value):
        return value
    return None


def claim_at(claims: dict[str, Any], path: str) -> Any:
    """``realm_access.roles`` (Keycloak) or ``roles`` (Entra ID app roles)."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value or []


def _acting_for(principal: Principal, request: Request, console_client_id: str) -> Principal:
    """The console's service account acting for a signed-in staff member.

    The console signs its staff in through the identity provider and calls the APIs with its own
    service account, saying who acts, as which role, and for a provider's user which provider their
    ID token named, in ``X-Acting-User``/``X-Acting-Role``/``X-Acting-Provider``. Only the console's own service account
    (a confidential client whose secret only the console holds) may say so; anyone else sending
    the headers is refused, not ignored, so a mistake shows."""
    user = request.headers.get(ACTING_USER_HEADER)
    role = request.headers.get(ACTING_ROLE_HEADER)
    provider = request.headers.get(ACTING_PROVIDER_HEADER)
    if user is None and role is None and provider is None:
        return principal
    if principal.client_id != console_client_id or f"{SERVICE_ROLE}:{console_client_id}" not in principal.roles:
        raise ProblemError(
            403,
            f"only the console's service account may act for someone ({ACTING_USER_HEADER})",
            code="acting-for-not-allowed",
        )
    if not user or not role or len(user) > 100 or role not in permissions.STAFF_ROLES:
        raise ProblemError(
            422,
            f"{ACTING_USER_HEADER} and {ACTING_ROLE_HEADER} (one of {', '.join(sorted(permissions.STAFF_ROLES))}) "
            "go together",
            field=ACTING_ROLE_HEADER,
        )
    # A provider staff user's organisation is what their own ID token asserted at sign-in, which
    # the console passes on; it is the only way it reaches the providers service (decision 0165).
    if provider is not None and (role != PROVIDER_STAFF_ROLE or not re.fullmatch(PROVIDER_ID_PATTERN, provider)):
        raise ProblemError(
            422,
            f"{ACTING_PROVIDER_HEADER} is a provider id, and goes only with "
            f"{ACTING_ROLE_HEADER}: {PROVIDER_STAFF_ROLE}",
            field=ACTING_PROVIDER_HEADER,
        )
    return Principal(
        subject=principal.subject,
        actor=user,
        roles=frozenset({role}),
        client_id=principal.client_id,
        via=console_client_id,
        claims=principal.claims,
        provider_id=provider,
    )


def edge_token_check(service_name: str, verifier: TokenVerifier) -> Callable[[str], Awaitable[None]]:
    """What the HTTP edge asks of a request's bearer token before it reads the request's body
    (``EdgeMiddleware(verify_token=...)``, decision 0168): the same verification - the same
    :class:`TokenVerifier`, so a token checked here is a cache hit for :func:`authorization`
    after - raising :class:`Unauthenticated` (401) or the 503 of keys that cannot be fetched. An
    organisation's own credential (``hcp_...``) on the providers service is let through: the
    providers service checks it against its store on the route, where the database is."""
    rules = permissions.TABLE.get(service_name, {}).values()
    provider_api = any(rule is permissions.PROVIDER_CREDENTIAL for rule in rules)

    async def check(token: str) -> None:
        if provider_api and token.startswith(permissions.PROVIDER_TOKEN_PREFIX):
            return
        await verifier.principal(token)

    return check


def authorization(service_name: str, settings: ServiceSettings, verifier: TokenVerifier | None = None) -> Any:
    """The app-wide dependency (``FastAPI(dependencies=[...])``, from ``create_app``) that
    authenticates and authorizes every route against the permission table, so a route cannot be
    added without passing through it; a route the table does not name is refused (secure by default).
    ``verifier``: the one the edge checks tokens with (:func:`edge_token_check`), shared so a token is
    verified once a request."""
    verifier = verifier or TokenVerifier(settings)
    internal_port = settings.internal_port
    if verifier.issuer is None:
        log.warning("OIDC_ISSUER is not set: every authenticated operation will be refused", service=service_name)

    async def authorize(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
    ) -> None:
        route = request.scope.get("route")
        path = getattr(route, "path", request.url.path)
        rule = permissions.rule_for(service_name, request.method, path)
        if rule is permissions.PUBLIC:
            return  # the AsyncAPI document
        if rule is permissions.PROVIDER_CREDENTIAL:
            # The provider API: an organisation's own credential (hcp_..., checked by the providers
            # service), or a named provider staff user's access token (decision 0126: directly, or the
            # console acting for them), whose organisation the providers service looks up.
            if credentials is None or credentials.credentials.startswith(permissions.PROVIDER_TOKEN_PREFIX):
                return
            principal = _acting_for(
                await verifier.principal(credentials.credentials), request, verifier.console_client_id
            )
            if permissions.PROVIDER_STAFF not in principal.roles:
                raise ProblemError(403, f"{request.method} {path} is for a provider's credential or its staff users")
            request.state.principal = principal
            return
        if rule is permissions.INTERNAL and permissions.on_internal_listener(request.scope, internal_port):
            return  # health and metrics for probes and Prometheus, on the port never published
        if credentials is None:
            raise Unauthenticated(TOKEN_REQUIRED, missing=True)
        principal = await verifier.principal(credentials.credentials)
        principal = _acting_for(principal, request, verifier.console_client_id)
        request.state.principal = principal
        if rule is permissions.INTERNAL:
            return  # on the API port: any valid token for this service
        if rule is None:
            raise ProblemError(
                403, f"{request.method} {path} is not in the permission table: refused", code="not-in-permission-table"
            )
        if not (principal.roles & rule):
            raise ProblemError(403, f"your roles do not allow {request.method} {path}")

    return Depends(authorize)


async def principal_of(request: Request) -> Principal:
    """The authenticated caller, for a route to record as the actor (FastAPI dependency; async,
    as every dependency here is: FastAPI runs a plain ``def`` in a worker thread, per request)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:  # a route the table marks public or provider-only asked for a person
        raise ProblemError(401, "an access token is required")
    return principal
