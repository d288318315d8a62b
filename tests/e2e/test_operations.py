"""What operations staff use, against the running services: health, metrics, AsyncAPI, and the
``homecare`` commands tail, lag and kpis - checked against values computed independently here
from the same batch of packages."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.bench.driver import place_batch
from services.runtime import topics
from services.runtime.reference import load_framework
from services.simulator.synthetic import batch
from tests.support import SERVICES, staff

ROOT = Path(__file__).resolve().parents[2]


def homecare(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
async def known_batch(stack):
    since = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.01)
    packages = await place_batch(stack.url("brokerage"), batch(load_framework(), 42, seed=77), timeout=180)
    await asyncio.sleep(2)  # confirmations land
    return since, packages


async def test_health_metrics_and_asyncapi_on_every_service(stack, known_batch):
    """Probes and Prometheus use each service's internal listener, without a token."""
    async with httpx.AsyncClient() as client:
        for name in SERVICES:
            base = stack.internal_url(name)
            # Served on uvloop, as uvicorn would run it (a bare asyncio.run had lost it once).
            assert (await client.get(f"{base}/health/live")).json() == {
                "status": "live",
                "service": name,
                "event_loop": "uvloop",
            }
            ready = (await client.get(f"{base}/health/ready")).json()
            lag = ready.pop("lag", None)
            assert ready == {
                "status": "ready",
                "checks": {"api": True, "postgresql": True, "kafka": True},
                "outbox": {"parked": 0, "held": 0},
            }
            if name == "reporting":  # how far its projection is behind the topics, once measured
                assert lag is None or (lag["events"] >= 0 and "oldest_unprocessed_age_s" in lag)
            else:
                assert lag is None
            text = (await client.get(f"{base}/metrics")).text
            for metric in (
                "homecare_events_handled_total",
                "homecare_handler_seconds_bucket",
                "homecare_outbox_backlog",
                "homecare_consumer_lag",
                "homecare_dead_letters_total",
                "homecare_outbox_parked_rows",
                "homecare_outbox_held_rows",
                "homecare_ready",
            ):
                assert metric in text, f"{name} /metrics lacks {metric}"
            assert f'homecare_ready{{service="{name}"}} 1.0' in text
            asyncapi = (await client.get(f"{stack.url(name)}/asyncapi.json")).json()
            assert asyncapi["asyncapi"] == "3.0.0"
            assert any(
                topics.resolve("brokerage.packages") == c["address"]
                or topics.resolve("providers.answers") == c["address"]
                for c in asyncapi["channels"].values()
            )
        brokerage_metrics = (await client.get(f"{stack.internal_url('brokerage')}/metrics")).text
        assert 'homecare_packages_waiting{status="unplaced",urgency="hospital_discharge"}' in brokerage_metrics
        applied = [
            line
            for line in brokerage_metrics.splitlines()
            if line.startswith("homecare_events_handled_total")
            and 'event_type="BidSubmitted"' in line
            and 'outcome="applied"' in line
        ]
        assert applied and float(applied[0].split()[-1]) > 0


async def test_kpis_equal_an_independent_computation_from_the_databases(known_batch, database_url):
    since, packages = known_batch
    ids = [p["package_id"] for p in packages]
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT * FROM brokerage.packages WHERE package_id::text = ANY($1)", ids)
        declines = await conn.fetch(
            """SELECT p.band, a.reason FROM brokerage.answers a JOIN brokerage.packages p USING (package_id)
                WHERE a.kind = 'decline' AND p.package_id::text = ANY($1)""",
            ids,
        )
    finally:
        await conn.close()
    placed = [r for r in rows if r["status"] == "placed"]
    unplaced = [r for r in rows if r["status"] == "unplaced"]
    # The reporting service answers from its projection: wait until it has applied the batch's events.
    for _ in range(60):
        result = json.loads(homecare("kpis", "--since", since.isoformat(), "--json").stdout)
        got = result["packages"]
        declined = sum(sum(r.values()) for r in result["declines_by_band"].values())
        if (got["requested"], got["placed"], got["unplaced"], declined) == (
            len(rows),
            len(placed),
            len(unplaced),
            len(declines),
        ):
            break
        await asyncio.sleep(1)
    assert result["packages"]["requested"] == len(rows) == 42
    assert result["packages"]["placed"] == len(placed) and result["packages"]["unplaced"] == len(unplaced)

    waits = defaultdict(list)
    for r in placed:
        waits[r["urgency"]].append((r["placed_at"] - r["requested_at"]).total_seconds())
    for urgency, values in waits.items():
        got = result["time_to_place"]["by_urgency"][urgency]
        assert got["count"] == len(values)
        assert got["median_s"] == pytest.approx(statistics.median(values), abs=1e-3)
        ordered = sorted(values)
        assert got["p90_s"] == pytest.approx(ordered[-(-len(ordered) * 90 // 100) - 1], abs=1e-3)

    queue: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in unplaced:
        queue[(r["zone"], r["band"])] += r["hours_per_week"]
    assert {(q["zone"], q["band"]): Decimal(q["hours"]) for q in result["unplaced_queue"]} == dict(queue)

    spend: dict[str, Decimal] = defaultdict(Decimal)
    hours: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in placed:
        spend[r["band"]] += r["hourly_rate"] * r["hours_per_week"]
        hours[r["zone"]][r["provider_id"]] += float(r["hours_per_week"])
    assert {b: Decimal(v) for b, v in result["weekly_spend_by_band"].items()} == {
        b: v.quantize(Decimal("0.01")) for b, v in spend.items()
    }
    for zone, by_provider in hours.items():
        total = sum(by_provider.values())
        hhi = round(sum((round(100 * h / total, 2)) ** 2 for h in by_provider.values()))
        assert result["concentration_by_zone"][zone]["hhi"] == hhi

    by_band: dict[str, Counter[str]] = defaultdict(Counter)
    for d in declines:
        by_band[d["band"]][d["reason"]] += 1
    assert result["declines_by_band"] == {b: dict(c) for b, c in by_band.items()}
    assert result["above_rate_exceptions"]["count"] == sum(r["hourly_rate"] > r["band_rate"] for r in placed)
    assert result["packages"]["rag"] in ("green", "amber", "red")


async def test_tail_shows_one_packages_journey_in_order(known_batch):
    _, packages = known_batch
    package = next(p for p in packages if p["status"] == "placed")
    lines = [
        json.loads(line)
        for line in homecare("tail", "--journey", package["package_id"], "--no-follow", "--json").stdout.splitlines()
    ]
    types = [line["event_type"] for line in lines]
    assert types[0] == "PackageRequested" and types[1] == "OfferMade"
    # The confirmation follows the placement; the placement's service agreement record (its own
    # topic, written with the placement) may be read on either side of the confirmation.
    confirmed = types.index("PlacementConfirmed")
    assert types.index("PackagePlaced") < confirmed
    assert set(types[confirmed + 1 :]) <= {"ServiceAgreementRecorded"}, types
    assert set(types[2 : types.index("PackagePlaced")]) <= {"BidSubmitted", "OfferDeclined", "OfferMade"}, types
    assert [line["at"] for line in lines] == sorted(line["at"] for line in lines)
    assert {line["package_id"] for line in lines} == {package["package_id"]}
    placed_line = lines[types.index("PackagePlaced")]
    assert placed_line["provider"] == package["provider_id"] and placed_line["zone"] == package["package"]["zone"]
    only_bids = homecare(
        "tail", "--type", "BidSubmitted", "--package", package["package_id"], "--no-follow"
    ).stdout.splitlines()
    assert only_bids and all("BidSubmitted" in line for line in only_bids)


async def test_lag_shows_a_stopped_consumer_and_clears_when_it_returns(stack):
    group = topics.group("notifications")

    def notifications_lag() -> list[dict]:
        return [r for r in json.loads(homecare("lag", "--json").stdout) if r["group"] == group]

    stack.stop("notifications")
    try:
        more = await place_batch(stack.url("brokerage"), batch(load_framework(), 8, seed=5), timeout=120)
        assert any(p["status"] == "placed" for p in more), "need a placement for notifications to miss"
        rows = notifications_lag()
        behind = [r for r in rows if r["lag"] > 0]
        assert behind, rows
        assert all(r["members"] == 0 for r in rows), "a stopped consumer's group has no active member"
        assert all(r["oldest_unprocessed_age_s"] is not None and r["oldest_unprocessed_age_s"] >= 0 for r in behind)
    finally:
        stack.start("notifications")
        stack.wait_ready("notifications")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = notifications_lag()
        if rows and all(r["lag"] == 0 for r in rows) and all(r["members"] >= 1 for r in rows):
            break
        await asyncio.sleep(1)
    assert all(r["lag"] == 0 for r in rows) and all(r["members"] >= 1 for r in rows), rows


async def test_health_and_metrics_need_a_token_on_the_api_port_and_the_internal_listener_serves_nothing_else(stack):
    """Issue 16: health and metrics are unauthenticated only on the internal listener (never
    published); on the API port any valid token for the service opens them; the internal
    listener serves no API operation, whatever the token."""
    async with httpx.AsyncClient() as client:
        for name in SERVICES:
            for path in ("/health/live", "/health/ready", "/metrics"):
                assert (await client.get(f"{stack.url(name)}{path}")).status_code == 401, (name, path)
                with_token = await client.get(f"{stack.url(name)}{path}", auth=staff("demo-ops"))
                assert with_token.status_code == 200, (name, path)
                assert (await client.get(f"{stack.internal_url(name)}{path}")).status_code == 200, (name, path)
            inside = await client.get(f"{stack.internal_url(name)}/asyncapi.json", auth=staff("demo-admin"))
            assert inside.status_code == 404, name
        listing = await client.get(f"{stack.internal_url('brokerage')}/packages", auth=staff("demo-broker"))
        assert listing.status_code == 404
