"""Bids and declines through the provider API with an ``Idempotency-Key`` (services/runtime/idempotency.py),
in-process on a real PostgreSQL: a retried identical answer returns the original response and
has no second effect; the same key with another request is a 422 naming the header; keys are
each provider's own; a refused answer is not remembered; two identical requests at once make one answer."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import httpx

from services.providers import handlers
from services.providers.api import AnswerAccepted
from services.providers.app import build
from services.providers.domain import AutomaticRules
from services.runtime import topics
from services.runtime.outbox import unit_of_work
from tests.handlers.test_providers_handlers import offer, outbox, willing


async def portal_market(in_memory, count: int = 2):
    """``count`` portal providers offered one package, each with a credential: (service, event,
    {provider id: token})."""
    service, broker = await in_memory(build, "providers")
    pids = await willing(service, count)
    tokens = {}
    async with unit_of_work(service.pool) as uow:
        for pid in pids:
            await handlers.set_adapter(uow, pid, AutomaticRules(kind="portal"), new_secret=False, box=service.secrets)
            tokens[pid] = (await handlers.issue_credential(uow, pid, label="test", replace=False))["token"]
    event = offer(pids)
    await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("brokerage.packages"))
    return service, event, tokens


def client(service, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://providers",
        headers={"Authorization": f"Bearer {token}"},
    )


def bid_body(rate: str = "19.10") -> dict:
    return {"rate": rate, "earliest_start": dt.date.today().isoformat()}


async def answers(service, package_id) -> list[str]:
    return [r["type"] for r in await outbox(service, package_id)]


async def test_a_retried_bid_returns_the_original_response_and_bids_once(in_memory):
    service, event, tokens = await portal_market(in_memory, 1)
    [(pid, token)] = tokens.items()
    held_before = await service.pool.fetchval("SELECT held_hours FROM providers WHERE provider_id = $1", pid)
    async with client(service, token) as c:
        url = f"/me/offers/{event.package_id}/bid"
        first = await c.post(url, json=bid_body(), headers={"Idempotency-Key": "bid-1"})
        assert first.status_code == 200, first.text
        assert "Idempotent-Replayed" not in first.headers
        # The same bid again (the response was lost): the same answer, not 409 "already bid".
        again = await c.post(url, json=bid_body("19.1"), headers={"Idempotency-Key": "bid-1"})
        assert again.status_code == 200, again.text
        assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
        # Without a key, a second bid is refused as before.
        unkeyed = await c.post(url, json=bid_body())
        assert unkeyed.status_code == 409 and "already bid" in unkeyed.json()["error"]
    assert await answers(service, event.package_id) == ["BidSubmitted"], "one bid, one event"
    held = await service.pool.fetchval("SELECT held_hours FROM providers WHERE provider_id = $1", pid)
    assert held - held_before == event.package.hours_per_week, "the hours are held once"


async def test_the_same_key_for_another_request_is_a_422_naming_the_header(in_memory):
    service, event, tokens = await portal_market(in_memory, 1)
    [token] = tokens.values()
    async with client(service, token) as c:
        url = f"/me/offers/{event.package_id}/bid"
        assert (await c.post(url, json=bid_body(), headers={"Idempotency-Key": "k-1"})).status_code == 200
        other_rate = await c.post(url, json=bid_body("19.50"), headers={"Idempotency-Key": "k-1"})
        assert other_rate.status_code == 422, other_rate.text
        assert (
            other_rate.json()["fields"] == [{"field": "Idempotency-Key", "message": other_rate.json()["error"]}]
            and "different request" in other_rate.json()["error"]
        )
        other_action = await c.post(
            f"/me/offers/{event.package_id}/decline", json={"reason": "capacity"}, headers={"Idempotency-Key": "k-1"}
        )
        assert other_action.status_code == 422
        malformed = await c.post(url, json=bid_body(), headers={"Idempotency-Key": "with space"})
        assert malformed.status_code == 422 and malformed.json()["fields"][0]["field"].endswith("Idempotency-Key")
    assert await answers(service, event.package_id) == ["BidSubmitted"]


async def test_a_retried_decline_returns_the_original_and_keys_are_each_providers_own(in_memory):
    service, event, tokens = await portal_market(in_memory, 2)
    (first_pid, first), (second_pid, second) = sorted(tokens.items())
    url = f"/me/offers/{event.package_id}/decline"
    async with client(service, first) as c:
        declined = await c.post(url, json={"reason": "capacity"}, headers={"Idempotency-Key": "same-key"})
        replayed = await c.post(url, json={"reason": "capacity"}, headers={"Idempotency-Key": "same-key"})
    assert declined.status_code == replayed.status_code == 200 and replayed.json() == declined.json()
    assert replayed.json()["status"] == "declined"
    # Another provider's identical key is its own: its decline is made, not the first's replayed.
    async with client(service, second) as c:
        own = await c.post(url, json={"reason": "capacity"}, headers={"Idempotency-Key": "same-key"})
    assert own.status_code == 200 and "Idempotent-Replayed" not in own.headers
    rows = await service.pool.fetch(
        "SELECT provider_id, status FROM offers WHERE package_id = $1 ORDER BY provider_id", event.package_id
    )
    assert [(r["provider_id"], r["status"]) for r in rows] == [(first_pid, "declined"), (second_pid, "declined")]
    assert await answers(service, event.package_id) == ["OfferDeclined", "OfferDeclined"]


async def test_a_refused_answer_is_not_remembered_so_the_same_request_is_judged_again(in_memory):
    service, event, tokens = await portal_market(in_memory, 1)
    [(pid, token)] = tokens.items()
    await service.pool.execute(
        "UPDATE providers SET weekly_capacity_hours = committed_hours + held_hours WHERE provider_id = $1", pid
    )
    async with client(service, token) as c:
        url = f"/me/offers/{event.package_id}/bid"
        refused = await c.post(url, json=bid_body(), headers={"Idempotency-Key": "after-capacity"})
        assert refused.status_code == 409 and "h free" in refused.json()["error"]
        await service.pool.execute(
            "UPDATE providers SET weekly_capacity_hours = weekly_capacity_hours + 50 WHERE provider_id = $1", pid
        )
        accepted = await c.post(url, json=bid_body(), headers={"Idempotency-Key": "after-capacity"})
        assert accepted.status_code == 200 and "Idempotent-Replayed" not in accepted.headers
    assert await answers(service, event.package_id) == ["BidSubmitted"]


async def test_two_identical_requests_at_once_make_one_bid(in_memory):
    service, event, tokens = await portal_market(in_memory, 1)
    [token] = tokens.values()
    async with client(service, token) as c:
        url = f"/me/offers/{event.package_id}/bid"
        both = await asyncio.gather(
            *(c.post(url, json=bid_body(), headers={"Idempotency-Key": "racing"}) for _ in range(2))
        )
    assert [r.status_code for r in both] == [200, 200], [r.text for r in both]
    assert both[0].json() == both[1].json()
    assert sorted(r.headers.get("Idempotent-Replayed", "") for r in both) == ["", "true"]
    assert await answers(service, event.package_id) == ["BidSubmitted"]
    stored = await service.pool.fetchrow("SELECT response FROM idempotency_keys WHERE key = 'racing'")
    assert AnswerAccepted.model_validate(json.loads(stored["response"])) == AnswerAccepted.model_validate(
        both[0].json()
    )


async def test_keys_past_their_retention_are_ignored_and_then_forgotten_by_the_housekeeping(in_memory):
    """A key older than idempotency.RETENTION no longer replays (the request is judged again),
    and the service's housekeeping (outbox.Relay.clean_up) deletes it, leaving fresh keys."""
    from services.runtime import idempotency

    service, event, tokens = await portal_market(in_memory, 1)
    [(_pid, token)] = tokens.items()
    async with client(service, token) as c:
        url = f"/me/offers/{event.package_id}/bid"
        assert (await c.post(url, json=bid_body(), headers={"Idempotency-Key": "old"})).status_code == 200
        await service.pool.execute(
            "UPDATE idempotency_keys SET created_at = now() - $1::interval WHERE key = 'old'",
            idempotency.RETENTION + dt.timedelta(minutes=1),
        )
        again = await c.post(url, json=bid_body(), headers={"Idempotency-Key": "old"})
        assert again.status_code == 409, "an expired key is not replayed: the bid is judged again"
    await service.pool.execute(
        "INSERT INTO idempotency_keys (scope, key, request_hash, response) VALUES ('another', 'fresh', 'h', '{}')"
    )
    async with service.pool.acquire() as conn:
        await idempotency.forget_expired(conn)  # what the relay's minute-by-minute clean_up runs
    keys = {r["key"] for r in await service.pool.fetch("SELECT key FROM idempotency_keys")}
    assert "old" not in keys and "fresh" in keys


async def test_a_request_waiting_for_its_key_gets_what_the_first_committed_meanwhile(in_memory):
    """The claim (services/runtime/migrations/0008) takes the key's lock and reads its response in
    one call: the read after the wait sees the response the first request committed meanwhile, so
    the second request's command never runs."""
    from services.runtime import idempotency

    service, _broker = await in_memory(build, "providers")
    claimed, release = asyncio.Event(), asyncio.Event()
    ran = []

    async def first() -> dict:
        ran.append("first")
        claimed.set()
        await release.wait()
        return {"n": 1}

    async def second() -> dict:
        ran.append("second")
        return {"n": 2}

    async def request(command):
        async with unit_of_work(service.pool) as uow:
            return await idempotency.once(uow, scope="s", key="k", request_hash="h", command=command)

    one = asyncio.create_task(request(first))
    await claimed.wait()
    two = asyncio.create_task(request(second))
    await asyncio.sleep(0.3)
    assert not two.done(), "the second request waits on the first's key"
    release.set()
    assert await one == ({"n": 1}, False)
    assert await two == ({"n": 1}, True)
    assert ran == ["first"]
