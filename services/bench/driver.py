"""Driving packages through the services' HTTP APIs, as a broker's system would: wait for the
services to be ready, request a batch, wait until each package rests. The demo, the benchmark and
the end-to-end tests use it."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid

import httpx

from services.notifications.domain import ADDRESS_FIELD
from services.runtime.oidc_client import OidcAuth, user_auth

# Where a package rests until someone acts: placed, unplaced (the waiting list), or waiting for a
# broker to approve paying above the band rate.
FINAL = {"placed", "unplaced", "awaiting_approval"}


async def wait_until_ready(client: httpx.AsyncClient, urls: dict[str, str], timeout: float) -> None:
    """Until every service answers ready and the brokerage knows every provider of the registry
    (TimeoutError after ``timeout`` seconds). ``urls``: service name -> base URL."""
    deadline = time.monotonic() + timeout
    # On the API port readiness wants a token (any valid one): the registry reader's.
    auth = client.auth if isinstance(client.auth, OidcAuth) else user_auth("demo-broker")
    for name, url in urls.items():
        last = "no answer yet"  # what the last try met, for the error: its cause, not only its symptom
        while True:
            try:
                answer = await client.get(f"{url}/health/ready", auth=auth)
                if answer.status_code == 200:
                    break
                last = f"HTTP {answer.status_code}: {answer.text[:300]}"
            except httpx.HTTPError as exc:
                # The token comes from the identity provider: Keycloak not running fails here.
                where = exc.request.url if isinstance(exc, httpx.RequestError) else url
                last = f"{type(exc).__name__} {exc} (at {where})"
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} at {url} is not ready after {timeout:g} s; last: {last}")
            await asyncio.sleep(0.5)
    # The brokerage learns the framework's providers from the registry topic; wait until it has.
    # The registry is staff's to read: as the demo broker unless the client has an identity of its own.
    expected = len((await client.get(f"{urls['providers']}/providers", auth=auth)).json())
    while len((await client.get(f"{urls['brokerage']}/reference/providers", auth=auth)).json()) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError("the brokerage has not received the provider registry")
        await asyncio.sleep(0.5)


async def place_batch(
    brokerage: str,
    requests: list[dict],
    *,
    concurrency: int = 8,
    timeout: float = 120,
    notifications: str | None = None,
    contact_channel: str = "log",
    auth: httpx.Auth | None = None,
) -> list[dict]:
    """POST every request, then wait until each package is placed or unplaced; returns the packages.

    With ``notifications``, each person's contact is registered there under the package id, as
    the brokerage team would (it never travels on Kafka): confirmations to the family go by
    ``contact_channel``. ``auth``: a broker's (default the demo broker, from the identity provider
    of the environment or the local Keycloak), who is recorded as requesting them."""
    async with httpx.AsyncClient(timeout=30, auth=auth or user_auth("demo-broker")) as client:
        gate = asyncio.Semaphore(concurrency)

        async def post(body: dict) -> str:
            async with gate:
                # Sent again on a dropped connection (a busy machine, a keep-alive closed as the request
                # went out) under the same Idempotency-Key: the brokerage creates the package once.
                key = str(uuid.uuid4())
                for attempt in range(1, 4):
                    try:
                        r = await client.post(f"{brokerage}/packages", json=body, headers={"Idempotency-Key": key})
                        break
                    except httpx.TransportError:
                        if attempt == 3:
                            raise
                        await asyncio.sleep(0.5 * attempt)
                r.raise_for_status()
                package_id = r.json()["package_id"]
                if notifications:
                    person = body["person"]
                    contact = {"email": person.get("email"), "phone": person.get("phone")}
                    # A channel goes with its address (the service refuses one without): a person
                    # with no email or mobile gets the log channel instead.
                    address = ADDRESS_FIELD.get(contact_channel)
                    contact["channels"] = [contact_channel if address is None or contact.get(address) else "log"]
                    put = await client.put(f"{notifications}/recipients/person/{package_id}", json=contact)
                    if put.status_code == 422:  # e.g. a channel this installation has not configured
                        raise RuntimeError(f"the family's contact was refused: {put.json().get('error')}")
                    put.raise_for_status()
                return package_id

        ids = await asyncio.gather(*(post(b) for b in requests))
        deadline = time.monotonic() + timeout
        done: dict[str, dict] = {}
        while len(done) < len(ids):
            for package_id in [i for i in ids if i not in done]:
                package = (await client.get(f"{brokerage}/packages/{package_id}")).json()
                if package["status"] in FINAL:
                    done[package_id] = package
            if len(done) < len(ids):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(ids) - len(done)} packages not final after {timeout}s")
                await asyncio.sleep(0.3)
        return [done[i] for i in ids]


def seconds_to_decide(package: dict) -> float:
    """Seconds from a package's request to its placement (or to its being unplaced)."""
    end = package["placed_at"] or package["unplaced_at"]
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(package["requested_at"])).total_seconds()
