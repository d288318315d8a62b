"""The operations commands, thin over :mod:`services.operations` (which the web console uses too):

homecare kpis                  brokerage and market KPIs over a period, with RAG status
homecare tail                  follow the event streams, one decoded line per event
homecare lag                   consumer lag per group and partition, oldest unprocessed event
homecare dead-letters list|show|replay   what the consumers could not apply
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json

import typer
from rich.console import Console
from rich.table import Table

from schemas import topics as contract
from services.operations import dead_letters, kpis, streams
from services.operations.lag import lag as lag_of
from services.runtime import topics
from services.runtime.settings import admin_settings

# ---- kpis ---------------------------------------------------------------------------------


def kpis_command(
    days: float = typer.Option(7, help="Period: packages requested in the last N days"),
    since: str = typer.Option(None, help="Period start (ISO date/time), instead of --days"),
    until: str = typer.Option(None, help="Period end (ISO date/time); default now"),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of tables"),
) -> None:
    """Brokerage and market KPIs over a period, with RAG status per measure."""
    now = dt.datetime.now(dt.UTC)
    end = dt.datetime.fromisoformat(until).astimezone(dt.UTC) if until else now
    start = dt.datetime.fromisoformat(since).astimezone(dt.UTC) if since else end - dt.timedelta(days=days)
    result = asyncio.run(kpis.key_figures(admin_settings().kafka_bootstrap_servers, start=start, end=end, now=now))
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    console = Console()
    p = result["packages"]
    console.print(
        f"[bold]{p['requested']}[/bold] requested, {p['placed']} placed, {p['unplaced']} unplaced, "
        f"{p['cancelled']} cancelled, {p['handed_back']} handed back  "
        f"({result['period']['start'][:16]} to {result['period']['end'][:16]})  unplaced share: {_rag(p['rag'])}"
    )
    t = Table(title="time to place by urgency")
    for col in ("urgency", "placed", "median", "90th percentile", "RAG"):
        t.add_column(col)
    for urgency, row in result["time_to_place"]["by_urgency"].items():
        t.add_row(urgency, str(row["count"]), _secs(row["median_s"]), _secs(row["p90_s"]), _rag(row["rag"]))
    console.print(t)
    q = Table(title="unplaced queue by zone and band")
    for col in ("zone", "band", "packages", "hours/week", "longest wait"):
        q.add_column(col)
    for row in result["unplaced_queue"]:
        q.add_row(row["zone"], row["band"], str(row["packages"]), row["hours"], _secs(row["longest_wait_s"]))
    console.print(q)
    c = Table(title="provider concentration by zone (HHI 0-10,000)")
    for col in ("zone", "HHI", "largest share", "RAG"):
        c.add_column(col)
    for zone, row in result["concentration_by_zone"].items():
        top = next(iter(row["shares_percent"].items()))
        c.add_row(zone, str(row["hhi"]), f"{top[0]} {top[1]}%", _rag(row["rag"]))
    console.print(c)
    d = Table(title="decline reasons by band (cherry-picking signal)")
    reasons = sorted({r for row in result["declines_by_band"].values() for r in row})
    d.add_column("band")
    for r in reasons:
        d.add_column(r, justify="right")
    for band, row in result["declines_by_band"].items():
        d.add_row(band, *[str(row.get(r, 0)) for r in reasons])
    console.print(d)
    console.print("weekly spend by band: " + ", ".join(f"{b} £{v}" for b, v in result["weekly_spend_by_band"].items()))
    console.print(f"above-rate exceptions: {result['above_rate_exceptions']['count']}")
    thin = result["zones_with_fewer_than_two_willing_providers"]
    console.print(
        f"zones with fewer than two willing providers: {', '.join(thin['zones']) or 'none'} {_rag(thin['rag'])}"
    )


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 3600:.1f} h" if value >= 3600 else f"{value / 60:.1f} min"


def _rag(value: str | None) -> str:
    return {"green": "[green]GREEN[/green]", "amber": "[yellow]AMBER[/yellow]", "red": "[red]RED[/red]"}.get(
        value or "", "-"
    )


# ---- tail ---------------------------------------------------------------------------------


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

    def show(line: streams.Line) -> None:
        typer.echo(json.dumps(line.__dict__) if as_json else line.render())

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            streams.tail_lines(
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


def lag(as_json: bool = typer.Option(False, "--json", help="JSON instead of a table")) -> None:
    """Consumer lag per group and partition, with the age of the oldest unprocessed event."""
    rows = asyncio.run(lag_of(admin_settings().kafka_bootstrap_servers))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="consumer lag")
    for col in ("group", "topic", "partition", "committed", "end", "lag", "oldest unprocessed", "members"):
        table.add_column(col, justify="right" if col not in ("group", "topic") else "left")
    for r in rows:
        age = "-" if r["oldest_unprocessed_age_s"] is None else f"{r['oldest_unprocessed_age_s']:.0f} s"
        members = "[red]0: no active member[/red]" if r["members"] == 0 else str(r["members"])
        style = "red" if r["lag"] else None
        table.add_row(
            r["group"],
            r["topic"],
            str(r["partition"]),
            str(r["committed"]),
            str(r["end"]),
            str(r["lag"]),
            age,
            members,
            style=style,
        )
    Console().print(table)


# ---- dead letters -------------------------------------------------------------------------


dead_letters_app = typer.Typer(no_args_is_help=True, help="Messages the consumers could not apply.")


@dead_letters_app.command("list")
def list_letters(as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table")) -> None:
    letters = asyncio.run(dead_letters.read_all(admin_settings().kafka_bootstrap_servers))
    if as_json:
        for p, o, d in letters:
            typer.echo(json.dumps(dead_letters.summary(p, o, d)))
        return
    table = Table(title=f"{len(letters)} dead letters")
    for col in ("id", "failed at", "consumer", "origin", "reason", "attempts", "error"):
        table.add_column(col)
    for p, o, d in letters:
        table.add_row(
            dead_letters.letter_id(p, o),
            d.failed_at[:19],
            d.consumer,
            f"{d.origin_topic}/{d.origin_partition}@{d.origin_offset}",
            d.reason,
            str(d.attempts),
            d.error[:80],
        )
    Console().print(table)


@dead_letters_app.command("show")
def show(letter_id: str = typer.Argument(..., help="partition:offset, as listed")) -> None:
    letters = {
        dead_letters.letter_id(p, o): d
        for p, o, d in asyncio.run(dead_letters.read_all(admin_settings().kafka_bootstrap_servers))
    }
    if letter_id not in letters:
        raise typer.BadParameter(f"no dead letter {letter_id}")
    typer.echo(json.dumps(dead_letters.detail(letter_id, letters[letter_id]), indent=2))


@dead_letters_app.command("replay")
def replay(
    letter_ids: list[str] = typer.Argument(..., help="partition:offset ids to put back on their original topic"),
) -> None:
    """Republish the original bytes to the original topic; inboxes make it harmless to consumers that already
    applied it."""
    try:
        replayed = asyncio.run(dead_letters.replay_letters(admin_settings().kafka_bootstrap_servers, letter_ids))
    except LookupError as unknown:
        raise typer.BadParameter(str(unknown)) from None
    typer.echo(f"replayed {replayed} dead letter(s)")
