"""Bad input at the brokerage's HTTP edge gets a 4xx that names the problem - never a 5xx,
and never a half-written package."""

from __future__ import annotations

import asyncio
import copy
import random

import asyncpg
import httpx
import pytest

from services.runtime.reference import load_framework
from services.simulator.synthetic import package_request
from tests.support import staff


def good() -> dict:
    return package_request(random.Random(1), load_framework(), "melton", index=1)


def without(body: dict, *path: str) -> dict:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


def changed(body: dict, value, *path: str) -> dict:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


CASES = [
    ("unknown zone", lambda b: changed(b, "atlantis", "zone"), 422, "zone", "unknown zone"),
    ("unknown band", lambda b: changed(b, "suburban", "band"), 422, "band", "urban"),
    (
        "district not in the zone",
        lambda b: changed(changed(b, "LE11", "postcode_district"), "LE11 1AA", "person", "postcode"),
        422,
        "postcode_district",
        "charnwood-north",
    ),
    ("district in no zone", lambda b: changed(b, "SW1", "postcode_district"), 422, "postcode_district", "no zone"),
    (
        "hours do not match visits",
        lambda b: changed(b, "40", "hours_per_week"),
        422,
        "body",
        "does not match the visit pattern",
    ),
    ("negative hours", lambda b: changed(b, "-2", "hours_per_week"), 422, "hours_per_week", "greater than 0"),
    (
        "too many calls",
        lambda b: changed(b, 9, "visits", "calls_per_day"),
        422,
        "visits.calls_per_day",
        "less than or equal to 6",
    ),
    ("no needs", lambda b: changed(b, [], "needs"), 422, "needs", "at least 1"),
    ("unknown need", lambda b: changed(b, ["flying"], "needs"), 422, "needs.0", "personal_care"),
    ("missing urgency", lambda b: without(b, "urgency"), 422, "urgency", "Field required"),
    ("start date in the past", lambda b: changed(b, "2020-01-01", "start_date"), 422, "start_date", "past"),
    (
        "bad NHS number",
        lambda b: changed(b, "1234567890", "person", "nhs_number"),
        422,
        "person.nhs_number",
        "check digit",
    ),
    ("bad postcode", lambda b: changed(b, "NOT A CODE", "person", "postcode"), 422, "person.postcode", "postcode"),
    ("no person", lambda b: without(b, "person"), 422, "person", "Field required"),
    ("unexpected field", lambda b: changed(b, "x", "favourite_colour"), 422, "favourite_colour", "Extra inputs"),
]


@pytest.fixture(scope="module")
def brokerage(stack) -> str:
    return stack.url("brokerage")


@pytest.mark.parametrize("name, mutate, status, field, words", CASES, ids=[c[0] for c in CASES])
async def test_invalid_requests_get_a_4xx_naming_the_field(brokerage, name, mutate, status, field, words):
    async with httpx.AsyncClient(auth=staff()) as client:
        r = await client.post(f"{brokerage}/packages", json=mutate(good()))
    assert r.status_code == status, r.text
    body = r.json()
    assert words in body["error"] or any(words in f["message"] for f in body.get("fields", []))
    assert any(f["field"] == field for f in body.get("fields", [])), body


async def test_wrong_content_type_and_oversized_bodies_are_refused(brokerage):
    async with httpx.AsyncClient(auth=staff()) as client:
        r = await client.post(
            f"{brokerage}/packages",
            content=b"zone=melton",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 415 and "application/json" in r.json()["error"]
        r = await client.post(
            f"{brokerage}/packages", content=b"{" + b" " * 200_000 + b"}", headers={"content-type": "application/json"}
        )
        assert r.status_code == 413
        r = await client.post(
            f"{brokerage}/packages", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422


async def test_unknown_packages_are_404_and_bad_ids_422(brokerage):
    async with httpx.AsyncClient(auth=staff()) as client:
        assert (await client.get(f"{brokerage}/packages/6f1c2a52-8c1e-4a55-9d6b-1f6f0c1d2e3a")).status_code == 404
        assert (await client.get(f"{brokerage}/packages/not-a-uuid")).status_code == 422
        assert (await client.get(f"{brokerage}/packages", params={"status": "lost"})).status_code == 422


async def test_refused_requests_leave_nothing_behind(brokerage, database_url):
    conn = await asyncpg.connect(database_url)
    try:
        before = await conn.fetchval(
            "SELECT (SELECT count(*) FROM brokerage.packages) + (SELECT count(*) FROM brokerage.persons)"
            " + (SELECT count(*) FROM brokerage.outbox)"
        )
        async with httpx.AsyncClient(auth=staff()) as client:
            for _name, mutate, *_ in CASES:
                await client.post(f"{brokerage}/packages", json=mutate(good()))
        after = await conn.fetchval(
            "SELECT (SELECT count(*) FROM brokerage.packages) + (SELECT count(*) FROM brokerage.persons)"
            " + (SELECT count(*) FROM brokerage.outbox)"
        )
        assert after == before
    finally:
        await conn.close()


async def test_a_valid_request_is_accepted_and_readable(brokerage):
    async with httpx.AsyncClient(auth=staff()) as client:
        r = await client.post(f"{brokerage}/packages", json=good(), headers={"X-Correlation-ID": "trace-me"})
        assert r.status_code == 201, r.text
        assert r.headers["X-Correlation-ID"] == "trace-me"
        package = (await client.get(f"{brokerage}{r.json()['links']['self']}")).json()
        assert package["package"]["zone"] == "melton" and package["timeline"][0]["stage"] == "requested"
        assert (package["cycle"], package["priority"], package["continuity"]) == (1, False, False)


async def test_a_retried_request_with_the_same_idempotency_key_creates_one_package(brokerage, database_url):
    """The runtime's rule (services/runtime/idempotency.py), as in the provider API: the same request
    from the same caller returns the first package (200, Idempotent-Replayed); the key with another
    request is a 422 naming the header; another broker's key of the same name is theirs alone."""
    key = "retry-1-" + str(random.random())
    body = changed(good(), key, "person", "care_notes")  # marks this test's packages
    async with httpx.AsyncClient(auth=staff()) as client:
        first = await client.post(f"{brokerage}/packages", json=body, headers={"Idempotency-Key": key})
        again = await client.post(f"{brokerage}/packages", json=body, headers={"Idempotency-Key": key})
        other = await client.post(
            f"{brokerage}/packages",
            json=changed(body, "another note", "person", "care_notes"),
            headers={"Idempotency-Key": key},
        )
    async with httpx.AsyncClient(auth=staff("demo-broker-2")) as client:
        theirs = await client.post(f"{brokerage}/packages", json=body, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code, other.status_code, theirs.status_code) == (201, 200, 422, 201)
    assert first.json()["package_id"] == again.json()["package_id"] != theirs.json()["package_id"]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert other.json()["code"] == "idempotency-key-reused"
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM brokerage.persons WHERE care_notes = $1", key) == 2
    finally:
        await conn.close()


async def test_broker_actions_refuse_what_the_package_state_does_not_allow(brokerage):
    async with httpx.AsyncClient(auth=staff()) as client:
        package_id = (await client.post(f"{brokerage}/packages", json=good())).json()["package_id"]
        url = f"{brokerage}/packages/{package_id}"
        r = await client.post(f"{url}/cancel", json={"reason": "moved_to_residential_care"})
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        again = await client.post(f"{url}/cancel", json={"reason": "other"})
        assert again.status_code == 409 and "cancelled" in again.json()["error"]
        start = await client.post(f"{url}/start", json={"started_on": "2026-01-05"})
        assert start.status_code == 409 and "only a placed package can start" in start.json()["error"]
        assert (await client.post(f"{url}/reoffer", json={})).status_code == 409
        handed = await client.post(f"{url}/hand-back", json={"notice_ends_on": "2026-12-31", "reason": "other"})
        assert (
            handed.status_code == 409
            and "only a placed or started package can be handed back" in handed.json()["error"]
        )
        assert (await client.post(f"{url}/hand-back", json={"reason": "other"})).status_code == 422
        assert (await client.post(f"{url}/cancel", json={})).status_code == 422
        # A cancelled package cannot start, whatever the date (a future start is refused by the
        # domain after the state: tests/handlers/test_pauses_and_endings.py).
        future = await client.post(f"{url}/start", json={"started_on": "2999-01-01"})
        assert future.status_code == 409 and future.json()["errors"][0]["field"] == "status", future.text
        missing = await client.post(
            f"{brokerage}/packages/6f1c2a52-8c1e-4a55-9d6b-1f6f0c1d2e3a/cancel",
            json={"reason": "other"},
        )
        assert missing.status_code == 404
        timeline = [t["stage"] for t in (await client.get(url)).json()["timeline"]]
        assert timeline[0] == "requested" and timeline[-1] == "cancelled"
        listed = (await client.get(f"{brokerage}/packages", params={"status": "cancelled"})).json()["packages"]
        assert package_id in {p["package_id"] for p in listed}


async def test_the_queue_view_lists_the_unplaced_first_then_the_most_urgent_then_the_longest_waiting(brokerage):
    async with httpx.AsyncClient(auth=staff()) as client:
        for urgency in ("community", "hospital_discharge"):  # at least two urgencies on the list
            body = package_request(random.Random(1), load_framework(), "melton", index=1, urgency=urgency)
            assert (await client.post(f"{brokerage}/packages", json=body)).status_code == 201
        listed = (await client.get(f"{brokerage}/packages", params={"sort": "queue", "limit": 1000})).json()["packages"]
        bogus = await client.get(f"{brokerage}/packages", params={"sort": "shortest"})
    assert bogus.status_code == 422 and "sort" in bogus.text
    status_rank = {"unplaced": 0, "awaiting_approval": 1}
    urgency_rank = {"hospital_discharge": 0, "reablement_step_down": 1, "community": 2}
    keys = [
        (status_rank.get(p["status"], 2), urgency_rank[p["urgency"]], not p["priority"], p["requested_at"])
        for p in listed
    ]
    assert len(keys) >= 2 and keys == sorted(keys)


ISSUE_14_REASON = "Stanley Dawson (NHS 999 760 3133) admitted to hospital"


@pytest.mark.parametrize(
    "action, body",
    [
        ("cancel", {}),
        ("hand-back", {"notice_ends_on": "2026-12-31"}),
        ("exception/approve", {}),
        ("exception/reject", {}),
    ],
)
async def test_a_reason_must_be_a_code_words_are_refused_naming_the_field(brokerage, action, body):
    """Issue 14, item 3: typed words in ``reason`` are a 422 naming the field and the codes."""
    async with httpx.AsyncClient(auth=staff()) as client:
        package_id = (await client.post(f"{brokerage}/packages", json=good())).json()["package_id"]
        r = await client.post(f"{brokerage}/packages/{package_id}/{action}", json=body | {"reason": ISSUE_14_REASON})
        assert r.status_code == 422, r.text
        assert "reason" in r.text and "other" in r.text  # the field, and the vocabulary to choose from
        assert (await client.get(f"{brokerage}/packages/{package_id}")).json()["timeline"][-1]["stage"] != "cancelled"


async def test_a_cancel_reasons_words_stay_in_the_brokerage_and_never_reach_kafka(brokerage, infra):
    """Issue 14, item 3, the input as filed: the code goes on PackageCancelled, the words are kept
    in the brokerage (its API shows them) and appear in no message on any topic."""
    from services.runtime import topics
    from services.runtime.kafka import read_topic
    from tests.support import event_of

    async with httpx.AsyncClient(auth=staff()) as client:
        package_id = (await client.post(f"{brokerage}/packages", json=good())).json()["package_id"]
        r = await client.post(
            f"{brokerage}/packages/{package_id}/cancel",
            json={"reason": "admitted_to_hospital", "reason_text": ISSUE_14_REASON},
        )
        assert r.status_code == 200, r.text
        package = (await client.get(f"{brokerage}/packages/{package_id}")).json()
    assert (package["cancel_reason"], package["cancel_reason_text"]) == ("admitted_to_hospital", ISSUE_14_REASON)
    cancelled = []
    for _ in range(40):  # the relay publishes what the database committed, a moment later
        records = [r for topic in topics.all_topics() for r in await read_topic(infra.kafka, topic)]
        cancelled = [
            e
            for e in map(event_of, records)
            if e and e.get("event_type") == "PackageCancelled" and e.get("package_id") == package_id
        ]
        if cancelled:
            break
        await asyncio.sleep(0.25)
    assert [(e["reason"], e["schema_version"]) for e in cancelled] == [("admitted_to_hospital", 2)]
    for needle in ("Stanley", "Dawson", "999 760 3133", "9997603133"):
        assert not [r for r in records if needle.encode() in (r.value or b"")], needle


async def test_who_acts_is_the_tokens_user_never_a_field_of_the_body(brokerage):
    async with httpx.AsyncClient(auth=staff("demo-broker-2")) as client:
        claimed = await client.post(f"{brokerage}/packages", json=good() | {"requested_by": "demo-head"})
        assert claimed.status_code == 422 and "requested_by" in claimed.text
        package_id = (await client.post(f"{brokerage}/packages", json=good())).json()["package_id"]
        url = f"{brokerage}/packages/{package_id}"
        forged = await client.post(f"{url}/cancel", json={"reason": "other", "cancelled_by": "demo-head"})
        assert forged.status_code == 422 and "cancelled_by" in forged.text
    async with httpx.AsyncClient(auth=staff("demo-senior")) as client:
        cancelled = await client.post(f"{url}/cancel", json={"reason": "family_arranged_care"})
        assert cancelled.status_code == 200, cancelled.text
        package = (await client.get(url)).json()
    assert package["requested_by"] == "demo-broker-2"
    assert package["timeline"][0]["detail"]["requested_by"] == "demo-broker-2"
    assert package["timeline"][-1]["detail"]["cancelled_by"] == "demo-senior"
