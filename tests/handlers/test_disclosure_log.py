"""The disclosure log across packages (GET /disclosures, the console's admin page): who was shown
which person's details and when, filtered by package, reader, who and UK dates, newest first, a page
at a time; through the brokerage's HTTP API in-process on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx

from services.runtime import clock
from tests import local_issuer
from tests.handlers.market import request


def api_of(service) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.http_app), base_url="http://brokerage")


async def test_the_log_is_filtered_paged_and_newest_first(brokerage):
    service, _, rules, _ = brokerage
    api = api_of(service)
    first, second = await request(service, rules), await request(service, rules)
    reader = f"reader-{uuid.uuid4().hex[:6]}"  # this test's own staff member: the log is shared by the tests
    for package_id in (first, second, first):
        r = await api.get(f"/packages/{package_id}/person", headers=local_issuer.headers("brokerage", reader))
        assert r.status_code == 200
    manager = local_issuer.headers("brokerage", "manager.jo", ("manager",))

    mine = (await api.get("/disclosures", params={"who": reader}, headers=manager)).json()
    assert mine["total"] == 3
    assert [d["package_id"] for d in mine["disclosures"]] == [str(first), str(second), str(first)], "newest first"
    assert {d["reader"] for d in mine["disclosures"]} == {"staff"}
    assert "nhs_number" in mine["disclosures"][0]["fields"] and "full_name" in mine["disclosures"][0]["fields"]

    page = (await api.get("/disclosures", params={"who": reader, "limit": 2, "offset": 2}, headers=manager)).json()
    assert page["total"] == 3 and [d["package_id"] for d in page["disclosures"]] == [str(first)]
    one = (await api.get("/disclosures", params={"who": reader, "package_id": str(second)}, headers=manager)).json()
    assert one["total"] == 1
    providers = (await api.get("/disclosures", params={"who": reader, "reader": "provider"}, headers=manager)).json()
    assert providers["total"] == 0

    today = clock.uk_today().isoformat()
    dated = (await api.get("/disclosures", params={"who": reader, "from": today, "to": today}, headers=manager)).json()
    assert dated["total"] == 3
    before = (clock.uk_today() - dt.timedelta(days=1)).isoformat()
    none = (await api.get("/disclosures", params={"who": reader, "to": before}, headers=manager)).json()
    assert none["total"] == 0

    backwards = await api.get("/disclosures", params={"from": today, "to": before}, headers=manager)
    assert backwards.status_code == 422 and backwards.json()["code"] == "invalid-date"
    assert backwards.json()["fields"][0]["field"] == "from"
    bad_who = await api.get("/disclosures", params={"who": "no spaces please"}, headers=manager)
    assert bad_who.status_code == 422
    broker = await api.get("/disclosures", headers=local_issuer.headers("brokerage"))
    assert broker.status_code == 403, "brokers read persons; the log of who read them is for managers and admins"


async def test_the_rate_cards_each_with_its_version_and_start_and_the_one_in_force(brokerage):
    service, _, rules, _ = brokerage
    body = (await api_of(service).get("/reference/rate-cards", headers=local_issuer.headers("brokerage"))).json()
    versions = [c["version"] for c in body["rate_cards"]]
    assert versions == [c.version for c in sorted(rules.framework.rate_cards, key=lambda c: c.effective_from)][::-1]
    assert body["in_force"] == rules.framework.rate_card_on(clock.uk_today()).version
    card = next(c for c in body["rate_cards"] if c["version"] == "2020-21")
    assert card["effective_from"] == "2020-04-01" and card["rates"]["rural"] == "22.95"
