"""The sandbox's test offers (decision 0116), in-process on a real PostgreSQL:

- the brokerage's ``POST /internal/sandbox/packages`` makes a package with a made-up person and
  offers it to the one provider named, not to the others of its zone and tier; outside a sandbox
  deployment it is a 404 problem ``sandbox-only`` and nothing is written;
- the provider API's ``POST /me/sandbox/offers`` is a 404 ``sandbox-only`` outside the sandbox, and
  in it refuses what the caller's profile does not cover (422 naming the field) before asking anyone.
"""

from __future__ import annotations

import httpx
import pytest

from tests import local_issuer
from tests.handlers.market import ZONE, outbox_types
from tests.handlers.test_provider_webhook_self_service import client, provider

BODY = {
    "zone": ZONE,
    "band": "rural",
    "needs": ["personal_care"],
    "visits": {"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7},
}


def as_providers_service(service) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://brokerage",
        headers=local_issuer.headers("brokerage", "service-providers", roles=("service:providers",)),
    )


@pytest.fixture
def sandbox_deployment(monkeypatch):
    """Services built after this (request it first) are the sandbox's: HOMECARE_SANDBOX=true."""
    monkeypatch.setenv("HOMECARE_SANDBOX", "true")


async def test_a_sandbox_package_is_offered_to_the_provider_that_asked_alone(sandbox_deployment, brokerage):
    service, _, rules, ids = brokerage
    assert rules.sandbox is True
    async with as_providers_service(service) as c:
        r = await c.post("/internal/sandbox/packages", json=BODY | {"provider_id": ids["prime_good"]})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "offered"
    [offer] = [p for t, p in await outbox_types(service, r.json()["package_id"]) if t == "OfferMade"]
    # Two primes serve the zone; only the one that asked is offered its test package.
    assert offer["provider_ids"] == [ids["prime_good"]]
    person = await service.pool.fetchrow("SELECT * FROM persons WHERE package_id = $1::uuid", r.json()["package_id"])
    assert person["nhs_number"].startswith("999") and person["email"].endswith("@example.org")


async def test_outside_the_sandbox_the_brokerage_makes_no_test_package(brokerage):
    service, _, rules, ids = brokerage
    assert rules.sandbox is False
    before = await service.pool.fetchval("SELECT count(*) FROM packages")
    async with as_providers_service(service) as c:
        r = await c.post("/internal/sandbox/packages", json=BODY | {"provider_id": ids["prime_good"]})
    assert (r.status_code, r.json()["code"]) == (404, "sandbox-only")
    assert r.headers["content-type"] == "application/problem+json"
    assert await service.pool.fetchval("SELECT count(*) FROM packages") == before


async def test_outside_the_sandbox_the_provider_api_has_no_test_offers(in_memory):
    service, _, pids, tokens = await provider(in_memory)
    async with client(service, tokens[pids[0]]) as c:
        r = await c.post("/me/sandbox/offers", json={})
    assert (r.status_code, r.json()["code"]) == (404, "sandbox-only")


async def test_in_the_sandbox_a_test_offer_the_profile_does_not_cover_is_refused_by_field(in_memory):
    service, _, pids, tokens = await provider(in_memory)
    service.settings = service.settings.model_copy(update={"sandbox": True})
    async with client(service, tokens[pids[0]]) as c:
        me = (await c.get("/me")).json()
        elsewhere = next(z for z in ("melton", "bottesford", "lutterworth", "charnwood-north") if z not in me["zones"])
        zone = await c.post("/me/sandbox/offers", json={"zone": elsewhere})
        two_carers = await c.post(
            "/me/sandbox/offers",
            json={"visits": {"calls_per_day": 1, "minutes_per_call": 30, "carers_per_call": 2, "days_per_week": 7}},
        )
    assert zone.status_code == 422 and zone.json()["errors"][0]["field"] == "zone"
    if not me["double_handed"]:
        assert two_carers.status_code == 422 and two_carers.json()["errors"][0]["field"] == "visits.carers_per_call"
    else:  # covered: the brokerage is asked, and none answers in-process (no client credentials): 503
        assert two_carers.status_code == 503
