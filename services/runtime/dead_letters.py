"""The dead-letter topic: messages a consumer could not apply, with where they came from.

A dead letter's key is the original key and its value the original value, byte for byte;
``x-dlq-*`` headers say the origin (topic, partition, offset), the consumer group, the reason,
the error, the number of attempts, the original value's size and SHA-256, and carry the original
headers losslessly (``x-dlq-original-headers``: a JSON list of ``[name, value]`` pairs, each in
base64, a value null when the header had none), whatever bytes they held.

A dead letter must itself fit in a Kafka record. One that would not (an original near the size
limit, or a topic whose limit is lower) keeps what fits: :meth:`DeadLetter.record` cuts it to a
budget - an excerpt of the value (its head), then of the key and of the original headers - and
says what was cut in ``x-dlq-truncated``; the size and SHA-256 of the original always stay, so
the original can be identified on its topic while the topic retains it. A cut letter cannot be
replayed (``homecare dead-letters replay`` refuses it).

``homecare dead-letters list|show|replay`` reads them; replay republishes the original bytes
and headers to the original topic, where every consumer's inbox makes the replay harmless to
those that had already applied it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from services.runtime import topics
from services.runtime.numbers import whole_number

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker

    from services.runtime.consumer import Delivery

HEADER_PREFIX = "x-dlq-"
REPLAYED_FROM = "x-replayed-from"  # set by `homecare dead-letters replay` on the record it puts back
# Kafka's default limit is about 1 MiB for a request (the producer's max_request_size, 1,048,576
# bytes) and for a record batch (the broker's message.max.bytes): a dead letter stays under both
# with room for the batch's own framing.
MAX_BYTES = 1_000_000
# Cut further when Kafka refuses even the budgeted letter for its size (a topic with a lower
# max.message.bytes): each step keeps less of the value, the last keeps none of it.
SMALLER_BUDGETS = (65_536, 4_096)
_ERROR_CHARS = 2000
_OVERHEAD = 128  # per-record framing: lengths, timestamp and offset deltas, attributes

RawHeaders = tuple[tuple[bytes, bytes | None], ...]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _text(value: str) -> str:
    """A header value Kafka clients can encode: lone surrogates (undecodable input) escaped."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def encode_headers(headers: RawHeaders) -> str:
    return json.dumps([[_b64(name), None if value is None else _b64(value)] for name, value in headers])


def decode_headers(text: str) -> RawHeaders:
    return tuple(
        (base64.b64decode(name), None if value is None else base64.b64decode(value)) for name, value in json.loads(text)
    )


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
    value: bytes | None
    failed_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    original_headers: RawHeaders = ()
    # What the original was (kept when the letter is cut) and what was cut: value, key, headers.
    value_size: int | None = None
    value_sha256: str | None = None
    truncated: tuple[str, ...] = ()

    @classmethod
    def from_delivery(cls, delivery: Delivery, **kw: Any) -> DeadLetter:
        return cls(
            origin_topic=delivery.topic,
            origin_partition=delivery.partition,
            origin_offset=delivery.offset,
            key=delivery.key,
            value=delivery.raw_value,
            original_headers=delivery.raw_headers,
            **kw,
        )

    @property
    def replayable(self) -> bool:
        """False once cut: the original bytes are no longer all here."""
        return not self.truncated

    def headers(self) -> dict[str, str]:
        value = self.value or b""
        ours = {
            "origin-topic": self.origin_topic,
            "origin-partition": str(self.origin_partition),
            "origin-offset": str(self.origin_offset),
            "consumer": self.consumer,
            "service": self.service,
            "reason": self.reason,
            "error": _text(self.error[:_ERROR_CHARS]),
            "attempts": str(self.attempts),
            "failed-at": self.failed_at,
            "value-size": str(self.value_size if self.value_size is not None else len(value)),
            "value-sha256": self.value_sha256 or hashlib.sha256(value).hexdigest(),
        }
        if self.value is None and not self.truncated:
            ours["value-null"] = "true"
        ours["original-headers"] = encode_headers(self.original_headers)
        if self.truncated:
            ours["truncated"] = ",".join(self.truncated)
        headers = {HEADER_PREFIX + k: v for k, v in ours.items()}
        # A replayed record that failed again says so where operators look, as before.
        for name, header_value in self.original_headers:
            if name == REPLAYED_FROM.encode() and header_value is not None:
                headers[REPLAYED_FROM] = _text(header_value.decode(errors="replace"))[:100]
        return headers

    def size(self) -> int:
        """Bytes this letter takes in a record batch, near enough (framing included)."""
        headers = sum(len(k) + len(v.encode()) + 4 for k, v in self.headers().items())
        return len(self.key or b"") + len(self.value or b"") + headers + _OVERHEAD

    def record(self, max_bytes: int = MAX_BYTES) -> DeadLetter:
        """This letter cut to fit ``max_bytes`` (itself when it fits): first the value is cut to the
        head that fits, then the key and the original headers to a kilobyte's worth each, then
        the value goes altogether. The original's size and SHA-256 stay."""
        if self.size() <= max_bytes:
            return self
        value = self.value or b""
        letter = replace(
            self, value_size=len(value), value_sha256=hashlib.sha256(value).hexdigest(), truncated=("value",)
        )
        letter = replace(letter, value=b"")
        room = max_bytes - letter.size()
        if room > 0:
            return replace(letter, value=value[:room])
        cut = ["value"]
        key = self.key
        if key is not None and len(key) > 1024:
            key, cut = key[:1024], [*cut, "key"]
        headers = self.original_headers
        if len(encode_headers(headers)) > 1024:
            kept: list[tuple[bytes, bytes | None]] = []
            for name, hvalue in headers:
                if len(encode_headers((*kept, (name[:256], hvalue[:256] if hvalue is not None else None)))) > 1024:
                    break
                kept.append((name[:256], hvalue[:256] if hvalue is not None else None))
            headers, cut = tuple(kept), [*cut, "headers"]
        letter = replace(letter, key=key, original_headers=headers, truncated=tuple(cut))
        room = max_bytes - letter.size()
        return replace(letter, value=value[: max(0, room)])

    @classmethod
    def from_record(cls, key: bytes | None, value: bytes | None, headers: dict[str, str]) -> DeadLetter:
        ours = {k[len(HEADER_PREFIX) :]: v for k, v in headers.items() if k.startswith(HEADER_PREFIX)}
        if "original-headers" in ours:
            original = decode_headers(ours["original-headers"])
        else:  # letters written before the lossless copy kept the original headers as they were
            original = tuple((k.encode(), v.encode()) for k, v in headers.items() if not k.startswith(HEADER_PREFIX))
        truncated = tuple(t for t in ours.get("truncated", "").split(",") if t)
        size = ours.get("value-size")
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
            value=None if ours.get("value-null") == "true" else (value or b""),
            failed_at=ours.get("failed-at", ""),
            original_headers=original,
            value_size=whole_number(size) if size else None,
            value_sha256=ours.get("value-sha256"),
            truncated=truncated,
        )


async def publish_dead_letter(broker: KafkaBroker, letter: DeadLetter) -> None:
    """Publish the letter as it is (cut it first with :meth:`DeadLetter.record`); Kafka's errors
    are raised (see ``kafka_errors`` for which are worth a retry)."""
    await broker.publish(letter.value or b"", topic=topics.dead_letters(), key=letter.key, headers=letter.headers())
