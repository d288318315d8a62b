"""The brokerage's package list as a broker's work queue (issue 19): several statuses at once,
counts per status, a total for paging, and a search by package id, NHS number or name - the
person searches for the brokerage team only, each package found audited under the searcher's
name. In-process API calls on the real PostgreSQL."""

from __future__ import annotations

import random
import uuid

import httpx

from services.runtime.reference import load_framework
from services.simulator.synthetic import package_request
from tests import local_issuer
from tests.handlers.market import ZONE


def client(service, username: str = "amy.broker", roles: tuple[str, ...] = ("broker",)) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://service",
        headers=local_issuer.headers(service.name, username, roles),
    )


async def request_one(service, name: str, nhs: str) -> str:
    body = package_request(random.Random(name), load_framework(), ZONE, index=1)
    body["person"] |= {"full_name": name, "nhs_number": nhs}
    response = await client(service).post("/packages", json=body)
    assert response.status_code == 201, response.text
    return response.json()["package_id"]


async def test_the_list_pages_counts_and_filters_by_several_statuses(brokerage):
    service, *_ = brokerage
    await request_one(service, "Queue Person", "9998765439")
    everything = (await client(service).get("/packages", params={"limit": 1000})).json()
    assert everything["total"] == sum(everything["counts"].values()) >= 1
    work = (await client(service).get("/packages", params={"status": "requested,offered,unplaced"})).json()
    assert work["total"] == sum(everything["counts"].get(s, 0) for s in ("requested", "offered", "unplaced"))
    assert {p["status"] for p in work["packages"]} <= {"requested", "offered", "unplaced"}
    page = (await client(service).get("/packages", params={"limit": 1, "offset": 0})).json()
    assert len(page["packages"]) == 1 and page["total"] == everything["total"]
    refused = await client(service).get("/packages", params={"status": "offered,nonsense"})
    assert refused.status_code == 422 and "status" in refused.text


async def test_a_search_by_name_or_nhs_number_finds_the_package_and_is_audited(brokerage):
    service, *_ = brokerage
    marker = "".join(random.Random().choice("ghijklmnopqrstuvwxyz") for _ in range(6))  # letters: a name has no digits
    name = f"Zebedee Quux{marker}"
    package_id = await request_one(service, name, "9991234519")
    found = (await client(service, "amy.broker").get("/packages", params={"q": f"quux{marker}"})).json()
    assert [p["package_id"] for p in found["packages"]] == [package_id]
    by_nhs = (await client(service, "amy.broker").get("/packages", params={"q": "999 123 4519"})).json()
    assert package_id in [p["package_id"] for p in by_nhs["packages"]]
    by_id = (await client(service).get("/packages", params={"q": package_id})).json()
    assert [p["package_id"] for p in by_id["packages"]] == [package_id]
    audited = await service.pool.fetch(
        "SELECT staff_user, fields FROM disclosures WHERE package_id = $1 AND reader = 'staff' ORDER BY disclosed_at",
        uuid.UUID(package_id),
    )
    # Each person search that found it is a read of that field under the searcher's name; the
    # search by package id reads nothing personal.
    assert [(r["staff_user"], r["fields"]) for r in audited] == [
        ("amy.broker", ["search:full_name"]),
        ("amy.broker", ["search:nhs_number"]),
    ]


async def test_operations_may_search_by_package_id_but_not_by_a_persons_details(brokerage):
    service, *_ = brokerage
    ops = client(service, "olu.ops", ("operations",))
    assert (await ops.get("/packages", params={"q": "quux"})).status_code == 403
    assert (await ops.get("/packages", params={"q": "999 123 4519"})).status_code == 403
    assert (await ops.get("/packages", params={"q": "0a1b"})).status_code == 200


async def test_a_search_that_is_none_of_the_three_is_a_422_naming_q(brokerage):
    service, *_ = brokerage
    # Digits that are no NHS number; a wrong check digit; too short; wildcards padding a short name
    # (found by an attack: "%%%" listed every package as a name search).
    for bad in ("12 34", "999 123 4518", "ab", "%%%", "a%_", "a _ b"):
        response = await client(service).get("/packages", params={"q": bad})
        assert response.status_code == 422 and '"q"' in response.text, (bad, response.text)


async def test_the_queue_order_puts_the_unplaced_first_then_exceptions_then_the_most_urgent(brokerage):
    """``sort=queue``, the board's order (it used to be sorted in the console, a page at a time
    impossible): unplaced, then awaiting a decision, then the rest; most urgent first in each."""
    service, *_ = brokerage
    ids = [await request_one(service, f"Order Person {n}", "9998765439") for n in range(6)]
    plan = [
        ("offered", "hospital_discharge"),
        ("unplaced", "community"),
        ("awaiting_approval", "community"),
        ("unplaced", "hospital_discharge"),
        ("requested", "reablement_step_down"),
        ("offered", "community"),
    ]
    for package_id, (status, urgency) in zip(ids, plan, strict=True):
        await service.pool.execute(
            "UPDATE packages SET status = $2, urgency = $3 WHERE package_id = $1",
            uuid.UUID(package_id),
            status,
            urgency,
        )
    listed = (await client(service).get("/packages", params={"sort": "queue", "limit": 1000})).json()["packages"]
    ours = [(p["status"], p["urgency"]) for p in listed if p["package_id"] in ids]
    group = {"unplaced": 0, "awaiting_approval": 1}
    urgent = {"hospital_discharge": 0, "reablement_step_down": 1, "community": 2}
    assert ours == sorted(ours, key=lambda su: (group.get(su[0], 2), urgent[su[1]]))
    assert ours[:2] == [("unplaced", "hospital_discharge"), ("unplaced", "community")]
