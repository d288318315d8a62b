"""``homecare demo``: place a batch of synthetic packages end to end and summarise the outcome."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter, defaultdict

import httpx
import typer
from rich.console import Console
from rich.table import Table

from services.cli.synthetic import batch
from services.runtime.oidc_client import OidcAuth, user_auth
from services.runtime.reference import load_framework

# Where a package rests until someone acts: placed, unplaced (the waiting list), or waiting for a
# broker to approve paying above the band rate.
FINAL = {"placed", "unplaced", "awaiting_approval"}


async def wait_until_ready(client: httpx.AsyncClient, urls: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for name, url in urls.items():
        while True:
            try:
                if (await client.get(f"{url}/health/ready")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} at {url} is not ready")
            await asyncio.sleep(0.5)
    # The brokerage learns the framework's providers from the registry topic; wait until it has.
    # The registry is staff's to read: as the demo broker unless the client has an identity of its own.
    auth = client.auth if isinstance(client.auth, OidcAuth) else user_auth("demo-broker")
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
    ``contact_channel``. ``auth``: a broker's (services/runtime/oidc_client.py), who is recorded
    as requesting them."""
    async with httpx.AsyncClient(timeout=30, auth=auth or user_auth("demo-broker")) as client:
        gate = asyncio.Semaphore(concurrency)

        async def post(body: dict) -> str:
            async with gate:
                r = await client.post(f"{brokerage}/packages", json=body)
                r.raise_for_status()
                package_id = r.json()["package_id"]
                if notifications:
                    person = body["person"]
                    contact = {
                        "email": person.get("email"),
                        "phone": person.get("phone"),
                        "channels": [contact_channel],
                    }
                    (
                        await client.put(f"{notifications}/recipients/person/{package_id}", json=contact)
                    ).raise_for_status()
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
    import datetime as dt

    end = package["placed_at"] or package["unplaced_at"]
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(package["requested_at"])).total_seconds()


def summary_table(packages: list[dict]) -> Table:
    by_zone: dict[str, list[dict]] = defaultdict(list)
    for p in packages:
        by_zone[p["package"]["zone"]].append(p)
    table = Table(
        title=f"{len(packages)} packages requested (not placed: unplaced, or awaiting approval of an above-rate bid)"
    )
    table.add_column("zone", no_wrap=True, min_width=26)
    for col in ("requested", "placed", "not placed", "median s to place", "max s to place"):
        table.add_column(col, justify="right")
    for zone, items in sorted(by_zone.items()):
        placed = [p for p in items if p["status"] == "placed"]
        times = [seconds_to_decide(p) for p in placed]
        table.add_row(
            zone,
            str(len(items)),
            str(len(placed)),
            str(len(items) - len(placed)),
            f"{statistics.median(times):.2f}" if times else "-",
            f"{max(times):.2f}" if times else "-",
        )
    placed = [p for p in packages if p["status"] == "placed"]
    times = [seconds_to_decide(p) for p in placed]
    table.add_section()
    table.add_row(
        "all zones",
        str(len(packages)),
        str(len(placed)),
        str(len(packages) - len(placed)),
        f"{statistics.median(times):.2f}" if times else "-",
        f"{max(times):.2f}" if times else "-",
    )
    return table


def demo(
    packages: int = typer.Option(60, help="How many packages to request"),
    seed: int = typer.Option(7, help="Seed of the synthetic requests"),
    brokerage: str = typer.Option("http://127.0.0.1:8001", envvar="BROKERAGE_URL"),
    providers: str = typer.Option("http://127.0.0.1:8002", envvar="PROVIDERS_URL"),
    notifications: str = typer.Option("http://127.0.0.1:8003", envvar="NOTIFICATIONS_URL"),
    contact_channel: str = typer.Option(
        "log", help="How the families' confirmations go: log, email, notify_email, notify_sms"
    ),
) -> None:
    """Request a batch of synthetic packages across all 14 zones and show how they were placed."""
    console = Console()
    urls = {"brokerage": brokerage, "providers": providers, "notifications": notifications}

    # The demo acts as the demo broker, signed in at the identity provider (development only).
    broker = user_auth("demo-broker")

    async def run() -> list[dict]:
        async with httpx.AsyncClient(timeout=10, auth=broker) as client:
            await wait_until_ready(client, urls, timeout=120)
        requests = batch(load_framework(), packages, seed=seed)
        with console.status(f"placing {packages} packages..."):
            result = await place_batch(
                brokerage, requests, notifications=notifications, contact_channel=contact_channel, auth=broker
            )
        await asyncio.sleep(1)  # the dispatcher's last sends
        async with httpx.AsyncClient(timeout=10, auth=broker) as client:
            confirmed = 0
            deliveries: Counter = Counter()
            for p in result:
                rows = (await client.get(f"{notifications}/packages/{p['package_id']}/notifications")).json()
                deliveries.update((r["channel"], r["status"]) for r in rows)
                if p["status"] == "placed":
                    confirmed += any(r["event_type"] == "PackagePlaced" for r in rows)
        console.print(summary_table(result))
        reasons = Counter(
            next((t["detail"].get("reason") for t in p["timeline"] if t["stage"] == "unplaced"), "?")
            for p in result
            if p["status"] == "unplaced"
        )
        for reason, n in reasons.most_common():
            console.print(f"unplaced - {reason}: {n}")
        awaiting = sum(p["status"] == "awaiting_approval" for p in result)
        if awaiting:
            console.print(f"awaiting a broker's approval to pay above the band rate: {awaiting}")
        placed = sum(p["status"] == "placed" for p in result)
        console.print(f"placements confirmed by notifications: {confirmed} of {placed}")
        console.print(
            "notifications (channel, status): " + ", ".join(f"{c} {s}: {n}" for (c, s), n in sorted(deliveries.items()))
        )
        return result

    asyncio.run(run())
