"""Whatever bytes a record holds, it affects that record only (runtime.consumer.EventConsumer on
the real Kafka and PostgreSQL).

- A property test (hypothesis): batches of raw records - arbitrary key bytes, header names and
  values as arbitrary bytes (not UTF-8, or without a value), random value bytes, truncated JSON,
  fields of the wrong type, unknown event types and versions, null values - with valid events
  mixed in, written as ONE record batch so the consumer reads them together: every valid event
  is applied exactly once, every other record is dead-lettered exactly once with its raw key,
  value and headers, and the group's committed offset reaches the end of the partition.
- A record near Kafka's size limit is dead-lettered cut to fit (its head, size and SHA-256
  kept), and the good record behind it is applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from faststream.kafka import KafkaBroker
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas.events import EVENT_TYPES, BidSubmitted, OfferDeclined, parse_event
from services.runtime import topics
from services.runtime.consumer import EventConsumer
from services.runtime.db import create_pool, migrate
from services.runtime.dead_letters import DeadLetter
from services.runtime.kafka import broker_security, ensure_topics, kafka_security, read_topic
from services.runtime.settings import admin_settings

SAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "samples"
SERVICE = "records-test"
# The answers topic, in the module's own namespace (own_namespace): an answer is accepted only from
# its home topic (decision 0047).
TOPIC = "providers.answers"

MIGRATION = """CREATE TABLE applied (event_id uuid NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());"""


class RawName(str):
    """A header name written as these exact bytes (aiokafka's pure-Python batch builder encodes
    a name with ``name.encode("utf-8")``; the compiled one refuses anything but valid text)."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawName:
        name = super().__new__(cls, "raw")
        name.raw = raw
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


def valid_event(kind: str) -> bytes:
    sample = json.loads((SAMPLES / f"{kind}.v1.json").read_text())
    package = str(uuid.uuid4())
    sample |= {"event_id": str(uuid.uuid4()), "correlation_id": package, "package_id": package}
    return parse_event(json.dumps(sample)).model_dump_json().encode()


def event_key(value: bytes) -> bytes:
    return parse_event(value).key.encode()


# ---- what a record can be ---------------------------------------------------------------------

text_headers = st.lists(
    st.tuples(st.text(min_size=1, max_size=12).filter(lambda n: n != "event_type"), st.text(max_size=20)),
    max_size=2,
)
not_utf8 = st.binary(max_size=12).map(lambda b: b + b"\xc3\x28")  # C3 28: a lead byte without its continuation
not_a_value = st.dictionaries(st.text(max_size=3), st.lists(st.integers(), max_size=2), min_size=1, max_size=2)


@st.composite
def valid_record(draw) -> dict:
    value = valid_event(draw(st.sampled_from(["BidSubmitted", "OfferDeclined"])))
    event_type = parse_event(value).event_type
    headers = [(k.encode(), v.encode()) for k, v in draw(text_headers)]
    key = draw(st.sampled_from(["own", "own", "none", "empty"]))
    return {
        "valid": True,
        "key": {"own": event_key(value), "none": None, "empty": b""}[key],
        "value": value,
        "headers": [(b"event_type", event_type.encode()), *headers],
    }


@st.composite
def poison_record(draw) -> dict:
    event = valid_event(draw(st.sampled_from(["BidSubmitted", "OfferDeclined"])))
    key: bytes | None = event_key(event)
    value: bytes | None = event
    headers: list[tuple[bytes, bytes | None]] = [(k.encode(), v.encode()) for k, v in draw(text_headers)]
    how = draw(
        st.sampled_from(
            [
                "header-name",
                "header-value",
                "header-null",
                "key",
                "bytes",
                "truncated",
                "wrong-type",
                "event-type",
                "version",
                "null-value",
            ]
        )
    )
    if how == "header-name":
        headers.insert(draw(st.integers(0, len(headers))), (draw(not_utf8), draw(st.binary(max_size=8))))
    elif how == "header-value":
        headers.insert(draw(st.integers(0, len(headers))), (b"x-trace", draw(not_utf8)))
    elif how == "header-null":
        headers.append((b"x-trace", None))
    elif how == "key":
        key = draw(st.binary(min_size=1, max_size=40).filter(lambda k: k != key))
    elif how == "bytes":
        value = draw(st.binary(max_size=200))
    elif how == "truncated":  # every proper prefix of a JSON object lacks its closing brace
        value = event[: draw(st.integers(0, len(event) - 1))]
    elif how == "wrong-type":
        body = json.loads(event)
        body[draw(st.sampled_from(sorted(body)))] = draw(not_a_value)
        value = json.dumps(body).encode()
    elif how == "event-type":
        body = json.loads(event)
        body["event_type"] = draw(st.text(max_size=20).filter(lambda t: t not in EVENT_TYPES))
        value = json.dumps(body).encode()
    elif how == "version":
        body = json.loads(event)
        body["schema_version"] = draw(st.integers().filter(lambda v: v != 1))
        value = json.dumps(body).encode()
    else:
        value = None
    if how != "key" and draw(st.booleans()):  # and sometimes arbitrary key bytes on top
        key = draw(st.none() | st.binary(max_size=40))
    return {"valid": False, "key": key, "value": value, "headers": headers}


records = st.lists(st.one_of(valid_record(), poison_record()), min_size=1, max_size=8)


# ---- the consumer under test ------------------------------------------------------------------


async def committed_offset(bootstrap: str, group: str, tp: TopicPartition) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_security())
    await admin.start()
    try:
        meta = (await admin.list_consumer_group_offsets(group)).get(tp)
        return meta.offset if meta is not None else -1
    finally:
        await admin.close()


async def end_offset(bootstrap: str, tp: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_security())
    await consumer.start()
    try:
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


class Harness:
    def __init__(self, infra, pool: asyncpg.Pool, consumer: EventConsumer, producer: AIOKafkaProducer) -> None:
        self.kafka = infra.kafka
        self.pool = pool
        self.consumer = consumer
        self.producer = producer
        self.topic = topics.resolve(TOPIC)
        self.tp = TopicPartition(self.topic, 0)

    async def write_one_batch(self, batch: list[dict]) -> int:
        """Write the records as one Kafka record batch on partition 0; returns the first offset."""
        builder = self.producer.create_batch()
        # The pure-Python builder, which writes a header name's bytes as they are.
        builder._builder = _DefaultRecordBatchBuilderPy(
            2, 0, is_transactional=0, producer_id=-1, producer_epoch=-1, base_sequence=0, batch_size=4 * 1024 * 1024
        )
        for record in batch:
            headers = [(RawName(name), value) for name, value in record["headers"]]
            assert builder.append(timestamp=None, key=record["key"], value=record["value"], headers=headers)
        builder.close()
        metadata = await (await self.producer.send_batch(builder, self.topic, partition=0))
        return metadata.offset

    async def wait_until_committed(self, timeout: float = 30) -> None:
        end = await end_offset(self.kafka, self.tp)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await committed_offset(self.kafka, self.consumer.group, self.tp) < end:
            assert loop.time() < deadline, "the group's committed offset did not reach the end of the partition"
            await asyncio.sleep(0.1)

    async def letters_from(self, first: int, last: int) -> list[DeadLetter]:
        found = []
        for r in await read_topic(self.kafka, topics.dead_letters(), security=kafka_security()):
            letter = DeadLetter.from_record(r.key, r.value, {k: v.decode() for k, v in r.headers})
            if letter.origin_topic == self.topic and first <= letter.origin_offset <= last:
                found.append(letter)
        return found

    async def applied(self, values: list[bytes]) -> dict[uuid.UUID, int]:
        ids = [parse_event(v).event_id for v in values]
        rows = await self.pool.fetch(
            "SELECT event_id, count(*) AS n FROM applied WHERE event_id = ANY($1::uuid[]) GROUP BY event_id", ids
        )
        return {i: 0 for i in ids} | {r["event_id"]: r["n"] for r in rows}


@pytest.fixture(scope="module")
def own_namespace(namespace):
    """The module's raw records (garbage by design) on topics of their own: the session's other
    tests read every record of the session's topics (the privacy scan, the fault tests' counts)."""
    os.environ["HOMECARE_NAMESPACE"] = f"{namespace}-records"
    yield
    os.environ["HOMECARE_NAMESPACE"] = namespace


@pytest.fixture(scope="module")
async def harness(own_namespace, infra, database_url, tmp_path_factory):
    schema = "records_test"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    finally:
        await admin.close()
    folder = tmp_path_factory.mktemp("records-migrations")
    (folder / "0001_applied.sql").write_text(MIGRATION)
    pool = await create_pool(database_url, schema=schema, application="records-test", size=4)
    await migrate(pool, schema, folder)

    await ensure_topics(infra.kafka, security=kafka_security())  # the dead letters' topic, among others
    kafka_admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka, **kafka_security())
    await kafka_admin.start()
    try:
        if topics.resolve(TOPIC) not in await kafka_admin.list_topics():
            await kafka_admin.create_topics([NewTopic(topics.resolve(TOPIC), num_partitions=1, replication_factor=1)])
    finally:
        await kafka_admin.close()

    broker = KafkaBroker(
        infra.kafka, enable_idempotence=True, acks="all", security=broker_security(admin_settings(infra.kafka))
    )  # as the cluster's administrator: the test's own topic belongs to no service
    consumer = EventConsumer(
        service=SERVICE,
        group=topics.group(SERVICE),
        pool_provider=lambda: pool,
        broker=broker,
        backoff_initial=0.01,
        fetch_max_wait_ms=100,
    )

    @consumer.on(BidSubmitted, OfferDeclined)
    async def apply(uow, event) -> None:
        await uow.conn.execute("INSERT INTO applied (event_id) VALUES ($1)", event.event_id)

    consumer.subscribe(TOPIC)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, **kafka_security())
    await broker.start()
    await producer.start()
    try:
        yield Harness(infra, pool, consumer, producer)
    finally:
        consumer.stopping.set()
        await producer.stop()
        await broker.stop()
        await pool.close()


# ---- the properties ---------------------------------------------------------------------------


def the_reported_batch() -> list[dict]:
    """Issue 14's input: four BidSubmitted on one partition, the third with a header value C3 28."""
    batch = []
    for i in range(4):
        value = valid_event("BidSubmitted")
        headers: list[tuple[bytes, bytes | None]] = [(b"event_type", b"BidSubmitted")]
        if i == 2:
            headers.append((b"x-trace", b"\xc3\x28"))
        batch.append({"valid": i != 2, "key": event_key(value), "value": value, "headers": headers})
    return batch


@example(batch=the_reported_batch())
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=records)
async def test_property_any_record_affects_itself_only(harness, batch):
    first = await harness.write_one_batch(batch)
    await harness.wait_until_committed()

    valid = [r["value"] for r in batch if r["valid"]]
    applied = await harness.applied(valid)
    assert all(n == 1 for n in applied.values()), f"valid events not applied exactly once: {applied}"

    letters = await harness.letters_from(first, first + len(batch) - 1)
    expected = {first + i: r for i, r in enumerate(batch) if not r["valid"]}
    offsets = [letter.origin_offset for letter in letters]
    assert sorted(offsets) == sorted(expected), "every other record dead-lettered exactly once, and only those"
    for letter in letters:
        record = expected[letter.origin_offset]
        assert letter.consumer == harness.consumer.group and letter.reason == "invalid" and letter.error
        assert not letter.truncated
        assert letter.key == record["key"], "the key's bytes as they were"
        assert letter.value == record["value"], "the value's bytes as they were (None for a null record)"
        assert letter.original_headers == tuple(record["headers"]), "the headers' bytes as they were"


async def test_a_record_near_the_size_limit_is_dead_lettered_cut_and_the_partition_moves_on(harness):
    """1,048,276 bytes of not-JSON: with its x-dlq headers the dead letter would pass Kafka's
    1 MiB request limit (and was retried forever); it is cut to fit, and the good event behind it
    is applied."""
    poison = b"<" + b"x" * 1_048_274 + b">"
    assert len(poison) == 1_048_276
    good = valid_event("BidSubmitted")
    key = b"near-the-limit-" + uuid.uuid4().hex.encode()
    first = (await harness.producer.send_and_wait(harness.topic, poison, key=key, partition=0)).offset
    await harness.producer.send_and_wait(harness.topic, good, key=event_key(good), partition=0)
    await harness.wait_until_committed()

    assert (await harness.applied([good]))[parse_event(good).event_id] == 1
    [letter] = await harness.letters_from(first, first)
    assert letter.truncated == ("value",) and not letter.replayable
    assert letter.key == key
    assert letter.value_size == len(poison)
    assert letter.value_sha256 == hashlib.sha256(poison).hexdigest()
    assert letter.value and poison.startswith(letter.value), "an excerpt: the head of the original"
    assert len(letter.value) > 900_000, "as much as fits"


async def test_a_dead_letter_kafka_refuses_for_its_size_is_cut_further_not_retried_forever(harness):
    """A budget above what Kafka takes (here the producer's 1 MiB max_request_size): the refusal
    is permanent, so the letter is cut to the next smaller budget instead of being retried."""
    harness.consumer.dead_letter_max_bytes = 3_000_000
    try:
        poison = b"!" * 1_048_000  # fits the fetch, not with its x-dlq headers the producer
        first = (await harness.producer.send_and_wait(harness.topic, poison, partition=0)).offset
        good = valid_event("OfferDeclined")
        await harness.producer.send_and_wait(harness.topic, good, key=event_key(good), partition=0)
        await harness.wait_until_committed()
    finally:
        harness.consumer.dead_letter_max_bytes = DeadLetter.record.__defaults__[0]  # type: ignore[index]
    assert (await harness.applied([good]))[parse_event(good).event_id] == 1
    [letter] = await harness.letters_from(first, first)
    assert letter.truncated == ("value",)
    assert letter.value_size == len(poison) and 0 < len(letter.value or b"") <= 65_536


async def test_an_idle_consumer_waits_in_its_poll_and_takes_a_record_as_it_comes(harness):
    """Decision 0163: FastStream's batch subscriber polled for 20 ms and then slept 20 ms, some 25
    polls a second when idle; the subscriber's poll now waits up to a second and returns at the
    first record. Counted on the subscriber's own Kafka consumer, so a FastStream that stopped
    calling our poll would show its own rate here."""
    first = valid_event("OfferDeclined")  # read, and the consumer has caught up with the partition
    await harness.producer.send_and_wait(harness.topic, first, key=event_key(first), partition=0)
    await harness.wait_until_committed()
    [subscriber] = harness.consumer.broker.subscribers
    kafka_consumer = subscriber.consumer
    original = kafka_consumer.getmany
    polls = 0

    async def counted(*args, **kwargs):
        nonlocal polls
        polls += 1
        return await original(*args, **kwargs)

    kafka_consumer.getmany = counted
    try:
        await asyncio.sleep(2.5)
        idle_polls = polls
        good = valid_event("OfferDeclined")
        await harness.producer.send_and_wait(harness.topic, good, key=event_key(good), partition=0)
        await harness.wait_until_committed()
    finally:
        kafka_consumer.getmany = original
    assert idle_polls <= 4, f"{idle_polls} polls in 2.5 s idle"
    assert (await harness.applied([good]))[parse_event(good).event_id] == 1
