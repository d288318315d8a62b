"""The services' HTTP APIs, as the console calls them: the APIs are the integration surface, the
console one more client of them (it reads no other schema and publishes no event).

Every call carries the console's own access token (OAuth2 client credentials of the ``console``
client: ``CONSOLE_OIDC_CLIENT_ID``/``CONSOLE_OIDC_CLIENT_SECRET`` at ``OIDC_ISSUER``) and, for a
page a staff member asked for, who that is and their role (``X-Acting-User``/``X-Acting-Role``),
which the APIs accept from the console's account alone and check against the permission table.
Staff now sign in through the identity provider (services/console/oidc.py), but the console does
not forward their own access tokens yet (they last minutes; refreshing them is still to do): it
says who acts, as the ID token said at sign-in (docs/guide/console-sign-in.md). Provider portal
calls carry the provider's own credential instead.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from services.runtime.auth import ACTING_PROVIDER_HEADER, ACTING_ROLE_HEADER, ACTING_USER_HEADER, PROVIDER_STAFF_ROLE

if TYPE_CHECKING:
    pass

# The console's own roles, as the identity provider's (services/runtime/permissions.py) name them.
API_ROLE = {
    "broker": "broker",
    "senior_broker": "senior_broker",
    "manager": "manager",
    "head_of_service": "head_of_service",
    "ops": "operations",
    "admin": "council_admin",
    "review_officer": "review_officer",
    "finance": "finance",
    "contracts_quality": "contracts_quality",
    "safeguarding": "safeguarding",
}
# (username, API role, and for a provider staff user the provider their ID token names)
_acting: ContextVar[tuple[str, str, str | None] | None] = ContextVar("acting", default=None)


def acting_for(username: str | None, role: str | None) -> None:
    """From here on in this request, the APIs are called for this signed-in staff member."""
    if username and role in API_ROLE:
        _acting.set((username, API_ROLE[role], None))


def acting_for_provider_staff(username: str, provider_id: str) -> None:
    """From here on in this request, the providers service's API is called for this named provider
    staff user (decision 0126): the console's account, ``X-Acting-Role: provider_staff``, and
    ``X-Acting-Provider``: the provider their own ID token named at sign-in (decision 0165); the
    providers service serves them only where its membership has them as that provider's user."""
    _acting.set((username, PROVIDER_STAFF_ROLE, provider_id))


class ApiError(Exception):
    """A 4xx/5xx from a service, with its problem body ({"error", "fields"})."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('error')}")
        self.status = status
        self.problem = problem

    @property
    def message(self) -> str:
        return str(self.problem.get("error") or f"the service answered {self.status}")


class ServiceUnavailable(Exception):
    """The service could not be reached (down, restarting, timed out)."""


class Client:
    def __init__(self, base_url: str, *, timeout: float = 10.0, auth: httpx.Auth | None = None) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout, auth=auth)

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, *, bearer: str | None = None, **kwargs: Any) -> Any:
        as_text = kwargs.pop("as_text", False)  # a CSV download: the body as text, not JSON
        with_next = kwargs.pop("with_next", False)  # a list: (its body, the next page's URL or None)
        headers = kwargs.pop("headers", {}) | ({"Authorization": f"Bearer {bearer}"} if bearer else {})
        acting = _acting.get()
        if acting and not bearer:
            headers |= {ACTING_USER_HEADER: acting[0], ACTING_ROLE_HEADER: acting[1]}
            if acting[2] is not None:
                headers[ACTING_PROVIDER_HEADER] = acting[2]
        try:
            response = await self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"{self.http.base_url} could not be reached: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise ServiceUnavailable(f"{self.http.base_url} answered {response.status_code}")
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"error": response.text[:200]}
            raise ApiError(response.status_code, problem if isinstance(problem, dict) else {"error": str(problem)})
        if as_text:
            return response.text
        if with_next:
            return response.json(), response.links.get("next", {}).get("url")
        return response.json() if response.content else None

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, body: dict[str, Any], **kwargs: Any) -> Any:
        return await self.call("POST", path, json=body, **kwargs)

    async def patch(self, path: str, body: dict[str, Any], **kwargs: Any) -> Any:
        return await self.call("PATCH", path, json=body, **kwargs)


class Services:
    def __init__(
        self,
        *,
        brokerage: str,
        providers: str,
        notifications: str,
        reporting: str = "http://127.0.0.1:8005",
        auth: httpx.Auth | None = None,
    ) -> None:
        self.brokerage = Client(brokerage, auth=auth)
        self.providers = Client(providers, auth=auth)
        self.notifications = Client(notifications, auth=auth)
        self.reporting = Client(reporting, auth=auth, timeout=30.0)

    async def close(self) -> None:
        for client in (self.brokerage, self.providers, self.notifications, self.reporting):
            await client.close()


def segment(value: object) -> str:
    """``value`` as one segment of an API's path: every character that would end the segment or
    the path (``/``, ``?``, ``#``) escaped. A provider id typed into the console's address as
    ``%3Fx`` had reached the providers service as ``/providers/?x/quality``, another address."""
    return quote(str(value), safe="")
