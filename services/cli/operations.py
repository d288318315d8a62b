"""The operations commands, thin over :mod:`services.operations` (which the web console uses too):

homecare kpis                  brokerage and market KPIs over a period, with RAG status (from the reporting service)
homecare tail                  follow the event streams, one decoded line per event
homecare lag                   consumer lag per group and partition, oldest unprocessed event
homecare dead-letters list|show|replay   what the consumers could not apply
homecare outbox parked|retry|discard     outbox rows Kafka refused for good
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from functools import partial
from typing import TYPE_CHECKING

import typer

from services.cli import output
from services.runtime import clock
from services.runtime.numbers import whole_number
from services.runtime.ports import local_url, local_url_shown

if TYPE_CHECKING:
    from services.operations import streams

# The commands' own machinery (Kafka clients, the outbox's SQL, even asyncio) is imported by the
# command that uses it: every `homecare` command loads this module, and `homecare kpis` should not
# pay for what it does not use (tests/unit/test_cli_start_up.py lists what it must not load).

# ---- kpis ---------------------------------------------------------------------------------


def kpis_command(
    days: float = typer.Option(7, help="Period: packages requested in the last N days"),
    period: str = typer.Option(None, help="Period as a length instead of --days: 365d (days) or 52w (weeks)"),
    since: str = typer.Option(
        None, help="Period start, instead of --days: a UK date (from its midnight) or an ISO date/time (UK time)"
    ),
    until: str = typer.Option(None, help="Period end (exclusive), as --since; default now"),
    zone: str = typer.Option(None, help="Only packages in this zone"),
    band: str = typer.Option(None, help="Only packages in this band"),
    as_json: bool = typer.Option(False, "--json", help="JSON only, instead of the report"),
    url: str = typer.Option(
        default_factory=partial(local_url, "reporting"),
        show_default=local_url_shown("reporting"),
        envvar="REPORTING_URL",
        help="The reporting service",
    ),
) -> None:
    """Brokerage and market KPIs over a period, with RAG status per measure, from the reporting
    service's projection (``GET /kpis``; as ``HOMECARE_CLI_USER``, default demo-ops)."""
    now = clock.now()
    if period is not None:
        days = _period_days(period)
    try:
        end = clock.parse_uk_bound(until) if until else now
        start = clock.parse_uk_bound(since) if since else end - dt.timedelta(days=days)
    except ValueError as bad:
        raise typer.BadParameter(f"{bad}: give a date (2027-03-28) or a date and time (2027-03-28T09:00)") from None
    params = {"from": start.isoformat(), "to": end.isoformat()}
    params |= {k: v for k, v in (("zone", zone), ("band", band)) if v}
    result = reporting_kpis(url, params)
    if as_json:
        output.echo_json(result)
        return
    output.echo(render_kpis(result, output.width()))


def _period_days(period: str) -> float:
    """``365d`` -> 365, ``52w`` -> 364; anything else is a bad ``--period``."""
    number, unit = period.strip()[:-1], period.strip()[-1:].lower()
    count = whole_number(number) if number == number.strip() else None
    if unit in ("d", "w") and count:
        return count * (7 if unit == "w" else 1)
    raise typer.BadParameter(f"{period!r}: give a number of days or weeks, as 365d or 52w", param_hint="--period")


def reporting_kpis(url: str, params: dict[str, str]) -> dict:
    """``GET /kpis`` of the reporting service at ``url``; a refusal is printed and exits 1."""
    import httpx

    from services.runtime.oidc_client import TokenError, user_auth

    try:
        auth = user_auth(os.environ.get("HOMECARE_CLI_USER", "demo-ops"))
    except TokenError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        response = httpx.get(f"{url}/kpis", params=params, auth=auth, timeout=30)
    except httpx.HTTPError as exc:
        raise output.service_unreachable("reporting", url, exc) from None
    if response.status_code >= 400:
        typer.echo(f"refused ({response.status_code}): {response.json().get('error', response.text)}", err=True)
        raise typer.Exit(1)
    result: dict = response.json()
    return result


def render_kpis(result: dict, room: int) -> str:
    """The KPI report (the figures of :func:`services.operations.kpis.compute`) as text at most
    ``room`` characters wide."""
    p = result["packages"]
    sections = [
        output.paragraph(
            f"{p['requested']} requested, {p['placed']} placed, {p['unplaced']} unplaced, "
            f"{p['cancelled']} cancelled, {p['handed_back']} handed back, {p['awaiting_approval']} awaiting "
            f"approval ({clock.format_uk(result['period']['start'])} to "
            f"{clock.format_uk(result['period']['end'])}); unplaced share: "
            f"{_share(p['unplaced_share'])} {_rag(p['rag'])}",
            room,
        )
    ]
    Col = output.Column
    sections.append(
        output.table(
            [
                Col("urgency", wrap=True),
                Col("placed", right=True),
                Col("median", right=True),
                Col("90th percentile", right=True),
                Col("RAG"),
            ],
            [
                (u.replace("_", " "), row["count"], _secs(row["median_s"]), _secs(row["p90_s"]), _rag(row["rag"]))
                for u, row in result["time_to_place"]["by_urgency"].items()
            ],
            title="time to place by urgency",
            room=room,
        )
    )
    sections.append(
        output.table(
            [
                Col("zone"),
                Col("band"),
                Col("packages", right=True),
                Col("hours/week", right=True),
                Col("longest wait", right=True),
            ],
            [
                (r["zone"], r["band"], r["packages"], r["hours"], _secs(r["longest_wait_s"]))
                for r in result["unplaced_queue"]
            ],
            title="unplaced queue by zone and band",
            room=room,
        )
    )
    concentration = []
    for zone, row in result["concentration_by_zone"].items():
        top = next(iter(row["shares_percent"].items()), None)
        concentration.append((zone, row["hhi"], f"{top[0]} {top[1]}%" if top else "-", _rag(row["rag"])))
    sections.append(
        output.table(
            [Col("zone"), Col("HHI", right=True), Col("largest share", wrap=True), Col("RAG")],
            concentration,
            title="provider concentration by zone (HHI 0-10,000)",
            room=room,
        )
    )
    reasons = sorted({r for row in result["declines_by_band"].values() for r in row})
    sections.append(
        output.table(
            [Col("band"), *(Col(r.replace("_", " "), right=True) for r in reasons)],
            [(band, *(row.get(r, 0) for r in reasons)) for band, row in result["declines_by_band"].items()],
            title="decline reasons by band (cherry-picking signal)",
            room=room,
        )
    )
    spend = ", ".join(f"{b} £{v}" for b, v in result["weekly_spend_by_band"].items()) or "none"
    thin = result["zones_with_fewer_than_two_willing_providers"]
    above = result["above_rate_exceptions"]
    sections.append(
        "\n".join(
            [
                output.paragraph(f"weekly spend by band: {spend}", room),
                output.paragraph(f"above-rate exceptions: {above['count']} {_rag(above['rag'])}".rstrip(" -"), room),
                output.paragraph(
                    f"zones with fewer than two willing providers: {', '.join(thin['zones']) or 'none'} "
                    f"{_rag(thin['rag'])}",
                    room,
                ),
            ]
        )
    )
    return "\n\n".join(sections)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 3600:.1f} h" if value >= 3600 else f"{value / 60:.1f} min"


def _rag(value: str | None) -> str:
    return {"green": "GREEN", "amber": "AMBER", "red": "RED"}.get(value or "", "-")


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
    import asyncio

    from schemas import topics as contract
    from services.operations import streams
    from services.runtime import topics
    from services.runtime.settings import admin_settings

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


def lag(as_json: bool = typer.Option(False, "--json", help="JSON only, instead of the report")) -> None:
    """Consumer lag per group and partition, with the age of the oldest unprocessed event."""
    import asyncio

    from services.operations.lag import lag as lag_of
    from services.runtime.settings import admin_settings

    rows = asyncio.run(lag_of(admin_settings().kafka_bootstrap_servers))
    if as_json:
        output.echo_json(rows)
        return
    output.echo(render_lag(rows, output.width()))


def render_lag(rows: list[dict], room: int) -> str:
    """Consumer lag as text at most ``room`` characters wide: one table per group and topic, a
    row per partition; a group with no active member says so in capitals."""
    behind = sum(r["lag"] for r in rows)
    sections = [output.paragraph(f"consumer lag: {behind} event(s) waiting in {len(rows)} partition(s)", room)]
    by_topic: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by_topic.setdefault((r["group"], r["topic"]), []).append(r)
    Col = output.Column
    columns = [Col("partition", right=True), Col("committed", right=True), Col("end", right=True)]
    columns += [Col("lag", right=True), Col("oldest unprocessed", right=True)]
    for (group, topic), partitions in by_topic.items():
        members = partitions[0]["members"]
        who = "NO ACTIVE MEMBER" if members == 0 else f"{members} member(s)"
        sections.append(
            output.table(
                columns,
                [
                    (
                        r["partition"],
                        r["committed"],
                        r["end"],
                        r["lag"],
                        "-" if r["oldest_unprocessed_age_s"] is None else f"{r['oldest_unprocessed_age_s']:.0f} s",
                    )
                    for r in partitions
                ],
                title=f"group {group} ({who}) reading {topic}",
                room=room,
            )
        )
    return "\n\n".join(sections)


# ---- dead letters -------------------------------------------------------------------------


dead_letters_app = typer.Typer(no_args_is_help=True, help="Messages the consumers could not apply.")


@dead_letters_app.command("list")
def list_letters(as_json: bool = typer.Option(False, "--json", help="JSON lines only, one dead letter a line")) -> None:
    """Every dead letter, oldest first: its id, when, which consumer, its origin, the reason and error."""
    import asyncio

    from services.operations import dead_letters
    from services.runtime.settings import admin_settings

    letters = asyncio.run(dead_letters.read_all(admin_settings().kafka_bootstrap_servers))
    summaries = [dead_letters.summary(p, o, d) for p, o, d in letters]
    if as_json:
        for letter in summaries:
            typer.echo(json.dumps(letter))
        return
    output.echo(render_letters(summaries, output.width()))


def render_letters(summaries: list[dict], room: int) -> str:
    """Dead letters (as :func:`services.operations.dead_letters.summary` gives them) as text at most
    ``room`` characters wide; the error in full, wrapped."""
    Col = output.Column
    columns = [Col("id"), Col("failed at"), Col("consumer"), Col("origin"), Col("reason"), Col("attempts", right=True)]
    return output.table(
        [*columns, Col("error", wrap=True)],
        [
            (
                s["id"],
                clock.format_uk(s["failed_at"]),
                s["consumer"],
                s["origin"],
                s["reason"],
                s["attempts"],
                s["error"],
            )
            for s in summaries
        ],
        title=f"{len(summaries)} dead letter(s)",
        room=room,
    )


@dead_letters_app.command("show")
def show(letter_id: str = typer.Argument(..., help="partition:offset, as listed")) -> None:
    """One dead letter in full, as JSON."""
    import asyncio

    from services.operations import dead_letters
    from services.runtime.settings import admin_settings

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
    import asyncio

    from services.operations import dead_letters
    from services.runtime.settings import admin_settings

    try:
        replayed = asyncio.run(dead_letters.replay_letters(admin_settings().kafka_bootstrap_servers, letter_ids))
    except (LookupError, ValueError) as refused:  # unknown, or cut to fit Kafka
        raise typer.BadParameter(str(refused)) from None
    typer.echo(f"replayed {replayed} dead letter(s)")


# ---- parked outbox rows -------------------------------------------------------------------


outbox_app = typer.Typer(no_args_is_help=True, help="Outbox rows Kafka refused for good (parked).")


@outbox_app.command("parked")
def outbox_parked(as_json: bool = typer.Option(False, "--json", help="JSON lines only, one row a line")) -> None:
    """Outbox rows Kafka refused for good, with the error and how many rows wait behind each."""
    import asyncio

    from services.operations import outbox
    from services.runtime.settings import admin_settings

    rows = asyncio.run(outbox.parked_rows(admin_settings().database_url))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    output.echo(render_parked(rows, output.width()))


def render_parked(rows: list[dict], room: int) -> str:
    """Parked outbox rows as text at most ``room`` characters wide; the error in full, wrapped."""
    Col = output.Column
    columns = [Col("service"), Col("id"), Col("parked at"), Col("event"), Col("aggregate")]
    columns += [Col("bytes", right=True), Col("held", right=True), Col("error", wrap=True)]
    return output.table(
        columns,
        [
            (
                r["service"],
                r["id"],
                clock.format_uk(r["parked_at"]),  # for people: UK local time
                r["type"],
                r["aggregate"],
                r["payload_bytes"],
                r["held"],
                r["error"] or "-",
            )
            for r in rows
        ],
        title=f"{len(rows)} parked outbox row{'s' if len(rows) != 1 else ''}",
        room=room,
    )


@outbox_app.command("retry")
def outbox_retry(ids: list[str] = typer.Argument(..., help="ids of parked rows, as listed")) -> None:
    """Put parked rows back in the relay's queue, once the cause is fixed."""
    import asyncio

    from services.operations import outbox
    from services.runtime.settings import admin_settings

    try:
        done = asyncio.run(outbox.retry_rows(admin_settings().database_url, ids))
    except LookupError as unknown:
        raise typer.BadParameter(str(unknown)) from None
    typer.echo(f"{len(done)} row(s) back in the queue")


@outbox_app.command("discard")
def outbox_discard(
    ids: list[str] = typer.Argument(..., help="ids of parked rows, as listed"),
    by: str = typer.Option(..., "--by", help="who decided (recorded with the row)"),
) -> None:
    """Give parked rows up for good: their events are never published; the rows behind them go."""
    import asyncio

    from services.operations import outbox
    from services.runtime.settings import admin_settings

    try:
        done = asyncio.run(outbox.discard_rows(admin_settings().database_url, ids, by))
    except LookupError as unknown:
        raise typer.BadParameter(str(unknown)) from None
    typer.echo(f"{len(done)} row(s) discarded")
