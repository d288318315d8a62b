"""The framework's rules end to end: the whole escalation ladder, a hand-back, a provider
suspended, a rate card changed mid-stream, and two brokerage instances racing."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import time
from collections import Counter
from decimal import Decimal

import pytest

from services.runtime.reference import RECHECK_SECONDS
from tests.allocation.conftest import WINDOW_SECONDS

pytestmark = [pytest.mark.infra, pytest.mark.e2e]


TEST_OVER = {"reason": "other", "reason_text": "test over"}


def types(events) -> list[str]:
    return [e["event_type"] for e in events]


async def test_the_ladder_prime_then_supplementary_then_neighbours_then_an_approved_exception(alloc):
    package_id = await alloc.request()
    prime = await alloc.offered_round(package_id, 1)
    assert prime["tier"] == "prime" and sorted(prime["provider_ids"]) == sorted(
        [alloc.ids["prime_best"], alloc.ids["prime_good"]]
    )
    # The primes stay silent: the window closes and the supplementary tier is offered.
    supp = await alloc.offered_round(package_id, 2)
    assert supp["tier"] == "supplementary" and supp["provider_ids"] == [alloc.ids["supp"]]
    await alloc.decline(package_id, 2, "supp")
    nearby = await alloc.offered_round(package_id, 3)
    assert nearby["tier"] == "adjacent" and nearby["provider_ids"] == [alloc.ids["neighbour"]]
    await alloc.bid(package_id, 3, "neighbour", rate="29.50")  # above any band rate
    await alloc.until(package_id, lambda p: p["status"] == "awaiting_approval")
    approved = await alloc.post(
        f"/packages/{package_id}/exception/approve",
        {"reason": "no_provider_at_band_rate", "reason_text": "no one else"},
    )
    assert approved.status_code == 200, approved.text
    # 48% above the band rate: beyond the scheme's two-approval threshold (deploy/reference/delegation.yaml,
    # decision 0123), so the head of service's approval is the first of two, and a manager's places it.
    assert (await alloc.package(package_id))["status"] == "awaiting_approval"
    second = await alloc.post(
        f"/packages/{package_id}/exception/approve",
        {"reason": "no_provider_at_band_rate"},
        as_user="demo-manager",
    )
    assert second.status_code == 200, second.text
    package = await alloc.until(package_id, lambda p: p["status"] == "placed")
    assert package["provider_id"] == alloc.ids["neighbour"] and package["hourly_rate"] == "29.50"
    rounds = {r["offer_round"]: r for r in package["offer_rounds"]}
    assert rounds[1]["closed_at"] is not None and "window" in str(package), "the prime round ended by its window"
    on_kafka = types(await alloc.events_until(package_id, "PackagePlaced"))
    assert on_kafka == [
        "PackageRequested",
        "OfferMade",
        "OfferMade",
        "OfferMade",
        "ExceptionRequested",
        "ExceptionFirstApproved",
        "ExceptionDecided",
        "PackagePlaced",
    ], on_kafka
    again = await alloc.post(f"/packages/{package_id}/exception/approve", {"reason": "other"})
    assert again.status_code == 409 and "no exception awaiting" in again.json()["error"]


async def test_no_acceptable_bid_anywhere_queues_the_package_and_the_schedule_offers_it_again(alloc):
    package_id = await alloc.request()
    for offer_round, who in ((1, ("prime_best", "prime_good")), (2, ("supp",)), (3, ("neighbour",))):
        await alloc.offered_round(package_id, offer_round)
        for provider in who:
            await alloc.decline(package_id, offer_round, provider, reason="call_times")
    await alloc.until(package_id, lambda p: p["status"] == "unplaced" or p["cycle"] == 2)
    # The unplaced queue re-offers it from the top tier on its schedule (3 s here).
    package = await alloc.until(package_id, lambda p: p["cycle"] == 2 and p["status"] == "offered")
    assert package["current_tier"] == "prime" and package["unplaced_at"] is None
    on_kafka = types(await alloc.events_until(package_id, "OfferMade", count=4))
    assert on_kafka[:6] == ["PackageRequested", "OfferMade", "OfferMade", "OfferMade", "PackageUnplaced", "OfferMade"]
    cancelled = await alloc.post(f"/packages/{package_id}/cancel", {"reason": "family_arranged_care"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


async def place_with(alloc, package_id, who: str, other: str = "prime_best") -> dict:
    await alloc.offered_round(package_id, 1)
    await alloc.bid(package_id, 1, who, rate="18.00")
    if other != who:
        await alloc.decline(package_id, 1, other)
    return await alloc.until(package_id, lambda p: p["status"] == "placed")


async def test_a_hand_back_reopens_the_package_for_everyone_but_that_provider(alloc):
    package_id = await alloc.request()
    placed = await place_with(alloc, package_id, "prime_best")
    assert placed["provider_id"] == alloc.ids["prime_best"]
    hours = Decimal(placed["package"]["hours_per_week"])
    committed = await alloc.committed_hours("prime_best", hours)
    assert committed == hours, "the award committed the winner's hours"
    notice = (dt.date.today() + dt.timedelta(days=14)).isoformat()
    handed = await alloc.post(
        f"/packages/{package_id}/hand-back",
        {"notice_ends_on": notice, "reason": "staff_shortage", "reason_text": "carer left"},
    )
    assert handed.status_code == 200, handed.text
    reopened = await alloc.offered_round(package_id, 2)
    assert reopened["tier"] == "prime" and reopened["provider_ids"] == [alloc.ids["prime_good"]]
    await alloc.bid(package_id, 2, "prime_good", rate="18.00")
    again = await alloc.until(package_id, lambda p: p["status"] == "placed")
    assert again["provider_id"] == alloc.ids["prime_good"] and again["priority"] and again["continuity"]
    # The notice's end is the leaving provider's last day of care: the next starts the day after.
    assert again["package"]["start_date"] == (dt.date.fromisoformat(notice) + dt.timedelta(days=1)).isoformat()
    # The leaving provider works its notice: its hours stay committed until the day after (decision 0159).
    assert await alloc.committed_hours("prime_best", hours) == hours, "hours held through the notice"
    assert types(await alloc.events_until(package_id, "PackagePlaced"))[-3:] == [
        "PackageHandedBack",
        "OfferMade",
        "PackagePlaced",
    ]
    await alloc.post(f"/packages/{package_id}/cancel", TEST_OVER)


async def test_a_suspended_providers_packages_are_re_brokered_most_urgent_first(alloc):
    urgencies = ["community", "reablement_step_down", "hospital_discharge"]
    packages = {}
    for urgency in urgencies:
        packages[urgency] = package_id = await alloc.request(urgency)
        await place_with(alloc, package_id, "prime_good")
    suspended = await alloc.post(
        f"/providers/{alloc.ids['prime_good']}/status",
        {"status": "suspended", "reason": "CQC: inadequate"},
        service="providers",
    )
    assert suspended.status_code == 200, suspended.text
    try:
        reopened = {}
        for urgency, package_id in packages.items():
            package = await alloc.until(package_id, lambda p: p["cycle"] == 2 and p["status"] in ("offered", "placed"))
            assert package["priority"] and package["continuity"] and package["provider_id"] is None
            [event] = [
                e for e in await alloc.events_until(package_id, "OfferMade") if e["event_type"] == "PackageReopened"
            ]
            assert event["provider_id"] == alloc.ids["prime_good"] and event["reason"] == "provider_suspended"
            reopened[urgency] = event["reopened_at"]
            offered = next(r for r in package["offer_rounds"] if r["offer_round"] == package["current_round"])
            assert alloc.ids["prime_good"] not in offered["provider_ids"]
        assert sorted(reopened, key=lambda urgency: reopened[urgency]) == [
            "hospital_discharge",
            "reablement_step_down",
            "community",
        ]
        assert await alloc.committed_hours("prime_good", Decimal(0)) == 0, "every hour given back"
        refused = await alloc.post(
            f"/providers/{alloc.ids['prime_good']}/status",
            {"status": "suspended", "reason": "again"},
            service="providers",
        )
        assert refused.status_code == 409 and "already suspended" in refused.json()["error"]
    finally:
        await alloc.post(
            f"/providers/{alloc.ids['prime_good']}/status",
            {"status": "active", "reason": "re-inspected"},
            service="providers",
        )
    for package_id in packages.values():  # leave the market's hours free for the other tests
        await alloc.post(f"/packages/{package_id}/cancel", TEST_OVER)


async def test_two_brokerage_instances_racing_place_each_package_once(alloc):
    alloc.stack.start("brokerage-2", "brokerage")
    await asyncio.to_thread(alloc.stack.wait_ready, "brokerage-2")
    try:
        rng = random.Random(11)
        ids = [await alloc.request(via=("brokerage", "brokerage-2")[i % 2]) for i in range(16)]

        async def answer(package_id):
            # Bids land before, around and after the window closes, on either instance's partitions,
            # while both instances' window timers run.
            await alloc.offered_round(package_id, 1)
            for who in ("prime_good", "prime_best"):
                await asyncio.sleep(rng.uniform(0, WINDOW_SECONDS * 0.5))
                answered = await alloc.bid(package_id, 1, who, rate="18.00")
                # Refused once the window has closed or the round is over; never a 5xx.
                assert answered.status_code in (200, 201, 409), answered.text

        await asyncio.gather(*(answer(p) for p in ids))
        finals = [await alloc.until(p, lambda p: p["status"] not in ("requested", "offered")) for p in ids]
    finally:
        alloc.stack.stop("brokerage-2")
    for _ in range(100):  # the relay publishes what the database committed
        awards = [e for e in await alloc.events() if e["event_type"] == "PackagePlaced"]
        placed_events = Counter(e["package_id"] for e in awards)
        if all(placed_events[p["package_id"]] for p in finals if p["status"] == "placed"):
            break
        await asyncio.sleep(0.2)
    for package in finals:
        assert placed_events[package["package_id"]] == (package["status"] == "placed"), (
            f"{package['package_id']} placed {placed_events[package['package_id']]} times"
        )
        if package["status"] == "placed":
            # (A bid held back long enough can land on the unplaced queue's re-offer: any round may win.)
            [award] = [e for e in awards if e["package_id"] == package["package_id"]]
            [won] = [r for r in package["offer_rounds"] if r["offer_round"] == award["offer_round"]]
            in_time = {a["provider_id"] for a in won["answers"] if a["kind"] == "bid" and not a["late"]}
            assert package["provider_id"] in in_time, "placed only with a provider whose bid came in time"
    outcomes = Counter(p["status"] for p in finals)
    assert outcomes["placed"] >= 1, outcomes  # the race was run, not just timed out
    # Each provider committed exactly the hours it won: nothing awarded twice, nothing lost.
    for who in ("prime_best", "prime_good"):
        won = sum(Decimal(p["package"]["hours_per_week"]) for p in finals if p["provider_id"] == alloc.ids[who])
        assert await alloc.committed_hours(who, won) == won, who
    for package in finals:
        await alloc.post(f"/packages/{package['package_id']}/cancel", TEST_OVER)


async def test_a_new_rate_card_applies_to_packages_requested_after_its_start_without_a_restart(alloc):
    before = await alloc.request()
    framework = alloc.reference_dir / "framework.yaml"
    today = dt.date.today().isoformat()
    framework.write_text(
        framework.read_text().replace(
            "rate_cards:\n",
            f"""rate_cards:
  - version: "test-{today}"
    effective_from: {today}
    rates: {{urban: "19.50", fringe: "20.70", rural: "23.85", isolated: "27.20"}}
""",
            1,
        )
    )
    later = time.time() + 1
    os.utime(framework, (later, later))
    await asyncio.sleep(RECHECK_SECONDS + 0.3)  # an edit applies from a recheck interval after it is saved
    after = await alloc.request()
    old, new = await alloc.package(before), await alloc.package(after)
    assert old["rate_card"] == "2020-21" and new["rate_card"] == f"test-{today}"
    offers = {
        str(p): next(e for e in await alloc.events_until(p, "OfferMade") if e["event_type"] == "OfferMade")
        for p in (before, after)
    }
    band = new["package"]["band"]
    assert Decimal(offers[str(after)]["band_rate"]) == Decimal(
        {"urban": "19.50", "fringe": "20.70", "rural": "23.85", "isolated": "27.20"}[band]
    )
    assert Decimal(offers[str(before)]["band_rate"]) == Decimal(old["band_rate"])
    # The award records the card the package was offered under.
    await alloc.bid(before, 1, "prime_best", rate=old["band_rate"])
    await alloc.bid(after, 1, "prime_best", rate=new["band_rate"])
    for package_id, card in ((before, "2020-21"), (after, f"test-{today}")):
        await alloc.until(package_id, lambda p: p["status"] == "placed")
        [placed] = [
            e for e in await alloc.events_until(package_id, "PackagePlaced") if e["event_type"] == "PackagePlaced"
        ]
        assert placed["rate_card"] == card


async def _awaiting_approval_at(alloc, above: Decimal) -> tuple:
    """A package requested by the demo broker whose only bid is ``above`` (a fraction) over the band rate."""
    package_id = await alloc.request()
    package = await alloc.offered_round(package_id, 1)
    band_rate = Decimal((await alloc.package(package_id))["band_rate"])
    rate = (band_rate * (1 + above)).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    await alloc.bid(package_id, 1, "prime_best", rate=str(rate))
    await alloc.decline(package_id, 1, "prime_good")
    for offer_round, who in ((2, "supp"), (3, "neighbour")):
        await alloc.offered_round(package_id, offer_round)
        await alloc.decline(package_id, offer_round, who)
    package = await alloc.until(package_id, lambda p: p["status"] == "awaiting_approval")
    assert package["requested_by"] == "demo-broker"
    return package_id, rate


async def test_above_rate_approvals_follow_the_scheme_of_delegation_and_nobody_approves_their_own(alloc):
    # deploy/reference/delegation.yaml: a broker up to +5%, a manager up to +15%; a first approval below
    # the limit waits for a second approver whose limit covers the bid.
    ten, four = await asyncio.gather(
        _awaiting_approval_at(alloc, Decimal("0.10")), _awaiting_approval_at(alloc, Decimal("0.04"))
    )
    approve = "/packages/{}/exception/approve"
    own = await alloc.post(approve.format(ten[0]), {"reason": "urgent_discharge"}, as_user="demo-broker")
    assert own.status_code == 403 and "requested themselves" in own.json()["error"]
    assert (await alloc.package(ten[0]))["status"] == "awaiting_approval"  # a refusal records nothing
    # Beyond a broker's 5%: a first approval, and the package waits for a second approver (decision 0123).
    beyond = await alloc.post(approve.format(ten[0]), {"reason": "urgent_discharge"}, as_user="demo-broker-2")
    assert beyond.status_code == 200 and beyond.json()["status"] == "awaiting_approval", beyond.text
    twice = await alloc.post(approve.format(ten[0]), {"reason": "urgent_discharge"}, as_user="demo-broker-2")
    assert twice.status_code == 409 and twice.json()["code"] == "already-approved"
    # Operations may not decide at all: the permission table.
    assert (await alloc.post(approve.format(ten[0]), {"reason": "other"}, as_user="demo-ops")).status_code == 403
    managed = await alloc.post(approve.format(ten[0]), {"reason": "no_provider_at_band_rate"}, as_user="demo-manager")
    assert managed.status_code == 200, managed.text
    within = await alloc.post(approve.format(four[0]), {"reason": "continuity_of_care"}, as_user="demo-broker-2")
    assert within.status_code == 200, within.text
    for package_id, rate in (ten, four):
        package = await alloc.until(package_id, lambda p: p["status"] == "placed")
        assert package["hourly_rate"] == str(rate)
    decided = [t for t in package["timeline"] if t["stage"] == "exception approved"]
    assert [t["detail"]["decided_by"] for t in decided] == ["demo-broker-2"]
