"""A second approver where the scheme of delegation requires one (decision record 0123), through
the brokerage's HTTP API in-process on a real PostgreSQL: a first approval below the limit keeps the
package waiting, recorded with who, when and the limit, an event and a timeline entry; nobody
approves twice or their own request; an approver whose limit covers the bid places it; bids beyond
the two-approval threshold take two whoever approves; a refusal after a first approval ends it."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx

from tests import local_issuer
from tests.handlers.market import answer, outbox_types, request, status

# deploy/reference/delegation.yaml: broker 5%, senior broker 10%, manager 15%, head of service no
# limit; a first approval below the limit allowed; two approvals beyond 20%. The rural band rate: £22.95.
SIX_PER_CENT = "24.50"  # +6.75%: beyond a broker, within a senior broker
TWENTY_TWO_PER_CENT = "28.00"  # +22%: two approvals whoever approves


async def awaiting_approval_at(service, broker, rules, ids, rate: str) -> uuid.UUID:
    package_id = await request(service, rules)  # requested by broker.amy
    await answer(broker, package_id, ids["prime_best"], decline="capacity")
    await answer(broker, package_id, ids["prime_good"], rate=rate)
    await answer(broker, package_id, ids["supp"], offer_round=2, decline="price")
    assert await status(service, package_id) == "awaiting_approval"
    return package_id


def api_of(service) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.http_app), base_url="http://brokerage")


async def approve(api, package_id, user: str, role: str, reason: str = "no_provider_at_band_rate") -> httpx.Response:
    return await api.post(
        f"/packages/{package_id}/exception/approve",
        json={"reason": reason, "reason_text": "nobody else covers the area"},
        headers=local_issuer.headers("brokerage", user, (role,)),
    )


async def test_a_first_approval_below_the_limit_waits_for_an_approver_whose_limit_covers_it(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await awaiting_approval_at(service, broker, rules, ids, SIX_PER_CENT)
    api = api_of(service)

    first = await approve(api, package_id, "broker.bo", "broker")
    assert first.status_code == 200, first.text
    assert first.json() == {"package_id": str(package_id), "status": "awaiting_approval"}
    [event] = [p for t, p in await outbox_types(service, package_id) if t == "ExceptionFirstApproved"]
    assert {k: event[k] for k in ("approved_by", "approver_role", "approver_limit_percent", "within_limit")} == {
        "approved_by": "broker.bo",
        "approver_role": "broker",
        "approver_limit_percent": "5",
        "within_limit": False,
    }
    assert event["awaiting"] == "approver_within_limit" and event["hourly_rate"] == SIX_PER_CENT
    assert "nobody else covers" not in str(event), "the approver's words stay in the brokerage"

    again = await approve(api, package_id, "broker.bo", "broker")
    assert again.status_code == 409 and again.json()["code"] == "already-approved"
    another_broker = await approve(api, package_id, "broker.cy", "broker")
    assert another_broker.status_code == 403 and another_broker.json()["code"] == "not-delegated"
    own = await approve(api, package_id, "broker.amy", "head_of_service")
    assert own.status_code == 403 and "requested themselves" in own.json()["detail"]
    assert await status(service, package_id) == "awaiting_approval", "a refused approval records nothing"

    second = await approve(api, package_id, "senior.sam", "senior_broker", reason="continuity_of_care")
    assert second.status_code == 200 and second.json()["status"] == "placed"
    decided = [p for t, p in await outbox_types(service, package_id) if t == "ExceptionDecided"]
    assert [(d["decision"], d["decided_by"]) for d in decided] == [("approved", "senior.sam")]
    rows = await service.pool.fetch(
        "SELECT approver, approver_role, limit_percent, within_limit, step, reason FROM exception_approvals "
        "WHERE package_id = $1 ORDER BY approval_id",
        package_id,
    )
    assert [tuple(r) for r in rows] == [
        ("broker.bo", "broker", Decimal(5), False, "first", "no_provider_at_band_rate"),
        ("senior.sam", "senior_broker", Decimal(10), True, "final", "continuity_of_care"),
    ]

    explained = (await api.get(f"/packages/{package_id}/explanation", headers=local_issuer.headers("brokerage"))).json()
    [exception] = explained["record"]["exceptions"]
    assert [(a["approver"], a["step"], a["limit_percent"]) for a in exception["approvals"]] == [
        ("broker.bo", "first", "5.00"),
        ("senior.sam", "final", "10.00"),
    ]
    assert "First approval of £24.50/h by broker.bo (broker)" in explained["explanation"]["broker"]
    package = (await api.get(f"/packages/{package_id}", headers=local_issuer.headers("brokerage"))).json()
    stages = [t["stage"] for t in package["timeline"]]
    assert stages.index("exception first approval") < stages.index("exception approved")
    [entry] = [t for t in package["timeline"] if t["stage"] == "exception first approval"]
    assert entry["detail"]["approved_by"] == "broker.bo" and entry["detail"]["limit_percent"] == "5"


async def test_beyond_the_threshold_even_the_head_of_service_needs_a_second_approver(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await awaiting_approval_at(service, broker, rules, ids, TWENTY_TWO_PER_CENT)
    api = api_of(service)
    head = await approve(api, package_id, "head.hana", "head_of_service")
    assert head.status_code == 200 and head.json()["status"] == "awaiting_approval"
    [event] = [p for t, p in await outbox_types(service, package_id) if t == "ExceptionFirstApproved"]
    assert event["within_limit"] is True and event["awaiting"] == "second_approver"
    assert event["approver_limit_percent"] is None
    second = await approve(api, package_id, "broker.bo", "broker")
    assert second.status_code == 200 and second.json()["status"] == "placed"


async def test_a_refusal_after_a_first_approval_leaves_the_package_unplaced(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await awaiting_approval_at(service, broker, rules, ids, SIX_PER_CENT)
    api = api_of(service)
    assert (await approve(api, package_id, "broker.bo", "broker")).status_code == 200
    refused = await api.post(
        f"/packages/{package_id}/exception/reject",
        json={"reason": "rate_not_justified"},
        headers=local_issuer.headers("brokerage", "manager.jo", ("manager",)),
    )
    assert refused.status_code == 200 and refused.json()["status"] == "unplaced"
    late = await approve(api, package_id, "senior.sam", "senior_broker")
    assert late.status_code == 409 and late.json()["code"] == "action-not-allowed"


async def test_the_scheme_served_to_pages_says_when_a_second_approver_is_needed(brokerage):
    service, _, _, _ = brokerage
    scheme = (await api_of(service).get("/reference/delegation", headers=local_issuer.headers("brokerage"))).json()
    assert scheme["limits_percent"]["broker"] == "5"
    assert scheme["second_approver"] == {"first_approval_below_limit": True, "two_approvals_above_percent": "20"}


async def test_the_work_queue_flags_counts_and_filters_the_bids_awaiting_a_second_approval(brokerage):
    """Decision record 0133: managers and heads of service find the above-rate bids with the first of
    two approvals on the board - each such package flagged, their count next to the counts per
    status, and a filter for them alone; a refused approval flags nothing, and the flag goes when
    the second approval places the package or a refusal ends the exception."""
    service, broker, rules, ids = brokerage
    api = api_of(service)
    staff = local_issuer.headers("brokerage", "manager.jo", ("manager",))
    first_of_two = await awaiting_approval_at(service, broker, rules, ids, SIX_PER_CENT)
    other = await awaiting_approval_at(service, broker, rules, ids, SIX_PER_CENT)

    async def queue(**params: str) -> dict:
        answer = await api.get(
            "/packages", params={"status": "awaiting_approval", "limit": "1000", **params}, headers=staff
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    def flags(body: dict) -> dict[str, bool]:
        return {p["package_id"]: p["awaiting_second_approval"] for p in body["packages"]}

    before = (await queue())["awaiting_second_approval"]
    assert (await approve(api, first_of_two, "broker.bo", "broker")).status_code == 200
    assert (await approve(api, other, "broker.amy", "head_of_service")).status_code == 403  # their own request
    body = await queue()
    assert flags(body)[str(first_of_two)] is True and flags(body)[str(other)] is False
    assert body["awaiting_second_approval"] == before + 1
    assert body["counts"]["awaiting_approval"] >= 2, "the counts per status are unchanged"
    only = await queue(awaiting_second_approval="true")
    assert str(first_of_two) in flags(only) and str(other) not in flags(only)
    assert set(flags(only).values()) == {True} and only["total"] == before + 1
    assert (await queue(awaiting_second_approval="true", status="placed"))["total"] == 0

    assert (await approve(api, other, "broker.bo", "broker")).status_code == 200
    assert (await queue())["awaiting_second_approval"] == before + 2
    refused = await api.post(
        f"/packages/{other}/exception/reject",
        json={"reason": "rate_not_justified"},
        headers=local_issuer.headers("brokerage", "manager.jo", ("manager",)),
    )
    assert refused.status_code == 200
    second = await approve(api, first_of_two, "senior.sam", "senior_broker")
    assert second.status_code == 200 and second.json()["status"] == "placed"
    body = await queue(status="awaiting_approval,placed,unplaced")
    assert flags(body)[str(first_of_two)] is False and flags(body)[str(other)] is False
    assert body["awaiting_second_approval"] == before
