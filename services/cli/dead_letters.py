"""``homecare dead-letters``: list, show and replay what consumers could not apply."""

from __future__ import annotations

import asyncio
import json

import typer
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from services.runtime import topics
from services.runtime.dead_letters import DeadLetter
from services.runtime.kafka import kafka_security, read_topic
from services.runtime.settings import admin_settings

app = typer.Typer(no_args_is_help=True, help="Messages the consumers could not apply.")


async def read_all(bootstrap: str, security: dict | None = None) -> list[tuple[int, int, DeadLetter]]:
    """Every dead letter as (partition, offset, letter), oldest first (``security``: the reader's
    Kafka identity, default the operator's)."""
    letters = []
    for r in await read_topic(bootstrap, topics.dead_letters(), security=security):
        headers = {k: v.decode(errors="replace") for k, v in (r.headers or ())}
        letters.append((r.partition, r.offset, DeadLetter.from_record(r.key, r.value or b"", headers)))
    letters.sort(key=lambda x: x[2].failed_at)
    return letters


def _id(partition: int, offset: int) -> str:
    return f"{partition}:{offset}"


@app.command("list")
def list_letters(as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table")) -> None:
    letters = asyncio.run(read_all(admin_settings().kafka_bootstrap_servers))
    if as_json:
        for p, o, d in letters:
            typer.echo(
                json.dumps(
                    {
                        "id": _id(p, o),
                        "key": d.key.decode(errors="replace") if d.key else None,
                        "origin": f"{d.origin_topic}/{d.origin_partition}@{d.origin_offset}",
                        "consumer": d.consumer,
                        "reason": d.reason,
                        "error": d.error,
                        "attempts": d.attempts,
                        "failed_at": d.failed_at,
                    }
                )
            )
        return
    table = Table(title=f"{len(letters)} dead letters")
    for col in ("id", "failed at", "consumer", "origin", "reason", "attempts", "error"):
        table.add_column(col)
    for p, o, d in letters:
        table.add_row(
            _id(p, o),
            d.failed_at[:19],
            d.consumer,
            f"{d.origin_topic}/{d.origin_partition}@{d.origin_offset}",
            d.reason,
            str(d.attempts),
            d.error[:80],
        )
    Console().print(table)


@app.command("show")
def show(letter_id: str = typer.Argument(..., help="partition:offset, as listed")) -> None:
    letters = {(_id(p, o)): d for p, o, d in asyncio.run(read_all(admin_settings().kafka_bootstrap_servers))}
    if letter_id not in letters:
        raise typer.BadParameter(f"no dead letter {letter_id}")
    d = letters[letter_id]
    typer.echo(
        json.dumps(
            {
                "id": letter_id,
                "origin_topic": d.origin_topic,
                "origin_partition": d.origin_partition,
                "origin_offset": d.origin_offset,
                "consumer": d.consumer,
                "service": d.service,
                "reason": d.reason,
                "error": d.error,
                "attempts": d.attempts,
                "failed_at": d.failed_at,
                "key": d.key.decode(errors="replace") if d.key else None,
                "value": d.value.decode(errors="replace"),
            },
            indent=2,
        )
    )


async def replay_letters(bootstrap: str, letter_ids: list[str], security: dict | None = None) -> int:
    """Republish the original bytes to the original topic (LookupError for an unknown id).
    ``security``: an identity that may read the dead letters and write their topics (the ``ops``
    principal or the administrator; default the operator's)."""
    letters = {(_id(p, o)): d for p, o, d in await read_all(bootstrap, security)}
    unknown = [i for i in letter_ids if i not in letters]
    if unknown:
        raise LookupError(f"no dead letter {', '.join(unknown)}")
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, **(kafka_security() if security is None else security)
    )
    await producer.start()
    try:
        for i in letter_ids:
            d = letters[i]
            headers = [(k, v.encode()) for k, v in d.original_headers.items()] + [("x-replayed-from", i.encode())]
            await producer.send_and_wait(d.origin_topic, d.value, key=d.key, headers=headers)
    finally:
        await producer.stop()
    return len(letter_ids)


@app.command("replay")
def replay(
    letter_ids: list[str] = typer.Argument(..., help="partition:offset ids to put back on their original topic"),
) -> None:
    """Republish the original bytes to the original topic; inboxes make it harmless to consumers that already
    applied it."""
    try:
        replayed = asyncio.run(replay_letters(admin_settings().kafka_bootstrap_servers, letter_ids))
    except LookupError as unknown:
        raise typer.BadParameter(str(unknown)) from None
    typer.echo(f"replayed {replayed} dead letter(s)")
