"""The provider quality and risk register end to end (decision 0103, 0104): the services as processes
on the real Kafka, PostgreSQL and Keycloak. A CQC downgrade imported from the CQC's CSV (with
``homecare providers import-cqc``) changes the next award, and the award's explanation says why; a
malformed CQC file gets a report of the refused rows and changes nothing.

The market: Harborough rural (open framework: every provider serving it is offered at once). The
test sets its providers' register so that two of them, A and B, outrank the rest (A: Good, green;
B: Good, amber; the others: Requires improvement, red), then downgrades A to Requires improvement
from a CSV: A's score falls below B's (51-61 against 63-73 whatever their hand-backs), so the next
package goes to B. The register is put back as it was at the end."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.bench.driver import wait_until_ready
from services.runtime import clock
from services.runtime.reference import load_framework
from services.simulator.synthetic import package_request
from tests.e2e.test_package_changes import room_for
from tests.support import staff

ZONE = "harborough-rural"
ROOT = Path(__file__).resolve().parents[2]
HEADER = "Location ID,Location Name,Location Type,Location Latest Overall Rating,Publication Date\n"


@pytest.fixture(scope="module")
async def ready(stack):
    async with httpx.AsyncClient(timeout=10) as client:
        await wait_until_ready(
            client, {n: stack.url(n) for n in ("brokerage", "providers", "notifications")}, timeout=90
        )
    return stack


async def query(database_url: str, sql: str, *args):
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def wait_for(check, timeout: float = 60.0, every: float = 0.25):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(every)


def package(index: int) -> dict:
    """A plain package every automatic adapter of the zone can take: urban band, 2 calls of 30 minutes."""
    body = package_request(
        random.Random(index), load_framework(), ZONE, index=90000 + index, urgency="hospital_discharge"
    )
    return body | {
        "band": "urban",
        "hours_per_week": "7.00",
        "visits": {"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7},
        "needs": ["personal_care"],
        "start_date": clock.uk_today().isoformat(),
        "funding": "council",
    }


async def placed_with(stack, index: int) -> tuple[str, dict]:
    """Request a package; wait for its award; returns (the winner, its explanation)."""
    async with httpx.AsyncClient(base_url=stack.url("brokerage"), auth=staff(), timeout=10) as api:
        created = await api.post("/packages", json=package(index))
        assert created.status_code == 201, created.text
        package_id = created.json()["package_id"]

        async def settled():
            view = (await api.get(f"/packages/{package_id}")).json()
            return view if view["status"] in ("placed", "unplaced", "awaiting_approval") else None

        view = await wait_for(settled, timeout=90)
        assert view and view["status"] == "placed", view
        explained = await api.get(f"/packages/{package_id}/explanation")
        assert explained.status_code == 200, explained.text
        return view["provider_id"], explained.json()


def import_cqc(stack, path: Path, *extra: str) -> subprocess.CompletedProcess:
    """``homecare providers import-cqc FILE --json`` as the contracts and quality team's demo user."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", "providers", "import-cqc", str(path), "--json", *extra],
        capture_output=True,
        text=True,
        env=os.environ | {"PROVIDERS_URL": stack.url("providers"), "HOMECARE_CLI_USER": "demo-quality"},
        cwd=ROOT,
        timeout=120,
    )


async def test_a_cqc_downgrade_imported_from_csv_changes_the_next_award_and_the_explanation_says_why(
    ready, database_url, tmp_path
):
    import json

    stack = ready
    async with httpx.AsyncClient(base_url=stack.url("providers"), auth=staff("demo-quality"), timeout=10) as quality:
        register = {r["provider_id"]: r for r in (await quality.get("/quality/register")).json()}
        async with httpx.AsyncClient(base_url=stack.url("providers"), auth=staff("demo-admin"), timeout=10) as admin:
            serving = []
            for pid in sorted(register):
                entry = (await admin.get(f"/providers/{pid}")).json()
                if ZONE in entry["zones"] and entry["status"] == "active":
                    serving.append((pid, entry["adapter"]))
        automatic = [pid for pid, adapter in serving if adapter == "automatic"]
        assert len(automatic) >= 2, serving
        a, b = automatic[:2]
        others = [pid for pid, _ in serving if pid not in (a, b)]
        locations = {pid: f"1-9{uuid.uuid4().int % 10**10:010d}" for pid, _ in serving}
        before = {pid: register[pid] for pid, _ in serving}
        published = clock.uk_today() - dt.timedelta(days=60)
        try:
            for pid, _ in serving:
                rating, risk = {a: ("good", "low"), b: ("good", "medium")}.get(pid, ("requires_improvement", "high"))
                for call in (
                    quality.put(f"/providers/{pid}/quality/cqc-location", json={"cqc_location_id": locations[pid]}),
                    quality.put(
                        f"/providers/{pid}/quality/cqc",
                        json={"rating": rating, "inspected_on": (published - dt.timedelta(days=300)).isoformat()},
                    ),
                    quality.post(
                        f"/providers/{pid}/quality/risk-reviews",
                        json={"local_risk": risk, "reason": "scheduled_review"},
                    ),
                ):
                    answer = await call
                    assert answer.status_code == 200, answer.text
            for pid in (a, b):
                await room_for(stack, pid, 40)

            async def brokerage_knows(expected: dict[str, tuple[str, str]]):
                rows = await query(
                    database_url,
                    "SELECT provider_id, profile->>'cqc_rating' AS cqc, profile->>'local_risk' AS risk "
                    "FROM brokerage.provider_view WHERE provider_id = ANY($1::text[])",
                    list(expected),
                )
                return {r["provider_id"]: (r["cqc"], r["risk"]) for r in rows} == expected

            first_state = {pid: ("requires_improvement", "high") for pid in others} | {
                a: ("good", "low"),
                b: ("good", "medium"),
            }
            assert await wait_for(lambda: brokerage_knows(first_state)), "the brokerage never saw the register"

            winner, first = await placed_with(stack, 1)
            assert winner == a
            [first_round] = first["record"]["rounds"][-1:]
            offered = {o["provider_id"]: o for o in first_round["offered"]}
            assert offered[a]["quality_inputs"]["cqc_rating"] == "good"
            assert offered[a]["quality_inputs"]["cqc_points"] == 75

            # The CQC's CSV downgrades A (and lists a location that is not ours, to be ignored).
            csv = tmp_path / "cqc-directory.csv"
            csv.write_text(
                "Care directory with ratings\n\n"
                + HEADER
                + f"{locations[a]},A,Homecare agency,Requires improvement,{published:%d/%m/%Y}\n"
                + "1-101669561,Elsewhere,Homecare agency,Good,01/02/2026\n"
            )
            imported = import_cqc(stack, csv)
            assert imported.returncode == 0, imported.stderr[-2000:]
            report = json.loads(imported.stdout)
            assert report["applied"] is True and report["refused"] == []
            assert [(c["provider_id"], c["cqc_rating"]) for c in report["changed"]] == [(a, "requires_improvement")]

            async def brokerage_has_the_date():
                rows = await query(
                    database_url,
                    "SELECT cqc_inspected_on FROM brokerage.provider_quality WHERE provider_id = $1",
                    a,
                )
                return bool(rows) and rows[0]["cqc_inspected_on"] == published

            assert await wait_for(
                lambda: brokerage_knows(first_state | {a: ("requires_improvement", "low")})
            ) and await wait_for(brokerage_has_the_date)

            winner, second = await placed_with(stack, 2)
            assert winner == b, "the downgrade did not change the award"
            broker_text = second["explanation"]["broker"]
            why = f"CQC rating Requires improvement (inspected {published.isoformat()}): 35 points"
            assert why in broker_text, broker_text
            assert "ranked above" in broker_text and "on quality rating" in broker_text
            [last_round] = second["record"]["rounds"][-1:]
            kept = {o["provider_id"]: o["quality_inputs"] for o in last_round["offered"]}
            assert kept[a]["cqc_rating"] == "requires_improvement" and kept[a]["cqc_points"] == 35
            assert kept[a]["cqc_inspected_on"] == published.isoformat()
            assert kept[b]["local_risk"] == "medium" and kept[b]["local_risk_points"] == 60

            # A malformed file: refused rows reported, nothing changed, no event written.
            outbox_before = (await query(database_url, "SELECT max(seq) AS n FROM providers.outbox"))[0]["n"]
            bad = tmp_path / "bad.csv"
            bad.write_text(
                HEADER
                + f"{locations[b]},B,Homecare agency,Inadequate,{published:%d/%m/%Y}\n"
                + f"{locations[a]},A,Homecare agency,Good-ish,{published:%d/%m/%Y}\n"
                + "12345,Nobody,Homecare agency,Good,01/02/2026\n"
            )
            refused = import_cqc(stack, bad)
            assert refused.returncode == 1
            report = json.loads(refused.stdout)
            assert report["applied"] is False
            assert sorted((r["line"], r["field"]) for r in report["refused"]) == [
                (3, "Location Latest Overall Rating"),
                (4, "Location ID"),
            ]
            assert [c["provider_id"] for c in report["changed"]] == [b]  # what it would have done
            after = {r["provider_id"]: r for r in (await quality.get("/quality/register")).json()}
            assert after[b]["cqc_rating"] == "good" and after[a]["cqc_rating"] == "requires_improvement"
            outbox_after = (await query(database_url, "SELECT max(seq) AS n FROM providers.outbox"))[0]["n"]
            assert outbox_after == outbox_before
        finally:
            # Put the zone's register back as it was, for the tests that follow on this market.
            for pid, old in before.items():
                await quality.put(
                    f"/providers/{pid}/quality/cqc",
                    json=(
                        {"rating": old["cqc_rating"], "inspected_on": old["cqc_inspected_on"]}
                        if old["cqc_inspected_on"]
                        else {"rating": old["cqc_rating"]}
                    )
                    | {"correction": True, "note": "the test puts the register back"},
                )
                await quality.post(
                    f"/providers/{pid}/quality/risk-reviews",
                    json={"local_risk": old["local_risk"], "reason": "other"},
                )
