"""The services' HTTP APIs, as the console calls them: the APIs are the integration surface, the
console one more client of them (it reads no other schema and publishes no event)."""

from __future__ import annotations

from typing import Any

import httpx


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
    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, *, bearer: str | None = None, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {}) | ({"Authorization": f"Bearer {bearer}"} if bearer else {})
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
        return response.json() if response.content else None

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, body: dict[str, Any], **kwargs: Any) -> Any:
        return await self.call("POST", path, json=body, **kwargs)

    async def patch(self, path: str, body: dict[str, Any], **kwargs: Any) -> Any:
        return await self.call("PATCH", path, json=body, **kwargs)


class Services:
    def __init__(self, *, brokerage: str, providers: str, notifications: str) -> None:
        self.brokerage = Client(brokerage)
        self.providers = Client(providers)
        self.notifications = Client(notifications)

    async def close(self) -> None:
        for client in (self.brokerage, self.providers, self.notifications):
            await client.close()
