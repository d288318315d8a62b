"""Safeguarding concerns end to end (decision records 0106-0108): the services as processes on the real
Kafka, PostgreSQL and Keycloak. A broker raises a concern about a provider; the safeguarding team pauses
its new offers, and a package it won before goes to another provider (the decision record says only
that the council paused its offers); the outcome lifts the pause and it is offered packages again. The
concern's words are on no Kafka topic and in no service's log; a concern without a subject is a 422
naming it; only the safeguarding role reads the queue; a provider raises one through its own API."""

from __future__ import annotations

import asyncio
import random
import uuid

import httpx
import pytest

from services.bench.driver import wait_until_ready
from services.brokerage.domain import OFFERS_PAUSED
from services.runtime import clock
from services.runtime.reference import load_framework
from services.simulator.synthetic import package_request
from tests.e2e.test_package_changes import room_for
from tests.e2e.test_pauses_and_endings import ZONES, make_room, query, wait_for
from tests.e2e.test_placement_flow import all_events
from tests.support import USER_OF_ROLE, event_of, staff

SAFEGUARDING = "demo-safeguarding"
MARK = uuid.uuid4().hex[:10]
DETAILS = f"Bruises on both arms seen at the tea call; the carer was rough with her ({MARK})"
ADULT = f"Edith Marchbank-{MARK}"


@pytest.fixture(scope="module")
async def ready(stack):
    async with httpx.AsyncClient(timeout=10) as client:
        await wait_until_ready(
            client, {n: stack.url(n) for n in ("brokerage", "providers", "notifications")}, timeout=90
        )
    return stack


async def place(api: httpx.AsyncClient, body: dict) -> dict:
    """A new package for ``body``, once it is placed, unplaced or awaiting an approval."""
    created = await api.post("/packages", json=body)
    assert created.status_code == 201, created.text
    package_id = created.json()["package_id"]
    for _ in range(160):
        view = (await api.get(f"/packages/{package_id}")).json()
        if view["status"] in ("placed", "unplaced", "awaiting_approval"):
            return view
        await asyncio.sleep(0.25)
    pytest.fail(f"package {package_id} was not decided")


async def offers_paused_in_brokerage(database_url: str, provider_id: str) -> bool:
    rows = await query(
        database_url,
        "SELECT (profile->>'offers_paused')::boolean AS paused FROM brokerage.provider_view WHERE provider_id = $1",
        provider_id,
    )
    return bool(rows and rows[0]["paused"])


async def contested_placement(stack, api: httpx.AsyncClient) -> tuple[dict, dict]:
    """A package placed with a provider while another provider also bid acceptably for it (so it has
    somewhere else to go): its request body and its view."""
    framework = load_framework()
    for attempt, zone in enumerate(ZONES * 2):
        await make_room(stack)
        body = package_request(random.Random(2100 + attempt), framework, zone, index=21)
        body["start_date"] = clock.uk_today().isoformat()
        view = await place(api, body)
        if view["status"] != "placed":
            continue
        record = (await api.get(f"/packages/{view['package_id']}/explanation")).json()["record"]
        others = [
            b for b in record["rounds"][-1]["ranking"] if b["acceptable"] and b["provider_id"] != view["provider_id"]
        ]
        if others:
            return body, view
    pytest.fail("no package had two acceptable bidders in the zones tried")


async def test_a_concern_pauses_new_offers_to_a_provider_until_its_outcome(ready, database_url, infra):
    async with (
        httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api,
        httpx.AsyncClient(base_url=ready.url("providers"), timeout=10) as providers,
    ):
        body, first = await contested_placement(ready, api)
        provider_id = first["provider_id"]

        raised = await providers.post(
            "/concerns",
            auth=staff(),
            json={
                "subject": {"provider_id": provider_id, "package_id": first["package_id"]},
                "category": "physical",
                "details": DETAILS,
                "adult_at_risk": ADULT,
                "immediate_risk": True,
            },
        )
        assert raised.status_code == 201, raised.text
        concern_id = raised.json()["concern_id"]
        assert raised.json()["reference"].startswith("SG-")
        assert set(raised.json()) == {"concern_id", "reference", "raised_at"}  # the raiser reads nothing back

        queue = await providers.get("/concerns", auth=staff(SAFEGUARDING))
        assert queue.status_code == 200, queue.text
        [queued] = [c for c in queue.json()["concerns"] if c["concern_id"] == concern_id]
        assert (queued["provider_id"], queued["category"], queued["raised_by"]) == (
            provider_id,
            "physical",
            "demo-broker",
        )
        assert MARK not in queue.text, "the queue shows codes, never the concern's words"

        paused = await providers.post(
            f"/concerns/{concern_id}/pause", auth=staff(SAFEGUARDING), json={"reason": "organisational_enquiry"}
        )
        assert paused.status_code == 200, paused.text
        again = await providers.post(
            f"/concerns/{concern_id}/pause", auth=staff(SAFEGUARDING), json={"reason": "immediate_risk"}
        )
        assert (again.status_code, again.json()["code"]) == (409, "offers-already-paused")
        assert await wait_for(lambda: offers_paused_in_brokerage(database_url, provider_id), timeout=30)
        registry = (await providers.get(f"/providers/{provider_id}", auth=staff())).json()
        assert registry["offers_paused"] is True

        # The same package again: the paused provider is not offered it, and it goes elsewhere.
        await make_room(ready)
        second = await place(api, body)
        assert second["status"] == "placed", second
        assert second["provider_id"] != provider_id
        record = (await api.get(f"/packages/{second['package_id']}/explanation")).json()["record"]
        assert all(provider_id not in [o["provider_id"] for o in r["offered"]] for r in record["rounds"])
        reasons = [r["excluded"].get(provider_id) for r in record["rounds"] if provider_id in r["excluded"]]
        assert reasons and all(OFFERS_PAUSED in why for why in reasons), record["rounds"]
        assert "safeguard" not in str(record).lower() and MARK not in str(record)

        outcome = await providers.post(
            f"/concerns/{concern_id}/outcome", auth=staff(SAFEGUARDING), json={"outcome": "risk_removed"}
        )
        assert outcome.status_code == 200, outcome.text
        assert outcome.json()["offers_paused"] is False
        closed = await providers.post(
            f"/concerns/{concern_id}/outcome", auth=staff(SAFEGUARDING), json={"outcome": "risk_reduced"}
        )
        assert (closed.status_code, closed.json()["code"]) == (409, "concern-closed")

        async def resumed() -> bool:
            return not await offers_paused_in_brokerage(database_url, provider_id)

        assert await wait_for(resumed, timeout=30)

        # The pause lifted: the provider is offered the same package again.
        await make_room(ready)
        third = await place(api, body)
        record = (await api.get(f"/packages/{third['package_id']}/explanation")).json()["record"]
        assert any(provider_id in [o["provider_id"] for o in r["offered"]] for r in record["rounds"]), record
        assert all(OFFERS_PAUSED not in r["excluded"].get(provider_id, []) for r in record["rounds"])

        # The safeguarding team reads the concern, with who decided what and when; the read is audited.
        page = await providers.get(f"/concerns/{concern_id}", auth=staff(SAFEGUARDING))
        assert page.status_code == 200, page.text
        concern = page.json()
        assert (concern["details"], concern["adult_at_risk"], concern["status"]) == (DETAILS, ADULT, "closed")
        assert [(d["decision"], d["code"], d["decided_by"]) for d in concern["decisions"]] == [
            ("offers_paused", "organisational_enquiry", SAFEGUARDING),
            ("outcome", "risk_removed", SAFEGUARDING),
            ("offers_resumed", "risk_removed", SAFEGUARDING),
        ]
        assert [(r["reader"], r["reader_role"]) for r in concern["reads"]] == [(SAFEGUARDING, "safeguarding")]
    audited = await query(
        database_url, "SELECT reader FROM audit.concern_reads WHERE concern_id = $1", uuid.UUID(concern_id)
    )
    assert [r["reader"] for r in audited] == [SAFEGUARDING]

    # Nothing of the concern on any topic: its words, the adult's name, its id.
    events = await all_events(infra)
    blobs = [
        (
            topic,
            (r.value or b"").decode(errors="replace") + str(r.headers or ()) + (r.key or b"").decode(errors="replace"),
        )
        for topic, r in events
    ]
    pauses = [
        e["profile"]["offers_paused"]
        for _, r in events
        if (e := event_of(r)) and e["event_type"] == "ProviderUpdated" and e["profile"]["provider_id"] == provider_id
    ]
    assert True in pauses and pauses[-1] is False, "the pause and its lifting were read from the registry topic"
    leaked = [topic for topic, b in blobs if MARK in b or concern_id in b]
    assert not leaked, f"the concern is on {sorted(set(leaked))}"
    # ... and in no service's log.
    for log in ready.logs.glob("*.log"):
        assert MARK not in log.read_text(errors="replace"), f"the concern's words are in {log.name}"


async def test_a_concern_without_a_subject_is_refused_naming_it_and_nothing_is_kept(ready, database_url):
    before = await query(database_url, "SELECT count(*) AS n FROM providers.concerns")
    concern: dict[str, object] = {"category": "neglect", "details": f"no subject ({MARK})"}
    async with httpx.AsyncClient(base_url=ready.url("providers"), auth=staff(), timeout=10) as providers:
        bodies: list[dict[str, object]] = [
            concern,
            concern | {"subject": {}},
            concern | {"subject": {"package_id": None}},
        ]
        for body in bodies:
            refused = await providers.post("/concerns", json=body)
            assert refused.status_code == 422, refused.text
            assert [e["field"] for e in refused.json()["errors"]] == ["subject"], refused.json()
        unknown = await providers.post("/concerns", json=concern | {"subject": {"provider_id": "no-such-provider"}})
        assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "subject.provider_id"
        wrong = await providers.post(
            "/concerns", json=concern | {"subject": {"provider_id": "x1"}, "category": "rudeness"}
        )
        assert wrong.status_code == 422 and "category" in [e["field"] for e in wrong.json()["errors"]]
    after = await query(database_url, "SELECT count(*) AS n FROM providers.concerns")
    assert after[0]["n"] == before[0]["n"]


async def test_only_the_safeguarding_role_reads_the_queue_and_decides(ready):
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        created = await api.post(
            "/packages", json=package_request(random.Random(MARK), load_framework(), ZONES[0], index=22)
        )
        assert created.status_code == 201, created.text
        package_id = created.json()["package_id"]
    async with httpx.AsyncClient(base_url=ready.url("providers"), timeout=10) as providers:
        concern = {"subject": {"package_id": package_id}, "category": "neglect", "details": f"ops ({MARK})"}
        # A package nobody requested is refused naming the field (decision 0130), with nothing kept.
        unknown = await providers.post(
            "/concerns", auth=staff("demo-ops"), json=concern | {"subject": {"package_id": str(uuid.uuid4())}}
        )
        assert unknown.status_code == 422, unknown.text
        assert [e["field"] for e in unknown.json()["errors"]] == ["subject.package_id"]
        for _ in range(80):  # the providers service learns of the package from PackageRequested
            raised = await providers.post("/concerns", auth=staff("demo-ops"), json=concern)
            if raised.status_code != 422:
                break
            await asyncio.sleep(0.25)
        assert raised.status_code == 201, raised.text
        concern_id = raised.json()["concern_id"]
        for role, user in USER_OF_ROLE.items():
            if role == "safeguarding":
                continue
            for method, path, body in (
                ("GET", "/concerns", None),
                ("GET", f"/concerns/{concern_id}", None),
                ("POST", f"/concerns/{concern_id}/pause", {"reason": "immediate_risk"}),
                ("POST", f"/concerns/{concern_id}/outcome", {"outcome": "threshold_not_met"}),
            ):
                answer = await providers.request(method, path, auth=staff(user), json=body)
                assert answer.status_code == 403, (role, method, path, answer.status_code)
                assert MARK not in answer.text
        # A concern about a package only cannot pause anyone's offers.
        package_only = await providers.post(
            f"/concerns/{concern_id}/pause", auth=staff(SAFEGUARDING), json={"reason": "immediate_risk"}
        )
        assert (package_only.status_code, package_only.json()["code"]) == (409, "concern-not-about-a-provider")


async def test_a_provider_raises_a_concern_through_its_own_api(ready, database_url):
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        _, view = await contested_placement(ready, api)
    me = await room_for(ready, view["provider_id"], 0)
    async with httpx.AsyncClient(base_url=ready.url("providers"), headers=me, timeout=10) as providers:
        body = {"subject": {"package_id": view["package_id"]}, "category": "self_neglect", "details": f"p ({MARK})"}
        raised = await providers.post("/me/concerns", json=body)
        assert raised.status_code == 201, raised.text
        stranger = await providers.post("/me/concerns", json=body | {"subject": {"package_id": str(uuid.uuid4())}})
        assert stranger.status_code == 404
        assert (await providers.get("/concerns")).status_code == 401  # a provider credential is no staff token
    [row] = await query(
        database_url,
        "SELECT raised_by, raised_by_kind, credential_id, package_id::text AS package_id FROM providers.concerns "
        "WHERE concern_id = $1",
        uuid.UUID(raised.json()["concern_id"]),
    )
    assert (row["raised_by"], row["raised_by_kind"], row["package_id"]) == (
        view["provider_id"],
        "provider",
        view["package_id"],
    )
    assert row["credential_id"]
