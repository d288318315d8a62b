"""Webhook self-service through the provider API (issue 20, decision 0100), in-process on a real
PostgreSQL, the delivery loop POSTing to an in-memory receiver:

- a provider registers its webhook URL (the SSRF guard's rules; the secret shown once) and GET /me
  shows its adapter settings, never a secret;
- a test offer is a signed synthetic delivery marked as a test, never a real package;
- a secret rotation with an overlap signs with both secrets until the overlap ends;
- every attempt of a delivery is kept; a past delivery is redelivered as a new one, but a closed
  offer never is;
- the deliveries list pages by cursor, newest first;
- the council's PATCH of the adapter changes only the fields sent (PUT replaces them all).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import asyncpg
import httpx
import pytest

from schemas import adapters
from services.providers import handlers
from services.providers.api import CONTRACT_VERSION
from services.providers.app import build
from services.providers.domain import AutomaticRules
from services.runtime import signing, topics
from services.runtime.outbox import unit_of_work
from tests import local_issuer
from tests.handlers.test_providers_handlers import offer, willing

URL = "http://127.0.0.1:9/hooks"


@pytest.fixture(autouse=True)
async def no_overlap_left_after(handlers_database):
    """A rotation's previous secret does not outlive the test (the adapters are put back by
    ``seeded_adapters_after``)."""
    yield
    conn = await asyncpg.connect(handlers_database)
    try:
        await conn.execute(
            "UPDATE providers.providers SET previous_webhook_secret = NULL, previous_secret_expires_at = NULL"
        )
    finally:
        await conn.close()


async def provider(in_memory, kind: str = "portal", count: int = 1):
    """(service, broker, [provider ids], {provider id: token}) with adapters of ``kind``."""
    service, broker = await in_memory(build, "providers")
    pids = await willing(service, count)
    tokens = {}
    async with unit_of_work(service.pool) as uow:
        for pid in pids:
            await handlers.set_adapter(uow, pid, AutomaticRules(kind=kind), new_secret=False, box=service.secrets)
            await uow.conn.execute("UPDATE providers SET webhook_secret = NULL WHERE provider_id = $1", pid)
            tokens[pid] = (await handlers.issue_credential(uow, pid, label="test", replace=False))["token"]
        # Earlier tests' deliveries still pending are not this test's.
        await uow.conn.execute(
            "UPDATE webhook_deliveries SET status = 'failed' WHERE provider_id = ANY($1) AND status = 'pending'", pids
        )
    return service, broker, pids, tokens


def client(service, token: str | None = None, **headers: str) -> httpx.AsyncClient:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app), base_url="http://providers", headers=auth | headers
    )


class Receiver:
    """A provider's receiver in memory: answers each POST with the next status of ``answers``
    (the last one repeated), keeping every request."""

    def __init__(self, *answers: int) -> None:
        self.answers = list(answers) or [200]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return httpx.Response(status)


async def deliver(service, receiver: Receiver, provider_id: str) -> None:
    """Make the provider's pending deliveries due, and run the delivery loop until none is due."""
    await service.pool.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE provider_id = $1 AND status = 'pending'",
        provider_id,
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
        while await handlers.deliver_due_webhooks(service.pool, http, service.settings, service.secrets):
            await service.pool.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE provider_id = $1 AND status = 'pending'",
                provider_id,
            )


async def register(c: httpx.AsyncClient, url: str = URL) -> dict:
    r = await c.put("/me/webhook", json={"url": url})
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_provider_registers_its_webhook_and_sees_its_adapter_settings_but_never_a_secret(in_memory):
    service, _broker, [pid], tokens = await provider(in_memory, "portal")
    async with client(service, tokens[pid]) as c:
        first = await register(c)
        assert first["receives_offers"] is True and first["adapter"]["kind"] == "webhook"
        secret = first["signing_secret"]
        assert secret.startswith("whsec_") and len(secret) > 40
        again = await register(c, "http://127.0.0.1:9/other")
        assert again["signing_secret"] is None, "the secret is shown once, when made"
        me = await c.get("/me")
        assert me.status_code == 200
        assert me.headers["Homecare-Contract-Version"] == CONTRACT_VERSION
        adapter = me.json()["adapter"]
        assert adapter["webhook_url"] == "http://127.0.0.1:9/other" and adapter["signing_secret_set"] is True
        assert set(adapter) >= {"max_package_hours", "premium_percent", "lead_days", "covers_adjacent_zones"}
        assert secret not in me.text and "whsec_" not in me.text
        # The guard's rules, each a 422 naming the field.
        for bad, words in (
            ("ftp://127.0.0.1/x", "url"),
            ("http://10.1.2.3/hooks", "not a public address"),
            ("http://169.254.169.254/latest", "not a public address"),
            ("http://user:pw@127.0.0.1/x", "user name"),
        ):
            r = await c.put("/me/webhook", json={"url": bad})
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["errors"][0]["field"] == "url" and words in r.text, (bad, r.text)
        r = await c.put("/me/webhook", json={})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "url"
        assert (await c.get("/me")).json()["adapter"]["webhook_url"] == "http://127.0.0.1:9/other", "nothing changed"
    async with client(service) as anonymous:
        assert (await anonymous.put("/me/webhook", json={"url": URL})).status_code == 401


async def test_an_automatic_adapter_keeps_answering_by_its_rules_when_a_url_is_registered(in_memory):
    service, _broker, [pid], tokens = await provider(in_memory, "automatic")
    async with client(service, tokens[pid]) as c:
        registered = await register(c)
    assert registered["receives_offers"] is False and registered["adapter"]["kind"] == "automatic"
    assert registered["signing_secret"].startswith("whsec_"), "test deliveries are signed too"


async def test_a_test_offer_is_a_signed_sample_marked_as_a_test_and_never_a_real_package(in_memory):
    service, _broker, [pid], tokens = await provider(in_memory, "portal")
    async with client(service, tokens[pid]) as c:
        refused = await c.post("/me/webhook/test")
        assert refused.status_code == 409 and refused.json()["code"] == "no-webhook"
        assert refused.json()["fields"][0]["field"] == "webhook_url", "the missing registration is named"
        secret = (await register(c))["signing_secret"]
        queued = await c.post("/me/webhook/test")
        assert queued.status_code == 202, queued.text
        delivery = queued.json()
        assert delivery["kind"] == "test" and delivery["package_id"] is None and delivery["status"] == "pending"
        receiver = Receiver(200)
        await deliver(service, receiver, pid)
        [request] = receiver.requests
        assert signing.verify(secret, dict(request.headers), request.content) == delivery["delivery_id"]
        notice = adapters.TestOfferNotice.model_validate_json(request.content)
        assert notice.kind == "test_offer" and notice.test is True and notice.provider_id == pid
        assert (
            notice.package.zone
            in json.loads(await service.pool.fetchval("SELECT profile FROM providers WHERE provider_id = $1", pid))[
                "zones"
            ]
        )
        # Not a real package: offered to no one, so answering it is a 404.
        assert not await service.pool.fetchval("SELECT true FROM offers WHERE package_id = $1", notice.package_id)
        answer = await c.post(notice.answer_with["decline"], json={"reason": "capacity"})
        assert answer.status_code == 404
        seen = (await c.get(f"/me/deliveries/{delivery['delivery_id']}")).json()
        assert seen["status"] == "delivered" and [a["status_code"] for a in seen["history"]] == [200]
        # At most five test deliveries pending at once.
        for _ in range(5):
            assert (await c.post("/me/webhook/test")).status_code == 202
        too_many = await c.post("/me/webhook/test")
        assert too_many.status_code == 409 and too_many.json()["code"] == "too-many-pending-tests"
        assert too_many.json()["fields"][0]["field"] == "status"


async def test_a_rotation_signs_with_both_secrets_through_the_overlap_and_then_with_the_new_one_only(in_memory):
    service, _broker, [pid], tokens = await provider(in_memory, "portal")
    async with client(service, tokens[pid]) as c:
        old = (await register(c))["signing_secret"]
        for bad in ({"overlap_hours": 169}, {"overlap_hours": -1}, {"overlap_hours": "soon"}, {"overlap": 2}):
            r = await c.post("/me/webhook/rotate-secret", json=bad)
            assert r.status_code == 422 and r.json()["errors"][0]["field"] in ("overlap_hours", "overlap"), r.text
        rotated = await c.post("/me/webhook/rotate-secret", json={"overlap_hours": 24})
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["signing_secret"]
        until = dt.datetime.fromisoformat(rotated.json()["previous_secret_signs_until"])
        assert new != old and dt.timedelta(hours=23) < until - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=24)
        assert (await c.get("/me")).json()["adapter"]["previous_secret_signs_until"] is not None
        assert (await c.post("/me/webhook/test")).status_code == 202
        receiver = Receiver(200)
        await deliver(service, receiver, pid)
        [during] = receiver.requests
        assert during.headers[signing.SIGNATURE_HEADER].count("v2=") == 2
        # A receiver holding either secret accepts the delivery: it can switch at any time in the overlap.
        assert signing.verify(old, dict(during.headers), during.content)
        assert signing.verify(new, dict(during.headers), during.content)
        history = (await c.get("/me/deliveries")).json()[0]["history"]
        assert [a["signed_with"] for a in history] == [2]
        # The overlap over: only the new secret signs.
        await service.pool.execute(
            "UPDATE providers SET previous_secret_expires_at = now() - interval '1 second' WHERE provider_id = $1",
            pid,
        )
        assert (await c.get("/me")).json()["adapter"]["previous_secret_signs_until"] is None
        assert (await c.post("/me/webhook/test")).status_code == 202
        await deliver(service, receiver, pid)
        after = receiver.requests[-1]
        assert after.headers[signing.SIGNATURE_HEADER].count("v2=") == 1
        assert signing.verify(new, dict(after.headers), after.content)
        with pytest.raises(signing.SignatureError):
            signing.verify(old, dict(after.headers), after.content)
        # No overlap: the previous secret stops at once.
        newest = (await c.post("/me/webhook/rotate-secret", json={"overlap_hours": 0})).json()
        assert newest["previous_secret_signs_until"] is None
        assert (await c.post("/me/webhook/test")).status_code == 202
        await deliver(service, receiver, pid)
        last = receiver.requests[-1]
        assert signing.verify(newest["signing_secret"], dict(last.headers), last.content)
        with pytest.raises(signing.SignatureError):
            signing.verify(new, dict(last.headers), last.content)


async def test_every_attempt_is_kept_and_a_past_delivery_is_redelivered_as_a_new_one(in_memory):
    service, _broker, [pid, other], tokens = await provider(in_memory, "portal", count=2)
    async with client(service, tokens[pid]) as c:
        secret = (await register(c))["signing_secret"]
        original = (await c.post("/me/webhook/test")).json()
        assert (await c.post(f"/me/deliveries/{original['delivery_id']}/redeliver")).json()["code"] == (
            "delivery-pending"
        )
        receiver = Receiver(503, 500, 200)
        await deliver(service, receiver, pid)
        seen = (await c.get(f"/me/deliveries/{original['delivery_id']}")).json()
        assert seen["status"] == "delivered" and seen["attempts"] == 3
        assert [(a["attempt"], a["status_code"], a["error"]) for a in seen["history"]] == [
            (1, 503, "HTTP 503"),
            (2, 500, "HTTP 500"),
            (3, 200, None),
        ]
        assert all(a["duration_ms"] >= 0 and a["attempted_at"] for a in seen["history"])
        again = await c.post(f"/me/deliveries/{original['delivery_id']}/redeliver")
        assert again.status_code == 202, again.text
        redelivery = again.json()
        assert redelivery["delivery_id"] != original["delivery_id"]
        assert redelivery["redelivery_of"] == original["delivery_id"] and redelivery["kind"] == "test"
        await deliver(service, receiver, pid)
        resent = receiver.requests[-1]
        assert resent.content == receiver.requests[0].content, "the same body"
        assert signing.verify(secret, dict(resent.headers), resent.content) == redelivery["delivery_id"]
    # Another provider's delivery is not found; an unknown id neither.
    async with client(service, tokens[other]) as c:
        assert (await c.get(f"/me/deliveries/{original['delivery_id']}")).status_code == 404
        assert (await c.post(f"/me/deliveries/{original['delivery_id']}/redeliver")).status_code == 404
        assert (await c.post(f"/me/deliveries/{uuid.uuid4()}/redeliver")).status_code == 404
        assert (await c.post("/me/deliveries/not-a-uuid/redeliver")).status_code == 422


async def test_redeliveries_waiting_at_once_are_capped_and_a_test_is_tried_for_a_tests_time(in_memory):
    """Found by an attack: thirty redeliveries of one failed test, each tried for 24 hours, on the
    delivery loop every provider shares. Five may wait at once (409 too-many-pending-redeliveries,
    naming status, nothing kept), and a test's redelivery gives up when a test does (10 minutes)."""
    service, _broker, [pid], tokens = await provider(in_memory, "portal")
    async with client(service, tokens[pid]) as c:
        await register(c)
        original = (await c.post("/me/webhook/test")).json()
        await deliver(service, Receiver(200), pid)
        sent = [await c.post(f"/me/deliveries/{original['delivery_id']}/redeliver") for _ in range(6)]
    assert [r.status_code for r in sent] == [202] * 5 + [409], [r.text for r in sent]
    refused = sent[-1].json()
    assert refused["code"] == "too-many-pending-redeliveries" and refused["errors"][0]["field"] == "status"
    waiting = await service.pool.fetch(
        "SELECT give_up_at - created_at AS window FROM webhook_deliveries WHERE redelivery_of = $1",
        uuid.UUID(original["delivery_id"]),
    )
    assert len(waiting) == 5 and all(r["window"] <= dt.timedelta(minutes=10, seconds=5) for r in waiting)


async def test_an_open_offer_is_redelivered_but_a_closed_one_never(in_memory):
    service, broker, [pid], tokens = await provider(in_memory, "portal")
    async with client(service, tokens[pid]) as c:
        await register(c)
        event = offer([pid])
        await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("brokerage.packages"))
        await deliver(service, Receiver(200), pid)
        # This offer's delivery (the provider may have had others in this session's database).
        [delivered] = [
            d
            for d in (await c.get("/me/deliveries")).json()
            if d["kind"] == "offer" and d["package_id"] == str(event.package_id)
        ]
        assert delivered["status"] == "delivered"
        again = await c.post(f"/me/deliveries/{delivered['delivery_id']}/redeliver")
        assert again.status_code == 202 and again.json()["package_id"] == str(event.package_id)
        await deliver(service, Receiver(200), pid)
        # Answered: the offer is closed to it, and is never delivered again.
        declined = await c.post(f"/me/offers/{event.package_id}/decline", json={"reason": "capacity"})
        assert declined.status_code == 200
        refused = await c.post(f"/me/deliveries/{delivered['delivery_id']}/redeliver")
        assert refused.status_code == 409 and refused.json()["code"] == "offer-closed"
        assert refused.json()["fields"][0]["field"] == "window_closes_at"


async def test_the_deliveries_list_pages_by_cursor_newest_first(in_memory):
    service, _broker, [pid], tokens = await provider(in_memory, "portal")
    async with client(service, tokens[pid]) as c:
        await register(c)
        made = []
        for _ in range(3):
            for _ in range(3):
                made.append((await c.post("/me/webhook/test")).json()["delivery_id"])
            await deliver(service, Receiver(200), pid)
        everything = (await c.get("/me/deliveries", params={"limit": 1000})).json()
        assert "Link" not in (await c.get("/me/deliveries", params={"limit": 1000})).headers
        expected = [d["delivery_id"] for d in everything]
        assert set(made) <= set(expected)
        assert [d["created_at"] for d in everything] == sorted((d["created_at"] for d in everything), reverse=True)
        paged = [[d["delivery_id"] for d in page] for page in await pages(c, "/me/deliveries?limit=4")]
        assert [d for page in paged for d in page] == expected, "every delivery once, in order"
        assert all(len(page) == 4 for page in paged[:-1])
        # A new delivery made while paging does not shift the pages already read.
        first = await c.get("/me/deliveries?limit=4")
        await c.post("/me/webhook/test")
        second = await c.get(first.links["next"]["url"])
        assert [d["delivery_id"] for d in second.json()] == expected[4:8]
        for bad in ("nonsense", "eyJ4IjoxfQ", "W10"):
            r = await c.get("/me/deliveries", params={"cursor": bad})
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cursor", r.text


async def test_the_councils_patch_changes_only_the_adapter_settings_sent_and_put_replaces_them(in_memory):
    service, _broker, [pid], _tokens = await provider(in_memory, "automatic")
    admin = local_issuer.headers("providers", "demo-admin", ("council_admin",))
    async with client(service, **admin) as c:
        r = await c.put(
            f"/providers/{pid}/adapter",
            json={"kind": "automatic", "premium_percent": {"urban": "5"}, "lead_days": 2, "call_times": ["morning"]},
        )
        assert r.status_code == 200, r.text
        patched = await c.patch(f"/providers/{pid}/adapter", json={"lead_days": 4})
        assert patched.status_code == 200, patched.text
        adapter = patched.json()["adapter"]
        assert adapter["lead_days"] == 4
        assert adapter["premium_percent"] == {"urban": "5"} and adapter["call_times"] == ["morning"], "kept"
        # null: back to the default.
        adapter = (await c.patch(f"/providers/{pid}/adapter", json={"call_times": None})).json()["adapter"]
        assert adapter["call_times"] is None and adapter["lead_days"] == 4
        # A webhook adapter needs a URL, sent now or kept.
        r = await c.patch(f"/providers/{pid}/adapter", json={"kind": "webhook"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "webhook_url", r.text
        made = await c.patch(f"/providers/{pid}/adapter", json={"kind": "webhook", "webhook_url": URL})
        assert made.status_code == 200 and made.json()["webhook_secret"].startswith("whsec_")
        assert made.json()["adapter"]["lead_days"] == 4
        kept = await c.patch(f"/providers/{pid}/adapter", json={"max_package_hours": "30"})
        assert kept.json()["adapter"]["webhook_url"] == URL and "webhook_secret" not in kept.json()
        for bad, field in (
            ({"max_calls_per_day": 9}, "max_calls_per_day"),
            ({"lead_days": -1}, "lead_days"),
            ({"premium_percent": {"seaside": "5"}}, "premium_percent.seaside"),
            ({"webhook_url": "http://10.0.0.8/x"}, "webhook_url"),
            ({"colour": "blue"}, "colour"),
        ):
            r = await c.patch(f"/providers/{pid}/adapter", json=bad)
            assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith(field), (bad, r.text)
        assert (await c.patch("/providers/no-such-provider/adapter", json={"lead_days": 1})).status_code == 404
        # PUT replaces: what is not sent goes back to its default.
        replaced = (await c.put(f"/providers/{pid}/adapter", json={"kind": "automatic"})).json()["adapter"]
        assert replaced["lead_days"] == 0 and replaced["premium_percent"] == {}
    broker_headers = local_issuer.headers("providers", "demo-broker", ("broker",))
    async with client(service, **broker_headers) as c:
        assert (await c.patch(f"/providers/{pid}/adapter", json={"lead_days": 1})).status_code == 403


async def pages(c: httpx.AsyncClient, url: str) -> list[list[dict]]:
    """Every page of a list, following the ``Link: rel="next"`` headers."""
    out: list[list[dict]] = []
    next_url: str | None = url
    while next_url:
        r = await c.get(next_url)
        assert r.status_code == 200, r.text
        out.append(r.json())
        next_url = r.links.get("next", {}).get("url")
    return out


async def test_the_offers_and_notices_lists_page_by_cursor_in_their_documented_order(in_memory):
    from schemas.events import PackageCancelled

    service, broker, [pid], tokens = await provider(in_memory, "portal")
    events = [offer([pid]) for _ in range(5)]
    for event in events:
        await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("brokerage.packages"))
    for event in events[:3]:
        cancelled = PackageCancelled(
            correlation_id=event.package_id,
            package_id=event.package_id,
            reason="no_longer_needed",
            cancelled_by="broker.amy",
            hours_per_week=event.package.hours_per_week,
            cancelled_at=dt.datetime.now(dt.UTC),
        )
        await broker.publish(cancelled.model_dump_json().encode(), topic=topics.resolve("brokerage.packages"))
    async with client(service, tokens[pid]) as c:
        whole = (await c.get("/me/offers", params={"status": "all", "limit": 1000})).json()
        key = [(o["window_closes_at"], o["package_id"], o["offer_round"]) for o in whole]
        assert key == sorted(key), "soonest deadline first"
        paged = await pages(c, "/me/offers?status=all&limit=2")
        assert [o["package_id"] for page in paged for o in page] == [o["package_id"] for o in whole]
        assert len(paged) >= 3 and all(len(p) == 2 for p in paged[:-1])
        notices = (await c.get("/me/notices", params={"limit": 1000})).json()
        assert {str(e.package_id) for e in events[:3]} <= {n["package_id"] for n in notices}
        order = [(n["closed_at"], n["notice_id"]) for n in notices]
        assert order == sorted(order, reverse=True), "newest first"
        paged = await pages(c, "/me/notices?limit=1")
        assert [n["notice_id"] for page in paged for n in page] == [n["notice_id"] for n in notices]
        # A cursor of one list is not a cursor of another.
        offers_cursor = (await c.get("/me/offers?status=all&limit=1")).links["next"]["url"].split("cursor=")[1]
        r = await c.get("/me/notices", params={"cursor": offers_cursor})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cursor"
