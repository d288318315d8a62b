"""The dead-letter topic: messages a consumer could not apply, with where they came from.

The value is the original bytes, the key the original key; headers say the origin (topic,
partition, offset), the consumer group, the reason, the error and the number of attempts.
``homecare dead-letters list|show|replay`` reads them; replay republishes the original bytes
to the original topic, where every consumer's inbox makes the replay harmless to those that
had already applied it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.runtime import topics

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker

    from services.runtime.consumer import Delivery

HEADER_PREFIX = "x-dlq-"


@dataclass(frozen=True)
class DeadLetter:
    origin_topic: str
    origin_partition: int
    origin_offset: int
    consumer: str
    service: str
    reason: str
    error: str
    attempts: int
    key: bytes | None
    value: bytes
    failed_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    original_headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_delivery(cls, delivery: Delivery, **kw: Any) -> DeadLetter:
        return cls(
            origin_topic=delivery.topic,
            origin_partition=delivery.partition,
            origin_offset=delivery.offset,
            key=delivery.key,
            value=delivery.value,
            original_headers=delivery.headers,
            **kw,
        )

    def headers(self) -> dict[str, str]:
        ours = {
            "origin-topic": self.origin_topic,
            "origin-partition": str(self.origin_partition),
            "origin-offset": str(self.origin_offset),
            "consumer": self.consumer,
            "service": self.service,
            "reason": self.reason,
            "error": self.error[:2000],
            "attempts": str(self.attempts),
            "failed-at": self.failed_at,
        }
        kept = {k: v for k, v in self.original_headers.items() if not k.startswith(HEADER_PREFIX)}
        return kept | {HEADER_PREFIX + k: v for k, v in ours.items()}

    @classmethod
    def from_record(cls, key: bytes | None, value: bytes, headers: dict[str, str]) -> DeadLetter:
        ours = {k[len(HEADER_PREFIX) :]: v for k, v in headers.items() if k.startswith(HEADER_PREFIX)}
        return cls(
            origin_topic=ours.get("origin-topic", "?"),
            origin_partition=int(ours.get("origin-partition", -1)),
            origin_offset=int(ours.get("origin-offset", -1)),
            consumer=ours.get("consumer", "?"),
            service=ours.get("service", "?"),
            reason=ours.get("reason", "?"),
            error=ours.get("error", ""),
            attempts=int(ours.get("attempts", 0)),
            key=key,
            value=value,
            failed_at=ours.get("failed-at", ""),
            original_headers={k: v for k, v in headers.items() if not k.startswith(HEADER_PREFIX)},
        )


async def publish_dead_letter(broker: KafkaBroker, letter: DeadLetter) -> None:
    await broker.publish(letter.value, topic=topics.dead_letters(), key=letter.key, headers=letter.headers())
