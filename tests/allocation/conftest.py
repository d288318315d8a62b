"""The framework's rules on the real Kafka and PostgreSQL, the three services as processes, with
short offer windows and a small market of the tests' own in one zone.

The market's providers use the portal adapter (nobody answers for them automatically): the tests
are their staff, answering through the provider API with each provider's own credential. The
reference data is a copy of the framework's, in a folder of the stack's own, so a test can
change it under the running services.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import shutil
import uuid
from decimal import Decimal

import httpx
import pytest
import yaml

from schemas.vocabulary import CareNeed
from services.runtime.db import provision
from services.runtime.kafka import read_topic
from services.runtime.reference import DEFAULT_DIR, load_framework
from services.simulator.synthetic import package_request
from tests.support import assert_services_agree, drop_database, drop_namespace, event_of, staff, start_stack, stop_stack

ZONE = "melton"
NEIGHBOUR = "bottesford"  # adjacent to melton
WINDOW_SECONDS = 4


def provider(pid: str, tier: str, zone: str, cqc: str) -> dict:
    return dict(
        provider_id=pid,
        name=pid.replace("-", " ").title(),
        tier=tier,
        status="active",
        zones=[zone],
        bands=["urban", "fringe", "rural", "isolated"],
        skills=[need.value for need in CareNeed],
        double_handed=True,
        cqc_rating=cqc,
        local_risk="low",
        hand_backs_12m=0,
        weekly_capacity_hours=500,
        committed_hours=0,
        adapter={"kind": "portal"},
    )


MARKET = {
    "prime_best": provider("melton-prime-outstanding", "prime", ZONE, "outstanding"),
    "prime_good": provider("melton-prime-good", "prime", ZONE, "good"),
    "supp": provider("melton-supplementary", "supplementary", ZONE, "good"),
    "neighbour": provider("bottesford-neighbour", "supplementary", NEIGHBOUR, "good"),
}


@pytest.fixture(scope="package")
def reference_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    shutil.copy(DEFAULT_DIR / "framework.yaml", folder / "framework.yaml")
    shutil.copy(DEFAULT_DIR / "delegation.yaml", folder / "delegation.yaml")
    (folder / "providers.yaml").write_text(yaml.safe_dump({"providers": list(MARKET.values())}))
    return folder


@pytest.fixture(scope="package")
async def alloc(infra, namespace, artifacts, reference_dir, identity):
    """A stack of its own (database and topic namespace) with short windows and the small market."""
    ns = f"{namespace}-alloc"
    name = f"homecare_{ns.replace('-', '_')}"
    url = infra.database_url(name)
    await provision(url)
    stack = start_stack(
        url,
        infra.kafka,
        ns,
        artifacts / "allocation-logs",
        HOMECARE_REFERENCE_DIR=str(reference_dir),
        BROKERAGE_OFFER_WINDOW_HOSPITAL_DISCHARGE_SECONDS=str(WINDOW_SECONDS),
        BROKERAGE_OFFER_WINDOW_REABLEMENT_STEP_DOWN_SECONDS=str(WINDOW_SECONDS),
        BROKERAGE_OFFER_WINDOW_COMMUNITY_SECONDS=str(WINDOW_SECONDS),
        BROKERAGE_REOFFER_INTERVAL_SECONDS="3",
        BROKERAGE_TIMER_POLL_SECONDS="0.2",
    )
    market = Market(stack, infra.kafka, ns, reference_dir)
    market.database_url = url
    await market.wait_for_registry()
    await market.sign_in()
    yield market
    try:
        # After the framework's rules have run their course: the services agree on who holds each
        # package and on each provider's committed hours (issue 14, item 5).
        await assert_services_agree(url, seed=list(MARKET.values()))
    finally:
        stop_stack(stack)
    await drop_database(infra, name)
    await drop_namespace(infra, ns)


class Market:
    """The tests' hands on the stack: the broker's HTTP calls, the providers' answers, the record.

    The brokerage team's calls are the demo broker's (who requests every package); approvals of
    above-rate bids are the head of service's (no limit, and not the requester); the providers
    service's registry operations are the council administrator's."""

    def __init__(self, stack, kafka: str, namespace: str, reference_dir):
        self.stack, self.kafka, self.namespace = stack, kafka, namespace
        self.reference_dir = reference_dir
        self.ids = {k: v["provider_id"] for k, v in MARKET.items()}
        self.tokens: dict[str, str] = {}
        self.rng = random.Random(7)
        self.index = 0
        self.database_url = ""  # the stack's own database

    def url(self, service: str = "brokerage") -> str:
        return self.stack.url(service)

    async def wait_for_registry(self) -> None:
        """The brokerage knows the market once it has offered to it: wait until it lists every provider."""
        async with httpx.AsyncClient(auth=staff()) as client:
            for _ in range(150):
                zones = (await client.get(f"{self.url()}/reference/providers")).json()
                known = {p["provider_id"] for p in zones} if isinstance(zones, list) else set()
                if set(self.ids.values()) <= known:
                    return
                await asyncio.sleep(0.2)
        raise TimeoutError("the brokerage never saw the test market's providers")

    async def request(self, urgency: str = "community", *, via: str = "brokerage") -> uuid.UUID:
        self.index += 1
        body = package_request(self.rng, load_framework(self.reference_dir), ZONE, index=self.index, urgency=urgency)
        async with httpx.AsyncClient(auth=staff()) as client:
            response = await client.post(f"{self.url(via)}/packages", json=body)
        assert response.status_code == 201, response.text
        return uuid.UUID(response.json()["package_id"])

    async def package(self, package_id: uuid.UUID) -> dict:
        async with httpx.AsyncClient(auth=staff()) as client:
            return (await client.get(f"{self.url()}/packages/{package_id}")).json()

    async def until(self, package_id: uuid.UUID, check, timeout: float = 40) -> dict:
        """Poll the package until ``check(package)`` holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            package = await self.package(package_id)
            if check(package):
                return package
            if loop.time() > deadline:
                raise AssertionError(f"package {package_id} never got there; it is {package.get('status')}: {package}")
            await asyncio.sleep(0.2)

    async def offered_round(self, package_id: uuid.UUID, offer_round: int) -> dict:
        package = await self.until(package_id, lambda p: p["current_round"] >= offer_round)
        return next(r for r in package["offer_rounds"] if r["offer_round"] == offer_round)

    async def sign_in(self) -> None:
        """A provider API credential for each provider, issued by the brokerage team."""
        for who, provider_id in self.ids.items():
            issued = await self.post(
                f"/providers/{provider_id}/credentials", {"label": "allocation tests"}, service="providers"
            )
            assert issued.status_code == 201, issued.text
            self.tokens[who] = issued.json()["token"]

    async def bid(self, package_id: uuid.UUID, offer_round: int, who: str, rate: str) -> httpx.Response:
        return await self._answer(
            package_id, offer_round, who, "bid", {"rate": rate, "earliest_start": dt.date.today().isoformat()}
        )

    async def decline(
        self, package_id: uuid.UUID, offer_round: int, who: str, reason: str = "capacity"
    ) -> httpx.Response:
        return await self._answer(package_id, offer_round, who, "decline", {"reason": reason, "text": "test"})

    async def _answer(self, package_id, offer_round, who, kind, body, timeout: float = 20) -> httpx.Response:
        """Answer as the provider's staff in the portal, once the offer of that round is in its inbox."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(base_url=self.url("providers"), headers=headers) as client:
            while True:
                offers = (await client.get("/me/offers", params={"status": "all"})).json()
                if any(o["package_id"] == str(package_id) and o["offer_round"] >= offer_round for o in offers):
                    return await client.post(f"/me/offers/{package_id}/{kind}", json=body)
                if loop.time() > deadline:
                    raise AssertionError(f"{who} never received round {offer_round} of {package_id}")
                await asyncio.sleep(0.1)

    async def post(
        self, path: str, body: dict, service: str = "brokerage", *, as_user: str | None = None
    ) -> httpx.Response:
        """A staff call: the broker's on the brokerage (the head of service's for an approval), the
        council administrator's on the providers service; ``as_user`` chooses another."""
        who = as_user or (
            "demo-admin" if service == "providers" else "demo-head" if path.endswith("/approve") else "demo-broker"
        )
        async with httpx.AsyncClient(auth=staff(who)) as client:
            return await client.post(f"{self.url(service)}{path}", json=body)

    async def provider(self, who: str) -> dict:
        async with httpx.AsyncClient(auth=staff()) as client:
            return (await client.get(f"{self.url('providers')}/providers/{self.ids.get(who, who)}")).json()

    async def events(self, package_id: uuid.UUID | None = None) -> list[dict]:
        """The package's events on brokerage.packages, in order (one partition per package)."""
        records = await read_topic(self.kafka, f"{self.namespace}.brokerage.packages")
        events = [e for e in (event_of(r) for r in records) if e]
        return [e for e in events if package_id is None or e.get("package_id") == str(package_id)]

    async def events_until(
        self, package_id: uuid.UUID, last: str, timeout: float = 20, *, count: int = 1
    ) -> list[dict]:
        """The package's events once ``count`` of type ``last`` are on the topic (the relay
        publishes what the database committed, a moment later)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            events = await self.events(package_id)
            if sum(e["event_type"] == last for e in events) >= count or loop.time() > deadline:
                return events
            await asyncio.sleep(0.2)

    async def committed_hours(self, who: str, expected: Decimal, timeout: float = 20) -> Decimal:
        """The provider's committed hours, once they equal ``expected`` (or the last seen at the timeout):
        the providers service commits and frees hours as the brokerage's events reach it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            hours = Decimal((await self.provider(who))["committed_hours"])
            if hours == expected or loop.time() > deadline:
                return hours
            await asyncio.sleep(0.2)
