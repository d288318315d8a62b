"""Dead letters: what the consumers could not apply, with its origin and error, and putting chosen
ones back on their original topic. ``homecare dead-letters`` lists, shows and replays them; the
console's dead letters page does too."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from services.runtime import topics
from services.runtime.dead_letters import DeadLetter
from services.runtime.kafka import kafka_security, read_topic


async def read_all(bootstrap: str) -> list[tuple[int, int, DeadLetter]]:
    """Every dead letter as (partition, offset, letter), oldest first."""
    letters = []
    for r in await read_topic(bootstrap, topics.dead_letters()):
        headers = {k: v.decode(errors="replace") for k, v in (r.headers or ())}
        letters.append((r.partition, r.offset, DeadLetter.from_record(r.key, r.value or b"", headers)))
    letters.sort(key=lambda x: x[2].failed_at)
    return letters


def letter_id(partition: int, offset: int) -> str:
    """A dead letter's id, ``partition:offset`` on the dead-letter topic."""
    return f"{partition}:{offset}"


def summary(partition: int, offset: int, d: DeadLetter) -> dict:
    """One dead letter as listed: ``{id, key, origin (topic/partition@offset), consumer, reason,
    error, attempts, failed_at}``."""
    return {
        "id": letter_id(partition, offset),
        "key": d.key.decode(errors="replace") if d.key else None,
        "origin": f"{d.origin_topic}/{d.origin_partition}@{d.origin_offset}",
        "consumer": d.consumer,
        "reason": d.reason,
        "error": d.error,
        "attempts": d.attempts,
        "failed_at": d.failed_at,
    }


def detail(letter: str, d: DeadLetter) -> dict:
    """One dead letter in full, its original value decoded as text (undecodable bytes replaced)."""
    return {
        "id": letter,
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
    }


async def replay_letters(bootstrap: str, letter_ids: list[str]) -> int:
    """Republish the original bytes to the original topic (LookupError for an unknown id)."""
    letters = {letter_id(p, o): d for p, o, d in await read_all(bootstrap)}
    unknown = [i for i in letter_ids if i not in letters]
    if unknown:
        raise LookupError(f"no dead letter {', '.join(unknown)}")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, **kafka_security())
    await producer.start()
    try:
        for i in letter_ids:
            d = letters[i]
            headers = [(k, v.encode()) for k, v in d.original_headers.items()] + [("x-replayed-from", i.encode())]
            await producer.send_and_wait(d.origin_topic, d.value, key=d.key, headers=headers)
    finally:
        await producer.stop()
    return len(letter_ids)
