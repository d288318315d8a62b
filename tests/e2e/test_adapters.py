"""Providers answering through their own adapters, end to end (three service processes, real
Kafka and PostgreSQL, and a real HTTP receiver standing in for a provider's rostering system):

- a webhook adapter gets each offer POSTed, signed; while its receiver is down the delivery is
  retried with backoff and its status shows the failures; once up, the receiver verifies the
  signature and answers through the bid API;
- portal providers list their offers under /me/offers and decline them with a reason code;
- no provider can read or answer another's offers, packages or person; only the winner gets the
  person's details, and each disclosure is in the brokerage's audit log;
- credentials are rotatable and revocable; admin operations need the admin token.

The module leaves the providers it touched on their automatic adapters again, so the batch in
test_placement_flow (which also scans every Kafka message of the session) runs as before.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random

import asyncpg
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.runtime import signing
from services.runtime.reference import load_framework, load_provider_seed
from services.simulator.synthetic import package_request
from tests.support import free_port, personal_values, staff

ZONE = "melton"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def eventually(check, timeout: float = 60, every: float = 0.3):
    """Poll ``check()`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{check.__name__} did not come true in {timeout} s")
        await asyncio.sleep(every)


class Receiver:
    """A provider's rostering system: verifies each delivery's signature, drops replays, and
    answers the offer through the provider API with a bid."""

    def __init__(self, secret: str, providers_url: str, token: str) -> None:
        self.secret, self.providers_url, self.token = secret, providers_url, token
        self.port = free_port()
        self.bodies: list[bytes] = []
        self.delivery_ids: list[str] = []
        self.refused = 0
        self.answers: list[int] = []
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None
        self._answering: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/offers"

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        try:
            delivery_id = signing.verify(self.secret, dict(request.headers), body)
        except signing.SignatureError:
            self.refused += 1
            return Response(status_code=401)
        if delivery_id in self.delivery_ids:
            return Response(status_code=200)  # a replay or a retry of one already handled
        self.delivery_ids.append(delivery_id)
        self.bodies.append(body)
        if json.loads(body)["kind"] != "offer":
            return Response(status_code=200)  # a closing notice (decision 0093): nothing to answer
        task = asyncio.create_task(self.answer(json.loads(body)))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)
        return Response(status_code=202)

    async def answer(self, notice: dict) -> None:
        async with httpx.AsyncClient(base_url=self.providers_url, timeout=10) as client:
            r = await client.post(
                notice["answer_with"]["bid"],
                headers=bearer(self.token),
                json={"rate": notice["band_rate"], "earliest_start": notice["package"]["start_date"]},
            )
            self.answers.append(r.status_code)

    async def start(self) -> None:
        app = Starlette(routes=[Route("/offers", self.receive, methods=["POST"])])
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
    """Every provider of the zone switched to the portal, except one prime on a webhook adapter;
    each with a credential. Restored to their own adapters afterwards."""
    providers = stack.url("providers")
    seed = [p for p in load_provider_seed() if ZONE in p["zones"] and p["status"] == "active"]
    webhook = next(p for p in seed if p["tier"] == "prime" and "personal_care" in p["skills"] and "urban" in p["bands"])
    conn = await asyncpg.connect(database_url)
    try:
        original = {
            r["provider_id"]: json.loads(r["adapter"])
            for r in await conn.fetch(
                "SELECT provider_id, adapter FROM providers.providers WHERE provider_id = ANY($1)",
                [p["provider_id"] for p in seed],
            )
        }
    finally:
        await conn.close()
    tokens, credential_ids = {}, {}
    async with httpx.AsyncClient(base_url=providers, timeout=10) as client:
        for p in seed:
            issued = (
                await client.post(
                    f"/providers/{p['provider_id']}/credentials", auth=staff("demo-admin"), json={"label": "test"}
                )
            ).json()
            tokens[p["provider_id"]], credential_ids[p["provider_id"]] = issued["token"], issued["credential_id"]
        receiver = Receiver("", providers, tokens[webhook["provider_id"]])
        chosen = (
            await client.put(
                f"/providers/{webhook['provider_id']}/adapter",
                auth=staff("demo-admin"),
                json={"kind": "webhook", "webhook_url": receiver.url},
            )
        ).json()
        receiver.secret = chosen["webhook_secret"]
        for p in seed:
            if p is not webhook:
                r = await client.put(
                    f"/providers/{p['provider_id']}/adapter", auth=staff("demo-admin"), json={"kind": "portal"}
                )
                assert r.status_code == 200, r.text
        # Room for the test's package, set by each provider itself (so that the other prime is offered it too).
        for token in tokens.values():
            me = (await client.get("/me", headers=bearer(token))).json()
            r = await client.patch(
                "/me",
                headers=bearer(token),
                json={"weekly_capacity_hours": str(float(me["committed_hours"]) + float(me["held_hours"]) + 40)},
            )
            assert r.status_code == 200, r.text
    yield {
        "webhook": webhook["provider_id"],
        "portal": [p["provider_id"] for p in seed if p is not webhook],
        "tokens": tokens,
        "credential_ids": credential_ids,
        "receiver": receiver,
    }
    await receiver.stop()
    async with httpx.AsyncClient(base_url=providers, timeout=10) as client:
        for provider_id, adapter in original.items():
            r = await client.put(f"/providers/{provider_id}/adapter", auth=staff("demo-admin"), json=adapter)
            assert r.status_code == 200, r.text


def request_in_zone(index: int) -> dict:
    body = package_request(random.Random(index), load_framework(), ZONE, index=index, urgency="community")
    body |= {
        "band": "urban",
        "needs": ["personal_care"],
        "hours_per_week": "7.00",
        "visits": {"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7},
        "start_date": (dt.date.today() + dt.timedelta(days=3)).isoformat(),
    }
    return body


@pytest.fixture(scope="module")
async def placed(stack, market):
    """One package offered while the webhook receiver is down; it is placed once the receiver is up."""
    providers, brokerage = stack.url("providers"), stack.url("brokerage")
    receiver: Receiver = market["receiver"]
    portal_views: list[str] = []
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{brokerage}/packages", json=request_in_zone(4242), auth=staff())
        assert r.status_code == 201, r.text
        package_id = r.json()["package_id"]

        async def failed_twice():
            rows = (
                await client.get(f"{providers}/providers/{market['webhook']}/deliveries", auth=staff("demo-admin"))
            ).json()
            mine = [d for d in rows if d["package_id"] == package_id and d["kind"] == "offer"]
            return mine if mine and mine[0]["attempts"] >= 2 else None

        while_down = (await eventually(failed_twice))[0]

        # Portal staff see the offer with its deadline, and decline it with a reason code.
        async def declined_by_portal():
            for provider_id in market["portal"]:
                r = await client.get(f"{providers}/me/offers", headers=bearer(market["tokens"][provider_id]))
                portal_views.append(r.text)
                for offer in r.json():
                    d = await client.post(
                        f"{providers}/me/offers/{offer['package_id']}/decline",
                        headers=bearer(market["tokens"][provider_id]),
                        json={"reason": "capacity"},
                    )
                    assert d.status_code == 200, d.text
            return True

        first_round = (await client.get(f"{brokerage}/packages/{package_id}", auth=staff())).json()["offer_rounds"][0]
        offered_portal = [p for p in first_round["provider_ids"] if p in market["portal"]]

        async def portal_has_the_offer():
            for provider_id in offered_portal:
                r = await client.get(f"{providers}/me/offers", headers=bearer(market["tokens"][provider_id]))
                if package_id not in {o["package_id"] for o in r.json()}:
                    return None
            return True

        # The offer reaches the portal inboxes through Kafka: wait for it there before the staff
        # answer (the webhook's bid, once the receiver is up, may close the round at once).
        await eventually(portal_has_the_offer)
        await declined_by_portal()
        await receiver.start()

        async def settled():
            package = (await client.get(f"{brokerage}/packages/{package_id}", auth=staff())).json()
            await declined_by_portal()  # a later tier may reach the portal providers too
            return package if package["status"] in ("placed", "unplaced") else None

        package = await eventually(settled, timeout=90)
        delivered = (
            await client.get(f"{providers}/me/deliveries", headers=bearer(market["tokens"][market["webhook"]]))
        ).json()
    return {"package": package, "while_down": while_down, "delivered": delivered, "portal_views": portal_views}


async def test_a_webhook_delivery_is_retried_while_the_receiver_is_down_and_its_status_shows_it(placed, market, stack):
    metrics = httpx.get(f"{stack.internal_url('providers')}/metrics").text
    assert 'homecare_webhook_deliveries{status="failed"}' in metrics
    down = placed["while_down"]
    assert down["status"] == "pending" and down["attempts"] >= 2 and down["last_error"] and down["delivered_at"] is None
    # The offer's delivery (the package's closing notice to the winner is a delivery of its own).
    mine = next(
        d for d in placed["delivered"] if d["package_id"] == placed["package"]["package_id"] and d["kind"] == "offer"
    )
    assert mine["status"] == "delivered" and mine["attempts"] > down["attempts"] and mine["delivered_at"]
    assert mine["delivery_id"] == down["delivery_id"], "a retry is the same delivery (receivers drop duplicates by id)"


async def test_the_receiver_verified_every_delivery_and_answered_through_the_bid_api(placed, market):
    receiver: Receiver = market["receiver"]
    assert receiver.bodies and receiver.refused == 0
    assert 200 in receiver.answers
    package = placed["package"]
    assert package["status"] == "placed" and package["provider_id"] == market["webhook"]
    answers = [a for r in package["offer_rounds"] for a in r["answers"]]
    assert {"provider_id": market["webhook"], "adapter": "webhook", "kind": "bid"}.items() <= next(
        a for a in answers if a["provider_id"] == market["webhook"]
    ).items()
    portal = [a for a in answers if a["provider_id"] in market["portal"]]
    assert portal and all(
        a["adapter"] == "portal" and a["kind"] == "decline" and a["reason"] == "capacity" for a in portal
    )


async def test_a_delivery_signed_with_another_secret_is_refused_by_the_receiver(market):
    receiver: Receiver = market["receiver"]
    body = b'{"kind": "offer"}'
    async with httpx.AsyncClient() as client:
        r = await client.post(receiver.url, content=body, headers=signing.signed_headers("not-the-secret", "x-1", body))
    assert r.status_code == 401


async def test_only_the_winner_gets_the_person_and_each_disclosure_is_audited(placed, market, stack):
    providers, brokerage = stack.url("providers"), stack.url("brokerage")
    package_id = placed["package"]["package_id"]
    winner, loser = market["webhook"], market["portal"][0]
    async with httpx.AsyncClient(base_url=providers, timeout=10) as client:
        person = await client.get(f"/me/packages/{package_id}/person", headers=bearer(market["tokens"][winner]))
        assert person.status_code == 200, person.text
        truth = (await client.get(f"{brokerage}/packages/{package_id}/person", auth=staff("demo-broker"))).json()
        assert person.json()["full_name"] == truth["full_name"] and person.json()["care_notes"] == truth["care_notes"]
        narrow = await client.get(
            f"/me/packages/{package_id}/person",
            params={"fields": ["full_name", "phone"]},
            headers=bearer(market["tokens"][winner]),
        )
        assert set(narrow.json()) == {"package_id", "full_name", "phone"}
        # A provider that was offered it and declined: 403; the package is not among its own.
        r = await client.get(f"/me/packages/{package_id}/person", headers=bearer(market["tokens"][loser]))
        assert r.status_code in (403, 404) and truth["full_name"] not in r.text
        mine = (await client.get("/me/packages", headers=bearer(market["tokens"][loser]))).json()
        assert package_id not in {p["package_id"] for p in mine}
        assert package_id in {
            p["package_id"] for p in (await client.get("/me/packages", headers=bearer(market["tokens"][winner]))).json()
        }
        # Without a credential, or with a forged one: 401.
        assert (await client.get(f"/me/packages/{package_id}/person")).status_code == 401
        forged = market["tokens"][winner][:-4] + "abcd"
        assert (await client.get(f"/me/packages/{package_id}/person", headers=bearer(forged))).status_code == 401
        log = (await client.get(f"{brokerage}/packages/{package_id}/disclosures", auth=staff("demo-manager"))).json()
    # The provider's two reads, and the broker's read (for the comparison above) under the broker's name.
    assert [(d["reader"], d["provider_id"], d["credential_id"], d["staff_user"]) for d in log] == [
        ("provider", winner, market["credential_ids"][winner], None),
        ("staff", None, None, "demo-broker"),
        ("provider", winner, market["credential_ids"][winner], None),
    ]
    assert sorted(log[2]["fields"]) == ["full_name", "phone"] and "care_notes" in log[0]["fields"]
    assert all(d["disclosed_at"] for d in log)


async def test_the_disclosure_log_is_append_only(placed, database_url):
    conn = await asyncpg.connect(database_url)
    try:
        # Even the administrator meets the append-only triggers on the audit table itself...
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE audit.disclosures SET provider_id = 'someone-else'")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM audit.disclosures")
        # ...and the brokerage's view of it carries only the right to add (tests/integration/test_audit_log.py).
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM brokerage.disclosures")
        assert await conn.fetchval("SELECT count(*) FROM audit.disclosures") > 0
    finally:
        await conn.close()


async def test_a_provider_cannot_read_or_answer_another_providers_offers(placed, market, stack):
    providers = stack.url("providers")
    package_id = placed["package"]["package_id"]
    async with httpx.AsyncClient(base_url=providers, timeout=10) as client:
        outsider = next(
            p["provider_id"] for p in load_provider_seed() if ZONE not in p["zones"] and p["status"] == "active"
        )
        token = (await client.post(f"/providers/{outsider}/credentials", auth=staff("demo-admin"), json={})).json()[
            "token"
        ]
        offers = (await client.get("/me/offers", params={"status": "all"}, headers=bearer(token))).json()
        assert package_id not in {o["package_id"] for o in offers}
        assert all(o["provider_id"] == outsider for o in offers)
        for action, body in (
            ("bid", {"rate": "18.00", "earliest_start": dt.date.today().isoformat()}),
            ("decline", {"reason": "price"}),
        ):
            r = await client.post(f"/me/offers/{package_id}/{action}", headers=bearer(token), json=body)
            assert r.status_code == 404, r.text
        assert (await client.get(f"/me/packages/{package_id}/person", headers=bearer(token))).status_code == 404
        # Another provider's deliveries, registry operations and offers list are not for providers.
        assert (
            await client.get(f"/providers/{market['webhook']}/deliveries", headers=bearer(token))
        ).status_code == 401
        assert (await client.get(f"/providers/{market['webhook']}/offers", headers=bearer(token))).status_code == 401
        assert (
            await client.post(f"/providers/{outsider}/credentials", headers=bearer(token), json={})
        ).status_code == 401
        # Its own answered offers carry its answers only, never another provider's bid.
        winner_view = (
            await client.get(
                "/me/offers", params={"status": "answered"}, headers=bearer(market["tokens"][market["webhook"]])
            )
        ).json()
        assert all(o["provider_id"] == market["webhook"] for o in winner_view)
        # An offer already answered cannot be answered again.
        again = await client.post(
            f"/me/offers/{package_id}/decline",
            headers=bearer(market["tokens"][market["webhook"]]),
            json={"reason": "other", "text": "changed our mind"},
        )
        assert again.status_code == 409 and again.json()["fields"][0]["field"] == "status", again.text


async def test_decline_reasons_come_from_the_fixed_list_and_other_needs_text(placed, market, stack):
    token = market["tokens"][market["portal"][0]]
    package_id = placed["package"]["package_id"]
    async with httpx.AsyncClient(base_url=stack.url("providers"), timeout=10) as client:
        r = await client.post(f"/me/offers/{package_id}/decline", headers=bearer(token), json={"reason": "weather"})
        assert r.status_code == 422 and "reason" in r.text
        r = await client.post(f"/me/offers/{package_id}/decline", headers=bearer(token), json={"reason": "other"})
        assert r.status_code == 422 and "text is required" in r.text


async def test_credentials_rotate_and_revoke(market, stack):
    provider_id = market["portal"][-1]
    async with httpx.AsyncClient(base_url=stack.url("providers"), timeout=10) as client:
        old = market["tokens"][provider_id]
        assert (await client.get("/me", headers=bearer(old))).json()["provider_id"] == provider_id
        rotated = (
            await client.post(f"/providers/{provider_id}/credentials", auth=staff("demo-admin"), json={"replace": True})
        ).json()
        assert market["credential_ids"][provider_id] in rotated["revoked"]
        assert (await client.get("/me", headers=bearer(old))).status_code == 401
        assert (await client.get("/me", headers=bearer(rotated["token"]))).status_code == 200
        listed = (await client.get(f"/providers/{provider_id}/credentials", auth=staff("demo-admin"))).json()
        assert all("secret" not in json.dumps(c).lower() and rotated["token"] not in json.dumps(c) for c in listed)
        r = await client.post(
            f"/providers/{provider_id}/credentials/{rotated['credential_id']}/revoke", auth=staff("demo-admin")
        )
        assert r.status_code == 200
        assert (await client.get("/me", headers=bearer(rotated["token"]))).status_code == 401
        market["tokens"][provider_id] = (
            await client.post(f"/providers/{provider_id}/credentials", auth=staff("demo-admin"), json={})
        ).json()["token"]
        assert (await client.post(f"/providers/{provider_id}/credentials", json={})).status_code == 401
        assert (
            await client.post(f"/providers/{provider_id}/credentials", headers=bearer("wrong"), json={})
        ).status_code == 401


async def test_a_provider_keeps_its_details_current_and_zone_changes_need_approval(market, stack, database_url):
    provider_id = market["portal"][0]
    token = market["tokens"][provider_id]
    providers, brokerage = stack.url("providers"), stack.url("brokerage")
    async with httpx.AsyncClient(base_url=providers, timeout=10) as client:
        me = (await client.get("/me", headers=bearer(token))).json()
        too_low = await client.patch("/me", headers=bearer(token), json={"weekly_capacity_hours": "0"})
        if float(me["committed_hours"]) > 0:
            assert too_low.status_code == 409 and too_low.json()["fields"][0]["field"] == "weekly_capacity_hours"
        else:
            assert too_low.status_code == 200
        r = await client.patch(
            "/me",
            headers=bearer(token),
            json={
                "weekly_capacity_hours": str(float(me["weekly_capacity_hours"]) + 5),
                "call_times": ["morning", "tea", "bed"],
            },
        )
        assert r.status_code == 200 and r.json()["adapter"]["call_times"] == ["morning", "tea", "bed"]
        assert r.json()["revision"] > me["revision"]

        async def brokerage_knows():
            view = {
                p["provider_id"]: p for p in (await client.get(f"{brokerage}/reference/providers", auth=staff())).json()
            }
            return float(view[provider_id]["weekly_capacity_hours"]) == float(me["weekly_capacity_hours"]) + 5

        await eventually(brokerage_knows)
        zones = me["zones"] + ["bottesford"]
        asked = await client.post(
            "/me/change-requests", headers=bearer(token), json={"zones": zones, "bands": me["bands"]}
        )
        assert asked.status_code == 201, asked.text
        pending = await client.post(
            "/me/change-requests", headers=bearer(token), json={"zones": zones, "bands": me["bands"]}
        )
        assert pending.status_code == 409 and pending.json()["fields"][0]["field"] == "status", pending.text
        assert (await client.get("/me", headers=bearer(token))).json()["zones"] == me["zones"], (
            "nothing changes before approval"
        )
        # A provider cannot approve its own request.
        request_id = asked.json()["request_id"]
        assert (
            await client.post(f"/change-requests/{request_id}/approve", headers=bearer(token), json={})
        ).status_code == 401
        approved = await client.post(
            f"/change-requests/{request_id}/approve",
            auth=staff("demo-admin"),
            json={"reason": "covers the area now"},
        )
        assert approved.status_code == 200 and approved.json()["status"] == "approved"
        assert (await client.get("/me", headers=bearer(token))).json()["zones"] == zones
        # Put the market back as it was for the other tests.
        back = await client.post(
            "/me/change-requests", headers=bearer(token), json={"zones": me["zones"], "bands": me["bands"]}
        )
        await client.post(f"/change-requests/{back.json()['request_id']}/approve", auth=staff("demo-admin"), json={})
        assert (await client.get("/me", headers=bearer(token))).json()["zones"] == me["zones"]


async def test_no_personal_detail_in_any_webhook_body_or_portal_listing(placed, market, database_url):
    secrets = await personal_values(database_url)
    assert secrets
    receiver: Receiver = market["receiver"]
    for blob in [b.decode() for b in receiver.bodies] + placed["portal_views"]:
        leaked = [s for s in secrets if s in blob]
        assert not leaked, f"personal details {leaked} sent to a provider before the award"


def test_the_cli_issues_lists_and_revokes_credentials(stack):
    """The ``homecare providers credentials`` commands, run as a process (as an administrator runs
    them; in-process, the command's logging would keep the test's captured stdout after it closed)."""
    import os
    import subprocess
    import sys

    from tests.support import ROOT

    def homecare(*args: str, user: str = "demo-admin") -> subprocess.CompletedProcess[str]:
        env = os.environ | {"HOMECARE_CLI_USER": user, "PROVIDERS_URL": stack.url("providers")}
        command = [sys.executable, "-m", "services.cli.main", "providers", "credentials", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)

    issued = homecare("issue", "bluebell-care", "--label", "cli test")
    assert issued.returncode == 0, issued.stderr
    credential_id, token = issued.stdout.split()[1], issued.stdout.strip().splitlines()[-1]
    assert token.startswith(f"hcp_{credential_id}_")
    assert httpx.get(f"{stack.url('providers')}/me", headers=bearer(token)).json()["provider_id"] == "bluebell-care"
    listed = homecare("list", "bluebell-care")
    assert credential_id in listed.stdout and token not in listed.stdout
    assert homecare("revoke", "bluebell-care", credential_id).returncode == 0
    assert httpx.get(f"{stack.url('providers')}/me", headers=bearer(token)).status_code == 401
    assert homecare("revoke", "bluebell-care", credential_id).returncode == 1
    # Operations may not see credentials.
    assert homecare("list", "bluebell-care", user="demo-ops").returncode == 1
