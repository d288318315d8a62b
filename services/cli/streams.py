"""``homecare tail`` and ``homecare lag``: what is flowing on the event streams, and what is stuck.

tail  decodes every event into one line (time, type, package, zone, band, provider, outcome),
      filterable by package, zone, provider or type; ``--journey ID`` follows one package's
      correlation id across the three services' topics, in order.
lag   per consumer group and partition: committed offset, end offset, lag, and the age of the
      oldest unprocessed event; groups with no active member are flagged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from dataclasses import dataclass

import typer
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from rich.console import Console
from rich.table import Table

from schemas import topics as contract
from services.runtime import topics
from services.runtime.kafka import consumer_lag, kafka_security, partitions_of, read_topic
from services.runtime.settings import SERVICES, admin_settings

# ---- tail ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    at: str
    topic: str
    event_type: str
    package_id: str
    zone: str
    band: str
    provider: str
    outcome: str
    correlation_id: str

    def render(self) -> str:
        return "  ".join(
            [
                self.at[:23],
                f"{self.event_type:<18}",
                self.package_id[:36] or "-",
                self.zone or "-",
                self.band or "-",
                self.provider or "-",
                self.outcome,
            ]
        )


def describe(record: ConsumerRecord) -> Line:
    """One line for one record; anything undecodable is shown as such, never skipped."""
    at = dt.datetime.fromtimestamp(record.timestamp / 1000, dt.UTC).isoformat()
    try:
        e = json.loads(record.value)
        if not isinstance(e, dict):
            raise ValueError
    except (ValueError, TypeError):
        return Line(at, record.topic, "(undecodable)", "", "", "", "", f"{len(record.value or b'')} bytes", "")
    spec = e.get("package") or {}
    profile = e.get("profile") or {}
    kind = e.get("event_type", "?")
    outcome = {
        "PackageRequested": f"{spec.get('hours_per_week')} h/week, {spec.get('urgency')}",
        "OfferMade": f"round {e.get('offer_round')} {e.get('tier')} to {len(e.get('provider_ids') or [])} provider(s)",
        "BidSubmitted": f"bid £{e.get('hourly_rate')}/h from {e.get('earliest_start')}",
        "OfferDeclined": f"declined: {e.get('reason')}",
        "PackagePlaced": f"placed at £{e.get('hourly_rate')}/h ({e.get('tier')} tier)",
        "PackageUnplaced": f"unplaced: {e.get('reason')}",
        "ProviderUpdated": (
            f"revision {e.get('revision')}, {profile.get('status')}, committed {profile.get('committed_hours')} h"
        ),
        "PlacementConfirmed": f"confirmed to {', '.join(r.get('kind', '?') for r in e.get('recipients') or [])}",
        "NotificationFailed": (
            f"{e.get('message')} to {e.get('recipient_kind')} by {e.get('channel')} failed: {e.get('reason')}"
        ),
    }.get(kind, "")
    if topics.dead_letters() == record.topic:
        headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
        kind, outcome = "(dead letter)", f"{headers.get('x-dlq-reason')}: {headers.get('x-dlq-error', '')[:60]}"
    return Line(
        at,
        record.topic,
        kind,
        str(e.get("package_id") or ""),
        e.get("zone") or spec.get("zone") or "",
        e.get("band") or spec.get("band") or "",
        e.get("provider_id") or profile.get("provider_id") or "",
        outcome,
        str(e.get("correlation_id") or ""),
    )


def matches(
    line: Line,
    *,
    package: str | None,
    zone: str | None,
    provider: str | None,
    event_type: str | None,
    journey: str | None,
) -> bool:
    return (
        (package is None or line.package_id == package)
        and (zone is None or line.zone == zone)
        and (provider is None or line.provider == provider)
        and (event_type is None or line.event_type == event_type)
        and (journey is None or line.correlation_id == journey)
    )


async def tail_lines(
    bootstrap: str,
    names: list[str],
    *,
    follow: bool,
    from_beginning: bool,
    on_line,
    on_ready=None,
    security: dict | None = None,
    **filters,
) -> None:
    """Feed ``on_line`` every matching record of the topics, oldest first (then live, with follow).
    With follow, ``on_ready()`` is called once every partition's starting offset is fixed: no
    record written after that is missed."""
    if not follow:
        records = []
        for name in names:
            records += await read_topic(bootstrap, name, security=security)
        for record in sorted(records, key=lambda r: (r.timestamp, r.topic, r.partition, r.offset)):
            line = describe(record)
            if matches(line, **filters):
                on_line(line)
        return
    security = kafka_security() if security is None else security
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **security)
    await consumer.start()
    try:
        partitions = [TopicPartition(n, p) for n in names for p in await partitions_of(bootstrap, n, security)]
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        if on_ready is not None:
            for tp in partitions:  # seeks resolve lazily; resolving them now fixes the start
                await consumer.position(tp)
            on_ready()
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for record in sorted((r for rs in batch.values() for r in rs), key=lambda r: r.timestamp):
                line = describe(record)
                if matches(line, **filters):
                    on_line(line)
    finally:
        await consumer.stop()


def tail(
    topic: list[str] = typer.Option(None, "--topic", "-t", help="Topic(s) to follow (contract names); default all"),
    package: str = typer.Option(None, help="Only this package id"),
    zone: str = typer.Option(None, help="Only this zone"),
    provider: str = typer.Option(None, help="Only this provider id"),
    event_type: str = typer.Option(None, "--type", help="Only this event type"),
    journey: str = typer.Option(None, help="Follow one correlation id (a package's journey) across all topics"),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Keep following live, or stop at the current end"),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="With --follow, start from the oldest event"),
    as_json: bool = typer.Option(False, "--json", help="JSON lines"),
) -> None:
    """Follow the event streams, one decoded line per event."""
    names = [topics.resolve(t) for t in (topic or contract.ALL)]
    if journey or package:
        from_beginning = True

    def show(line: Line) -> None:
        typer.echo(json.dumps(line.__dict__) if as_json else line.render())

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            tail_lines(
                admin_settings().kafka_bootstrap_servers,
                names,
                follow=follow,
                from_beginning=from_beginning,
                on_line=show,
                package=package,
                zone=zone,
                provider=provider,
                event_type=event_type,
                journey=journey,
            )
        )


# ---- lag ----------------------------------------------------------------------------------


def subscriptions() -> dict[str, list[str]]:
    """Every service's consumer group and the topics it reads, as deployed."""
    return {topics.group(s): [topics.resolve(t) for t in contract.CONSUMED_BY[s]] for s in SERVICES}


def lag(as_json: bool = typer.Option(False, "--json", help="JSON instead of a table")) -> None:
    """Consumer lag per group and partition, with the age of the oldest unprocessed event."""
    rows = asyncio.run(consumer_lag(admin_settings().kafka_bootstrap_servers, subscriptions()))
    if as_json:
        typer.echo(json.dumps([r.__dict__ | {"lag": r.lag} for r in rows], indent=2))
        return
    table = Table(title="consumer lag")
    for col in ("group", "topic", "partition", "committed", "end", "lag", "oldest unprocessed", "members"):
        table.add_column(col, justify="right" if col not in ("group", "topic") else "left")
    for r in rows:
        age = "-" if r.oldest_unprocessed_age_s is None else f"{r.oldest_unprocessed_age_s:.0f} s"
        members = "[red]0: no active member[/red]" if r.members == 0 else str(r.members)
        style = "red" if r.lag else None
        table.add_row(
            r.group, r.topic, str(r.partition), str(r.committed), str(r.end), str(r.lag), age, members, style=style
        )
    Console().print(table)
