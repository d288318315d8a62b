"""Joining the framework end to end (issue 21; decision records 0112-0114): the services as
processes on the real Kafka, PostgreSQL and Keycloak.

The contracts and quality team (demo-quality) records an application received through the tender
portal, runs the due-diligence checklist (an approval with an item missing is refused naming the
item, and nothing joins), approves it; the provider joins the registry active with its automatic
adapter, the brokerage hears of it through ProviderUpdated and offers to it, and its **first
placement** follows: a Bottesford package needing help with mobility, which no provider of the zone
can meet (their skills: deploy/reference/providers.yaml), goes to the newcomer. The council's
administrator issues its API credential as for any provider, and it sees the package under /me.
Then it leaves the framework and the existing re-brokering takes its package.

Bad input is refused with the field named: an unknown zone or band, a receipt date outside every
re-opening window, a checklist approval with an item missing."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid

import httpx
import pytest

from services.bench.driver import wait_until_ready
from services.runtime import clock
from services.runtime.reference import load_framework, load_joining
from services.simulator.synthetic import package_request
from tests.support import staff

ZONE = "bottesford"  # its three providers have no "mobility" skill: only the newcomer can take the package


@pytest.fixture(scope="module")
async def ready(stack):
    async with httpx.AsyncClient(timeout=10) as client:
        await wait_until_ready(client, {n: stack.url(n) for n in ("brokerage", "providers")}, timeout=90)
    return stack


async def eventually(check, timeout: float = 60, every: float = 0.3):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{check.__name__} did not come true in {timeout} s")
        await asyncio.sleep(every)


def received_in_a_window() -> dt.date:
    """A receipt date inside the latest configured window that has opened (joining.yaml)."""
    today = clock.uk_today()
    window = [w for w in load_joining().windows if w.opens_on <= today][-1]
    return min(window.closes_on, today)


def application(provider_id: str, **changes) -> dict:
    return {
        "provider_id": provider_id,
        "name": "Oakfield Home Care",
        "zones": [ZONE],
        "bands": ["urban", "fringe", "rural", "isolated"],
        "skills": ["personal_care", "medication", "mobility"],
        "double_handed": False,
        "weekly_capacity_hours": "120",
        "cqc_location_id": "1-" + str(random.randint(10**8, 10**9 - 1)),
        "cqc_rating": "not_yet_rated",
        "adapter": {"kind": "automatic", "max_package_hours": "30"},
        "tender_reference": f"LCC-HC-{uuid.uuid4().hex[:8]}",
        "received_on": received_in_a_window().isoformat(),
    } | changes


def problem_field(response: httpx.Response) -> str:
    return response.json()["errors"][0]["field"]


async def test_an_application_goes_through_due_diligence_to_its_first_placement(ready, database_url):
    stack = ready
    provider_id = f"oakfield-{uuid.uuid4().hex[:6]}"
    quality = httpx.AsyncClient(base_url=stack.url("providers"), auth=staff("demo-quality"), timeout=10)
    admin = httpx.AsyncClient(base_url=stack.url("providers"), auth=staff("demo-admin"), timeout=10)
    brokerage = httpx.AsyncClient(base_url=stack.url("brokerage"), auth=staff(), timeout=10)
    try:
        terms = (await quality.get("/applications/terms")).json()
        items = [i["item"] for i in terms["checklist"]]
        assert items == list(load_joining().item_ids())

        recorded = await quality.post("/applications", json=application(provider_id))
        assert recorded.status_code == 201, recorded.text
        app = recorded.json()
        app_id = app["application_id"]
        assert app["status"] == "received" and app["recorded_by"] == "demo-quality"
        assert {i["state"] for i in app["checklist"]} == {"missing"} and not app["ready_to_approve"]

        # Every item but the last passed; the insurance first failed, then passed on a second look.
        for item in items[:-1]:
            outcome = "failed" if item == "insurance" else "passed"
            done = await quality.post(
                f"/applications/{app_id}/checks",
                json={"item": item, "outcome": outcome, "evidence_reference": f"portal doc {item} v1"},
            )
            assert done.status_code == 201, done.text
        await quality.post(
            f"/applications/{app_id}/checks",
            json={"item": "insurance", "outcome": "passed", "evidence_reference": "portal doc insurance v2"},
        )

        # An approval with an item missing: 422 naming it, and nothing joins.
        early = await quality.post(f"/applications/{app_id}/approve", json={})
        assert early.status_code == 422, early.text
        assert early.json()["code"] == "checklist-incomplete"
        assert problem_field(early) == f"checklist.{items[-1]}"
        assert (await admin.get(f"/providers/{provider_id}")).status_code == 404

        last = await quality.post(
            f"/applications/{app_id}/checks",
            json={"item": items[-1], "outcome": "passed", "evidence_reference": "DBS-matrix-2026"},
        )
        view = last.json()
        assert view["ready_to_approve"], view
        checked = {i["item"]: i["latest"] for i in view["checklist"]}
        assert checked["insurance"]["evidence_reference"] == "portal doc insurance v2"
        assert {c["reviewed_by"] for c in checked.values()} == {"demo-quality"}
        assert {c["reviewed_on"] for c in checked.values()} == {clock.uk_today().isoformat()}
        assert len(view["history"]) == len(items) + 1  # the failed insurance check is kept

        # A broker may not approve; the team may.
        assert (await brokerage.get("/packages")).status_code == 200
        refused = await httpx.AsyncClient(base_url=stack.url("providers"), auth=staff(), timeout=10).post(
            f"/applications/{app_id}/approve", json={}
        )
        assert refused.status_code == 403
        approved = await quality.post(f"/applications/{app_id}/approve", json={"note": "all checks passed"})
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "approved" and approved.json()["decided_by"] == "demo-quality"
        again = await quality.post(f"/applications/{app_id}/refuse", json={"reason": "withdrawn_by_provider"})
        assert (again.status_code, again.json()["code"]) == (409, "application-decided")

        # In the registry, active with its adapter, and its status history starts with the approval.
        entry = (await admin.get(f"/providers/{provider_id}")).json()
        assert (entry["status"], entry["tier"], entry["adapter"]) == ("active", "supplementary", "automatic")
        history = (await admin.get(f"/providers/{provider_id}/status-history")).json()
        assert [(h["status"], h["decided_by"]) for h in history] == [("active", "demo-quality")]
        # Its CQC location is in the quality register, so the CQC import finds it.
        register = (await quality.get(f"/providers/{provider_id}/quality")).json()
        assert register["cqc_location_id"] == app["cqc_location_id"], register

        # The brokerage heard of it through ProviderUpdated on Kafka.
        async def known_to_the_brokerage():
            listed = (await brokerage.get("/reference/providers")).json()
            return any(p["provider_id"] == provider_id and p["status"] == "active" for p in listed)

        await eventually(known_to_the_brokerage)

        # Its first placement: a package only it can meet.
        body = package_request(random.Random(2112), load_framework(), ZONE, index=2112)
        body |= {
            "band": "rural",
            "needs": ["personal_care", "mobility"],
            "visits": {"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7},
            "hours_per_week": "7.00",
            "start_date": clock.uk_today().isoformat(),
        }
        created = await brokerage.post("/packages", json=body)
        assert created.status_code == 201, created.text
        package_id = created.json()["package_id"]

        async def placed():
            view = (await brokerage.get(f"/packages/{package_id}")).json()
            return view if view["status"] in ("placed", "unplaced", "awaiting_approval") else None

        package = await eventually(placed, timeout=90)
        assert (package["status"], package["provider_id"]) == ("placed", provider_id), package

        # A credential is issued as for any provider; the newcomer sees its package.
        issued = await admin.post(f"/providers/{provider_id}/credentials", json={"label": "rostering"})
        assert issued.status_code == 201, issued.text
        me = {"Authorization": f"Bearer {issued.json()['token']}"}

        async def its_packages():  # the providers service learns of the award from PackagePlaced
            return (await admin.get("/me/packages", headers=me)).json()

        mine = await eventually(its_packages, timeout=30)
        assert [p["package_id"] for p in mine] == [package_id]

        # Leaving keeps the existing re-brokering: the package is taken from it.
        left = await admin.post(f"/providers/{provider_id}/status", json={"status": "left", "reason": "contract ended"})
        assert left.status_code == 200, left.text
        # A provider that left cannot leave again: a 409 naming the status (it had named no field).
        again = await admin.post(
            f"/providers/{provider_id}/status", json={"status": "left", "reason": "contract ended"}
        )
        assert again.status_code == 409 and again.json()["code"] == "status-not-allowed", again.text
        assert again.json()["errors"][0]["field"] == "status"

        async def rebrokered():
            view = (await brokerage.get(f"/packages/{package_id}")).json()
            return view if view.get("provider_id") != provider_id else None

        await eventually(rebrokered, timeout=90)
    finally:
        # Whatever happened above, the newcomer takes no other test's packages.
        if (await admin.get(f"/providers/{provider_id}")).json().get("status") == "active":
            await admin.post(f"/providers/{provider_id}/status", json={"status": "left", "reason": "test over"})
        for client in (quality, admin, brokerage):
            await client.aclose()


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"zones": ["atlantis"]}, "zones.0", "unknown-zone"),
        ({"bands": ["urban", "suburban"]}, "bands.1", "invalid-request"),
        ({"received_on": "outside"}, "received_on", "outside-window"),
        ({"received_on": (dt.date.today() + dt.timedelta(days=400)).isoformat()}, "received_on", "invalid-date"),
        ({"cqc_location_id": "123"}, "cqc_location_id", "invalid-request"),
        ({"adapter": {"kind": "webhook"}}, "adapter.webhook_url", "invalid-request"),
    ],
)
async def test_bad_applications_are_refused_naming_the_field_and_nothing_is_recorded(ready, changes, field, code):
    if changes.get("received_on") == "outside":
        windows = load_joining().windows
        changes = {"received_on": (windows[0].closes_on + dt.timedelta(days=1)).isoformat()}
    provider_id = f"refused-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=ready.url("providers"), auth=staff("demo-quality"), timeout=10) as quality:
        response = await quality.post("/applications", json=application(provider_id, **changes))
        assert response.status_code == 422, response.text
        assert (problem_field(response), response.json()["code"]) == (field, code)
        if code == "outside-window":
            assert load_joining().windows[0].id in response.json()["detail"]  # the problem names the window
        listed = (await quality.get("/applications")).json()
        assert provider_id not in {a["provider_id"] for a in listed}


async def test_a_refused_application_leaves_the_registry_alone_and_the_tender_reference_is_recorded_once(ready):
    provider_id = f"willow-{uuid.uuid4().hex[:6]}"
    body = application(provider_id)
    async with httpx.AsyncClient(base_url=ready.url("providers"), auth=staff("demo-quality"), timeout=10) as quality:
        app_id = (await quality.post("/applications", json=body)).json()["application_id"]
        twice = await quality.post("/applications", json=body | {"provider_id": f"other-{provider_id}"})
        assert (twice.status_code, problem_field(twice)) == (409, "tender_reference")
        bad_reason = await quality.post(f"/applications/{app_id}/refuse", json={"reason": "we did not like them"})
        assert (bad_reason.status_code, problem_field(bad_reason)) == (422, "reason")
        unknown_item = await quality.post(
            f"/applications/{app_id}/checks", json={"item": "horoscope", "outcome": "passed", "evidence_reference": "x"}
        )
        assert (unknown_item.status_code, problem_field(unknown_item)) == (422, "item")
        refused = await quality.post(
            f"/applications/{app_id}/refuse", json={"reason": "references_unsatisfactory", "note": "one reference"}
        )
        assert refused.status_code == 200, refused.text
        assert (refused.json()["status"], refused.json()["refusal_reason"]) == ("refused", "references_unsatisfactory")
        assert (await quality.get(f"/applications/{app_id}")).json()["status"] == "refused"
    async with httpx.AsyncClient(base_url=ready.url("providers"), auth=staff("demo-admin"), timeout=10) as admin:
        assert (await admin.get(f"/providers/{provider_id}")).status_code == 404
