"""``homecare demo``: place a batch of synthetic packages end to end and summarise the outcome."""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter, defaultdict

import httpx
import typer
from rich.console import Console
from rich.table import Table

from services.bench.driver import place_batch, seconds_to_decide, wait_until_ready
from services.runtime.oidc_client import user_auth
from services.runtime.reference import load_framework
from services.simulator.synthetic import batch


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
