"""The reference adapter (examples/reference-adapter/adapter.py) run as its own process against the
real stack (three services, Kafka, PostgreSQL, the identity provider), as a provider's developer
would run it, using only the published contract (issue 20):

- it registers its URL and gets a test offer, which it verifies;
- offered a package that fits its rules, it bids through the provider API and is told it won;
  offered one that does not, it declines with the rule's reason code;
- through a secret rotation's overlap it keeps verifying with the old secret; without an overlap,
  deliveries it cannot verify are refused (401) and retried until it has the new secret; every
  attempt is in the delivery's history; a past delivery is redelivered under a new id.

The provider it runs for (hallaton-care, the only prime of its zone) gets its own adapter back
afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.runtime.reference import load_framework
from services.simulator.synthetic import package_request
from tests.support import ROOT, free_port, staff

PROVIDER = "hallaton-care"
ZONE = "lutterworth"
ADAPTER = ROOT / "examples/reference-adapter/adapter.py"


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


def journal(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def request(index: int, hours: str, minutes: int) -> dict:
    body = package_request(random.Random(index), load_framework(), ZONE, index=index, urgency="community")
    return body | {
        "band": "urban",
        "needs": ["personal_care"],
        "hours_per_week": hours,
        "visits": {"calls_per_day": 2, "minutes_per_call": minutes, "carers_per_call": 1, "days_per_week": 7},
        "start_date": (dt.date.today() + dt.timedelta(days=3)).isoformat(),
    }


@pytest.fixture(scope="module")
async def run(stack, tmp_path_factory):
    """The adapter registered and serving for the provider: yields what the tests look at."""
    providers, brokerage = stack.url("providers"), stack.url("brokerage")
    folder = tmp_path_factory.mktemp("reference-adapter")
    port = free_port()
    async with httpx.AsyncClient(base_url=providers, timeout=15) as client:
        original = (await client.get(f"/providers/{PROVIDER}", auth=staff("demo-admin"))).json()
        token = (
            await client.post(f"/providers/{PROVIDER}/credentials", auth=staff("demo-admin"), json={"label": "ref"})
        ).json()["token"]
        me = (await client.get("/me", headers=bearer(token))).json()
        kept_adapter = {
            k: v
            for k, v in me["adapter"].items()
            if k
            in (
                "kind",
                "webhook_url",
                "call_times",
                "max_package_hours",
                "premium_percent",
                "lead_days",
                "covers_adjacent_zones",
            )
        }
        r = await client.patch(f"/providers/{PROVIDER}/adapter", auth=staff("demo-admin"), json={"kind": "portal"})
        assert r.status_code == 200, r.text
        assert r.json()["adapter"]["max_package_hours"] == me["adapter"]["max_package_hours"], "PATCH keeps the rest"
        free = float(me["committed_hours"]) + float(me["held_hours"]) + 40
        r = await client.patch("/me", headers=bearer(token), json={"weekly_capacity_hours": str(free)})
        assert r.status_code == 200, r.text
    env = os.environ | {
        "PROVIDERS_URL": providers,
        "PROVIDER_TOKEN": token,
        "SECRET_FILE": str(folder / "secret.txt"),
        "JOURNAL_FILE": str(folder / "journal.jsonl"),
        "PORT": str(port),
    }
    url = f"http://127.0.0.1:{port}/homecare"
    # The receiver first, as its README says; then the registration, whose test offer finds it up.
    log = (folder / "adapter.log").open("w")
    process = subprocess.Popen([sys.executable, str(ADAPTER), "serve"], env=env, stdout=log, stderr=log)
    try:
        for _ in range(300):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            await asyncio.sleep(0.1)
        registered = subprocess.run(
            [sys.executable, str(ADAPTER), "register", url], env=env, capture_output=True, text=True, timeout=60
        )
        assert registered.returncode == 0, registered.stderr
        yield {
            "providers": providers,
            "brokerage": brokerage,
            "token": token,
            "journal": folder / "journal.jsonl",
            "secret_file": folder / "secret.txt",
            "registered": registered.stdout,
        }
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
        async with httpx.AsyncClient(base_url=providers, timeout=15) as client:
            r = await client.put(f"/providers/{PROVIDER}/adapter", auth=staff("demo-admin"), json=kept_adapter)
            assert r.status_code == 200, r.text
        assert original["adapter"] == kept_adapter["kind"]


async def deliveries(run) -> list[dict]:
    async with httpx.AsyncClient(base_url=run["providers"], timeout=15) as client:
        r = await client.get("/me/deliveries", headers=bearer(run["token"]))
        assert r.status_code == 200, r.text
        return r.json()


async def test_it_registers_and_verifies_its_test_offer(run):
    assert "signing secret written to" in run["registered"] and "test offer queued" in run["registered"]
    assert run["secret_file"].read_text().startswith("whsec_")

    async def tested():
        return [e for e in journal(run["journal"]) if e["event"] == "test_offer"]

    [entry] = await eventually(tested)
    [delivery] = [d for d in await deliveries(run) if d["delivery_id"] == entry["delivery_id"]]
    assert delivery["kind"] == "test" and delivery["status"] == "delivered"
    assert [a["status_code"] for a in delivery["history"]] == [200]
    assert not [e for e in journal(run["journal"]) if e["event"] == "refused"]


@pytest.fixture(scope="module")
async def placed(run):
    """A package that fits the rules (7 h/week) and one that does not (14 h/week, over its 12)."""
    async with httpx.AsyncClient(base_url=run["brokerage"], timeout=15) as client:
        fits = await client.post("/packages", json=request(7001, "7.00", 30), auth=staff())
        too_big = await client.post("/packages", json=request(7002, "14.00", 60), auth=staff())
        assert fits.status_code == too_big.status_code == 201, (fits.text, too_big.text)
        fits_id, too_big_id = fits.json()["package_id"], too_big.json()["package_id"]

        async def answered_and_told():
            entries = journal(run["journal"])
            bid = [e for e in entries if e["event"] == "bid" and e["package_id"] == fits_id]
            declined = [e for e in entries if e["event"] == "decline" and e["package_id"] == too_big_id]
            told = [e for e in entries if e["event"] == "offer_closed" and e["package_id"] == fits_id]
            return (bid, declined, told) if bid and declined and told else None

        bid, declined, told = await eventually(answered_and_told, timeout=90)
        package = (await client.get(f"/packages/{fits_id}", auth=staff())).json()
    return {"bid": bid, "declined": declined, "told": told, "package": package}


async def test_it_bids_for_an_offer_that_fits_its_rules_and_is_told_it_won(placed):
    [bid] = placed["bid"]
    assert bid["status"] == 200 and bid["answer"]["rate"]
    [told] = placed["told"]
    assert (told["outcome"], told["reason"]) == ("won", "placed_with_you")
    package = placed["package"]
    assert package["status"] == "placed" and package["provider_id"] == PROVIDER
    answers = [a for r in package["offer_rounds"] for a in r["answers"] if a["provider_id"] == PROVIDER]
    assert [(a["adapter"], a["kind"]) for a in answers] == [("webhook", "bid")]


async def test_it_declines_an_offer_its_rules_do_not_take_with_the_rules_reason(placed):
    [declined] = placed["declined"]
    assert declined["status"] == 200 and declined["answer"] == {"reason": "capacity", "text": ""}


async def test_a_rotation_with_an_overlap_keeps_it_verifying_and_without_one_it_refuses_until_updated(run, placed):
    old = run["secret_file"].read_text().strip()
    async with httpx.AsyncClient(base_url=run["providers"], timeout=15, headers=bearer(run["token"])) as client:
        rotated = (await client.post("/me/webhook/rotate-secret", json={"overlap_hours": 1})).json()
        during = (await client.post("/me/webhook/test")).json()

        async def delivered(delivery_id):
            async def check():
                d = (await client.get(f"/me/deliveries/{delivery_id}")).json()
                return d if d["status"] == "delivered" else None

            return check

        seen = await eventually(await delivered(during["delivery_id"]))
        assert [(a["status_code"], a["signed_with"]) for a in seen["history"]] == [(200, 2)], "verified with the old"
        # Without an overlap the adapter's secret stops at once: refused until the file has the new one.
        newest = (await client.post("/me/webhook/rotate-secret", json={"overlap_hours": 0})).json()
        assert newest["previous_secret_signs_until"] is None and rotated["signing_secret"] != old
        after = (await client.post("/me/webhook/test")).json()

        async def refused():
            d = (await client.get(f"/me/deliveries/{after['delivery_id']}")).json()
            return d if [a["status_code"] for a in d["history"]][:2] == [401, 401] else None

        await eventually(refused)
        run["secret_file"].write_text(newest["signing_secret"] + "\n")
        seen = await eventually(await delivered(after["delivery_id"]))
        codes = [a["status_code"] for a in seen["history"]]
        assert codes[-1] == 200 and set(codes[:-1]) == {401} and len(codes) >= 3, "every attempt is kept"
        # A past delivery redelivered: a new id, and the adapter handles it (it is not a duplicate).
        again = await client.post(f"/me/deliveries/{during['delivery_id']}/redeliver")
        assert again.status_code == 202, again.text
        redelivery = await eventually(await delivered(again.json()["delivery_id"]))
        assert redelivery["redelivery_of"] == during["delivery_id"]
    handled = {e["delivery_id"] for e in journal(run["journal"]) if e["event"] == "test_offer"}
    assert {during["delivery_id"], after["delivery_id"], redelivery["delivery_id"]} <= handled
