"""Hospital discharge (decision record 0097) on the brokerage's handlers and API, with a real
PostgreSQL: the Hub's codes recorded and announced with the NHS discharge funding; reablement first
when the in-house reablement team has room; a discharge unplaced at its deadline referred to the
council's Crisis Response (once), or reported when every in-house service is full; the referral
released when a provider's care starts; bad input refused naming the field with nothing written."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal

from schemas.vocabulary import Urgency
from services.brokerage import domain, handlers
from services.brokerage import repository as repo
from services.runtime import clock
from services.runtime.outbox import unit_of_work
from services.runtime.reference import DischargeReference, InHouse, load_discharge
from tests.handlers.market import PERSON, answer, outbox_types, run_timer, spec, status
from tests.handlers.test_identifiers_api import body, client


def of(events: list[tuple[str, dict]], kind: str) -> list[dict]:
    return [p for t, p in events if t == kind]


async def with_room(service, rules, *, crisis: Decimal, reablement: Decimal) -> handlers.BrokerageRules:
    """Rules whose in-house services have exactly this many carer hours a week free now (other tests'
    referrals in this database count against the capacity, as they would in a council's)."""
    async with service.pool.acquire() as conn, conn.transaction():
        committed = await repo.in_house_committed(conn, clock.uk_today())
    shipped = load_discharge()
    reference = DischargeReference(
        shipped.version,
        shipped.hospitals,
        (
            InHouse("crisis_response", "Crisis Response", committed.get("crisis_response", Decimal(0)) + crisis),
            InHouse("reablement", "HART", committed.get("reablement", Decimal(0)) + reablement),
        ),
    )
    return dataclasses.replace(rules, discharge_reference=lambda: reference)


async def discharge_request(rules, service, *, fit_days_ago: int = 0, **kw) -> uuid.UUID:
    fit = clock.uk_today() - dt.timedelta(days=fit_days_ago)
    discharge = dataclasses.replace(handlers.DischargeInput("uhl-lri", "W17", 1, fit), **kw)
    async with unit_of_work(service.pool) as uow:
        requested = await handlers.request_package(
            uow,
            rules,
            spec=spec(urgency=Urgency.hospital_discharge),
            person=PERSON,
            requested_by="broker.amy",
            discharge=discharge,
        )
    return requested.package_id


async def stages(service, package_id) -> list[str]:
    rows = await service.pool.fetch("SELECT stage FROM timeline WHERE package_id = $1 ORDER BY id", package_id)
    return [r["stage"] for r in rows]


async def settle_other_fallbacks(service, rules) -> None:
    """Let the fallbacks of earlier tests' packages fire now, so they take no room from this test's."""
    await run_timer(service, rules, handlers.discharge_fallback_due)


async def test_a_discharge_is_recorded_announced_in_codes_and_funded_by_the_nhs_then_the_council(brokerage):
    service, _broker, rules, _ids = brokerage
    package_id = await discharge_request(rules, service, nhs_funded_weeks=4)
    events = await outbox_types(service, package_id)
    assert [t for t, _ in events] == ["PackageRequested", "DischargeRequested", "FundingRecorded", "OfferMade"]
    [requested] = of(events, "DischargeRequested")
    assert (requested["hospital"], requested["ward"], requested["pathway"]) == ("uhl-lri", "W17", 1)
    assert requested["medically_fit_on"] == clock.uk_today().isoformat()
    assert "Ada" not in str(requested) and "9990001112" not in str(requested), "codes only, no personal detail"
    [funding] = of(events, "FundingRecorded")
    start = spec().start_date
    assert [(p["effective_from"], p["funder"]) for p in funding["periods"]] == [
        (start.isoformat(), "nhs_discharge"),
        ((start + dt.timedelta(weeks=4)).isoformat(), "council"),
    ]
    row = await repo.discharge_of(service.pool, package_id)
    assert row is not None and row["service"] is None and row["fallback_outcome"] is None
    due = await service.pool.fetchval("SELECT discharge_fallback_at FROM packages WHERE package_id = $1", package_id)
    assert due == row["fallback_due_at"] == dt.datetime.fromisoformat(requested["fallback_due_at"])
    assert "discharge requested" in await stages(service, package_id)


async def test_reablement_first_when_the_team_has_room_and_the_provider_takes_over_on_its_start(brokerage):
    service, broker, rules, ids = brokerage
    rules = await with_room(service, rules, crisis=Decimal(0), reablement=Decimal(7))
    package_id = await discharge_request(rules, service, reablement_potential=True, nhs_funded_weeks=0)
    events = await outbox_types(service, package_id)
    assert [t for t, _ in events] == ["PackageRequested", "DischargeRequested", "DischargeReferred", "OfferMade"]
    [referred] = of(events, "DischargeReferred")
    assert (referred["service"], referred["step"], referred["days_after_medically_fit"]) == (
        "reablement",
        "reablement_first",
        0,
    )
    assert (
        await service.pool.fetchval("SELECT discharge_fallback_at FROM packages WHERE package_id = $1", package_id)
        is None
    ), "referred: no fallback to fall due"
    await answer(broker, package_id, ids["prime_best"], rate="20.00")
    assert await status(service, package_id) == "placed"
    [released] = of(await outbox_types(service, package_id), "DischargeReferralReleased")
    placed = of(await outbox_types(service, package_id), "PackagePlaced")[0]
    assert (released["service"], released["provider_id"], released["released_on"]) == (
        "reablement",
        ids["prime_best"],
        placed["start_date"],
    )
    row = await repo.discharge_of(service.pool, package_id)
    assert row is not None and row["released_on"].isoformat() == placed["start_date"]


async def test_with_reablement_full_the_discharge_goes_to_the_market_alone(brokerage):
    service, _broker, rules, _ids = brokerage
    rules = await with_room(service, rules, crisis=Decimal(100), reablement=Decimal(6))  # 7 hours needed
    package_id = await discharge_request(rules, service, reablement_potential=True, nhs_funded_weeks=0)
    assert not of(await outbox_types(service, package_id), "DischargeReferred")
    assert "reablement full" in await stages(service, package_id)


async def test_a_discharge_unplaced_at_its_deadline_goes_to_crisis_response_once(brokerage):
    service, broker, rules, ids = brokerage
    await settle_other_fallbacks(service, rules)
    rules = await with_room(service, rules, crisis=Decimal(7), reablement=Decimal(100))
    package_id = await discharge_request(rules, service, fit_days_ago=1, nhs_funded_weeks=0)
    for pid in (ids["prime_best"], ids["prime_good"]):
        await answer(broker, package_id, pid, decline="capacity")
    await answer(broker, package_id, ids["supp"], offer_round=2, decline="capacity")
    assert await status(service, package_id) == "unplaced"
    assert await run_timer(service, rules, handlers.discharge_fallback_due) == [], "not due yet"
    await service.pool.execute(
        "UPDATE packages SET discharge_fallback_at = now() - interval '1 minute' WHERE package_id = $1", package_id
    )
    assert await run_timer(service, rules, handlers.discharge_fallback_due) == [package_id]
    assert await run_timer(service, rules, handlers.discharge_fallback_due) == [], "the fallback fires once"
    [referred] = of(await outbox_types(service, package_id), "DischargeReferred")
    # Crisis response comes first for someone without reablement potential (000:236-238).
    assert (referred["service"], referred["step"], referred["days_after_medically_fit"]) == (
        "crisis_response",
        "fallback",
        1,
    )
    assert await status(service, package_id) == "unplaced", "still on the market"
    row = await repo.discharge_of(service.pool, package_id)
    assert row is not None and (row["fallback_outcome"], row["service"]) == ("referred", "crisis_response")
    # The team is now full: another discharge at its deadline finds no room and is reported.
    other = await discharge_request(rules, service, fit_days_ago=1, nhs_funded_weeks=0)
    await service.pool.execute(
        "UPDATE packages SET discharge_fallback_at = now() - interval '1 minute' WHERE package_id = $1", other
    )
    assert await run_timer(service, rules, handlers.discharge_fallback_due) == [other]
    [full] = of(await outbox_types(service, other), "DischargeFallbackUnavailable")
    assert full["services_full"] == ["crisis_response"] and not of(
        await outbox_types(service, other), "DischargeReferred"
    )
    assert "discharge fallback full" in await stages(service, other)


async def test_a_cancelled_discharge_releases_its_in_house_service_today(brokerage):
    service, _broker, rules, _ids = brokerage
    rules = await with_room(service, rules, crisis=Decimal(0), reablement=Decimal(50))
    package_id = await discharge_request(rules, service, reablement_potential=True, nhs_funded_weeks=0)
    from schemas.vocabulary import CancelReason

    async with unit_of_work(service.pool) as uow:
        await handlers.cancel(uow, package_id, reason=CancelReason.person_died, cancelled_by="broker.amy")
    [released] = of(await outbox_types(service, package_id), "DischargeReferralReleased")
    assert (released["service"], released["provider_id"], released["released_on"]) == (
        "reablement",
        None,
        clock.uk_today().isoformat(),
    )


def discharge_body(**discharge) -> dict:
    request = body()
    request["urgency"] = "hospital_discharge"
    request["start_date"] = clock.uk_today().isoformat()
    request["discharge"] = {
        "hospital": "uhl-lri",
        "ward": "W17",
        "pathway": 1,
        "medically_fit_on": clock.uk_today().isoformat(),
    } | discharge
    return request


async def test_the_api_takes_a_discharge_and_shows_it_on_the_package(brokerage):
    service, _broker, _rules, _ids = brokerage
    response = await client(service).post("/packages", json=discharge_body(nhs_funded_weeks=2))
    assert response.status_code == 201, response.text
    package = (await client(service).get(f"/packages/{response.json()['package_id']}")).json()
    assert package["discharge"]["hospital"] == "uhl-lri" and package["discharge"]["nhs_funded_weeks"] == 2
    hospitals = (await client(service).get("/reference/hospitals")).json()
    assert "W17" in next(h for h in hospitals["hospitals"] if h["code"] == "uhl-lri")["wards"]
    assert [p["pathway"] for p in hospitals["pathways"] if p["brokered"]] == [1]


async def test_pathways_2_and_3_are_refused_as_not_home_care_naming_their_route(brokerage):
    """Decision record 0120: a rehabilitation bed or a care home is not home care; the 422 says where
    the Hub sends it (the route in deploy/reference/discharge.yaml), and nothing is written."""
    service, _broker, _rules, _ids = brokerage
    for pathway, words in ((2, "rehabilitation bed"), (3, "care home placements team"), (0, "no package")):
        response = await client(service).post("/packages", json=discharge_body(pathway=pathway))
        assert response.status_code == 422, response.text
        (problem,) = response.json()["errors"]
        assert problem["field"] == "discharge.pathway" and words in problem["detail"], problem
        assert "not care at home" in problem["detail"]


async def test_bad_discharge_input_is_a_422_naming_the_field_and_nothing_is_written(brokerage):
    service, _broker, _rules, _ids = brokerage
    today = clock.uk_today()
    cases = [
        (discharge_body(pathway=0), "discharge.pathway"),
        (discharge_body(pathway=2), "discharge.pathway"),
        (discharge_body(pathway=3), "discharge.pathway"),
        (discharge_body(pathway=4), "discharge.pathway"),
        ({k: v for k, v in discharge_body().items() if k != "discharge"}, "discharge"),
        (discharge_body(medically_fit_on=(today + dt.timedelta(days=30)).isoformat()), "discharge.medically_fit_on"),
        (discharge_body(medically_fit_on=(today - dt.timedelta(days=60)).isoformat()), "discharge.medically_fit_on"),
        (discharge_body(hospital="st-elsewhere"), "discharge.hospital"),
        (discharge_body(ward="W99"), "discharge.ward"),
        (discharge_body(ward="ward 7, bed 3"), "discharge.ward"),
        (discharge_body(medically_fit_on=(today + dt.timedelta(days=2)).isoformat()), "start_date"),
        (discharge_body() | {"urgency": "community"}, "urgency"),
        (discharge_body(patient_name="Ada Abbott"), "discharge.patient_name"),
        # A count or a yes/no only as a JSON number or boolean (tests/unit/test_request_types.py):
        # true was a week of NHS funding, "1" pathway 1.
        (discharge_body(nhs_funded_weeks=True), "discharge.nhs_funded_weeks"),
        (discharge_body(pathway="1"), "discharge.pathway"),
        (discharge_body(reablement_potential="yes"), "discharge.reablement_potential"),
    ]
    before = await service.pool.fetchval("SELECT count(*) FROM packages")
    discharges = await service.pool.fetchval("SELECT count(*) FROM discharges")
    for request, field in cases:
        response = await client(service).post("/packages", json=request)
        assert response.status_code == 422, (field, response.text)
        assert field in [f["field"] for f in response.json()["fields"]], (field, response.json())
    assert await service.pool.fetchval("SELECT count(*) FROM packages") == before
    assert await service.pool.fetchval("SELECT count(*) FROM discharges") == discharges


async def start(service, package_id, started_on: dt.date) -> None:
    async with unit_of_work(service.pool) as uow:
        await handlers.record_start(uow, package_id, started_on=started_on, recorded_by="broker.amy")


async def test_a_start_before_the_awards_day_moves_the_funding_and_the_in_house_hand_over_to_it(brokerage):
    """Found by an attack: care recorded as starting the day before the award's start date had left
    that day without a funder - the record the system wrote itself then refused as it stood - and
    the reablement team and the provider both covering it."""
    service, broker, rules, ids = brokerage
    rules = await with_room(service, rules, crisis=Decimal(0), reablement=Decimal(7))
    today = clock.uk_today()
    async with unit_of_work(service.pool) as uow:
        requested = await handlers.request_package(
            uow,
            rules,
            spec=spec(urgency=Urgency.hospital_discharge, start_date=today + dt.timedelta(days=1)),
            person=PERSON,
            requested_by="broker.amy",
            discharge=handlers.DischargeInput(
                "uhl-lri", "W17", 1, today, reablement_potential=True, nhs_funded_weeks=4
            ),
        )
    package_id = requested.package_id
    await answer(broker, package_id, ids["prime_best"], rate="20.00")
    assert await status(service, package_id) == "placed"
    award_day = today + dt.timedelta(days=1)
    row = await repo.discharge_of(service.pool, package_id)
    assert row is not None and row["released_on"] == award_day

    await start(service, package_id, today)

    funding = await repo.funding_of(service.pool, package_id)
    assert funding is not None and funding["revision"] == 2
    periods = repo.periods_of(funding)
    assert [(p.effective_from, p.funder) for p in periods] == [
        (today, "nhs_discharge"),
        (award_day + dt.timedelta(weeks=4), "council"),  # the later periods as they were
    ]
    # The record as it now stands is one the rules accept, sent back unchanged.
    assert domain.funding_refusal(periods, first_day=today, calls_per_day=2, backdate_days=None) is None
    events = await outbox_types(service, package_id)
    # The new revision told once (the first was told at the request and again to the award's provider).
    [moved] = [f for f in of(events, "FundingRecorded") if f["revision"] == 2]
    assert moved["periods"][0]["effective_from"] == today.isoformat() and moved["provider_id"] == ids["prime_best"]
    released = of(events, "DischargeReferralReleased")
    assert [r["released_on"] for r in released] == [award_day.isoformat(), today.isoformat()]
    row = await repo.discharge_of(service.pool, package_id)
    assert row is not None and row["released_on"] == today


async def test_a_start_on_the_awards_day_moves_nothing(brokerage):
    service, broker, rules, ids = brokerage
    rules = await with_room(service, rules, crisis=Decimal(0), reablement=Decimal(7))
    package_id = await discharge_request(rules, service, reablement_potential=True, nhs_funded_weeks=4)
    await answer(broker, package_id, ids["prime_best"], rate="20.00")
    before = await outbox_types(service, package_id)
    await start(service, package_id, spec().start_date)
    after = await outbox_types(service, package_id)
    new = [t for t, _ in after[len(before) :]]
    assert "PackageStarted" in new
    assert "FundingRecorded" not in new and "DischargeReferralReleased" not in new, new
    funding = await repo.funding_of(service.pool, package_id)
    assert funding is not None and funding["revision"] == 1
