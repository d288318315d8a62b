"""A package's later life end to end (issue 14, items 4 and 5): every change tells each affected
party exactly once per channel, and the services agree on who holds the package throughout.

The three services run as processes on the real Kafka and PostgreSQL (the allocation stack: a
small portal market in Melton, answered by the tests as the providers' staff). Every recipient
is told on the ``log`` channel (the seeded providers and brokers; the person's contact is
registered under the package id), so a delivery row is a message sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import defaultdict

import asyncpg
import httpx
import pytest

from tests.allocation.test_framework_rules import TEST_OVER, place_with
from tests.support import assert_services_agree, staff

pytestmark = [pytest.mark.infra, pytest.mark.e2e]

TYPED = "Stanley Dawson (NHS 999 760 3133) admitted to hospital"


async def requested(alloc) -> tuple[uuid.UUID, str]:
    """A package, with the person's contact registered (as the brokerage team would), and its broker."""
    package_id = await alloc.request()
    async with httpx.AsyncClient(auth=staff()) as client:
        r = await client.put(f"{alloc.url('notifications')}/recipients/person/{package_id}", json={"channels": ["log"]})
        assert r.status_code in (200, 201), r.text
    return package_id, (await alloc.package(package_id))["requested_by"]


async def deliveries(alloc, package_id: uuid.UUID) -> dict[str, list[list[tuple]]]:
    """The package's deliveries: event type -> one list per event (in order) of (message, role,
    recipient, channel, status)."""
    conn = await asyncpg.connect(alloc.database_url)
    try:
        rows = await conn.fetch(
            "SELECT event_id, event_type, message, recipient_role, recipient_id, channel, status "
            "FROM notifications.deliveries WHERE package_id = $1 ORDER BY id",
            package_id,
        )
    finally:
        await conn.close()
    by_event: dict[uuid.UUID, list[tuple]] = defaultdict(list)
    types = {}
    for r in rows:
        by_event[r["event_id"]].append(
            (r["message"], r["recipient_role"], r["recipient_id"], r["channel"], r["status"])
        )
        types[r["event_id"]] = r["event_type"]
    found: dict[str, list[list[tuple]]] = defaultdict(list)
    for event_id, told in by_event.items():
        found[types[event_id]].append(sorted(told))
    return found


async def told(alloc, package_id: uuid.UUID, event_type: str, expected: list[tuple], nth: int = 0) -> None:
    """The ``nth`` event of this type told exactly ``expected`` (message, role, recipient), one
    delivery each on the log channel, all sent - waiting for the consumer and the dispatcher."""
    want = sorted((*e, "log", "sent") for e in expected)
    got: list[tuple] = []
    for _ in range(100):
        events = (await deliveries(alloc, package_id)).get(event_type, [])
        got = events[nth] if len(events) > nth else []
        if got == want:
            break
        await asyncio.sleep(0.2)
    assert got == want, f"{event_type} #{nth + 1} of {package_id}"


async def person_status(alloc, who: str, package_id: uuid.UUID) -> int:
    async with httpx.AsyncClient(base_url=alloc.url("providers")) as client:
        r = await client.get(
            f"/me/packages/{package_id}/person", headers={"Authorization": f"Bearer {alloc.tokens[who]}"}
        )
    return r.status_code


async def test_cancelling_a_placed_package_tells_the_provider_the_broker_and_the_family_once(alloc):
    package_id, broker = await requested(alloc)
    await place_with(alloc, package_id, "prime_best", other="prime_good")
    assert await person_status(alloc, "prime_best", package_id) == 200
    r = await alloc.post(
        f"/packages/{package_id}/cancel",
        {"reason": "admitted_to_hospital", "reason_text": TYPED},
    )
    assert r.status_code == 200, r.text
    await told(
        alloc,
        package_id,
        "PackageCancelled",
        [
            ("cancelled_provider", "provider", alloc.ids["prime_best"]),
            ("cancelled_broker", "broker", broker),
            ("cancelled_person", "person", str(package_id)),
        ],
    )
    [event] = [e for e in await alloc.events(package_id) if e["event_type"] == "PackageCancelled"]
    assert event["reason"] == "admitted_to_hospital" and TYPED not in str(await alloc.events())
    assert (await alloc.package(package_id))["cancel_reason_text"] == TYPED  # the words: in the brokerage only
    assert await person_status(alloc, "prime_best", package_id) == 403  # its placement ended
    await assert_services_agree(alloc.database_url, seed=alloc_seed())


async def test_after_a_hand_back_the_new_provider_holds_the_package_and_everyone_is_told(alloc):
    package_id, broker = await requested(alloc)
    await place_with(alloc, package_id, "prime_best", other="prime_good")
    notice = (dt.date.today() + dt.timedelta(days=14)).isoformat()
    r = await alloc.post(
        f"/packages/{package_id}/hand-back",
        {"notice_ends_on": notice, "reason": "staff_shortage"},
    )
    assert r.status_code == 200, r.text
    await told(
        alloc,
        package_id,
        "PackageHandedBack",
        [
            ("package_handed_back", "brokerage_team", "brokerage-team"),
            ("handed_back_provider", "provider", alloc.ids["prime_best"]),
            ("handed_back_broker", "broker", broker),
            ("handed_back_person", "person", str(package_id)),
        ],
    )
    await alloc.offered_round(package_id, 2)
    await alloc.bid(package_id, 2, "prime_good", rate="18.00")
    placed = await alloc.until(package_id, lambda p: p["status"] == "placed")
    assert placed["provider_id"] == alloc.ids["prime_good"]
    # The second award is told to its winner, the broker and the family; the provider that handed
    # it back is not told "you lost" (it was not offered this cycle).
    await told(
        alloc,
        package_id,
        "PackagePlaced",
        [
            ("placement_award", "provider", alloc.ids["prime_good"]),
            ("placement_broker", "broker", broker),
            ("placement_person", "person", str(package_id)),
        ],
        nth=1,
    )
    # Issue 14, item 5: the new winner holds the package in the providers service too.
    await assert_services_agree(alloc.database_url, seed=alloc_seed())
    assert await person_status(alloc, "prime_good", package_id) == 200
    assert await person_status(alloc, "prime_best", package_id) == 403
    await alloc.post(f"/packages/{package_id}/cancel", TEST_OVER)


async def test_a_suspension_tells_the_provider_losing_the_package_the_broker_and_the_family(alloc):
    package_id, broker = await requested(alloc)
    await place_with(alloc, package_id, "prime_good", other="prime_best")
    suspended = await alloc.post(
        f"/providers/{alloc.ids['prime_good']}/status",
        {"status": "suspended", "reason": "CQC: inadequate"},
        service="providers",
    )
    assert suspended.status_code == 200, suspended.text
    try:
        await told(
            alloc,
            package_id,
            "PackageReopened",
            [
                ("reopened_provider", "provider", alloc.ids["prime_good"]),
                ("reopened_broker", "broker", broker),
                ("reopened_person", "person", str(package_id)),
            ],
        )
        offered = await alloc.until(package_id, lambda p: p["cycle"] == 2 and p["status"] == "offered")
        await alloc.bid(package_id, offered["current_round"], "prime_best", rate="18.00")
        again = await alloc.until(package_id, lambda p: p["status"] == "placed")
        assert again["provider_id"] == alloc.ids["prime_best"]
        await assert_services_agree(alloc.database_url, seed=alloc_seed())
        assert await person_status(alloc, "prime_best", package_id) == 200
        assert await person_status(alloc, "prime_good", package_id) == 403
    finally:
        await alloc.post(
            f"/providers/{alloc.ids['prime_good']}/status",
            {"status": "active", "reason": "re-inspected"},
            service="providers",
        )
    await alloc.post(f"/packages/{package_id}/cancel", TEST_OVER)


async def test_a_start_is_told_to_the_provider_and_the_broker(alloc):
    package_id, broker = await requested(alloc)
    await place_with(alloc, package_id, "prime_best", other="prime_good")
    r = await alloc.post(f"/packages/{package_id}/start", {"started_on": dt.date.today().isoformat()})
    assert r.status_code == 200, r.text
    await told(
        alloc,
        package_id,
        "PackageStarted",
        [("started_provider", "provider", alloc.ids["prime_best"]), ("started_broker", "broker", broker)],
    )
    # Leave the market as found: a started package is handed back, then cancelled once reopened.
    notice = dt.date.today().isoformat()
    r = await alloc.post(f"/packages/{package_id}/hand-back", {"notice_ends_on": notice, "reason": "other"})
    assert r.status_code == 200, r.text
    await alloc.post(f"/packages/{package_id}/cancel", TEST_OVER)
    await assert_services_agree(alloc.database_url, seed=alloc_seed())


async def bid_above_the_rate(alloc, package_id: uuid.UUID) -> None:
    """Up the ladder to the only bid, 29.50 an hour from a neighbouring zone's provider: above the
    band rate, so the package awaits approval."""
    await alloc.offered_round(package_id, 2)  # the primes stay silent: their window closes
    await alloc.decline(package_id, 2, "supp")
    await alloc.offered_round(package_id, 3)
    await alloc.bid(package_id, 3, "neighbour", rate="29.50")
    await alloc.until(package_id, lambda p: p["status"] == "awaiting_approval")


async def test_an_above_rate_bid_asks_the_broker_and_its_refusal_tells_the_bidder(alloc):
    package_id, broker = await requested(alloc)
    await bid_above_the_rate(alloc, package_id)
    await told(alloc, package_id, "ExceptionRequested", [("exception_requested", "broker", broker)])
    r = await alloc.post(f"/packages/{package_id}/exception/reject", {"reason": "rate_not_justified"})
    assert r.status_code == 200, r.text
    await told(
        alloc, package_id, "ExceptionDecided", [("exception_refused_bidder", "provider", alloc.ids["neighbour"])]
    )
    await told(alloc, package_id, "PackageUnplaced", [("package_unplaced", "brokerage_team", "brokerage-team")])
    await alloc.post(f"/packages/{package_id}/cancel", TEST_OVER)
    # Never placed: only the broker and the family hear of the cancellation.
    await told(
        alloc,
        package_id,
        "PackageCancelled",
        [("cancelled_broker", "broker", broker), ("cancelled_person", "person", str(package_id))],
    )


async def test_a_bid_that_takes_two_approvals_tells_the_brokerage_team_after_the_first(alloc):
    """Decision 0140: the first of two approvals (48% above the band rate, beyond the scheme's
    two-approval threshold) tells the brokerage team, where the second approvers are, once."""
    package_id, _broker = await requested(alloc)
    await bid_above_the_rate(alloc, package_id)
    first = await alloc.post(f"/packages/{package_id}/exception/approve", {"reason": "no_provider_at_band_rate"})
    assert first.status_code == 200, first.text
    assert (await alloc.package(package_id))["status"] == "awaiting_approval"
    await told(
        alloc,
        package_id,
        "ExceptionFirstApproved",
        [("exception_second_approval_needed", "brokerage_team", "brokerage-team")],
    )
    refused = await alloc.post(
        f"/packages/{package_id}/exception/reject", {"reason": "rate_not_justified"}, as_user="demo-manager"
    )
    assert refused.status_code == 200, refused.text
    await told(
        alloc, package_id, "ExceptionDecided", [("exception_refused_bidder", "provider", alloc.ids["neighbour"])]
    )
    await alloc.post(f"/packages/{package_id}/cancel", TEST_OVER)


def alloc_seed() -> list[dict]:
    from tests.allocation.conftest import MARKET

    return list(MARKET.values())
