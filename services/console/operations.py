"""What the operations pages show, read the way the ``homecare`` CLI reads it (the same
functions: decoded event lines, consumer lag, dead letters, KPIs from the event streams)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

from schemas import topics as contract
from services.cli import dead_letters, kpis, streams
from services.runtime import topics
from services.runtime.kafka import consumer_lag, kafka_security
from services.runtime.reference import load_framework
from services.runtime.settings import ServiceSettings

STREAM_BUFFER = 1000  # lines held for a slow browser; beyond that the oldest are dropped


def event_types() -> list[str]:
    return sorted(event.__name__ for event in contract.TOPIC_OF)


# The console reads Kafka as its own principal (read-only: topics, and the services' group offsets
# for lag); only a replay writes, as the replay principal (docs/guide/kafka-security.md).


class ReplayNotAllowed(Exception):
    """The console has no identity that may write a dead letter back to its topic."""


async def lag(settings: ServiceSettings) -> list[dict]:
    rows = await consumer_lag(settings.kafka_bootstrap_servers, streams.subscriptions(), kafka_security(settings))
    return [r.__dict__ | {"lag": r.lag} for r in rows]


async def letters(settings: ServiceSettings) -> list[dict]:
    found = await dead_letters.read_all(settings.kafka_bootstrap_servers, kafka_security(settings))
    return [{"id": f"{p}:{o}", "letter": d} for p, o, d in reversed(found)]


def replay_security(settings: ServiceSettings) -> dict:
    """The replay principal's identity (ReplayNotAllowed on a secured cluster without one)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return kafka_security(settings)
    if not settings.kafka_replay_password:
        raise ReplayNotAllowed("set CONSOLE_KAFKA_REPLAY_PASSWORD (the ops principal's) to replay from the console")
    replay = settings.model_copy(
        update={"kafka_username": settings.kafka_replay_username, "kafka_password": settings.kafka_replay_password}
    )
    return kafka_security(replay)


async def replay(settings: ServiceSettings, letter_id: str) -> None:
    await dead_letters.replay_letters(settings.kafka_bootstrap_servers, [letter_id], replay_security(settings))


async def key_figures(settings: ServiceSettings, *, days: float, now: dt.datetime) -> dict:
    events = await kpis.read_events(settings.kafka_bootstrap_servers, kafka_security(settings))
    return kpis.compute(
        events,
        start=now - dt.timedelta(days=days),
        end=now,
        now=now,
        framework=load_framework(),
        thresholds=kpis.load_thresholds(),
    )


async def live_lines(
    settings: ServiceSettings,
    *,
    stop,
    zone: str | None = None,
    event_type: str | None = None,
    package: str | None = None,
) -> AsyncIterator[streams.Line | None]:
    """Every event written from now on, decoded as ``homecare tail`` decodes it. Yields None
    once the stream is positioned (everything after that will be seen) and whenever nothing
    arrived for a second, so the caller can check ``stop()`` (client gone, server stopping)."""
    queue: asyncio.Queue[streams.Line] = asyncio.Queue(maxsize=STREAM_BUFFER)
    ready = asyncio.Event()

    def keep(line: streams.Line) -> None:
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(line)

    names = [topics.resolve(t) for t in contract.ALL]
    task = asyncio.create_task(
        streams.tail_lines(
            settings.kafka_bootstrap_servers,
            names,
            security=kafka_security(settings),
            follow=True,
            from_beginning=False,
            on_line=keep,
            on_ready=ready.set,
            package=package,
            zone=zone,
            provider=None,
            event_type=event_type,
            journey=None,
        )
    )
    positioned = asyncio.create_task(ready.wait())
    try:
        while not ready.is_set():
            await asyncio.wait({task, positioned}, timeout=1, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # raises what stopped it (Kafka unreachable)
            if stop():
                return
        yield None
        while not stop():
            if task.done():
                task.result()
            try:
                yield await asyncio.wait_for(queue.get(), timeout=1)
            except TimeoutError:
                yield None
    finally:
        positioned.cancel()
        task.cancel()
        await asyncio.gather(task, positioned, return_exceptions=True)
