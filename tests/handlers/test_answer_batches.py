"""Providers' answers applied as a batch (services.brokerage.handlers.record_answers, decision
0143) end as they would one at a time: the same awards, the same answers recorded (late ones
marked late, a second answer from one provider not recorded) and the same events, with the
batch's packages locked and read in two statements."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from schemas.events import ProviderUpdated
from services.brokerage import handlers
from services.runtime import topics
from services.runtime.consumer import Delivery, Rejected
from services.runtime.outbox import unit_of_work
from tests.handlers.market import answer_event, outbox_types, profile, request


def scenario(ids: dict[str, str], a: uuid.UUID, b: uuid.UUID, c: uuid.UUID, d: uuid.UUID) -> list:
    """Four packages' answers, interleaved as a batch would bring them:
    a: two bids, the better-rated provider's last (settled when everyone has answered), and a
       provider's answer twice;
    b: a bid from the best-rated provider (settles at once), then a bid that is late;
    c: both primes decline (round 1 closes, round 2 goes to the supplementary provider), whose bid
       to round 2 - a round that did not exist when the batch began - places it;
    d: placed before the batch (:func:`place_first`): a bid to it is late."""
    return [
        answer_event(a, ids["prime_good"], rate="22.95"),
        answer_event(b, ids["prime_best"], rate="20.00"),
        answer_event(c, ids["prime_best"], decline="capacity"),
        answer_event(a, ids["prime_good"], rate="21.00"),
        answer_event(b, ids["prime_good"], rate="19.00"),
        answer_event(c, ids["prime_good"], decline="capacity"),
        answer_event(a, ids["prime_best"], rate="22.95"),
        answer_event(d, ids["prime_good"], rate="18.00"),
        answer_event(c, ids["supp"], offer_round=2, rate="22.00"),
    ]


async def place_first(service, rules, ids, package_id: uuid.UUID) -> None:
    async with unit_of_work(service.pool) as uow:
        await handlers.record_answer(uow, rules, answer_event(package_id, ids["prime_best"], rate="20.00"))


def deliveries(batch: list[tuple[str, Any]]) -> list[Delivery]:
    """A consumer batch: each (topic, event) as the records the consumer reads, in order."""
    return [
        Delivery(
            topics.resolve(topic), 0, offset, e.key.encode(), e.model_dump_json().encode(), {"event_type": e.event_type}
        )
        for offset, (topic, e) in enumerate(batch, start=1)
    ]


async def outcome(service, package_id: uuid.UUID) -> dict:
    """What a package ended as: its status, holder and rate, its answers and its events' types."""
    package = await service.pool.fetchrow(
        "SELECT status, provider_id, hourly_rate, current_round FROM packages WHERE package_id = $1", package_id
    )
    answers = await service.pool.fetch(
        """SELECT offer_round, provider_id, kind, hourly_rate, late FROM answers WHERE package_id = $1
            ORDER BY offer_round, provider_id""",
        package_id,
    )
    rounds = await service.pool.fetch(
        "SELECT offer_round, outcome FROM offer_rounds WHERE package_id = $1 ORDER BY offer_round", package_id
    )
    events = await outbox_types(service, package_id, agreements=True)
    return {
        "package": dict(package),
        "answers": [dict(r) for r in answers],
        "rounds": [dict(r) for r in rounds],
        "events": [t for t, _ in events],
        # What the award told everyone: the winner, its rate, each bid's rank, the losers.
        "placed": [
            {k: p[k] for k in ("provider_id", "hourly_rate", "bid_ranks", "losing_provider_ids", "tier")}
            for t, p in events
            if t == "PackagePlaced"
        ],
    }


async def test_a_batch_of_answers_ends_as_the_same_answers_one_at_a_time(brokerage):
    service, _broker, rules, ids = brokerage
    one_by_one = [await request(service, rules) for _ in range(4)]
    together = [await request(service, rules) for _ in range(4)]
    await place_first(service, rules, ids, one_by_one[3])
    await place_first(service, rules, ids, together[3])

    for event in scenario(ids, *one_by_one):
        async with unit_of_work(service.pool) as uow:
            await handlers.record_answer(uow, rules, event)
    async with unit_of_work(service.pool) as uow:
        await handlers.record_answers(uow, rules, scenario(ids, *together))

    for single, batched in zip(one_by_one, together, strict=True):
        assert await outcome(service, batched) == await outcome(service, single)
    a, b, c, d = [await outcome(service, p) for p in together]
    assert a["package"]["status"] == b["package"]["status"] == c["package"]["status"] == "placed"
    assert a["package"]["provider_id"] == ids["prime_best"] and b["package"]["provider_id"] == ids["prime_best"]
    assert c["package"]["provider_id"] == ids["supp"] and c["package"]["current_round"] == 2
    good_on_a = [x for x in a["answers"] if x["provider_id"] == ids["prime_good"]]
    # A provider's second answer to a round is not recorded.
    assert [x["hourly_rate"] for x in good_on_a] == [Decimal("22.95")]
    assert [(x["provider_id"], x["late"]) for x in b["answers"]] == sorted(
        [(ids["prime_best"], False), (ids["prime_good"], True)]
    ), "an answer after the round closed is kept, marked late"
    assert [r["outcome"] for r in c["rounds"]] == ["no bid", f"placed with {ids['supp']}"]
    assert d["package"]["provider_id"] == ids["prime_best"] and d["events"].count("PackagePlaced") == 1
    assert [(x["provider_id"], x["late"]) for x in d["answers"]] == sorted(
        [(ids["prime_best"], False), (ids["prime_good"], True)]
    )


async def test_an_answer_already_recorded_changes_nothing_when_it_comes_again_in_a_batch(brokerage):
    service, _broker, rules, ids = brokerage
    package_id = await request(service, rules)
    first = answer_event(package_id, ids["prime_good"], rate="22.95")
    async with unit_of_work(service.pool) as uow:
        await handlers.record_answers(uow, rules, [first])
    before = await outcome(service, package_id)
    async with unit_of_work(service.pool) as uow:
        again = answer_event(package_id, ids["prime_good"], rate="18.00")
        await handlers.record_answers(uow, rules, [first, again])
    assert await outcome(service, package_id) == before
    assert before["package"]["status"] == "offered"


@pytest.mark.parametrize("fault", ["not offered", "no such round", "no such package"])
async def test_a_batch_with_an_answer_that_cannot_be_counted_is_refused_whole(brokerage, fault):
    """The consumer then applies the batch's answers one at a time and dead-letters the bad one
    (tests/handlers/test_consumer_batches.py); here, that the batch refuses it (its unit of work
    is then rolled back: nothing of it stays)."""
    service, _broker, rules, ids = brokerage
    package_id = await request(service, rules)
    bad = {
        "not offered": answer_event(package_id, ids["supp"], rate="20.00"),  # round 1 is the primes'
        "no such round": answer_event(package_id, ids["prime_good"], offer_round=7, rate="20.00"),
        "no such package": answer_event(uuid.uuid4(), ids["prime_good"], rate="20.00"),
    }[fault]
    before = await outcome(service, package_id)
    with pytest.raises(Rejected):
        async with unit_of_work(service.pool) as uow:
            await handlers.record_answers(uow, rules, [answer_event(package_id, ids["prime_best"], rate="20.00"), bad])
    assert await outcome(service, package_id) == before


async def test_the_consumer_applies_a_batch_of_answers_together(brokerage):
    """Through the consumer's batch path (several events: one transaction, the batch handler)."""
    service, _broker, rules, ids = brokerage
    assert "BidSubmitted" in service.consumer.batch_handlers and "OfferDeclined" in service.consumer.batch_handlers
    packages = [await request(service, rules) for _ in range(3)]
    events = [answer_event(p, ids["prime_good"], rate="22.95") for p in packages] + [
        answer_event(p, ids["prime_best"], decline="capacity") for p in packages
    ]
    assert await service.consumer.process_batch(deliveries([("providers.answers", e) for e in events]))
    for package_id in packages:
        state = await outcome(service, package_id)
        assert state["package"]["status"] == "placed" and state["package"]["provider_id"] == ids["prime_good"]
        assert len(state["answers"]) == 2 and not any(x["late"] for x in state["answers"])


async def test_answers_split_by_another_event_in_one_batch_still_see_each_other(brokerage):
    """A consumer batch calls the batch handler once a run of answers; an event of another type
    between two runs (here a registry update, stale, so it changes nothing) starts a second call
    in the same transaction, which must see the first call's answers: the round is ranked with
    both bids, as one at a time."""
    service, _broker, rules, ids = brokerage
    package_id = await request(service, rules)
    stale = ProviderUpdated(correlation_id=uuid.uuid4(), revision=1, profile=profile(ids["supp"], "supplementary"))
    first, second = (
        answer_event(package_id, ids["prime_good"], rate="22.95"),
        answer_event(package_id, ids["prime_best"], rate="22.95"),
    )
    other = answer_event(await request(service, rules), ids["prime_good"], rate="22.95")
    batch = [
        ("providers.answers", first),
        ("providers.answers", other),
        ("providers.registry", stale),
        ("providers.answers", second),
    ]
    assert await service.consumer.process_batch(deliveries(batch))
    state = await outcome(service, package_id)
    assert state["package"]["status"] == "placed"
    [placed] = state["placed"]
    assert placed["provider_id"] == ids["prime_best"]
    assert placed["bid_ranks"] == [
        {"provider_id": ids["prime_best"], "rank": 1},
        {"provider_id": ids["prime_good"], "rank": 2},
    ], "both bids ranked"
