"""Equal bids on the real PostgreSQL: the provider with fewer awards in the zone over the last 12
weeks wins, an older award does not count, equal counts leave it to the recorded draw, and the
explanation says which decided."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import httpx

from schemas.events import BidSubmitted, ProviderUpdated
from services.brokerage import domain
from services.runtime import topics
from tests import local_issuer
from tests.handlers.market import ZONE, outbox_types, profile, request, status

SAME_INSTANT = dt.datetime.now(dt.UTC).replace(microsecond=0)


async def bid_at_the_same_instant(broker, package_id, provider_id) -> None:
    event = BidSubmitted(
        correlation_id=package_id,
        package_id=package_id,
        offer_round=1,
        provider_id=provider_id,
        adapter="automatic",
        answered_at=SAME_INSTANT,
        hourly_rate=Decimal("20.00"),
        earliest_start=dt.date.today(),
    )
    await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("providers.answers"))


async def past_awards(service, provider_id: str, *ages_in_weeks: float) -> None:
    """Awards in the zone ``ages_in_weeks`` ago, on packages of their own."""
    for age in ages_in_weeks:
        package_id = await service.pool.fetchval("SELECT package_id FROM packages LIMIT 1")
        await service.pool.execute(
            "INSERT INTO awards (package_id, provider_id, zone, awarded_at) VALUES ($1, $2, $3, now() - $4::interval)",
            package_id,
            provider_id,
            ZONE,
            dt.timedelta(weeks=age),
        )


async def test_equal_bids_go_to_fewer_recent_awards_then_to_the_recorded_draw(brokerage):
    service, broker, rules, ids = brokerage
    # Make the two Primes equal on quality: both rated Good.
    equal = profile(ids["prime_best"], "prime", cqc="good")
    event = ProviderUpdated(correlation_id=uuid.uuid4(), revision=2, profile=equal)
    await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("providers.registry"))
    a, b = ids["prime_best"], ids["prime_good"]
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://brokerage",
        headers=local_issuer.headers("brokerage"),
    )

    # 1. The draw would pick `favourite`; give it more recent awards in the zone than the other
    # (the other's one award of 13 weeks ago is outside the window): the other wins.
    first = await request(service, rules)
    favourite = min((a, b), key=lambda p: domain.tie_draw(str(first), 1, p))
    other = b if favourite == a else a
    await past_awards(service, favourite, 1, 5)
    await past_awards(service, other, 1, 13)
    for provider_id in (a, b):
        await bid_at_the_same_instant(broker, first, provider_id)
    assert await status(service, first) == "placed"
    [placed] = [p for t, p in await outbox_types(service, first) if t == "PackagePlaced"]
    assert placed["provider_id"] == other, "fewer awards in the zone in the last 12 weeks"
    recorded = json.loads(
        await service.pool.fetchval("SELECT tie_break FROM offer_rounds WHERE package_id = $1", first)
    )
    assert recorded["recent_awards"] == {favourite: 2, other: 1}
    explained = (await api.get(f"/packages/{first}/explanation")).json()
    assert explained["record"]["rounds"][0]["tie_break"]["decided_award"]["criterion"] == domain.CRITERIA[4]
    assert "had fewer awards in this zone in the last 12 weeks (1 against 2)" in explained["explanation"]["broker"]

    # 2. Now `other` has that award too (2 each): the draw decides, as recorded and recomputable.
    second = await request(service, rules)
    for provider_id in (a, b):
        await bid_at_the_same_instant(broker, second, provider_id)
    assert await status(service, second) == "placed"
    [placed] = [p for t, p in await outbox_types(service, second) if t == "PackagePlaced"]
    drawn = min((a, b), key=lambda p: domain.tie_draw(str(second), 1, p))
    assert placed["provider_id"] == drawn
    explained = (await api.get(f"/packages/{second}/explanation")).json()
    assert explained["record"]["rounds"][0]["tie_break"]["decided_award"]["criterion"] == "draw"
    assert "a draw seeded by the package and round decided" in explained["explanation"]["broker"]
    awards = await service.pool.fetchval(
        "SELECT count(*) FROM awards WHERE package_id = ANY($1) AND zone = $2"
        " AND awarded_at > now() - interval '1 day'",
        [first, second],
        ZONE,
    )
    assert awards == 2, "each award is counted for the next ties"
