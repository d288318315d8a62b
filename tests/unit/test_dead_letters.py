"""A dead letter's record: the original bytes kept losslessly, cut to fit Kafka when it must be,
read back as written; and which Kafka errors are worth a retry (runtime.dead_letters,
runtime.kafka_errors)."""

import hashlib

import pytest
from aiokafka import errors

from services.runtime.dead_letters import DeadLetter
from services.runtime.kafka_errors import is_permanent, is_too_large


def letter(value: bytes | None, key: bytes | None = b"pkg-1", headers=((b"event_type", b"BidSubmitted"),)):
    return DeadLetter(
        origin_topic="t",
        origin_partition=2,
        origin_offset=40,
        consumer="g",
        service="s",
        reason="invalid",
        error="not JSON",
        attempts=1,
        key=key,
        value=value,
        original_headers=tuple(headers),
    )


def written(d: DeadLetter) -> DeadLetter:
    """As the dead-letter topic gives it back: text headers, bytes key and value."""
    value = d.value if d.value is not None else b""
    return DeadLetter.from_record(d.key, value, d.headers())


def test_a_letter_that_fits_is_kept_whole_and_reads_back_byte_for_byte():
    raw_headers = ((b"\xc3\x28name", b"\xff\x00"), (b"x-none", None), (b"ok", b"text"))
    original = letter(b"\x00\xffnot json", key=b"\xfe\xfd", headers=raw_headers)
    assert original.record() is original
    back = written(original)
    assert (back.key, back.value, back.original_headers) == (b"\xfe\xfd", b"\x00\xffnot json", raw_headers)
    assert back.replayable and back.value_size == 10
    assert back.value_sha256 == hashlib.sha256(b"\x00\xffnot json").hexdigest()
    assert all(isinstance(v, str) for v in original.headers().values())


def test_a_null_value_reads_back_as_null():
    assert written(letter(None)).value is None


def test_a_letter_too_large_keeps_the_head_of_its_value_with_the_originals_size_and_hash():
    value = bytes(range(256)) * 5000  # 1,280,000 bytes
    cut = letter(value).record(1_000_000)
    assert cut.size() <= 1_000_000 and cut.size() > 990_000
    back = written(cut)
    assert back.truncated == ("value",) and not back.replayable
    assert back.value is not None and value.startswith(back.value)
    assert back.value_size == len(value) and back.value_sha256 == hashlib.sha256(value).hexdigest()
    assert back.original_headers == ((b"event_type", b"BidSubmitted"),)


def test_a_huge_key_and_headers_are_cut_too_when_the_value_alone_cannot_make_room():
    headers = tuple((f"h{i}".encode(), b"v" * 500) for i in range(200))
    cut = letter(b"x" * 10_000, key=b"k" * 50_000, headers=headers).record(4_096)
    assert cut.size() <= 4_096 + 2_200  # the error text and origin stay whatever the budget
    back = written(cut)
    assert set(back.truncated) == {"value", "key", "headers"}
    assert back.key == b"k" * 1024 and back.value_size == 10_000
    assert 0 < len(back.original_headers) < len(headers)


@pytest.mark.parametrize(
    ("error", "permanent", "too_large"),
    [
        (errors.MessageSizeTooLargeError(), True, True),
        (errors.RecordTooLargeError(), True, True),
        (errors.TopicAuthorizationFailedError(), True, False),
        (errors.UnknownTopicOrPartitionError(), True, False),
        (errors.InvalidTopicError(), True, False),
        (errors.CorruptRecordException(), True, False),
        (errors.UnknownError(), True, False),
        (errors.KafkaTimeoutError(), False, False),
        (errors.KafkaConnectionError(), False, False),
        (errors.NotLeaderForPartitionError(), False, False),
        (errors.NotEnoughReplicasError(), False, False),
        (errors.RequestTimedOutError(), False, False),
        (RuntimeError("anything else"), False, False),
    ],
)
def test_kafka_errors_are_classified_permanent_or_transient(error, permanent, too_large):
    assert is_permanent(error) is permanent
    assert is_too_large(error) is too_large


def test_a_replayed_record_that_fails_again_says_which_letter_it_came_from():
    again = letter(b"{", headers=((b"x-replayed-from", b"0:12"),))
    assert again.headers()["x-replayed-from"] == "0:12"
    assert written(again).original_headers == ((b"x-replayed-from", b"0:12"),)
