"""``homecare demo``: place a batch of synthetic packages end to end and summarise the outcome."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from functools import partial

import typer

from services.cli import output
from services.runtime.ports import local_url, local_url_shown

# The driver and the synthetic requests are imported where they are used: every `homecare`
# command loads this module.


def _line(name: str, items: list[dict]) -> dict:
    from services.bench.driver import seconds_to_decide

    placed = [p for p in items if p["status"] == "placed"]
    times = [seconds_to_decide(p) for p in placed]
    return {
        "zone": name,
        "requested": len(items),
        "placed": len(placed),
        "not_placed": len(items) - len(placed),
        "median_seconds_to_place": round(statistics.median(times), 2) if times else None,
        "max_seconds_to_place": round(max(times), 2) if times else None,
    }


def summary(packages: list[dict], *, confirmed: int, deliveries: Counter) -> dict:
    """The demo's report from the packages as the brokerage returned them: per zone and in all
    (requested, placed, not placed, median and longest seconds to place), why the unplaced were not
    placed, how many await a broker's approval, and the notifications sent (``deliveries``:
    (channel, status) -> count; ``confirmed``: placements whose confirmation went out)."""
    by_zone: dict[str, list[dict]] = defaultdict(list)
    for p in packages:
        by_zone[p["package"]["zone"]].append(p)
    reasons = Counter(
        next((t["detail"].get("reason") for t in p["timeline"] if t["stage"] == "unplaced"), "?")
        for p in packages
        if p["status"] == "unplaced"
    )
    return {
        "zones": [_line(zone, items) for zone, items in sorted(by_zone.items())],
        "all_zones": _line("all zones", packages),
        "unplaced_reasons": dict(reasons.most_common()),
        "awaiting_approval": sum(p["status"] == "awaiting_approval" for p in packages),
        "placements_confirmed": confirmed,
        "notifications": [{"channel": c, "status": s, "count": n} for (c, s), n in sorted(deliveries.items())],
    }


def render(report: dict, room: int) -> str:
    """The demo's report as text at most ``room`` characters wide."""
    Col = output.Column
    columns = [Col("zone"), Col("requested", right=True), Col("placed", right=True), Col("not placed", right=True)]
    columns += [Col("median s to place", right=True), Col("max s to place", right=True)]

    def cells(line: dict) -> tuple:
        return (
            line["zone"],
            line["requested"],
            line["placed"],
            line["not_placed"],
            "-" if line["median_seconds_to_place"] is None else f"{line['median_seconds_to_place']:.2f}",
            "-" if line["max_seconds_to_place"] is None else f"{line['max_seconds_to_place']:.2f}",
        )

    total = report["all_zones"]
    lines = [
        output.table(
            columns,
            [cells(line) for line in [*report["zones"], total]],
            title=f"{total['requested']} packages requested (not placed: unplaced, or awaiting approval of an "
            "above-rate bid)",
            room=room,
        )
    ]
    for reason, n in report["unplaced_reasons"].items():
        lines.append(output.paragraph(f"unplaced - {reason}: {n}", room))
    if report["awaiting_approval"]:
        lines.append(
            output.paragraph(
                f"awaiting a broker's approval to pay above the band rate: {report['awaiting_approval']}", room
            )
        )
    lines.append(
        output.paragraph(
            f"placements confirmed by notifications: {report['placements_confirmed']} of {total['placed']}", room
        )
    )
    sent = ", ".join(f"{d['channel']} {d['status']}: {d['count']}" for d in report["notifications"]) or "none"
    lines.append(output.paragraph(f"notifications (channel, status): {sent}", room))
    return "\n".join(lines)


def demo(
    packages: int = typer.Option(60, help="How many packages to request"),
    seed: int = typer.Option(7, help="Seed of the synthetic requests"),
    brokerage: str = typer.Option(
        default_factory=partial(local_url, "brokerage"),
        show_default=local_url_shown("brokerage"),
        envvar="BROKERAGE_URL",
    ),
    providers: str = typer.Option(
        default_factory=partial(local_url, "providers"),
        show_default=local_url_shown("providers"),
        envvar="PROVIDERS_URL",
    ),
    notifications: str = typer.Option(
        default_factory=partial(local_url, "notifications"),
        show_default=local_url_shown("notifications"),
        envvar="NOTIFICATIONS_URL",
    ),
    contact_channel: str = typer.Option(
        "log", help="How the families' confirmations go: log, email, notify_email, notify_sms"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON only"),
) -> None:
    """Request a batch of synthetic packages across all 14 zones and show how they were placed."""
    import asyncio

    import httpx
    from rich.console import Console

    from services.runtime.oidc_client import user_auth

    console = Console(stderr=True)  # progress only: stdout is the report's
    urls = {"brokerage": brokerage, "providers": providers, "notifications": notifications}

    # The demo acts as the demo broker, signed in at the identity provider (development only).
    broker = user_auth("demo-broker")

    from services.bench.driver import place_batch, wait_until_ready
    from services.runtime.reference import load_framework
    from services.simulator.synthetic import batch

    async def run() -> dict:
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
        return summary(result, confirmed=confirmed, deliveries=deliveries)

    report = asyncio.run(run())
    if as_json:
        output.echo_json(report)
    else:
        output.echo(render(report, output.width()))
