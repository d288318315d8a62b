"""Business dates are UK dates, on the real PostgreSQL with a controlled clock: the rate card in
force at 00:30 BST on 1 April 2027, a start recorded at 00:30 BST on its day through the API, and
a provider's earliest start of "today" at 00:30 BST (the UTC date is still the day before)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal

import httpx
import pytest

from schemas.adapters import BidRequest
from schemas.events import OfferMade, PackageSpec, VisitPattern
from services.brokerage import handlers
from services.providers import handlers as provider_handlers
from services.providers.app import build as build_providers
from services.providers.domain import AutomaticRules
from services.runtime import clock, topics
from services.runtime.outbox import unit_of_work
from tests import local_issuer
from tests.handlers.market import PERSON, answer, spec, status
from tests.handlers.test_providers_handlers import willing
from tests.unit.test_uk_time import HALF_PAST_MIDNIGHT_BST_1_APRIL, with_april_2027_card

UTC = dt.UTC


async def request_at(service, rules, at: dt.datetime) -> uuid.UUID:
    with clock.frozen(at):
        package_spec = spec().model_copy(update={"start_date": clock.uk_today()})
        async with unit_of_work(service.pool) as uow:
            requested = await handlers.request_package(
                uow, rules, spec=package_spec, person=PERSON, requested_by="broker.amy"
            )
    return requested.package_id


async def test_a_request_at_half_past_midnight_bst_on_1_april_is_priced_with_the_april_card(brokerage):
    service, _broker, rules, _ids = brokerage
    rules = dataclasses.replace(rules, reference=with_april_2027_card)
    april = await request_at(service, rules, HALF_PAST_MIDNIGHT_BST_1_APRIL)
    march = await request_at(service, rules, dt.datetime(2027, 3, 31, 22, 30, tzinfo=UTC))  # 23:30 BST 31 March
    rows = {
        r["package_id"]: (r["rate_card"], r["band_rate"])
        for r in await service.pool.fetch(
            "SELECT package_id, rate_card, band_rate FROM packages WHERE package_id = ANY($1)", [april, march]
        )
    }
    assert rows[april] == ("2027-28", Decimal("25.95")), "the card effective 2027-04-01 applies from UK midnight"
    assert rows[march] == ("2020-21", Decimal("22.95"))


async def test_a_start_recorded_at_half_past_midnight_bst_on_its_day_is_accepted_by_the_api(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await request_at(service, rules, dt.datetime(2027, 3, 30, 10, tzinfo=UTC))
    with clock.frozen(dt.datetime(2027, 3, 30, 10, 5, tzinfo=UTC)):
        await answer(broker, package_id, ids["prime_best"], rate="20.00")
    assert await status(service, package_id) == "placed"
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://brokerage",
        headers=local_issuer.headers("brokerage"),
    )
    with clock.frozen(HALF_PAST_MIDNIGHT_BST_1_APRIL):
        tomorrow = await api.post(f"/packages/{package_id}/start", json={"started_on": "2027-04-02"})
        assert tomorrow.status_code == 422 and tomorrow.json()["fields"][0]["field"] == "started_on"
        today = await api.post(f"/packages/{package_id}/start", json={"started_on": "2027-04-01"})
    assert today.status_code == 200, today.text
    assert await status(service, package_id) == "started"
    started_on = await service.pool.fetchval("SELECT started_on FROM packages WHERE package_id = $1", package_id)
    assert started_on == dt.date(2027, 4, 1)


async def test_a_providers_earliest_start_of_today_at_half_past_midnight_bst_is_accepted(in_memory):
    service, broker = await in_memory(build_providers, "providers")
    [portal] = await willing(service, 1)
    async with unit_of_work(service.pool) as uow:
        await provider_handlers.set_adapter(
            uow, portal, AutomaticRules(kind="portal"), new_secret=False, box=service.secrets
        )
    package_id = uuid.uuid4()
    with clock.frozen(HALF_PAST_MIDNIGHT_BST_1_APRIL):
        event = OfferMade(
            correlation_id=package_id,
            package_id=package_id,
            offer_round=1,
            tier="prime",
            provider_ids=[portal],
            package=PackageSpec(
                zone="coalville-ashby",
                band="urban",
                postcode_district="LE67",
                hours_per_week=Decimal("7"),
                visits=VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=1),
                needs=["personal_care"],
                urgency="hospital_discharge",
                start_date=dt.date(2027, 4, 1),
            ),
            band_rate=Decimal("18.75"),
            window_closes_at=clock.now() + dt.timedelta(hours=2),
        )
        await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("brokerage.packages"))
        with pytest.raises(provider_handlers.Refused, match=r"today \(2027-04-01, UK\)"):
            async with unit_of_work(service.pool) as uow:  # 31 March: yesterday in the UK, today in UTC
                await provider_handlers.answer_through_api(
                    uow, portal, package_id, BidRequest(rate=Decimal("18.75"), earliest_start=dt.date(2027, 3, 31))
                )
        async with unit_of_work(service.pool) as uow:
            accepted = await provider_handlers.answer_through_api(
                uow, portal, package_id, BidRequest(rate=Decimal("18.75"), earliest_start=dt.date(2027, 4, 1))
            )
    assert accepted["status"] == "bid"
