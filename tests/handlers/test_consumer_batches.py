"""The consumer's batch path (runtime.consumer.EventConsumer.process_batch) on the providers
service: a batch applies in one transaction, once per event, and a faulty event in it is
retried and dead-lettered on its own while the rest apply."""

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from faststream.kafka import KafkaMessage

from schemas.events import BidSubmitted, PackagePlaced
from services.providers.app import build
from services.runtime import consumer as consumer_module
from services.runtime import metrics, topics
from services.runtime.consumer import Delivery, raw_body
from tests.handlers.test_providers_handlers import offer, willing

PACKAGES = "brokerage.packages"


def delivery(event, offset: int, *, value: bytes | None = None, headers: dict | None = None) -> Delivery:
    body = value if value is not None else event.model_dump_json().encode()
    return Delivery(
        topics.resolve(PACKAGES),
        0,
        offset,
        str(event.package_id).encode(),
        body,
        headers if headers is not None else {"event_type": event.event_type},
    )


async def inbox_rows(service, events):
    return await service.pool.fetch(
        "SELECT event_id, processed_at FROM inbox WHERE event_id = ANY($1::uuid[])", [e.event_id for e in events]
    )


def handled(event_type: str, outcome: str) -> float:
    return metrics.EVENTS_HANDLED.labels("providers", topics.group("providers"), event_type, outcome)._value.get()


def listen_to_dead_letters(seen):
    def subscribe(service):
        @service.broker.subscriber(topics.dead_letters(), decoder=raw_body)
        async def capture(body: bytes, msg: KafkaMessage):
            seen.append(msg.headers)

    return subscribe


async def test_a_batch_applies_in_one_transaction_and_each_event_once(in_memory):
    service, _ = await in_memory(build, "providers")
    providers = await willing(service, 2)
    offers = [offer(providers) for _ in range(4)]
    # The first offer was applied before (a redelivery), and the second comes twice in the batch.
    assert await service.consumer.process_batch([delivery(offers[0], 1)])
    before = {o: handled("OfferMade", o) for o in ("applied", "duplicate")}
    batch = [
        delivery(offers[0], 1),
        delivery(offers[1], 2),
        delivery(offers[1], 3),
        delivery(offers[2], 4),
        delivery(offers[3], 5),
    ]
    assert await service.consumer.process_batch(batch)
    assert handled("OfferMade", "applied") - before["applied"] == 3
    assert handled("OfferMade", "duplicate") - before["duplicate"] == 2

    rows = await inbox_rows(service, offers)
    assert len(rows) == 4
    # now() is the transaction's start: the three new events share it, the earlier one does not.
    stamps = {r["event_id"]: r["processed_at"] for r in rows}
    assert stamps[offers[1].event_id] == stamps[offers[2].event_id] == stamps[offers[3].event_id]
    assert stamps[offers[0].event_id] != stamps[offers[1].event_id]
    for event in offers:  # each offered provider answered each package exactly once
        answers = await service.pool.fetch("SELECT type FROM outbox WHERE aggregateid = $1", str(event.package_id))
        assert len(answers) == len(providers)
        assert {a["type"] for a in answers} <= {"BidSubmitted", "OfferDeclined"}


async def test_a_faulty_event_in_a_batch_is_dead_lettered_alone_and_the_rest_apply(in_memory):
    seen: list[dict[str, Any]] = []
    service, _ = await in_memory(build, "providers", before_start=listen_to_dead_letters(seen))
    providers = await willing(service, 1)
    good = [offer(providers), offer(providers)]
    # An award of more hours than any provider has breaks a check constraint: not transient.
    package_id = uuid.uuid4()
    faulty = PackagePlaced(
        correlation_id=package_id,
        package_id=package_id,
        provider_id=providers[0],
        offer_round=1,
        tier="prime",
        hourly_rate=Decimal("18.75"),
        hours_per_week=Decimal("168"),
        start_date=dt.date.today(),
        zone="melton",
        band="urban",
        urgency="community",
        rate_card="2020-21",
        requested_by="broker.amy",
        placed_at=dt.datetime.now(dt.UTC),
    )

    # The batch's transaction fails at the faulty event after applying good[0]: it rolls back
    # and the events are applied one at a time.
    assert await service.consumer.process_batch([delivery(good[0], 6), delivery(faulty, 7), delivery(good[1], 8)])

    assert [h["x-dlq-reason"] for h in seen] == ["handler-error"]
    assert len(await inbox_rows(service, good)) == 2
    assert await inbox_rows(service, [faulty]) == []
    assert await service.pool.fetchval("SELECT count(*) FROM placements WHERE package_id = $1", package_id) == 0
    for event in good:  # applied once each, although good[0] was applied (and rolled back) before
        assert (
            await service.pool.fetchval("SELECT count(*) FROM outbox WHERE aggregateid = $1", str(event.package_id))
            == 1
        )


async def test_a_message_that_does_not_parse_is_dead_lettered_and_the_rest_of_its_batch_applies(in_memory):
    seen: list[dict[str, Any]] = []
    service, _ = await in_memory(build, "providers", before_start=listen_to_dead_letters(seen))
    good = [offer(await willing(service, 1)) for _ in range(2)]
    garbage = delivery(good[0], 14, value=b'{"event_type": "OfferMade", "not": "an offer"}', headers={})
    assert await service.consumer.process_batch([delivery(good[0], 13), garbage, delivery(good[1], 15)])
    assert [h["x-dlq-reason"] for h in seen] == ["invalid"]
    assert len(await inbox_rows(service, good)) == 2


async def test_an_event_the_service_does_not_handle_is_skipped_by_its_header(in_memory):
    service, _ = await in_memory(build, "providers")
    providers = await willing(service, 1)
    handled = offer(providers)
    # The producer's header says PackageStarted, which the providers service does not handle.
    unhandled = delivery(handled, 11, value=b"{}", headers={"event_type": "PackageStarted"})
    before = await service.pool.fetchval("SELECT count(*) FROM inbox")
    assert await service.consumer.process_batch([unhandled, delivery(handled, 12)])
    assert await service.pool.fetchval("SELECT count(*) FROM inbox") == before + 1


async def test_an_event_is_accepted_only_from_its_home_topic_and_producer(in_memory):
    """OfferMade belongs on brokerage.packages, written by the brokerage: the same offer on
    providers.answers, or on its own topic claiming another producer, is dead-lettered as
    misrouted and changes nothing; the untouched offer beside them in the batch applies."""
    seen: list[dict[str, str]] = []
    service, _ = await in_memory(build, "providers", before_start=listen_to_dead_letters(seen))
    providers = await willing(service, 1)
    good, wrong_topic, wrong_producer = (offer(providers) for _ in range(3))
    elsewhere = dataclasses.replace(delivery(wrong_topic, 21), topic=topics.resolve("providers.answers"))
    forged = wrong_producer.model_copy(update={"producer": "notifications"})
    assert await service.consumer.process_batch([elsewhere, delivery(forged, 22), delivery(good, 23)])

    assert [h["x-dlq-reason"] for h in seen] == ["misrouted", "misrouted"]
    errors = [h["x-dlq-error"] for h in seen]
    assert "accepted only from" in errors[0] and "brokerage.packages" in errors[0]
    assert "producer 'notifications'" in errors[1]
    assert await inbox_rows(service, [wrong_topic, forged]) == []
    assert len(await inbox_rows(service, [good])) == 1
    for event in (wrong_topic, forged):
        assert (
            await service.pool.fetchval("SELECT count(*) FROM outbox WHERE aggregateid = $1", str(event.package_id))
            == 0
        )


async def test_a_misrouted_event_is_dead_lettered_even_where_no_handler_wants_it(in_memory):
    """A BidSubmitted (providers.answers' event) on brokerage.packages: the providers service does
    not handle bids, yet it does not skip this one by its header - it is dead-lettered."""
    seen: list[dict[str, str]] = []
    service, _ = await in_memory(build, "providers", before_start=listen_to_dead_letters(seen))
    package_id = uuid.uuid4()  # a package's events are keyed by it
    bid = BidSubmitted(
        correlation_id=package_id,
        package_id=package_id,
        offer_round=1,
        provider_id="bluebell-care",
        hourly_rate=Decimal("11.11"),
        earliest_start=dt.date.today(),
        adapter="automatic",
        answered_at=dt.datetime.now(dt.UTC),
    )
    assert await service.consumer.process_batch([delivery(bid, 31)])
    assert [h["x-dlq-reason"] for h in seen] == ["misrouted"]


async def test_a_dead_letter_kafka_refuses_for_good_is_logged_and_the_batch_moves_on(in_memory, monkeypatch):
    """The dead-letter topic itself refused (here: not authorised): retrying could never succeed,
    so the record is recorded in the log and a metric and its batch is committed."""
    service, _ = await in_memory(build, "providers")
    good = offer(await willing(service, 1))
    attempts = []

    async def refused(broker, letter):
        attempts.append(letter)
        raise TopicAuthorizationFailedError(topics.dead_letters())

    monkeypatch.setattr(consumer_module, "publish_dead_letter", refused)
    unwritten = metrics.DEAD_LETTERS_UNWRITTEN.labels(
        "providers", topics.group("providers"), "TopicAuthorizationFailedError"
    )
    before = unwritten._value.get()
    garbage = delivery(good, 21, value=b"\xc3\x28 not json", headers={})
    assert await service.consumer.process_batch([garbage, delivery(good, 22)])
    assert len(attempts) == 1, "not retried"
    assert unwritten._value.get() - before == 1
    assert len(await inbox_rows(service, [good])) == 1


async def test_a_dead_letter_publish_is_retried_while_kafka_is_away(in_memory, monkeypatch):
    service, _ = await in_memory(build, "providers")
    good = offer(await willing(service, 1))
    attempts = []
    real = consumer_module.publish_dead_letter

    async def away_twice(broker, letter):
        attempts.append(letter)
        if len(attempts) <= 2:
            raise KafkaConnectionError("Kafka away")
        await real(broker, letter)

    monkeypatch.setattr(consumer_module, "publish_dead_letter", away_twice)
    garbage = delivery(good, 31, value=b"{", headers={})
    assert await service.consumer.process_batch([garbage, delivery(good, 32)])
    assert len(attempts) == 3, "waited out, then written"


async def test_a_batch_handler_gets_each_run_of_its_fresh_events_in_one_call(in_memory):
    """consumer.on_batch: consecutive fresh events of its types reach it together, in order; an
    event for a one-at-a-time handler between them splits the run; a duplicate is left out; the
    one-at-a-time path (a failed batch's retries) calls it with a batch of one."""
    from tests.handlers.test_providers_handlers import award

    service, _ = await in_memory(build, "providers")
    providers = await willing(service, 1)
    offers = [offer(providers) for _ in range(4)]
    placed = award(offers[0], providers[0], 1, dt.datetime.now(dt.UTC))
    calls: list[tuple[str, list[uuid.UUID]]] = []

    @service.consumer.on_batch(type(offers[0]))
    async def many(uow, events) -> None:
        calls.append(("batch", [e.event_id for e in events]))

    @service.consumer.on(PackagePlaced)
    async def one(uow, event) -> None:
        calls.append(("one", [event.event_id]))

    assert await service.consumer.process_batch([delivery(offers[3], 1)])  # alone: the single path
    assert calls == [("batch", [offers[3].event_id])]
    calls.clear()
    batch = [
        delivery(offers[0], 2),
        delivery(offers[1], 3),
        delivery(offers[1], 4),  # the same event again: not passed twice
        delivery(placed, 5),
        delivery(offers[2], 6),
        delivery(offers[3], 7),  # applied before: a duplicate
    ]
    assert await service.consumer.process_batch(batch)
    assert calls == [
        ("batch", [offers[0].event_id, offers[1].event_id]),
        ("one", [placed.event_id]),
        ("batch", [offers[2].event_id]),
    ]
