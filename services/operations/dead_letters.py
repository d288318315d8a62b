"""Dead letters: what the consumers could not apply, with its origin and error, and putting chosen
ones back on their original topic. ``homecare dead-letters`` lists, shows and replays them; the
console's dead letters page does too."""

from __future__ import annotations

import base64
from typing import Any

from aiokafka import AIOKafkaProducer

from services.runtime import topics
from services.runtime.dead_letters import DeadLetter
from services.runtime.kafka import kafka_security, read_topic
from services.runtime.settings import ServiceSettings


async def read_all(bootstrap: str, security: dict | None = None) -> list[tuple[int, int, DeadLetter]]:
    """Every dead letter as (partition, offset, letter), oldest first."""
    letters = []
    for r in await read_topic(bootstrap, topics.dead_letters(), security=security):
        headers = {k: (v or b"").decode(errors="replace") for k, v in (r.headers or ())}
        letters.append((r.partition, r.offset, DeadLetter.from_record(r.key, r.value, headers)))
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
    """One dead letter in full: its original key and value as text (undecodable bytes replaced)
    and exactly, in base64 (``key_base64``, ``value_base64``, ``original_headers_base64`` as
    ``[name, value]`` pairs), the original value's ``value_size`` and ``value_sha256``, what was
    ``truncated`` to fit Kafka, and whether it is ``replayable``."""
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
        "value": d.value.decode(errors="replace") if d.value is not None else None,
        "key_base64": _b64(d.key),
        "value_base64": _b64(d.value),
        "original_headers_base64": [[_b64(name), _b64(value)] for name, value in d.original_headers],
        "value_size": d.value_size,
        "value_sha256": d.value_sha256,
        "truncated": list(d.truncated),
        "replayable": d.replayable,
    }


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data is not None else None


class ReplayNotAllowed(Exception):
    """No identity that may write a dead letter back to its topic (the console without ``ops``)."""


def replay_security(settings: ServiceSettings) -> dict[str, Any]:
    """The identity the console replays as: its replay principal (``ops``) on a secured cluster
    (ReplayNotAllowed without its password); on an open cluster, its own."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return kafka_security(settings)
    if not settings.kafka_replay_password:
        raise ReplayNotAllowed("set CONSOLE_KAFKA_REPLAY_PASSWORD (the ops principal's) to replay from the console")
    replay = settings.model_copy(
        update={"kafka_username": settings.kafka_replay_username, "kafka_password": settings.kafka_replay_password}
    )
    return kafka_security(replay)


async def replay_letters(bootstrap: str, letter_ids: list[str], security: dict | None = None) -> int:
    """Republish the original key, value and headers to the original topic, with
    ``x-replayed-from: <id>``. LookupError for an unknown id; ValueError for a letter that was cut
    to fit Kafka (its original is only on its own topic, while retained). Nothing is sent then."""
    letters = {letter_id(p, o): d for p, o, d in await read_all(bootstrap, security)}
    unknown = [i for i in letter_ids if i not in letters]
    if unknown:
        raise LookupError(f"no dead letter {', '.join(unknown)}")
    cut = [i for i in letter_ids if not letters[i].replayable]
    if cut:
        d = letters[cut[0]]
        raise ValueError(
            f"dead letter {', '.join(cut)} was cut to fit Kafka ({', '.join(d.truncated)}): the original "
            f"({d.value_size} bytes, SHA-256 {d.value_sha256}) is only at {d.origin_topic}/{d.origin_partition}"
            f"@{d.origin_offset}, while the topic retains it"
        )
    # ``security``: an identity that may read the dead letters and write their topics (the ``ops``
    # principal or the administrator; default the operator's).
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, **(kafka_security() if security is None else security)
    )
    await producer.start()
    try:
        for i in letter_ids:
            d = letters[i]
            # The original headers as they were; a name that is not UTF-8 cannot be written by this
            # client (nor was it readable by ours), so such names have their bad bytes replaced.
            headers = [(n.decode(errors="replace"), v) for n, v in d.original_headers if n != b"x-replayed-from"]
            headers.append(("x-replayed-from", i.encode()))
            await producer.send_and_wait(d.origin_topic, d.value, key=d.key, headers=headers)
    finally:
        await producer.stop()
    return len(letter_ids)
