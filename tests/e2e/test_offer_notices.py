"""A provider's system answering offers and hearing how they closed, end to end (the services as
processes, real Kafka and PostgreSQL, a real HTTP receiver for the provider's webhook):

- a bid sent twice with one ``Idempotency-Key`` is one bid, and the same response twice;
- a provider that bid and lost is sent a signed ``offer_closed`` notice with its bid's rank (never a
  price), and the winner's notices list ``won``;
- an offer that closes while its webhook delivery is still being retried (the receiver is down)
  is never delivered again: the delivery is withdrawn, and only the closing notice is sent.

In Hinckley the two Primes are yew-care (the higher quality rating: it wins any round it bids in
at the rate) and juniper-care (a webhook adapter here, with a receiver that verifies signatures).
The module puts both back on their own adapters afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import uuid

import asyncpg
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.runtime import signing
from services.runtime.reference import load_framework
from services.simulator.synthetic import package_request
from tests.support import free_port, staff

ZONE = "hinckley"
WINNER, LOSER = "yew-care", "juniper-care"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def eventually(check, timeout: float = 60, every: float = 0.3):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{check.__name__} did not come true in {timeout} s")
        await asyncio.sleep(every)


class Receiver:
    """juniper-care's system: verifies every delivery; bids at the band rate on each offer while
    ``answering``; answers 503 to everything while ``down``."""

    def __init__(self, providers_url: str) -> None:
        self.secret, self.token, self.providers_url = "", "", providers_url
        self.port = free_port()
        self.down = False
        self.answering = True
        self.received: list[dict] = []  # verified deliveries: {"delivery_id", "body"}
        self.refused = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def receive(self, request: Request) -> Response:
        if self.down:
            return Response(status_code=503)
        body = await request.body()
        try:
            delivery_id = signing.verify(self.secret, dict(request.headers), body)
        except signing.SignatureError:
            self.refused += 1
            return Response(status_code=401)
        notice = json.loads(body)
        if delivery_id not in {r["delivery_id"] for r in self.received}:
            self.received.append({"delivery_id": delivery_id, "body": notice})
            if notice["kind"] == "offer" and self.answering:
                task = asyncio.create_task(self.bid(notice))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return Response(status_code=204)

    async def bid(self, offer: dict) -> None:
        async with httpx.AsyncClient(base_url=self.providers_url, timeout=10) as client:
            await client.post(
                offer["answer_with"]["bid"],
                headers=bearer(self.token) | {"Idempotency-Key": f"bid-{offer['package_id']}-{offer['offer_round']}"},
                json={"rate": offer["band_rate"], "earliest_start": offer["package"]["start_date"]},
            )

    def of_kind(self, kind: str, package_id: str) -> list[dict]:
        return [r for r in self.received if r["body"]["kind"] == kind and r["body"]["package_id"] == package_id]

    async def start(self) -> None:
        app = Starlette(routes=[Route("/hooks", self.receive, methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._server and self._task:
            self._server.should_exit = True
            await self._task


@pytest.fixture(scope="module")
async def market(stack, database_url):
    """yew-care on the portal, juniper-care on a webhook to a receiver; both with a credential and
    room for the test's packages. Put back on their own adapters afterwards."""
    providers = stack.url("providers")
    conn = await asyncpg.connect(database_url)
    try:
        original = {
            r["provider_id"]: json.loads(r["adapter"])
            for r in await conn.fetch(
                "SELECT provider_id, adapter FROM providers.providers WHERE provider_id = ANY($1)", [WINNER, LOSER]
            )
        }
    finally:
        await conn.close()
    receiver = Receiver(providers)
    tokens = {}
    async with httpx.AsyncClient(base_url=providers, timeout=10) as client:
        for pid in (WINNER, LOSER):
            issued = await client.post(f"/providers/{pid}/credentials", auth=staff("demo-admin"), json={})
            tokens[pid] = issued.json()["token"]
        chosen = await client.put(
            f"/providers/{LOSER}/adapter",
            auth=staff("demo-admin"),
            json=original[LOSER] | {"kind": "webhook", "webhook_url": receiver.url},
        )
        assert chosen.status_code == 200, chosen.text
        receiver.secret, receiver.token = chosen.json()["webhook_secret"], tokens[LOSER]
        r = await client.put(f"/providers/{WINNER}/adapter", auth=staff("demo-admin"), json={"kind": "portal"})
        assert r.status_code == 200, r.text
        for token in tokens.values():
            me = (await client.get("/me", headers=bearer(token))).json()
            room = float(me["committed_hours"]) + float(me["held_hours"]) + 40
            r = await client.patch("/me", headers=bearer(token), json={"weekly_capacity_hours": str(room)})
            assert r.status_code == 200, r.text
    await receiver.start()
    yield {"tokens": tokens, "receiver": receiver}
    await receiver.stop()
    async with httpx.AsyncClient(base_url=providers, timeout=10) as client:
        for pid, adapter in original.items():
            r = await client.put(f"/providers/{pid}/adapter", auth=staff("demo-admin"), json=adapter)
            assert r.status_code == 200, r.text


def request_in_zone(index: int) -> dict:
    body = package_request(random.Random(index), load_framework(), ZONE, index=index, urgency="community")
    return body | {
        "band": "urban",
        "needs": ["personal_care"],
        "hours_per_week": "7.00",
        "visits": {"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7},
        "start_date": (dt.date.today() + dt.timedelta(days=3)).isoformat(),
    }


async def offered_to_both(client: httpx.AsyncClient, stack, index: int) -> str:
    r = await client.post(f"{stack.url('brokerage')}/packages", json=request_in_zone(index), auth=staff())
    assert r.status_code == 201, r.text
    package_id = r.json()["package_id"]
    package = (await client.get(f"{stack.url('brokerage')}/packages/{package_id}", auth=staff())).json()
    assert set(package["offer_rounds"][0]["provider_ids"]) == {WINNER, LOSER}, package["offer_rounds"][0]
    return package_id


async def offer_status(client: httpx.AsyncClient, stack, token: str, package_id: str) -> str | None:
    offers = (await client.get(f"{stack.url('providers')}/me/offers?status=all", headers=bearer(token))).json()
    return next((o["status"] for o in offers if o["package_id"] == package_id), None)


@pytest.fixture(scope="module")
async def lost_to_a_better_bid(stack, market):
    """Both Primes bid; yew-care's bid is sent twice with one Idempotency-Key; yew-care wins."""
    receiver: Receiver = market["receiver"]
    tokens = market["tokens"]
    async with httpx.AsyncClient(timeout=10) as client:
        package_id = await offered_to_both(client, stack, 5101)

        async def loser_bid():
            return await offer_status(client, stack, tokens[LOSER], package_id) == "bid"

        await eventually(loser_bid)  # its receiver got the offer and bid through the API
        offer = next(
            o
            for o in (await client.get(f"{stack.url('providers')}/me/offers", headers=bearer(tokens[WINNER]))).json()
            if o["package_id"] == package_id
        )
        url = f"{stack.url('providers')}{offer['answer_with']['bid']}"
        body = {"rate": offer["band_rate"], "earliest_start": offer["package"]["start_date"]}
        key = {"Idempotency-Key": str(uuid.uuid4())}
        first = await client.post(url, json=body, headers=bearer(tokens[WINNER]) | key)
        again = await client.post(url, json=body, headers=bearer(tokens[WINNER]) | key)
        reused = await client.post(url, json=body | {"rate": "1.00"}, headers=bearer(tokens[WINNER]) | key)

        async def placed():
            p = (await client.get(f"{stack.url('brokerage')}/packages/{package_id}", auth=staff())).json()
            return p if p["status"] == "placed" else None

        package = await eventually(placed)

        async def told_it_lost():
            return receiver.of_kind("offer_closed", package_id)

        [notice] = await eventually(told_it_lost)
        winners_notices = (
            await client.get(f"{stack.url('providers')}/me/notices", headers=bearer(tokens[WINNER]))
        ).json()
    return {
        "notice": notice,
        "winners_notices": winners_notices,
        "package_id": package_id,
        "package": package,
        "first": first,
        "again": again,
        "reused": reused,
        "receiver": receiver,
    }


async def test_a_bid_sent_twice_with_one_key_is_one_bid_with_one_response(lost_to_a_better_bid):
    first, again, reused = (lost_to_a_better_bid[k] for k in ("first", "again", "reused"))
    assert first.status_code == 200, first.text
    assert again.status_code == 200 and again.json() == first.json(), again.text
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert reused.status_code == 422 and reused.json()["fields"][0]["field"] == "Idempotency-Key", reused.text
    package = lost_to_a_better_bid["package"]
    assert package["provider_id"] == WINNER
    winners_answers = [a for r in package["offer_rounds"] for a in r["answers"] if a["provider_id"] == WINNER]
    assert len(winners_answers) == 1 and winners_answers[0]["kind"] == "bid"


async def test_the_loser_is_told_it_lost_with_its_rank_and_never_a_price(lost_to_a_better_bid):
    notice = lost_to_a_better_bid["notice"]["body"]
    package = lost_to_a_better_bid["package"]
    assert notice["provider_id"] == LOSER and notice["package_id"] == package["package_id"]
    assert (notice["outcome"], notice["reason"], notice["rank"], notice["ranked_bids"]) == (
        "lost",
        "placed_elsewhere",
        2,
        2,
    )
    assert set(notice) == {
        "kind",
        "notice_id",
        "package_id",
        "offer_round",
        "provider_id",
        "outcome",
        "reason",
        "rank",
        "ranked_bids",
        "closed_at",
    }, "no rate, no other provider"
    assert WINNER not in json.dumps(notice)
    mine = [n for n in lost_to_a_better_bid["winners_notices"] if n["package_id"] == package["package_id"]]
    assert [(n["outcome"], n["reason"]) for n in mine] == [("won", "placed_with_you")]
    assert lost_to_a_better_bid["receiver"].refused == 0


async def test_an_offer_that_closed_is_never_delivered_again(stack, market, lost_to_a_better_bid):
    """juniper-care's receiver is down; yew-care bids and, ranked above juniper-care whatever it
    might bid, wins at once: juniper-care's offer closes with its delivery still being retried."""
    receiver: Receiver = market["receiver"]
    tokens = market["tokens"]
    providers = stack.url("providers")
    receiver.down = True
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            package_id = await offered_to_both(client, stack, 5102)

            async def offer_delivery(kind: str = "offer"):
                rows = (await client.get(f"{providers}/me/deliveries", headers=bearer(tokens[LOSER]))).json()
                return next((d for d in rows if d["package_id"] == package_id and d["kind"] == kind), None)

            async def retried_twice():
                d = await offer_delivery()
                return d if d and d["attempts"] >= 2 else None

            await eventually(retried_twice)
            offer = next(
                o
                for o in (await client.get(f"{providers}/me/offers", headers=bearer(tokens[WINNER]))).json()
                if o["package_id"] == package_id
            )
            r = await client.post(
                f"{providers}{offer['answer_with']['bid']}",
                headers=bearer(tokens[WINNER]),
                json={"rate": offer["band_rate"], "earliest_start": offer["package"]["start_date"]},
            )
            assert r.status_code == 200, r.text

            async def withdrawn():
                d = await offer_delivery()
                return d if d["status"] == "withdrawn" else None

            closed_delivery = await eventually(withdrawn)

            async def notice_retried_twice():
                d = await offer_delivery("offer_closed")
                return d if d and d["attempts"] >= 2 else None

            await eventually(notice_retried_twice)  # the loop has run on since the offer closed
            assert await offer_delivery() == closed_delivery, "the closed offer was not attempted again"
            status = (await client.get(f"{providers}/me/offers?status=all", headers=bearer(tokens[LOSER]))).json()
            assert next(o["status"] for o in status if o["package_id"] == package_id) == "closed"
            receiver.down = False

            async def told_it_closed():
                return receiver.of_kind("offer_closed", package_id)

            [notice] = await eventually(told_it_closed, timeout=120)
            assert (notice["body"]["outcome"], notice["body"]["reason"]) == ("closed", "placed_elsewhere")
            assert receiver.of_kind("offer", package_id) == [], "the offer itself never went out again"
            delivered = await offer_delivery("offer_closed")
            assert delivered["status"] == "delivered" and delivered["delivery_id"] == notice["delivery_id"]
    finally:
        receiver.down = False
