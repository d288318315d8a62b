"""The brokerage's small market for handler tests: three providers of the tests' own in a small
zone, on the in-memory broker with a real PostgreSQL, and the hands to drive it."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest

from schemas.events import BidSubmitted, OfferDeclined, PackageSpec, ProviderProfile, ProviderUpdated, VisitPattern
from services.brokerage import handlers
from services.brokerage.app import build
from services.runtime import topics
from services.runtime.outbox import unit_of_work

ZONE = "bottesford"  # a small zone: the test's own providers are the only ones there


def profile(pid, tier, cqc="good", **kw) -> ProviderProfile:
    base = dict(
        provider_id=pid,
        name=pid,
        tier=tier,
        status="active",
        zones=[ZONE],
        bands=["urban", "fringe", "rural"],
        skills=["personal_care", "medication"],
        double_handed=True,
        cqc_rating=cqc,
        local_risk="low",
        hand_backs_12m=0,
        weekly_capacity_hours=Decimal(200),
        committed_hours=Decimal(0),
    )
    return ProviderProfile(**(base | kw))


def spec(urgency="community", start_date: dt.date | None = None) -> PackageSpec:
    return PackageSpec(
        zone=ZONE,
        band="rural",
        postcode_district="NG13",
        hours_per_week=Decimal("7"),
        visits=VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=1),
        needs=["personal_care"],
        urgency=urgency,
        start_date=start_date or dt.date.today(),
    )


PERSON = {"full_name": "Ada Abbott", "address": "1 Mill Lane", "postcode": "NG13 0AA", "nhs_number": "9990001112"}


@pytest.fixture
async def brokerage(in_memory):
    service, broker = await in_memory(build, "brokerage")
    suffix = uuid.uuid4().hex[:6]
    market = {
        "prime_best": profile(f"pa-{suffix}", "prime", cqc="outstanding"),
        "prime_good": profile(f"pb-{suffix}", "prime", cqc="good"),
        "supp": profile(f"sc-{suffix}", "supplementary", cqc="good"),
    }
    # Providers from earlier tests in this zone would join the offers: retire them.
    await service.pool.execute(
        "UPDATE provider_view SET profile = jsonb_set(profile, '{status}', '\"left\"') WHERE profile->'zones' ? $1",
        ZONE,
    )
    for p in market.values():
        event = ProviderUpdated(correlation_id=uuid.uuid4(), revision=1, profile=p)
        await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("providers.registry"))
    rules = service.rules
    return service, broker, rules, {k: v.provider_id for k, v in market.items()}


async def request(service, rules, **kw) -> uuid.UUID:
    async with unit_of_work(service.pool) as uow:
        return (
            await handlers.request_package(uow, rules, spec=spec(**kw), person=PERSON, requested_by="broker.amy")
        ).package_id


async def run_timer(service, rules, job) -> list[uuid.UUID]:
    """Run a timer's job (one package per transaction) until it has nothing left; the packages it took."""
    taken: list[uuid.UUID] = []
    while True:
        async with unit_of_work(service.pool) as uow:
            if (package_id := await job(uow, rules)) is None:
                return taken
        taken.append(package_id)


async def outbox_types(service, package_id, *, agreements: bool = False) -> list[tuple[str, dict]]:
    """The package's events in the outbox, in order. The finance records (ServiceAgreementRecorded, on
    a topic of their own) only with ``agreements``: the package's story is told without them."""
    rows = await service.pool.fetch(
        "SELECT type, payload FROM outbox WHERE aggregateid = $1 ORDER BY seq", str(package_id)
    )
    return [
        (r["type"], json.loads(r["payload"])) for r in rows if agreements or r["type"] != "ServiceAgreementRecorded"
    ]


def answer_event(package_id, provider_id, offer_round=1, rate=None, decline=None) -> BidSubmitted | OfferDeclined:
    """A provider's bid (``rate``, pounds per hour) or decline (``decline``, a reason code)."""
    common = dict(
        correlation_id=package_id,
        package_id=package_id,
        offer_round=offer_round,
        provider_id=provider_id,
        adapter="automatic",
        answered_at=dt.datetime.now(dt.UTC),
    )
    if decline:
        return OfferDeclined(reason=decline, **common)
    return BidSubmitted(hourly_rate=Decimal(rate), earliest_start=dt.date.today(), **common)


async def answer(broker, package_id, provider_id, offer_round=1, rate=None, decline=None):
    event = answer_event(package_id, provider_id, offer_round, rate, decline)
    await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("providers.answers"))


async def status(service, package_id) -> str:
    return await service.pool.fetchval("SELECT status FROM packages WHERE package_id = $1", package_id)
