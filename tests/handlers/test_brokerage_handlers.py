"""The brokerage's handlers on the in-memory broker with a real PostgreSQL: offers by tier,
answers, early close, the window timer, the award, and never placing a package twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal

import pytest

from schemas.events import ProviderUpdated
from schemas.vocabulary import CancelReason, ExceptionDecisionReason, HandBackReason
from services.brokerage import handlers
from services.brokerage import repository as repo
from services.runtime import topics
from services.runtime.outbox import unit_of_work
from tests.handlers.market import answer, outbox_types, profile, request, run_timer, status


async def test_primes_are_offered_first_and_the_best_acceptable_bid_wins(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await request(service, rules)
    events = await outbox_types(service, package_id)
    assert [t for t, _ in events] == ["PackageRequested", "OfferMade"]
    assert events[1][1]["tier"] == "prime" and sorted(events[1][1]["provider_ids"]) == sorted(
        [ids["prime_best"], ids["prime_good"]]
    )

    await answer(broker, package_id, ids["prime_good"], rate="22.95")
    assert await status(service, package_id) == "offered", "a better-rated prime may still bid"
    await answer(broker, package_id, ids["prime_best"], rate="22.95")
    assert await status(service, package_id) == "placed"
    placed = [p for t, p in await outbox_types(service, package_id) if t == "PackagePlaced"]
    assert len(placed) == 1 and placed[0]["provider_id"] == ids["prime_best"]
    assert placed[0]["rate_card"] == "2020-21" and placed[0]["losing_provider_ids"] == [ids["prime_good"]]
    assert placed[0]["bid_ranks"] == [
        {"provider_id": ids["prime_best"], "rank": 1},
        {"provider_id": ids["prime_good"], "rank": 2},
    ], "each bid's rank, no rates"


async def test_the_round_closes_early_when_the_best_possible_provider_accepts(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await request(service, rules)
    await answer(broker, package_id, ids["prime_best"], rate="20.00")
    assert await status(service, package_id) == "placed"


async def test_the_ladder_escalates_to_the_neighbouring_zones_before_giving_up(brokerage):
    service, broker, rules, ids = brokerage
    near = profile(f"pn-{uuid.uuid4().hex[:6]}", "prime", zones=["melton"])  # Melton borders Bottesford
    await broker.publish(
        ProviderUpdated(correlation_id=uuid.uuid4(), revision=1, profile=near).model_dump_json().encode(),
        topic=topics.resolve("providers.registry"),
    )
    try:
        package_id = await request(service, rules)
        await answer(broker, package_id, ids["prime_best"], decline="capacity")
        await answer(broker, package_id, ids["prime_good"], decline="capacity")
        await answer(broker, package_id, ids["supp"], offer_round=2, decline="capacity")
        offers = [p for t, p in await outbox_types(service, package_id) if t == "OfferMade"]
        assert [o["tier"] for o in offers] == ["prime", "supplementary", "adjacent"]
        assert near.provider_id in offers[2]["provider_ids"]
        await answer(broker, package_id, near.provider_id, offer_round=3, rate="22.95")
        assert await status(service, package_id) == "placed"
        placed = [p for t, p in await outbox_types(service, package_id) if t == "PackagePlaced"]
        assert placed[0]["provider_id"] == near.provider_id and placed[0]["tier"] == "adjacent"
    finally:  # leave the market as the other tests expect it
        retired = near.model_copy(update={"status": "left"})
        await broker.publish(
            ProviderUpdated(correlation_id=uuid.uuid4(), revision=2, profile=retired).model_dump_json().encode(),
            topic=topics.resolve("providers.registry"),
        )


async def test_only_above_rate_bids_wait_for_a_brokers_decision_and_a_refusal_leaves_it_unplaced(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await request(service, rules)
    await answer(broker, package_id, ids["prime_best"], decline="capacity")
    await answer(broker, package_id, ids["prime_good"], rate="30.00")  # above the band rate
    events = await outbox_types(service, package_id)
    offers = [p for t, p in events if t == "OfferMade"]
    assert [o["tier"] for o in offers] == ["prime", "supplementary"] and offers[1]["provider_ids"] == [ids["supp"]]
    await answer(broker, package_id, ids["supp"], offer_round=2, decline="price")
    assert await status(service, package_id) == "awaiting_approval"
    asked = [p for t, p in await outbox_types(service, package_id) if t == "ExceptionRequested"]
    assert len(asked) == 1 and asked[0]["provider_id"] == ids["prime_good"] and asked[0]["hourly_rate"] == "30.00"
    async with unit_of_work(service.pool) as uow:
        await handlers.decide_exception(
            uow,
            rules,
            package_id,
            approve=False,
            decided_by="manager.jo",
            reason=ExceptionDecisionReason.rate_not_justified,
        )
    assert await status(service, package_id) == "unplaced"
    assert [t for t, _ in await outbox_types(service, package_id)][-2:] == ["ExceptionDecided", "PackageUnplaced"]
    with pytest.raises(handlers.ActionRefused):
        async with unit_of_work(service.pool) as uow:
            await handlers.decide_exception(
                uow, rules, package_id, approve=True, decided_by="manager.jo", reason=ExceptionDecisionReason.other
            )


async def test_an_approved_exception_places_the_best_above_rate_bid_and_says_who_approved_it(brokerage):
    from services.brokerage import explanation

    service, broker, rules, ids = brokerage
    package_id = await request(service, rules)
    await answer(broker, package_id, ids["prime_good"], rate="24.00")
    await answer(broker, package_id, ids["prime_best"], rate="26.00")  # above the rate too, but better rated
    await answer(broker, package_id, ids["supp"], offer_round=2, decline="capacity")
    assert await status(service, package_id) == "awaiting_approval"
    async with unit_of_work(service.pool) as uow:
        await handlers.decide_exception(
            uow,
            rules,
            package_id,
            approve=True,
            decided_by="manager.jo",
            approver_roles=frozenset({"manager"}),
            reason=ExceptionDecisionReason.urgent_discharge,
            reason_text="discharge delayed; no provider at rate",
        )
    assert await status(service, package_id) == "placed"
    placed = [p for t, p in await outbox_types(service, package_id) if t == "PackagePlaced"]
    assert (
        placed[0]["provider_id"] == ids["prime_best"]
        and placed[0]["hourly_rate"] == "26.00"
        and placed[0]["offer_round"] == 1
    )
    # Each bid's rank in the ranking that chose it, no rates: what a losing bidder is told (decision 0093).
    assert placed[0]["bid_ranks"] == [
        {"provider_id": ids["prime_best"], "rank": 1},
        {"provider_id": ids["prime_good"], "rank": 2},
    ]
    decided = [p for t, p in await outbox_types(service, package_id) if t == "ExceptionDecided"]
    assert decided[0]["decision"] == "approved" and decided[0]["decided_by"] == "manager.jo"
    async with service.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM packages WHERE package_id = $1", package_id)
        rounds = await conn.fetch("SELECT * FROM offer_rounds WHERE package_id = $1", package_id)
        answers = await conn.fetch("SELECT * FROM answers WHERE package_id = $1", package_id)
        exceptions = await conn.fetch("SELECT * FROM exceptions WHERE package_id = $1", package_id)
    text = explanation.for_broker(explanation.decision_record(row, rounds, answers, {}, exceptions), {})
    assert "approved by manager.jo" in text and "discharge delayed" in text


async def test_the_window_timer_moves_a_silent_round_on(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await request(service, rules)
    await service.pool.execute(
        "UPDATE packages SET window_closes_at = now() - interval '1 second' WHERE package_id = $1", package_id
    )
    assert package_id in await run_timer(service, rules, handlers.close_due_window)
    offers = [p for t, p in await outbox_types(service, package_id) if t == "OfferMade"]
    assert [o["tier"] for o in offers] == ["prime", "supplementary"]
    # A prime's answer to the closed round is kept, but late, and changes nothing.
    await answer(broker, package_id, ids["prime_best"], rate="18.00")
    late = await service.pool.fetchval(
        "SELECT late FROM answers WHERE package_id = $1 AND provider_id = $2", package_id, ids["prime_best"]
    )
    assert late is True and await status(service, package_id) == "offered"


async def test_the_timers_loop_asks_which_timers_are_due_in_one_statement(brokerage):
    """Decision 0163: the loop opens a transaction only for a timer with a package due, and each
    answer of the one statement is that timer's own condition (a package due is seen; one second
    earlier, nothing is)."""
    service, _broker, rules, _ids = brokerage
    timers = [
        repo.WINDOWS,
        repo.REOFFERS,
        repo.REBROKERING,
        repo.HOLDS,
        repo.CHANGE_WINDOWS,
        repo.DISCHARGE_FALLBACKS,
    ]
    package_id = await request(service, rules)
    long_ago = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)  # before any deadline the other tests set
    await service.pool.execute("UPDATE packages SET window_closes_at = $2 WHERE package_id = $1", package_id, long_ago)
    before = await repo.due_timers(service.pool, timers, long_ago - dt.timedelta(seconds=1))
    at = await repo.due_timers(service.pool, timers, long_ago)
    assert package_id in await run_timer(service, rules, handlers.close_due_window)  # the round moves on
    assert before == [False] * 6
    assert at == [True, False, False, False, False, False]


async def test_an_answer_for_an_unknown_package_is_dead_lettered_not_applied(brokerage):
    service, broker, _rules, ids = brokerage
    before = await service.pool.fetchval("SELECT count(*) FROM answers")
    await answer(broker, uuid.uuid4(), ids["prime_best"], rate="18.00")
    assert await service.pool.fetchval("SELECT count(*) FROM answers") == before


async def test_an_answer_from_a_provider_not_offered_the_round_is_refused_not_counted(brokerage):
    """Found by the property test: a bid for a round its provider was not offered used to rank."""
    service, broker, rules, ids = brokerage
    package_id = await request(service, rules)
    await answer(broker, package_id, ids["supp"], rate="15.00")  # round 1 went to the Primes only
    assert await service.pool.fetchval("SELECT count(*) FROM answers WHERE package_id = $1", package_id) == 0
    await answer(broker, package_id, ids["prime_best"], decline="capacity")
    await answer(broker, package_id, ids["prime_good"], rate="20.00")
    placed = [p for t, p in await outbox_types(service, package_id) if t == "PackagePlaced"]
    assert [p["provider_id"] for p in placed] == [ids["prime_good"]]


async def test_bids_and_window_timers_racing_place_a_package_at_most_once(brokerage):
    service, broker, rules, ids = brokerage
    packages = [await request(service, rules) for _ in range(10)]

    async def bid_all():
        for package_id in packages:
            await answer(broker, package_id, ids["prime_good"], rate="19.00")
            await answer(broker, package_id, ids["prime_best"], rate="19.00")

    async def expire_all():
        for _ in range(20):
            await service.pool.execute(
                "UPDATE packages SET window_closes_at = now() WHERE package_id = ANY($1) AND status = 'offered'",
                packages,
            )
            for _ in packages:
                async with unit_of_work(service.pool) as uow:
                    await handlers.close_due_window(uow, rules)

    await asyncio.gather(bid_all(), expire_all(), expire_all())
    for package_id in packages:
        outcomes = [t for t, _ in await outbox_types(service, package_id) if t in ("PackagePlaced", "PackageUnplaced")]
        assert len(outcomes) <= 1
        placed = await service.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE aggregateid = $1 AND type = 'PackagePlaced'", str(package_id)
        )
        assert placed <= 1


async def test_an_award_is_explained_to_the_broker_the_family_and_a_losing_bidder(brokerage):
    from services.brokerage import explanation

    service, broker, rules, ids = brokerage
    package_id = await request(service, rules)
    await answer(broker, package_id, ids["prime_good"], rate="21.00")
    await answer(broker, package_id, ids["prime_best"], rate="22.95")
    async with service.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM packages WHERE package_id = $1", package_id)
        rounds = await conn.fetch("SELECT * FROM offer_rounds WHERE package_id = $1", package_id)
        answers = await conn.fetch("SELECT * FROM answers WHERE package_id = $1 ORDER BY answered_at", package_id)
    names = {ids["prime_best"]: "Best Care", ids["prime_good"]: "Good Care", ids["supp"]: "Supp Care"}
    record = explanation.decision_record(row, rounds, answers, names)
    assert (
        record["winner"] == ids["prime_best"]
        and record["rate_card"] == "2020-21"
        and record["policy"] == "prime-supplementary"
    )
    ranking = record["rounds"][0]["ranking"]
    assert [r["provider_id"] for r in ranking] == [ids["prime_best"], ids["prime_good"]]  # quality before price
    broker_text = explanation.for_broker(record, names)
    assert "Best Care bid £22.95/h" in broker_text and "Good Care bid £21.00/h" in broker_text
    assert "Placed with Best Care at £22.95/h" in broker_text and "quality rating, then price" in broker_text
    family = explanation.for_family(record, names, "2026-12-01")
    assert "Best Care will provide your care, starting on 2026-12-01" in family and "£" not in family
    loser = explanation.for_losing_bidder(record, ids["prime_good"])
    assert loser is not None
    assert "ranked 2 of 2" in loser and "22.95" not in loser
    assert explanation.for_losing_bidder(record, ids["prime_best"]) is None


async def outcome(service, package_id) -> str:
    return await service.pool.fetchval("SELECT status FROM packages WHERE package_id = $1", package_id)


async def test_a_broker_can_cancel_before_start_but_not_twice(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await request(service, rules)
    async with unit_of_work(service.pool) as uow:
        await handlers.cancel(uow, package_id, reason=CancelReason.moved_to_residential_care, cancelled_by="broker.amy")
    assert await outcome(service, package_id) == "cancelled"
    cancelled = [p for t, p in await outbox_types(service, package_id) if t == "PackageCancelled"]
    assert (
        len(cancelled) == 1
        and cancelled[0]["provider_id"] is None
        and cancelled[0]["reason"] == "moved_to_residential_care"
    )
    await answer(broker, package_id, ids["prime_best"], rate="18.00")  # a bid that arrives afterwards changes nothing
    assert await outcome(service, package_id) == "cancelled"
    with pytest.raises(handlers.ActionRefused):
        async with unit_of_work(service.pool) as uow:
            await handlers.cancel(uow, package_id, reason=CancelReason.other, cancelled_by="broker.amy")


async def test_care_starts_only_once_placed_and_then_cannot_be_cancelled(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await request(service, rules)
    with pytest.raises(handlers.ActionRefused):
        async with unit_of_work(service.pool) as uow:
            await handlers.record_start(uow, package_id, started_on=dt.date.today(), recorded_by="broker.amy")
    await answer(broker, package_id, ids["prime_best"], rate="20.00")
    async with unit_of_work(service.pool) as uow:
        await handlers.record_start(uow, package_id, started_on=dt.date.today(), recorded_by="broker.amy")
    assert await outcome(service, package_id) == "started"
    assert [t for t, _ in await outbox_types(service, package_id)][-1] == "PackageStarted"
    with pytest.raises(handlers.ActionRefused):
        async with unit_of_work(service.pool) as uow:
            await handlers.cancel(uow, package_id, reason=CancelReason.other, cancelled_by="broker.amy")


async def test_the_unplaced_queue_re_offers_on_its_schedule_from_the_top_tier(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await request(service, rules)
    await answer(broker, package_id, ids["prime_best"], decline="capacity")
    await answer(broker, package_id, ids["prime_good"], decline="capacity")
    await answer(broker, package_id, ids["supp"], offer_round=2, decline="capacity")
    assert await outcome(service, package_id) == "unplaced"
    with pytest.raises(handlers.ActionRefused):
        async with unit_of_work(service.pool) as uow:
            await handlers.record_start(uow, package_id, started_on=dt.date.today(), recorded_by="broker.amy")
    # Not due yet: nothing happens; once due, the package is offered again, Primes first.
    async with unit_of_work(service.pool) as uow:
        assert await handlers.reoffer_due(uow, rules) != package_id
    await service.pool.execute(
        "UPDATE packages SET next_reoffer_at = now() - interval '1 second' WHERE package_id = $1", package_id
    )
    async with unit_of_work(service.pool) as uow:
        while (done := await handlers.reoffer_due(uow, rules)) not in (None, package_id):
            pass
    assert done == package_id and await outcome(service, package_id) == "offered"
    offers = [p for t, p in await outbox_types(service, package_id) if t == "OfferMade"]
    assert [(o["offer_round"], o["tier"]) for o in offers] == [(1, "prime"), (2, "supplementary"), (3, "prime")]
    assert sorted(offers[2]["provider_ids"]) == sorted([ids["prime_best"], ids["prime_good"]]), (
        "the same primes may be asked again"
    )
    await answer(broker, package_id, ids["prime_best"], offer_round=3, rate="20.00")
    assert await outcome(service, package_id) == "placed"
    with pytest.raises(handlers.ActionRefused):
        async with unit_of_work(service.pool) as uow:
            await handlers.reoffer(uow, rules, package_id, requested_by="broker.amy")


async def test_a_hand_back_reopens_the_package_with_priority_and_without_that_provider(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await request(service, rules)
    await answer(broker, package_id, ids["prime_best"], rate="20.00")
    assert await status(service, package_id) == "placed"
    notice_end = dt.date.today() + dt.timedelta(days=14)
    async with unit_of_work(service.pool) as uow:
        await handlers.hand_back(
            uow,
            rules,
            package_id,
            notice_ends_on=notice_end,
            reason=HandBackReason.staff_shortage,
            recorded_by="broker.amy",
        )
    events = await outbox_types(service, package_id)
    kinds = [t for t, _ in events]
    assert kinds[-2:] == ["PackageHandedBack", "OfferMade"]
    handed, reopened = events[-2][1], events[-1][1]
    assert handed["provider_id"] == ids["prime_best"] and handed["notice_ends_on"] == notice_end.isoformat()
    assert reopened["tier"] == "prime" and reopened["provider_ids"] == [ids["prime_good"]], (
        "never the provider that handed back"
    )
    # The notice's end is the leaving provider's last day of care: the next one starts the day after
    # (found by an attack: both had been told to visit on the notice's last day, one unpaid for it).
    next_start = (notice_end + dt.timedelta(days=1)).isoformat()
    assert reopened["package"]["start_date"] == next_start, "care continues the day after the notice ends"
    row = await service.pool.fetchrow(
        "SELECT status, priority, continuity, provider_id FROM packages WHERE package_id = $1", package_id
    )
    assert (row["status"], row["priority"], row["continuity"], row["provider_id"]) == ("offered", True, True, None)
    with pytest.raises(handlers.ActionRefused):
        async with unit_of_work(service.pool) as uow:
            await handlers.hand_back(
                uow, rules, package_id, notice_ends_on=notice_end, reason=HandBackReason.other, recorded_by="broker.amy"
            )
    await answer(broker, package_id, ids["prime_good"], offer_round=2, rate="20.00")
    assert await status(service, package_id) == "placed"


async def test_a_suspended_providers_packages_are_re_brokered_most_urgent_first(brokerage):
    service, broker, rules, ids = brokerage
    urgencies = ["community", "hospital_discharge", "reablement_step_down"]
    packages = {}
    for urgency in urgencies:
        packages[urgency] = await request(service, rules, urgency=urgency)
        await answer(broker, packages[urgency], ids["prime_best"], rate="20.00")
        assert await status(service, packages[urgency]) == "placed"
    suspended = profile(ids["prime_best"], "prime", cqc="outstanding", status="suspended")
    for _ in range(2):  # a redelivery marks nothing twice
        event = ProviderUpdated(correlation_id=uuid.uuid4(), revision=2, profile=suspended)
        await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("providers.registry"))
    marked = await service.pool.fetchval(
        "SELECT count(*) FROM packages WHERE rebroker_due_at IS NOT NULL AND package_id = ANY($1)",
        list(packages.values()),
    )
    assert marked == 3

    order = await run_timer(service, rules, handlers.rebroker_due)
    # (Earlier tests' providers that left the framework have packages of their own in the queue.)
    order = [p for p in order if p in packages.values()]
    assert order == [packages["hospital_discharge"], packages["reablement_step_down"], packages["community"]]
    for package_id in order:
        kinds = await outbox_types(service, package_id)
        assert [t for t, _ in kinds][-2:] == ["PackageReopened", "OfferMade"]
        reopened, offered = kinds[-2][1], kinds[-1][1]
        assert reopened["provider_id"] == ids["prime_best"] and reopened["reason"] == "provider_suspended"
        assert ids["prime_best"] not in offered["provider_ids"], "a suspended provider is offered nothing"
        row = await service.pool.fetchrow(
            "SELECT status, priority, continuity, provider_id, rebroker_due_at FROM packages WHERE package_id = $1",
            package_id,
        )
        assert tuple(row.values()) == ("offered", True, True, None, None)
    # Placed again with another provider, the package is not taken away by a later revision.
    await answer(broker, order[0], ids["prime_good"], offer_round=2, rate="20.00")
    assert await status(service, order[0]) == "placed"
    later = ProviderUpdated(
        correlation_id=uuid.uuid4(), revision=3, profile=suspended.model_copy(update={"committed_hours": Decimal(1)})
    )
    await broker.publish(later.model_dump_json().encode(), topic=topics.resolve("providers.registry"))
    async with unit_of_work(service.pool) as uow:
        assert await handlers.rebroker_due(uow, rules) is None


async def test_a_provider_reinstated_before_the_timers_keeps_its_packages(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await request(service, rules, urgency="community")
    await answer(broker, package_id, ids["prime_best"], rate="20.00")
    assert await status(service, package_id) == "placed"
    registry = topics.resolve("providers.registry")
    for revision, state in ((2, "suspended"), (3, "active")):
        event = ProviderUpdated(
            correlation_id=uuid.uuid4(),
            revision=revision,
            profile=profile(ids["prime_best"], "prime", cqc="outstanding", status=state),
        )
        await broker.publish(event.model_dump_json().encode(), topic=registry)
        marked = await service.pool.fetchval(
            "SELECT rebroker_due_at IS NOT NULL FROM packages WHERE package_id = $1", package_id
        )
        assert marked == (state == "suspended")
    assert package_id not in await run_timer(service, rules, handlers.rebroker_due)
    row = await service.pool.fetchrow("SELECT status, provider_id FROM packages WHERE package_id = $1", package_id)
    assert (row["status"], row["provider_id"]) == ("placed", ids["prime_best"])
