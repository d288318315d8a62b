"""Which Kafka errors can succeed on a retry and which never will.

A publish that fails for a reason that belongs to the record itself, or to where it is going,
fails the same way every time: retrying it forever stalls whatever waits behind it (a
consumer's partition, a relay's bucket). Those are *permanent*, and the callers stop retrying
them: a consumer's dead letter is cut down or given up on (``consumer``), a relay's outbox row
is parked (``outbox``). Everything else - Kafka or a broker away, a leader election, too few
in-sync replicas, a timeout - is *transient*: it is waited out with a capped backoff, since
skipping a record during an outage would lose it or break its package's order.

The classes are aiokafka's (``aiokafka.errors``); Kafka's own ``retriable`` flag is not enough on
its own: aiokafka marks ``KafkaTimeoutError`` not retriable (it is the usual sign of an outage)
and ``UnknownTopicOrPartitionError`` retriable (it is what a producer reports, after its request
timeout, for a topic that does not exist and may not be created).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiokafka import errors

# The record, or its destination, is refused: the same record to the same topic fails again.
PERMANENT: tuple[type[BaseException], ...] = (
    errors.MessageSizeTooLargeError,  # above the producer's max_request_size or the topic's max.message.bytes
    errors.RecordListTooLargeError,
    errors.RecordTooLargeError,
    errors.CorruptRecordException,  # the broker's verdict on the record (CRC, compacted topic without key...)
    errors.InvalidTopicError,
    errors.UnknownTopicOrPartitionError,  # the topic does not exist and cannot be created
    errors.TopicAuthorizationFailedError,  # this principal may not write the topic
    errors.ClusterAuthorizationFailedError,
    errors.InvalidTimestampError,
    errors.UnsupportedForMessageFormatError,
    errors.PolicyViolationError,
    errors.InvalidRequestError,
    errors.UnsupportedVersionError,
    errors.UnknownError,  # a broker error code aiokafka does not know (e.g. 87, INVALID_RECORD)
)

# Refusals a smaller record could get past (a dead letter cut down further may succeed).
TOO_LARGE: tuple[type[BaseException], ...] = (
    errors.MessageSizeTooLargeError,
    errors.RecordListTooLargeError,
    errors.RecordTooLargeError,
)


def is_permanent(exc: BaseException) -> bool:
    """True when publishing the same record to the same topic can never succeed (see the module)."""
    return isinstance(exc, PERMANENT)


def is_too_large(exc: BaseException) -> bool:
    """True when the record was refused for its size alone."""
    return isinstance(exc, TOO_LARGE)


def describe(exc: BaseException) -> str:
    """A short, printable account of a Kafka error: its class and Kafka's message, if any."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def refused_for_good(
    exc: BaseException, topic: str, topic_exists: Callable[[str], Awaitable[bool]] | None = None
) -> bool:
    """:func:`is_permanent`, with an unknown topic confirmed: aiokafka also reports a topic as
    unknown when it could not fetch metadata at all (Kafka away), so with ``topic_exists`` (an
    admin client's view) the topic must really be missing; if Kafka cannot say, it is transient."""
    if not is_permanent(exc):
        return False
    if isinstance(exc, errors.UnknownTopicOrPartitionError) and topic_exists is not None:
        try:
            return not await topic_exists(topic)
        except Exception:
            return False
    return True
