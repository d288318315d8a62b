"""Offer lifecycle notices (decision record 0093), on the in-memory broker and a real PostgreSQL:
each offer that closes for a provider is recorded once - won, lost with its bid's rank (never a
price), or closed with the reason - listed under GET /me/notices and, for a webhook adapter,
queued as a signed delivery of its own; a closed or answered offer's delivery is withdrawn and
never sent again by the delivery loop."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import httpx

from schemas.adapters import BidRequest, DeclineRequest
from schemas.events import BidRank, OfferMade, PackageCancelled, PackagePlaced, PackageUnplaced
from services.providers import handlers
from services.providers.app import build
from services.providers.domain import AutomaticRules
from services.runtime import signing, topics
from services.runtime.outbox import unit_of_work
from tests.handlers.test_providers_handlers import offer, willing

DEAD_URL = "http://127.0.0.1:9/hooks"


async def market(in_memory, kinds: list[str]):
    """Providers on the given adapters (webhook ones to an address that never answers), each with a
    credential, offered one package: (service, broker, event, [provider ids], {provider id: token})."""
    service, broker = await in_memory(build, "providers")
    pids = await willing(service, len(kinds))
    tokens, secrets = {}, {}
    async with unit_of_work(service.pool) as uow:
        for pid, kind in zip(pids, kinds, strict=True):
            rules = AutomaticRules(kind=kind, webhook_url=DEAD_URL if kind == "webhook" else None)
            secrets[pid] = await handlers.set_adapter(uow, pid, rules, new_secret=True, box=service.secrets)
            tokens[pid] = (await handlers.issue_credential(uow, pid, label="test", replace=False))["token"]
    event = offer(pids)
    await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("brokerage.packages"))
    return service, broker, event, pids, tokens, secrets


async def bid(service, pid: str, event: OfferMade, rate: str) -> None:
    async with unit_of_work(service.pool) as uow:
        await handlers.answer_through_api(
            uow, pid, event.package_id, BidRequest(rate=Decimal(rate), earliest_start=dt.date.today())
        )


def placed(event: OfferMade, winner: str, ranks: list[str]) -> PackagePlaced:
    return PackagePlaced(
        correlation_id=event.package_id,
        package_id=event.package_id,
        provider_id=winner,
        offer_round=event.offer_round,
        tier="prime",
        hourly_rate=Decimal("18.00"),
        hours_per_week=event.package.hours_per_week,
        start_date=event.package.start_date,
        zone=event.package.zone,
        band=event.package.band,
        urgency=event.package.urgency,
        rate_card="2020-21",
        requested_by="broker.amy",
        losing_provider_ids=[p for p in event.provider_ids if p != winner],
        bid_ranks=[BidRank(provider_id=p, rank=i + 1) for i, p in enumerate(ranks)],
        placed_at=dt.datetime.now(dt.UTC),
    )


async def closures(service, package_id) -> dict[str, tuple]:
    rows = await service.pool.fetch("SELECT * FROM offer_closures WHERE package_id = $1", package_id)
    return {r["provider_id"]: (r["outcome"], r["reason"], r["rank"], r["ranked_bids"]) for r in rows}


async def deliveries(service, package_id) -> list[tuple]:
    rows = await service.pool.fetch(
        "SELECT provider_id, kind, status, attempts, body FROM webhook_deliveries WHERE package_id = $1 "
        "ORDER BY provider_id, kind",
        package_id,
    )
    return [(r["provider_id"], r["kind"], r["status"], r["attempts"], json.loads(r["body"])) for r in rows]


def api(service, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://providers",
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_the_loser_hears_its_rank_the_winner_that_it_won_and_the_silent_that_it_closed(in_memory):
    service, broker, event, pids, tokens, _secrets = await market(in_memory, ["webhook", "portal", "portal"])
    loser, winner, silent = pids
    await bid(service, loser, event, "18.75")
    await bid(service, winner, event, "18.00")
    award = placed(event, winner, ranks=[winner, loser])
    topic = topics.resolve("brokerage.packages")
    await broker.publish(award.model_dump_json().encode(), topic=topic)
    assert await closures(service, event.package_id) == {
        loser: ("lost", "placed_elsewhere", 2, 2),
        winner: ("won", "placed_with_you", None, None),
        silent: ("closed", "placed_elsewhere", None, None),
    }
    # The webhook loser: its offer's delivery was withdrawn when it answered; its notice is queued.
    [(pid, kind, status, _, notice), (_, offer_kind, offer_status, _, _)] = sorted(
        await deliveries(service, event.package_id), key=lambda d: d[1], reverse=True
    )
    assert (pid, kind, status) == (loser, "offer_closed", "pending")
    assert (offer_kind, offer_status) == ("offer", "withdrawn")
    assert notice["kind"] == "offer_closed" and notice["outcome"] == "lost" and notice["rank"] == 2
    text = json.dumps(notice)
    assert "18.00" not in text and "18.75" not in text and winner not in text, "no price, no other provider"
    # Portal providers read theirs; each provider only its own.
    async with api(service, tokens[silent]) as c:
        listed = (await c.get("/me/notices")).json()
    mine = [n for n in listed if n["package_id"] == str(event.package_id)]
    assert [(n["outcome"], n["reason"], n["provider_id"]) for n in mine] == [("closed", "placed_elsewhere", silent)]
    # A redelivered award tells no one twice.
    await broker.publish(award.model_dump_json().encode(), topic=topic)
    assert (
        await service.pool.fetchval("SELECT count(*) FROM offer_closures WHERE package_id = $1", event.package_id) == 3
    )
    assert len(await deliveries(service, event.package_id)) == 2


async def test_a_closed_offers_delivery_is_never_retried_and_its_notice_is_sent_signed(in_memory):
    service, broker, event, pids, _tokens, secrets = await market(in_memory, ["webhook", "portal"])
    webhook, other = pids
    sent: list[httpx.Request] = []

    def receiver_down(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503)

    async def one_pass() -> list[dict]:
        """Make every pending delivery of this package due, then run the delivery loop once."""
        await service.pool.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE package_id = $1 AND status = 'pending'",
            event.package_id,
        )
        before = len(sent)
        async with httpx.AsyncClient(transport=httpx.MockTransport(receiver_down)) as client:
            while await handlers.deliver_due_webhooks(service.pool, client, service.settings, service.secrets):
                pass
        return [
            json.loads(r.content) for r in sent[before:] if json.loads(r.content)["package_id"] == str(event.package_id)
        ]

    assert [b["kind"] for b in await one_pass()] == ["offer"]
    assert [b["kind"] for b in await one_pass()] == ["offer"], "retried while the offer is open"
    # The other provider bids and the round closes early: the package is placed with it.
    await bid(service, other, event, "18.00")
    await broker.publish(
        placed(event, other, ranks=[other]).model_dump_json().encode(), topic=topics.resolve("brokerage.packages")
    )
    states = {(d[1], d[2], d[3]) for d in await deliveries(service, event.package_id)}
    assert ("offer", "withdrawn", 2) in states, states
    # From now on only the closing notice is sent - never the closed offer again.
    for _ in range(2):
        assert [b["kind"] for b in await one_pass()] == ["offer_closed"]
    [offer_row] = [d for d in await deliveries(service, event.package_id) if d[1] == "offer"]
    assert offer_row[2:4] == ("withdrawn", 2), "the closed offer was not attempted again"
    notice_request = next(r for r in reversed(sent) if json.loads(r.content)["kind"] == "offer_closed")
    assert signing.verify(secrets[webhook], dict(notice_request.headers), notice_request.content)
    notice = json.loads(notice_request.content)
    assert (notice["outcome"], notice["reason"], notice["rank"]) == ("closed", "placed_elsewhere", None)


async def test_a_new_round_tells_the_unanswered_whether_the_window_ran_out_or_the_round_closed_early(in_memory):
    service, broker, event, pids, _tokens, _secrets = await market(in_memory, ["portal", "portal"])
    early, late = pids
    topic = topics.resolve("brokerage.packages")
    # Round 2 (to one of them again) made before round 1's window closed: round 1 closed early.
    second = event.model_copy(update={"event_id": uuid.uuid4(), "offer_round": 2, "provider_ids": [late]})
    await broker.publish(second.model_dump_json().encode(), topic=topic)
    # Round 3 made after round 2's window: round 2 closed when its window ran out.
    third = event.model_copy(
        update={
            "event_id": uuid.uuid4(),
            "offer_round": 3,
            "provider_ids": [early],
            "occurred_at": second.window_closes_at + dt.timedelta(seconds=1),
            "window_closes_at": second.window_closes_at + dt.timedelta(hours=2),
        }
    )
    await broker.publish(third.model_dump_json().encode(), topic=topic)
    rows = await service.pool.fetch(
        "SELECT provider_id, offer_round, outcome, reason FROM offer_closures WHERE package_id = $1 ORDER BY 2, 1",
        event.package_id,
    )
    assert [tuple(r) for r in rows] == [
        (early, 1, "closed", "round_closed_early"),
        (late, 1, "closed", "round_closed_early"),
        (late, 2, "closed", "window_ended"),
    ]


async def test_cancelled_and_unplaced_packages_close_bids_and_open_offers_with_the_reason(in_memory):
    service, broker, event, pids, _tokens, _secrets = await market(in_memory, ["portal", "portal", "portal"])
    bidder, decliner, silent = pids
    await bid(service, bidder, event, "18.00")
    async with unit_of_work(service.pool) as uow:
        await handlers.answer_through_api(uow, decliner, event.package_id, DeclineRequest(reason="capacity"))
    cancelled = PackageCancelled(
        correlation_id=event.package_id,
        package_id=event.package_id,
        reason="no_longer_needed",
        cancelled_by="broker.amy",
        hours_per_week=event.package.hours_per_week,
        cancelled_at=dt.datetime.now(dt.UTC),
    )
    await broker.publish(cancelled.model_dump_json().encode(), topic=topics.resolve("brokerage.packages"))
    assert await closures(service, event.package_id) == {
        bidder: ("closed", "package_cancelled", None, None),
        silent: ("closed", "package_cancelled", None, None),
    }, "a decline is final already: no notice"
    # Unplaced (another package): the bid released, the provider told.
    service2_event = offer([bidder])
    await broker.publish(service2_event.model_dump_json().encode(), topic=topics.resolve("brokerage.packages"))
    await bid(service, bidder, service2_event, "25.00")
    unplaced = PackageUnplaced(
        correlation_id=service2_event.package_id,
        package_id=service2_event.package_id,
        zone=service2_event.package.zone,
        band=service2_event.package.band,
        urgency=service2_event.package.urgency,
        hours_per_week=service2_event.package.hours_per_week,
        reason="no_acceptable_bid",
        requested_by="broker.amy",
        unplaced_at=dt.datetime.now(dt.UTC),
    )
    await broker.publish(unplaced.model_dump_json().encode(), topic=topics.resolve("brokerage.packages"))
    assert await closures(service, service2_event.package_id) == {bidder: ("closed", "package_unplaced", None, None)}
    status = await service.pool.fetchval(
        "SELECT status FROM offers WHERE package_id = $1 AND provider_id = $2", service2_event.package_id, bidder
    )
    assert status == "closed"
