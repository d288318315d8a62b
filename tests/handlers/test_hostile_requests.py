"""Members of the kinds an attack on the APIs found (decision records 0129, 0130), in-process on a
real PostgreSQL: what needs the database to tell.

- optional request bodies: a route whose body's fields all have defaults takes no body at all
  (rotate-secret, PATCH /me, a change request's approval, a credential);
- references: a safeguarding concern about a package the brokerage never requested is a 422
  naming ``subject.package_id`` and nothing is kept; once the package is requested it is taken;
- set-like lists: a change request repeating a zone is refused naming ``zones`` (not stored once
  silently), an unknown zone naming ``zones.N``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from schemas.events import PackageRequested
from services.providers import handlers
from services.providers.app import build
from services.runtime.outbox import unit_of_work
from tests import local_issuer
from tests.handlers.test_provider_webhook_self_service import client, provider, register
from tests.handlers.test_providers_handlers import offer


def staff(service, roles: tuple[str, ...]):
    return client(service, **local_issuer.headers("providers", roles=roles))


async def test_a_route_whose_body_is_all_optional_takes_no_body(in_memory):
    service, _broker, [pid], tokens = await provider(in_memory, "portal")
    async with client(service, tokens[pid]) as me:
        await register(me)
        rotated = await me.post("/me/webhook/rotate-secret")  # no body, no content type
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["previous_secret_signs_until"] is not None  # the default overlap applied
        assert (await me.patch("/me")).status_code == 200
        zones = (await me.get("/me")).json()["zones"]
        asked = await me.post("/me/change-requests", json={"zones": zones, "bands": ["urban"]})
        assert asked.status_code == 201, asked.text
    async with staff(service, ("council_admin",)) as council:
        approved = await council.post(f"/change-requests/{asked.json()['request_id']}/approve")
        assert approved.status_code == 200, approved.text
        issued = await council.post(f"/providers/{pid}/credentials")
        assert issued.status_code in (200, 201), issued.text


async def test_change_requests_sent_at_once_make_one_request_and_409s(in_memory):
    """Found by an attack: ten change requests at once - the check for a pending one came before the
    insert, and the unique index then made most of them 500s. One is kept; the others are 409
    change-request-pending naming the field status."""
    service, _broker, [pid], tokens = await provider(in_memory, "portal")
    async with client(service, tokens[pid]) as me:
        zones = (await me.get("/me")).json()["zones"]
        answers = await asyncio.gather(
            *(me.post("/me/change-requests", json={"zones": zones, "bands": ["urban"]}) for _ in range(10))
        )
    assert sorted(a.status_code for a in answers) == [201] + [409] * 9, [a.text for a in answers]
    for refused in (a for a in answers if a.status_code == 409):
        assert refused.json()["code"] == "change-request-pending" and refused.json()["errors"][0]["field"] == "status"
    pending = await service.pool.fetchval(
        "SELECT count(*) FROM change_requests WHERE provider_id = $1 AND status = 'pending'", pid
    )
    assert pending == 1


async def test_a_change_request_repeating_a_zone_or_naming_an_unknown_one_is_refused(in_memory):
    service, _broker, [pid], tokens = await provider(in_memory, "portal")
    before = await service.pool.fetchval("SELECT count(*) FROM change_requests WHERE provider_id = $1", pid)
    async with client(service, tokens[pid]) as me:
        zones = (await me.get("/me")).json()["zones"]
        twice = await me.post("/me/change-requests", json={"zones": [zones[0], zones[0]], "bands": ["urban"]})
        assert twice.status_code == 422 and [e["field"] for e in twice.json()["errors"]] == ["zones"], twice.text
        unknown = await me.post("/me/change-requests", json={"zones": [zones[0], "atlantis"], "bands": ["urban"]})
        assert unknown.status_code == 422, unknown.text
        assert (unknown.json()["code"], unknown.json()["errors"][0]["field"]) == ("unknown-zone", "zones.1")
    after = await service.pool.fetchval("SELECT count(*) FROM change_requests WHERE provider_id = $1", pid)
    assert after == before


async def test_a_concern_about_a_package_nobody_requested_is_refused_naming_the_field(in_memory):
    service, _broker = await in_memory(build, "providers")
    package_id = uuid.uuid4()
    concern = {"subject": {"package_id": str(package_id)}, "category": "neglect", "details": "seen at the tea call"}
    before = await service.pool.fetchval("SELECT count(*) FROM concerns")
    async with staff(service, ("broker",)) as broker:
        refused = await broker.post("/concerns", json=concern)
        assert refused.status_code == 422, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["subject.package_id"]
        assert await service.pool.fetchval("SELECT count(*) FROM concerns") == before
        # The brokerage requests it: the providers service learns of it from PackageRequested.
        requested = PackageRequested(
            package_id=package_id,
            correlation_id=package_id,
            package=offer(["p-1"]).package,
            requested_at=dt.datetime.now(dt.UTC),
        )
        async with unit_of_work(service.pool) as uow:
            await handlers.record_request(uow, requested)
            await handlers.record_request(uow, requested)  # a redelivery changes nothing
        raised = await broker.post("/concerns", json=concern)
        assert raised.status_code == 201, raised.text


# Staff routes naming a provider, an application or a change request that does not exist.
NOBODY = "no-such-provider"
UNKNOWN_REFERENCES = [
    ("GET", f"/providers/{NOBODY}", None),
    ("PUT", f"/providers/{NOBODY}/adapter", {"kind": "portal"}),
    ("PATCH", f"/providers/{NOBODY}/adapter", {"lead_days": 1}),
    ("POST", f"/providers/{NOBODY}/credentials", {}),
    ("GET", f"/providers/{NOBODY}/credentials", None),
    ("POST", f"/providers/{NOBODY}/credentials/hcp-nothing/revoke", None),
    ("POST", f"/providers/{NOBODY}/status", {"status": "suspended", "reason": "checks"}),
    ("GET", f"/providers/{NOBODY}/status-history", None),
    ("GET", f"/providers/{NOBODY}/offers", None),
    ("GET", f"/providers/{NOBODY}/deliveries", None),
    ("GET", f"/providers/{NOBODY}/quality", None),
    ("PUT", f"/providers/{NOBODY}/quality/cqc", {"rating": "good", "rated_on": "2026-01-05"}),
    ("PUT", f"/providers/{NOBODY}/quality/cqc-location", {"cqc_location_id": "1-123456789"}),
    ("POST", f"/providers/{NOBODY}/quality/risk-reviews", {"rag": "low", "reasons": []}),
    ("POST", f"/providers/{NOBODY}/quality/complaints", {"theme": "missed_call", "received_on": "2026-01-05"}),
    ("POST", f"/providers/{NOBODY}/quality/plans", {"opened_on": "2026-01-05", "due_on": "2026-02-05"}),
    ("POST", f"/applications/{uuid.UUID(int=1)}/approve", None),
    ("POST", f"/applications/{uuid.UUID(int=1)}/refuse", {"reason": "incomplete"}),
    ("POST", "/change-requests/999999999/approve", None),
    ("POST", "/change-requests/999999999/reject", None),
]


async def test_a_request_naming_a_provider_or_record_that_does_not_exist_is_a_4xx(in_memory):
    service, _broker = await in_memory(build, "providers")
    roles = ("council_admin", "contracts_quality", "broker", "manager")
    answers = {}
    async with staff(service, roles) as council:
        for method, path, body in UNKNOWN_REFERENCES:
            answer = await council.request(method, path, json=body)
            answers[(method, path)] = answer.status_code
    # 404 for what the path names; 422 where the body is refused first. Never a 2xx or a 5xx.
    wrong = {k: s for k, s in answers.items() if s not in (404, 422)}
    assert not wrong, wrong
    assert await service.pool.fetchval("SELECT count(*) FROM providers WHERE provider_id = $1", NOBODY) == 0


async def test_a_cursor_holding_a_round_past_a_32_bit_number_is_read_not_refused_by_the_database(in_memory):
    """Found by an attack: a made-up cursor whose offer round was 2147483648 (which the cursor rule
    allows, 18 digits) met the lists' ``::int`` cast: "a value in the request cannot be stored",
    naming no field. The lists compare it as a bigint: past every round, so an empty page."""
    from services.runtime import pagination

    service, _broker, [pid], tokens = await provider(in_memory, "portal")
    cursor = pagination.encode(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), uuid.uuid4(), 2147483648)
    async with client(service, tokens[pid]) as me:
        for path in ("/me/offers?status=all", "/me/history", "/me/packages"):
            answer = await me.get(path + ("&" if "?" in path else "?") + f"cursor={cursor}")
            assert answer.status_code == 200, (path, answer.text)
