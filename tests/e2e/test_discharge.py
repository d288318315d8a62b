"""Hospital discharge (decision record 0097) end to end: the services as processes on the real Kafka,
PostgreSQL and identity provider. A discharge with reablement potential goes to the council's
reablement team first, is placed by the market and handed over on the provider's start; a discharge
no provider takes is referred at its deadline to the Crisis Response service (the deadline is noon on
day 1, hours away: the test brings it forward in the database, as the clock would), and released when
cancelled; each party is told exactly once; the reporting service's KPI counts day 0 and no later;
bad input is a 422 naming the field, with nothing written."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections import Counter
from typing import Any

import httpx
import pytest

from services.bench.driver import wait_until_ready
from services.runtime import clock
from services.runtime.reference import load_framework
from services.simulator.synthetic import package_request
from tests.e2e.test_pauses_and_endings import ZONES, make_room, query, told, wait_for
from tests.support import staff


@pytest.fixture(scope="module")
async def ready(stack):
    async with httpx.AsyncClient(timeout=10) as client:
        await wait_until_ready(
            client, {n: stack.url(n) for n in ("brokerage", "providers", "notifications", "reporting")}, timeout=90
        )
    return stack


def discharge_body(seed: int, zone: str, **discharge) -> dict:
    body = package_request(random.Random(seed), load_framework(), zone, index=seed)
    body["urgency"] = "hospital_discharge"
    body["start_date"] = clock.uk_today().isoformat()
    body["discharge"] = {
        "hospital": "uhl-lri",
        "ward": "W17",
        "pathway": 1,
        "medically_fit_on": clock.uk_today().isoformat(),
    } | discharge
    return body


async def register_family(stack, package_id: str) -> None:
    async with httpx.AsyncClient(base_url=stack.url("notifications"), auth=staff("demo-admin"), timeout=10) as admin:
        contact = {"email": f"family-{package_id}@discharge.example.org", "channels": ["email"]}
        (await admin.put(f"/recipients/person/{package_id}", json=contact)).raise_for_status()


async def requested_until(stack, bodies, wanted: str) -> dict:
    """Request each body in turn until one reaches the ``wanted`` status (placed, or unplaced)."""
    async with httpx.AsyncClient(base_url=stack.url("brokerage"), auth=staff(), timeout=10) as api:
        for body in bodies:
            created = await api.post("/packages", json=body)
            assert created.status_code == 201, created.text
            package_id = created.json()["package_id"]
            await register_family(stack, package_id)
            for _ in range(120):
                view = (await api.get(f"/packages/{package_id}")).json()
                if view["status"] in ("placed", "unplaced", "awaiting_approval"):
                    break
                await asyncio.sleep(0.25)
            if view["status"] == wanted:
                return view
    pytest.fail(f"no discharge reached {wanted} in any of the zones tried")


async def test_reablement_first_then_the_provider_takes_over_each_party_told_once(ready, database_url):
    await make_room(ready)
    bodies = [
        discharge_body(70 + i, zone, reablement_potential=True, nhs_funded_weeks=4) for i, zone in enumerate(ZONES * 2)
    ]
    view = await requested_until(ready, bodies, "placed")
    package_id, provider_id = view["package_id"], view["provider_id"]
    stages = [t["stage"] for t in view["timeline"]]
    assert stages[:3] == ["requested", "discharge requested", "funding recorded"]
    assert "discharge referred" in stages and "discharge referral released" in stages
    assert view["discharge"]["service"] == "reablement" and view["discharge"]["step"] == "reablement_first"
    placed_on = next(t for t in view["timeline"] if t["stage"] == "placed")["detail"]["start_date"]
    assert view["discharge"]["released_on"] == placed_on
    assert await told(database_url, package_id, "DischargeReferred") == Counter(
        {
            ("brokerage_team", "in-house-reablement", "discharge_referred_service"): 1,
            ("broker", view["requested_by"], "discharge_referred_broker"): 1,
            ("person", package_id, "discharge_referred_person"): 1,
        }
    )
    assert await told(database_url, package_id, "DischargeReferralReleased", want=1) == Counter(
        {("brokerage_team", "in-house-reablement", "discharge_referral_released_service"): 1}
    )
    # The Hub's request tells nobody (its broker made it); the NHS-then-council funding tells the family.
    assert await told(database_url, package_id, "DischargeRequested", want=0) == Counter()
    assert (await told(database_url, package_id, "FundingRecorded", want=1))[
        ("person", package_id, "funding_person")
    ] == 1
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        funding = (await api.get(f"/packages/{package_id}/funding")).json()
    assert [p["funder"] for p in funding["periods"]] == ["nhs_discharge", "council"]
    assert provider_id


async def test_a_discharge_no_provider_takes_falls_to_crisis_response_once_and_the_kpi_counts_it(ready, database_url):
    fit = clock.uk_today() - dt.timedelta(days=2)
    # 168 carer hours a week: more than any seeded provider's adapter takes, so the market says no.
    big = {"calls_per_day": 6, "minutes_per_call": 120, "carers_per_call": 2, "days_per_week": 7}
    bodies = []
    for i, zone in enumerate(ZONES * 2):
        body = discharge_body(90 + i, zone, medically_fit_on=fit.isoformat(), nhs_funded_weeks=0)
        body |= {"visits": big, "hours_per_week": "168"}
        bodies.append(body)
    view = await requested_until(ready, bodies, "unplaced")
    package_id = view["package_id"]
    assert view["discharge"]["service"] is None, "no reablement potential: no referral at the request"
    rows = await query(
        database_url,
        "UPDATE brokerage.packages SET discharge_fallback_at = now() WHERE package_id::text = $1 "
        "RETURNING discharge_fallback_at",
        package_id,
    )
    assert rows, "the discharge has a fallback deadline"
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:

        async def referred():
            current = (await api.get(f"/packages/{package_id}")).json()
            return current if current["discharge"]["service"] else None

        after = await wait_for(referred)
        assert after, "the fallback timer did not refer the discharge"
        assert (after["discharge"]["service"], after["discharge"]["step"]) == ("crisis_response", "fallback")
        assert after["discharge"]["fallback_outcome"] == "referred"
        assert after["status"] == "unplaced", "still on the market"
        cancelled = await api.post(f"/packages/{package_id}/cancel", json={"reason": "no_longer_needed"})
        assert cancelled.status_code == 200, cancelled.text
    referrals = await query(
        database_url,
        "SELECT count(*) AS n FROM brokerage.outbox WHERE aggregateid = $1 AND type = 'DischargeReferred'",
        package_id,
    )
    assert referrals[0]["n"] == 1, "the fallback fires once"
    assert await told(database_url, package_id, "DischargeReferred") == Counter(
        {
            ("brokerage_team", "in-house-crisis-response", "discharge_referred_service"): 1,
            ("broker", view["requested_by"], "discharge_referred_broker"): 1,
            ("person", package_id, "discharge_referred_person"): 1,
        }
    )
    assert await told(database_url, package_id, "DischargeReferralReleased", want=1) == Counter(
        {("brokerage_team", "in-house-crisis-response", "discharge_referral_released_service"): 1}
    )
    # Reporting: referred two days after the medically-fit day - not day 0 or 1.
    async with httpx.AsyncClient(base_url=ready.url("reporting"), auth=staff("demo-ops"), timeout=10) as reporting:

        async def counted():
            params = {"from": fit.isoformat(), "to": fit.isoformat()}
            measure = (await reporting.get("/kpis", params=params)).json()["more"]["hospital_discharge"]
            return measure if measure["referred_to_crisis_response"] >= 1 else None

        measure = await wait_for(counted)
    assert measure, "the reporting service did not count the referral"
    assert measure["home_on_day_0_or_1"] < measure["discharges"] and measure["baseline_share"] == 0.65


async def test_bad_discharge_input_is_a_422_naming_the_field_and_nothing_is_written(ready, database_url):
    today = clock.uk_today()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"pathway": 0}, "discharge.pathway"),
        ({"pathway": 2}, "discharge.pathway"),  # a rehabilitation bed: not home care (decision 0120)
        ({"pathway": 3}, "discharge.pathway"),  # a care home
        ({"medically_fit_on": (today + dt.timedelta(days=60)).isoformat()}, "discharge.medically_fit_on"),
        ({"hospital": "st-elsewhere"}, "discharge.hospital"),
        ({"ward": "W99"}, "discharge.ward"),
        ({"ward": "Mrs Smith, bed 4"}, "discharge.ward"),
    ]
    [before] = await query(
        database_url,
        "SELECT (SELECT count(*) FROM brokerage.packages) AS p, (SELECT count(*) FROM brokerage.discharges) AS d",
    )
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        for discharge, field in cases:
            response = await api.post("/packages", json=discharge_body(99, "melton", **discharge))
            assert response.status_code == 422, (field, response.text)
            assert field in [f["field"] for f in response.json()["fields"]], response.json()
            assert response.headers["content-type"].startswith("application/problem+json")
        community = discharge_body(99, "melton") | {"urgency": "community"}
        response = await api.post("/packages", json=community)
        assert response.status_code == 422 and response.json()["fields"][0]["field"] == "urgency"
        # The other way round too: the urgency hospital_discharge without the Hub's block.
        bare = {k: v for k, v in discharge_body(99, "melton").items() if k != "discharge"}
        response = await api.post("/packages", json=bare)
        assert response.status_code == 422 and response.json()["fields"][0]["field"] == "discharge"
    [after] = await query(
        database_url,
        "SELECT (SELECT count(*) FROM brokerage.packages) AS p, (SELECT count(*) FROM brokerage.discharges) AS d",
    )
    assert (after["p"], after["d"]) == (before["p"], before["d"]), "nothing written"
