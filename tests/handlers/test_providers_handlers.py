"""The providers service's handlers on the in-memory broker."""

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from faststream.kafka import KafkaMessage

from schemas.events import (
    OfferMade,
    PackageCancelled,
    PackageHandedBack,
    PackagePlaced,
    PackageReopened,
    PackageSpec,
    VisitPattern,
)
from services.providers import domain, handlers
from services.providers import repository as repo
from services.providers.app import build
from services.runtime import clock, topics
from services.runtime.consumer import raw_body
from services.runtime.outbox import unit_of_work
from services.runtime.reference import load_provider_seed


def offer(provider_ids, hours="7", band="urban", zone="coalville-ashby") -> OfferMade:
    """A small, plain package (2 calls of 30 minutes a day) that the seeded providers can take."""
    package_id = uuid.uuid4()
    spec = PackageSpec(
        zone=zone,
        band=band,
        postcode_district="LE67",
        hours_per_week=Decimal(hours),
        visits=VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=1),
        needs=["personal_care"],
        urgency="community",
        start_date=dt.date.today(),
    )
    return OfferMade(
        correlation_id=package_id,
        package_id=package_id,
        offer_round=1,
        tier="prime",
        provider_ids=provider_ids,
        package=spec,
        band_rate=Decimal("18.75"),
        window_closes_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )


async def willing(service, count: int = 1, zone: str = "coalville-ashby") -> list[str]:
    """Registered providers serving the zone's urban areas, given room for the small test package
    (earlier tests in the session may have used up the seeded market's free hours)."""
    rows = await service.pool.fetch(
        """UPDATE providers SET weekly_capacity_hours = committed_hours + held_hours + 50
            WHERE provider_id IN (SELECT provider_id FROM providers WHERE profile->'zones' ? $1 AND
                profile->'bands' ? 'urban'
                                     AND profile->>'status' = 'active' AND (adapter->>'max_calls_per_day')::int >= 2
                                   ORDER BY provider_id LIMIT $2)
            RETURNING provider_id""",
        zone,
        count,
    )
    assert len(rows) == count, "the seeded market changed: pick another zone"
    return sorted(r["provider_id"] for r in rows)


async def outbox(service, package_id):
    return await service.pool.fetch(
        "SELECT type, payload FROM outbox WHERE aggregateid = $1 ORDER BY seq", str(package_id)
    )


async def test_an_offer_is_answered_by_each_offered_providers_automatic_adapter(in_memory):
    service, broker = await in_memory(build, "providers")
    [pid] = await willing(service)
    other = load_provider_seed()[0]["provider_id"]
    event = offer([pid, "no-such-provider", other])
    await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("brokerage.packages"))
    rows = await outbox(service, event.package_id)
    answers = {json.loads(r["payload"])["provider_id"] for r in rows}
    assert answers == set(event.provider_ids) - {"no-such-provider"}  # an unknown provider is skipped
    assert pid in {json.loads(r["payload"])["provider_id"] for r in rows if r["type"] == "BidSubmitted"}


async def test_a_redelivered_offer_has_no_second_effect(in_memory):
    service, broker = await in_memory(build, "providers")
    [pid] = await willing(service)
    event = offer([pid])
    held_before = await service.pool.fetchval("SELECT held_hours FROM providers WHERE provider_id = $1", pid)
    for _ in range(3):
        await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("brokerage.packages"))
    assert len(await outbox(service, event.package_id)) == 1
    held_after = await service.pool.fetchval("SELECT held_hours FROM providers WHERE provider_id = $1", pid)
    assert held_after - held_before == Decimal("7")


async def test_an_award_commits_the_winners_hours_and_releases_the_losers(in_memory):
    service, broker = await in_memory(build, "providers")
    event = offer(await willing(service, 2))
    topic = topics.resolve("brokerage.packages")
    held_by = "SELECT provider_id, held_hours FROM providers WHERE provider_id = ANY($1) ORDER BY provider_id"
    held_before = await service.pool.fetch(held_by, event.provider_ids)
    await broker.publish(event.model_dump_json().encode(), topic=topic)
    bids = [json.loads(r["payload"]) for r in await outbox(service, event.package_id) if r["type"] == "BidSubmitted"]
    assert len(bids) == 2, "expected both providers to bid"
    winner = bids[0]["provider_id"]
    before = await service.pool.fetchrow(
        "SELECT committed_hours, revision FROM providers WHERE provider_id = $1", winner
    )
    placed = PackagePlaced(
        correlation_id=event.package_id,
        package_id=event.package_id,
        provider_id=winner,
        offer_round=1,
        tier="prime",
        hourly_rate=Decimal("18.75"),
        hours_per_week=Decimal("7"),
        start_date=dt.date.today(),
        zone="coalville-ashby",
        band="urban",
        urgency="community",
        rate_card="2020-21",
        requested_by="broker.amy",
        placed_at=dt.datetime.now(dt.UTC),
    )
    await broker.publish(placed.model_dump_json().encode(), topic=topic)
    after = await service.pool.fetchrow(
        "SELECT committed_hours, revision FROM providers WHERE provider_id = $1", winner
    )
    assert after["committed_hours"] - before["committed_hours"] == Decimal("7")
    assert after["revision"] == before["revision"] + 1
    held = await service.pool.fetchval("SELECT sum(held_hours) FROM offers WHERE package_id = $1", event.package_id)
    assert held == 0
    statuses = dict(
        await service.pool.fetch("SELECT provider_id, status FROM offers WHERE package_id = $1", event.package_id)
    )
    assert statuses == {b["provider_id"]: "won" if b["provider_id"] == winner else "lost" for b in bids}
    # Every bidder's held hours are back where they were: the winner's are committed instead.
    assert await service.pool.fetch(held_by, event.provider_ids) == held_before
    updates = [
        r
        for r in await service.pool.fetch(
            "SELECT type, aggregateid FROM outbox WHERE type = 'ProviderUpdated' AND aggregateid = $1", winner
        )
    ]
    assert updates


async def test_a_malformed_message_is_dead_lettered_with_its_origin(in_memory):
    seen = []

    def listen_to_dead_letters(service):
        @service.broker.subscriber(topics.dead_letters(), decoder=raw_body)
        async def capture(body: bytes, msg: KafkaMessage):
            seen.append((body, msg.headers))

    service, broker = await in_memory(build, "providers", before_start=listen_to_dead_letters)
    inbox_before = await service.pool.fetchval("SELECT count(*) FROM inbox")
    bad = b'{"event_type": "OfferMade", "nonsense": true}'
    await broker.publish(bad, topic=topics.resolve("brokerage.packages"))
    assert len(seen) == 1
    body, headers = seen[0]
    assert body == bad
    assert headers["x-dlq-origin-topic"] == topics.resolve("brokerage.packages")
    assert headers["x-dlq-reason"] == "invalid"
    assert "package_id" in headers["x-dlq-error"]
    assert headers["x-dlq-consumer"] == topics.group("providers")
    assert await service.pool.fetchval("SELECT count(*) FROM inbox") == inbox_before


async def test_an_event_the_service_does_not_handle_is_skipped(in_memory):
    service, broker = await in_memory(build, "providers")
    before = (
        await service.pool.fetchval("SELECT count(*) FROM inbox"),
        await service.pool.fetchval("SELECT count(*) FROM offers"),
    )
    sample = (Path(__file__).resolve().parents[2] / "schemas/samples/PackageReviewed.v1.json").read_bytes()
    await broker.publish(sample, topic=topics.resolve("brokerage.packages"))
    after = (
        await service.pool.fetchval("SELECT count(*) FROM inbox"),
        await service.pool.fetchval("SELECT count(*) FROM offers"),
    )
    assert after == before


async def test_an_event_the_handler_cannot_apply_is_retried_then_dead_lettered(in_memory):
    seen = []

    def listen_to_dead_letters(service):
        @service.broker.subscriber(topics.dead_letters(), decoder=raw_body)
        async def capture(body: bytes, msg: KafkaMessage):
            seen.append(msg.headers)

    service, broker = await in_memory(build, "providers", before_start=listen_to_dead_letters)
    # An award of more hours than the provider has free breaks the capacity check constraint:
    # not transient, so a bounded number of attempts and then dead letters - and no effect.
    row = await service.pool.fetchrow(
        "SELECT provider_id, weekly_capacity_hours - committed_hours AS free FROM providers "
        "WHERE weekly_capacity_hours - committed_hours < 160 LIMIT 1"
    )
    package_id = uuid.uuid4()
    placed = PackagePlaced(
        correlation_id=package_id,
        package_id=package_id,
        provider_id=row["provider_id"],
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
    await broker.publish(placed.model_dump_json().encode(), topic=topics.resolve("brokerage.packages"))
    assert len(seen) == 1
    assert seen[0]["x-dlq-reason"] == "handler-error" and seen[0]["x-dlq-attempts"] == str(
        service.settings.consumer_max_attempts
    )
    assert "CheckViolation" in seen[0]["x-dlq-error"]
    assert await service.pool.fetchval("SELECT count(*) FROM placements WHERE package_id = $1", package_id) == 0
    assert await service.pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", placed.event_id) == 0


async def test_a_cancelled_placement_gives_the_provider_its_hours_back(in_memory):
    service, broker = await in_memory(build, "providers")
    event = offer(await willing(service))
    topic = topics.resolve("brokerage.packages")
    await broker.publish(event.model_dump_json().encode(), topic=topic)
    [winner] = event.provider_ids
    before = await service.pool.fetchval("SELECT committed_hours FROM providers WHERE provider_id = $1", winner)
    placed = PackagePlaced(
        correlation_id=event.package_id,
        package_id=event.package_id,
        provider_id=winner,
        offer_round=1,
        tier="prime",
        hourly_rate=Decimal("18.75"),
        hours_per_week=Decimal("7"),
        start_date=dt.date.today(),
        zone="coalville-ashby",
        band="urban",
        urgency="community",
        rate_card="2020-21",
        requested_by="broker.amy",
        placed_at=dt.datetime.now(dt.UTC),
    )
    await broker.publish(placed.model_dump_json().encode(), topic=topic)
    assert (
        await service.pool.fetchval("SELECT committed_hours FROM providers WHERE provider_id = $1", winner)
        == before + 7
    )
    cancelled = PackageCancelled(
        correlation_id=event.package_id,
        package_id=event.package_id,
        reason="moved_out_of_area",
        cancelled_by="broker.amy",
        provider_id=winner,
        hours_per_week=Decimal("7"),
        cancelled_at=dt.datetime.now(dt.UTC),
    )
    for _ in range(2):  # redelivered: still only once
        await broker.publish(cancelled.model_dump_json().encode(), topic=topic)
    assert await service.pool.fetchval("SELECT committed_hours FROM providers WHERE provider_id = $1", winner) == before
    assert await service.pool.fetchval(
        "SELECT ended_at IS NOT NULL AND end_reason = 'cancelled' FROM placements WHERE package_id = $1",
        event.package_id,
    )


async def test_an_award_replayed_after_its_cancellation_commits_nothing(in_memory):
    service, broker = await in_memory(build, "providers")
    [pid] = await willing(service)
    package_id = uuid.uuid4()
    topic = topics.resolve("brokerage.packages")
    before = await service.pool.fetchval("SELECT committed_hours FROM providers WHERE provider_id = $1", pid)
    cancelled = PackageCancelled(
        correlation_id=package_id,
        package_id=package_id,
        reason="moved_out_of_area",
        cancelled_by="broker.amy",
        provider_id=pid,
        hours_per_week=Decimal("7"),
        cancelled_at=dt.datetime.now(dt.UTC),
    )
    placed = PackagePlaced(
        correlation_id=package_id,
        package_id=package_id,
        provider_id=pid,
        offer_round=1,
        tier="prime",
        hourly_rate=Decimal("18.75"),
        hours_per_week=Decimal("7"),
        start_date=dt.date.today(),
        zone="coalville-ashby",
        band="urban",
        urgency="community",
        rate_card="2020-21",
        requested_by="broker.amy",
        placed_at=dt.datetime.now(dt.UTC),
    )
    await broker.publish(cancelled.model_dump_json().encode(), topic=topic)
    await broker.publish(placed.model_dump_json().encode(), topic=topic)  # e.g. replayed from dead letters
    assert await service.pool.fetchval("SELECT committed_hours FROM providers WHERE provider_id = $1", pid) == before


async def placed_package(in_memory):
    """A small package offered to one willing provider and placed with it (7 hours a week)."""
    service, broker = await in_memory(build, "providers")
    event = offer(await willing(service))
    topic = topics.resolve("brokerage.packages")
    await broker.publish(event.model_dump_json().encode(), topic=topic)
    [pid] = event.provider_ids
    placed = PackagePlaced(
        correlation_id=event.package_id,
        package_id=event.package_id,
        provider_id=pid,
        offer_round=1,
        tier="prime",
        hourly_rate=Decimal("18.75"),
        hours_per_week=Decimal("7"),
        start_date=dt.date.today(),
        zone="coalville-ashby",
        band="urban",
        urgency="community",
        rate_card="2020-21",
        requested_by="broker.amy",
        placed_at=dt.datetime.now(dt.UTC),
    )
    await broker.publish(placed.model_dump_json().encode(), topic=topic)
    return service, broker, topic, event, pid


async def test_a_hand_back_counts_against_the_provider_at_once_and_keeps_its_hours_through_the_notice(in_memory):
    service, broker, topic, event, pid = await placed_package(in_memory)
    before = await service.pool.fetchrow(
        "SELECT committed_hours, profile->>'hand_backs_12m' AS hb FROM providers WHERE provider_id = $1", pid
    )
    handed = PackageHandedBack(
        correlation_id=event.package_id,
        package_id=event.package_id,
        provider_id=pid,
        notice_ends_on=dt.date.today() + dt.timedelta(days=7),
        reason="staff_shortage",
        hours_per_week=Decimal("7"),
        recorded_by="broker.amy",
        recorded_at=dt.datetime.now(dt.UTC),
    )
    for _ in range(2):
        await broker.publish(handed.model_dump_json().encode(), topic=topic)
    after = await service.pool.fetchrow(
        "SELECT committed_hours, profile->>'hand_backs_12m' AS hb FROM providers WHERE provider_id = $1", pid
    )
    assert int(after["hb"]) == int(before["hb"]) + 1
    # Its hours stay committed until the notice's last day has passed (decision 0159: the endings'
    # timer gives them back; tests/handlers/test_providers_pauses_and_endings.py).
    assert after["committed_hours"] == before["committed_hours"]
    update = await service.pool.fetchval(
        "SELECT payload->'profile'->>'hand_backs_12m' FROM outbox WHERE type = 'ProviderUpdated' AND aggregateid = "
        "$1 ORDER BY seq DESC LIMIT 1",
        pid,
    )
    assert int(update) == int(before["hb"]) + 1


async def test_suspension_is_announced_and_a_reopened_package_frees_the_hours_without_a_hand_back(in_memory):
    service, broker, topic, event, pid = await placed_package(in_memory)

    async with unit_of_work(service.pool) as uow:
        updated = await handlers.change_status(
            uow, pid, status="suspended", reason="CQC: inadequate", decided_by="commissioner.jo"
        )
    assert updated.profile.status == "suspended"
    announced = await service.pool.fetchval(
        "SELECT payload->'profile'->>'status' FROM outbox WHERE type = 'ProviderUpdated' AND aggregateid = $1 ORDER "
        "BY seq DESC LIMIT 1",
        pid,
    )
    assert announced == "suspended"
    with pytest.raises(domain.StatusRefused, match="already suspended"):
        async with unit_of_work(service.pool) as uow:
            await handlers.change_status(uow, pid, status="suspended", reason="again", decided_by="commissioner.jo")

    before = await service.pool.fetchrow(
        "SELECT committed_hours, profile->>'hand_backs_12m' AS hb FROM providers WHERE provider_id = $1", pid
    )
    reopened = PackageReopened(
        correlation_id=event.package_id,
        package_id=event.package_id,
        provider_id=pid,
        reason="provider_suspended",
        hours_per_week=Decimal("7"),
        reopened_at=dt.datetime.now(dt.UTC),
    )
    for _ in range(2):
        await broker.publish(reopened.model_dump_json().encode(), topic=topic)
    after = await service.pool.fetchrow(
        "SELECT committed_hours, profile->>'hand_backs_12m' AS hb FROM providers WHERE provider_id = $1", pid
    )
    assert after["committed_hours"] == before["committed_hours"] - 7, "freed once, whatever the redeliveries"
    assert after["hb"] == before["hb"], "a suspension is not the provider handing the package back"

    async with unit_of_work(service.pool) as uow:
        await handlers.change_status(
            uow, pid, status="active", reason="re-inspected: good", decided_by="commissioner.jo"
        )
    history = await service.pool.fetch(
        "SELECT status, decided_by FROM status_changes WHERE provider_id = $1 ORDER BY id", pid
    )
    assert [(r["status"], r["decided_by"]) for r in history] == [
        ("suspended", "commissioner.jo"),
        ("active", "commissioner.jo"),
    ]


async def test_webhook_and_portal_adapters_answer_through_the_api_and_a_new_round_closes_the_unanswered(in_memory):
    from schemas.adapters import BidRequest
    from services.providers import handlers
    from services.providers.domain import AutomaticRules
    from services.runtime.outbox import unit_of_work

    service, broker = await in_memory(build, "providers")
    webhook, portal = await willing(service, 2)
    async with unit_of_work(service.pool) as uow:
        secret = await handlers.set_adapter(
            uow,
            webhook,
            AutomaticRules(kind="webhook", webhook_url="http://127.0.0.1:9/x"),
            new_secret=False,
            box=service.secrets,
        )
        await handlers.set_adapter(uow, portal, AutomaticRules(kind="portal"), new_secret=False, box=service.secrets)
    assert secret and secret.startswith("whsec_")
    stored = await service.pool.fetchval("SELECT webhook_secret FROM providers WHERE provider_id = $1", webhook)
    assert stored.startswith("enc:v1:") and secret not in stored, "kept sealed at rest"
    event = offer([webhook, portal])
    topic = topics.resolve("brokerage.packages")
    await broker.publish(event.model_dump_json().encode(), topic=topic)
    assert await outbox(service, event.package_id) == [], "neither adapter answers by itself"
    [delivery] = await service.pool.fetch("SELECT * FROM webhook_deliveries WHERE package_id = $1", event.package_id)
    assert delivery["provider_id"] == webhook and delivery["status"] == "pending"
    body = json.loads(delivery["body"])
    assert body["provider_id"] == webhook and body["answer_with"]["bid"] == f"/me/offers/{event.package_id}/bid"
    assert "person" not in body and body["package"]["postcode_district"] == "LE67"

    async with unit_of_work(service.pool) as uow:
        await handlers.answer_through_api(
            uow, webhook, event.package_id, BidRequest(rate=Decimal("19.10"), earliest_start=dt.date.today())
        )
    [bid] = await outbox(service, event.package_id)
    assert bid["type"] == "BidSubmitted" and json.loads(bid["payload"])["adapter"] == "webhook"
    # The portal provider did not answer round 1; round 2 (to it again) closes that offer.
    second = event.model_copy(update={"event_id": uuid.uuid4(), "offer_round": 2, "provider_ids": [portal]})
    await broker.publish(second.model_dump_json().encode(), topic=topic)
    rows = {
        (r["offer_round"], r["provider_id"]): r["status"]
        for r in await service.pool.fetch(
            "SELECT offer_round, provider_id, status FROM offers WHERE package_id = $1", event.package_id
        )
    }
    assert rows == {(1, webhook): "bid", (1, portal): "closed", (2, portal): "offered"}


async def test_webhook_secrets_stored_in_clear_are_sealed_at_start(in_memory):
    """A secret from before sealing existed is rewritten sealed by the service's start-up step."""
    from services.runtime.sealing import reseal_column

    service, _ = await in_memory(build, "providers")
    [provider] = await willing(service, 1)
    await service.pool.execute(
        "UPDATE providers SET webhook_secret = 'whsec_from_before' WHERE provider_id = $1", provider
    )
    assert "seal_secrets" in [step.__name__ for step in service.startup_steps]
    async with service.pool.acquire() as conn:
        assert await reseal_column(conn, service.secrets, "providers", "provider_id", "webhook_secret") >= 1
    stored = await service.pool.fetchval("SELECT webhook_secret FROM providers WHERE provider_id = $1", provider)
    assert stored.startswith("enc:v1:") and service.secrets.open(stored) == "whsec_from_before"


# ---- a placement per award: who holds a package through hand-backs and re-brokering -----------


def award(event: OfferMade, provider_id: str, offer_round: int, at: dt.datetime) -> PackagePlaced:
    return PackagePlaced(
        correlation_id=event.package_id,
        package_id=event.package_id,
        provider_id=provider_id,
        offer_round=offer_round,
        tier="prime",
        hourly_rate=Decimal("18.75"),
        hours_per_week=Decimal("7"),
        start_date=dt.date.today(),
        zone="coalville-ashby",
        band="urban",
        urgency="community",
        rate_card="2020-21",
        requested_by="broker.amy",
        placed_at=at,
    )


async def placements_of(service, package_id) -> list[tuple]:
    rows = await service.pool.fetch(
        "SELECT offer_round, provider_id, ended_at IS NULL AS live, end_reason FROM placements "
        "WHERE package_id = $1 ORDER BY offer_round",
        package_id,
    )
    return [tuple(r.values()) for r in rows]


async def committed(service, *pids) -> list[Decimal]:
    return [
        await service.pool.fetchval("SELECT committed_hours FROM providers WHERE provider_id = $1", pid) for pid in pids
    ]


async def test_after_a_hand_back_the_new_winner_holds_the_package_and_its_hours(in_memory):
    """Issue 14, item 5: the second award was silently dropped (one placement row per package)."""
    service, broker = await in_memory(build, "providers")
    first, second = await willing(service, 2)
    event = offer([first, second])
    topic = topics.resolve("brokerage.packages")
    await broker.publish(event.model_dump_json().encode(), topic=topic)
    before = await committed(service, first, second)
    t0 = dt.datetime.now(dt.UTC)
    await broker.publish(award(event, first, 1, t0).model_dump_json().encode(), topic=topic)
    handed = PackageHandedBack(
        correlation_id=event.package_id,
        package_id=event.package_id,
        provider_id=first,
        notice_ends_on=dt.date.today() + dt.timedelta(days=7),
        reason="staff_shortage",
        hours_per_week=Decimal("7"),
        recorded_by="broker.amy",
        recorded_at=t0 + dt.timedelta(seconds=1),
    )
    await broker.publish(handed.model_dump_json().encode(), topic=topic)
    again = offer([second]).model_copy(update={"package_id": event.package_id, "offer_round": 2})
    await broker.publish(again.model_dump_json().encode(), topic=topic)
    second_award = award(event, second, 2, t0 + dt.timedelta(seconds=2))
    await broker.publish(second_award.model_dump_json().encode(), topic=topic)
    assert await placements_of(service, event.package_id) == [
        (1, first, False, "handed_back"),
        (2, second, True, None),
    ]
    # The first still works its notice (a week): its hours are held until it ends (decision 0159).
    assert await committed(service, first, second) == [before[0] + 7, before[1] + 7]
    # Replays from dead letters change nothing: the first award (older than the live one) and
    # the hand-back (it ends only the placement it was about, placed before it).
    for replay in (award(event, first, 1, t0), handed):
        await broker.publish(
            replay.model_copy(update={"event_id": uuid.uuid4()}).model_dump_json().encode(), topic=topic
        )
    assert await placements_of(service, event.package_id) == [
        (1, first, False, "handed_back"),
        (2, second, True, None),
    ]
    assert await committed(service, first, second) == [before[0] + 7, before[1] + 7]
    held = (  # the hours of its placements not given back: live ones, and those it works a notice on
        "SELECT coalesce(sum(hours_per_week), 0) FROM placements WHERE provider_id = $1 AND hours_released_at IS NULL"
    )
    [committed_before], held_before = await committed(service, first), await service.pool.fetchval(held, first)
    with clock.frozen(dt.datetime.now(dt.UTC) + dt.timedelta(days=9)):
        while True:  # every notice due by then ends (other tests' packages of this provider too)
            async with unit_of_work(service.pool) as uow:
                if await handlers.release_due_endings(uow) is None:
                    break
    [committed_after], held_after = await committed(service, first), await service.pool.fetchval(held, first)
    assert committed_before - committed_after == held_before - held_after >= 7, "given back what was held, once"
    assert await placements_of(service, event.package_id) == [
        (1, first, False, "handed_back"),
        (2, second, True, None),
    ]
    released = "SELECT hours_released_at IS NOT NULL FROM placements WHERE package_id = $1 AND offer_round = 1"
    assert await service.pool.fetchval(released, event.package_id), "the notice over: its hours given back"


async def test_a_newer_award_ends_a_placement_whose_end_never_arrived(in_memory):
    """The re-brokering's PackageReopened was dead-lettered: the next award still moves the package."""
    service, broker = await in_memory(build, "providers")
    first, second = await willing(service, 2)
    event = offer([first, second])
    topic = topics.resolve("brokerage.packages")
    await broker.publish(event.model_dump_json().encode(), topic=topic)
    before = await committed(service, first, second)
    t0 = dt.datetime.now(dt.UTC)
    await broker.publish(award(event, first, 1, t0).model_dump_json().encode(), topic=topic)
    await broker.publish(award(event, second, 3, t0 + dt.timedelta(seconds=5)).model_dump_json().encode(), topic=topic)
    assert await placements_of(service, event.package_id) == [(1, first, False, "replaced"), (3, second, True, None)]
    assert await committed(service, first, second) == [before[0], before[1] + 7]
    reopened = PackageReopened(
        correlation_id=event.package_id,
        package_id=event.package_id,
        provider_id=first,
        reason="provider_suspended",
        hours_per_week=Decimal("7"),
        reopened_at=t0 + dt.timedelta(seconds=2),
    )
    await broker.publish(reopened.model_dump_json().encode(), topic=topic)  # arriving at last: nothing to end
    assert await committed(service, first, second) == [before[0], before[1] + 7]
    assert [live for *_, live, _ in await placements_of(service, event.package_id)] == [False, True]


@asynccontextmanager
async def holding(service, provider_id: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction that holds the provider's row, as the provider API does while
    it answers; rolled back at the end unless the test committed it."""
    async with service.pool.acquire() as holder:
        await holder.execute("BEGIN")
        try:
            await holder.execute("SELECT 1 FROM providers WHERE provider_id = $1 FOR UPDATE", provider_id)
            yield holder
        finally:
            if holder.is_in_transaction():
                await holder.execute("ROLLBACK")


async def waiting(service, handle) -> asyncio.Task:
    """``handle(uow)`` started in a unit of work, once its statement waits for a lock (under way,
    its snapshot taken): the task, not done."""

    async def run() -> None:
        async with unit_of_work(service.pool) as uow:
            await handle(uow)

    task = asyncio.create_task(run())
    for _ in range(100):
        if await service.pool.fetchval(
            """SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock'"""
        ):
            assert not task.done()
            return task
        await asyncio.sleep(0.05)
    raise AssertionError("the handler never waited for the lock")


@pytest.mark.parametrize(
    "handle",
    [
        pytest.param(
            lambda uow, event, pids: handlers.record_award(uow, award(event, pids[0], 1, dt.datetime.now(dt.UTC))),
            id="award",
        ),
        pytest.param(
            lambda uow, event, pids: handlers.release_package(
                uow,
                PackageCancelled(
                    correlation_id=event.package_id,
                    package_id=event.package_id,
                    reason="person_declined",
                    cancelled_by="broker.amy",
                    hours_per_week=event.package.hours_per_week,
                    cancelled_at=dt.datetime.now(dt.UTC),
                ),
            ),
            id="cancellation",
        ),
    ],
)
async def test_handlers_lock_the_packages_providers_before_its_offers(in_memory, handle):
    """The service's lock order (docs/decisions/0077): providers, then a package's offers - as the
    provider API takes its provider, then its offer. An award that locked the offers first and then
    waited for a provider deadlocked with a bid arriving at that moment (CI, 2026-11-30)."""
    service, _ = await in_memory(build, "providers")
    pids = await willing(service, 2)
    event = offer(pids)
    async with unit_of_work(service.pool) as uow:
        await handlers.answer_offer(uow, event)  # automatic adapters: both bid, holding hours
    # A bid in flight for another package holds the second provider (the API locks it first).
    async with holding(service, pids[1]) as holder, service.pool.acquire() as probe:
        task = await waiting(service, lambda uow: handle(uow, event, pids))
        # While it waits, it holds none of the package's offers: a bid could still take its own.
        async with probe.transaction():
            locked = await probe.fetch(
                "SELECT provider_id FROM offers WHERE package_id = $1 FOR UPDATE NOWAIT", event.package_id
            )
        assert sorted(r["provider_id"] for r in locked) == pids
        await holder.execute("COMMIT")
        await asyncio.wait_for(task, 10)


async def test_a_bid_made_while_the_award_waited_for_its_provider_is_settled_not_closed(in_memory):
    """Decision 0148: an award locks the package's providers and closes their unanswered offers in
    one statement, whose snapshot is older than the locks it waits for. A bid that the provider
    API committed in that wait (it holds its provider while it answers) must be settled as a bid -
    lost, its held hours given back - not closed as if nobody had answered."""
    service, _ = await in_memory(build, "providers")
    winner, bidder = await willing(service, 2)
    portal = domain.AutomaticRules(kind="portal")
    async with unit_of_work(service.pool) as uow:  # the bidder answers through the portal, later
        await handlers.set_adapter(uow, bidder, portal, new_secret=False, box=service.secrets)
    event = offer([winner, bidder])
    async with unit_of_work(service.pool) as uow:
        await handlers.answer_offer(uow, event)  # the winner bids at once; the bidder's offer stays open
    held_before = await service.pool.fetchval("SELECT held_hours FROM providers WHERE provider_id = $1", bidder)
    # The provider API's bid: its provider first, then its offer, not yet committed.
    async with holding(service, bidder) as holder:
        await repo.record_bid(
            holder,
            package_id=event.package_id,
            offer_round=1,
            provider_id=bidder,
            hourly_rate=Decimal("19.00"),
            hold=Decimal("7"),
            at=dt.datetime.now(dt.UTC),
        )
        # The award's statement has begun (its snapshot taken) and waits for the bid's provider.
        task = await waiting(
            service, lambda uow: handlers.record_award(uow, award(event, winner, 1, dt.datetime.now(dt.UTC)))
        )
        await holder.execute("COMMIT")
        await asyncio.wait_for(task, 10)
    statuses = dict(
        await service.pool.fetch(
            "SELECT provider_id, status FROM offers WHERE package_id = $1 ORDER BY provider_id", event.package_id
        )
    )
    assert statuses == {winner: "won", bidder: "lost"}
    held_after = await service.pool.fetchval("SELECT held_hours FROM providers WHERE provider_id = $1", bidder)
    assert held_after == held_before, "the bid's hours were held, then given back when it lost"


async def test_an_award_that_waited_for_its_provider_sees_the_cancellation_made_in_that_wait(in_memory):
    """The award reads whether its package was cancelled and its live placement in its bids'
    settling statement, which runs after the providers are locked. A cancellation that held the
    winner's provider (as :func:`handlers.release_package` does) and committed while the award
    waited for it must be seen: the award places nothing. Read in the locking statement, whose
    snapshot is older than its wait, the cancellation would be missed."""
    service, _ = await in_memory(build, "providers")
    [winner] = await willing(service, 1)
    event = offer([winner])
    async with unit_of_work(service.pool) as uow:
        await handlers.answer_offer(uow, event)  # the winner bids at once
    async with holding(service, winner) as holder:
        await repo.remember_cancelled(holder, event.package_id, dt.datetime.now(dt.UTC))
        task = await waiting(
            service, lambda uow: handlers.record_award(uow, award(event, winner, 1, dt.datetime.now(dt.UTC)))
        )
        await holder.execute("COMMIT")
        await asyncio.wait_for(task, 10)
    placements = await service.pool.fetchval("SELECT count(*) FROM placements WHERE package_id = $1", event.package_id)
    assert placements == 0, "the award of a package cancelled while it waited made a placement"
    status = await service.pool.fetchval(
        "SELECT status FROM offers WHERE package_id = $1 AND provider_id = $2", event.package_id, winner
    )
    assert status == "won", "its bid is settled all the same (the hours it held given back)"
