"""The reporting service as a separate process on the real Kafka and PostgreSQL, beside the other
services: its KPIs equal the old topic-scan KPIs (services/operations/kpis.py, reading every record
of the topics) over the same packages; its exports download as CSV and Parquet; bad input is a 422
naming the field; who may read what follows the permission table."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io

import httpx
import pyarrow.parquet as pq
import pytest

from services.bench.driver import place_batch
from services.operations import kpis as topic_scan
from services.runtime.reference import load_framework
from services.runtime.settings import admin_settings
from services.simulator.synthetic import batch
from tests.support import staff

pytestmark = [pytest.mark.infra, pytest.mark.e2e]

CLOCK = {"as_of", "longest_wait_s"}  # figures that move with the clock alone


def settled(data: object) -> object:
    if isinstance(data, dict):
        return {k: settled(v) for k, v in data.items() if k not in CLOCK}
    if isinstance(data, list):
        return [settled(v) for v in data]
    if isinstance(data, float):
        return round(data, 3)
    return data


@pytest.fixture(scope="module")
async def reporting_batch(stack):
    since = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.01)
    packages = await place_batch(stack.url("brokerage"), batch(load_framework(), 12, seed=404), timeout=180)
    return since, packages


async def test_reporting_kpis_equal_the_topic_scan_kpis_on_the_same_history(stack, reporting_batch):
    since, packages = reporting_batch
    until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    params = {"from": since.isoformat(), "to": until.isoformat()}
    bootstrap = admin_settings().kafka_bootstrap_servers
    old: dict = {}
    new: dict = {}
    async with httpx.AsyncClient(base_url=stack.url("reporting"), auth=staff("demo-ops"), timeout=30) as client:
        for _ in range(60):  # both read what has been published so far: wait until they settle on it
            old = await topic_scan.key_figures(bootstrap, start=since, end=until, now=dt.datetime.now(dt.UTC))
            response = await client.get("/kpis", params=params)
            assert response.status_code == 200, response.text
            new = response.json()
            if old["packages"]["requested"] == len(packages) and settled(
                {k: new[k] for k in old if k != "period"}
            ) == settled({k: v for k, v in old.items() if k != "period"}):
                break
            await asyncio.sleep(1)
    assert old["packages"]["requested"] == new["packages"]["requested"] == len(packages)
    assert old["packages"]["placed"] > 0
    for key in old:
        if key != "period":
            assert settled(new[key]) == settled(old[key]), key
    assert new["period"]["start"] == since.isoformat()


async def test_exports_download_as_csv_and_parquet(stack, reporting_batch):
    _, packages = reporting_batch
    async with httpx.AsyncClient(base_url=stack.url("reporting"), auth=staff("demo-admin"), timeout=30) as client:
        for _ in range(30):
            response = await client.get("/exports/packages.csv")
            assert response.status_code == 200, response.text
            exported = {r["package_id"] for r in csv.DictReader(io.StringIO(response.text))}
            if {p["package_id"] for p in packages} <= exported:
                break
            await asyncio.sleep(1)
        assert {p["package_id"] for p in packages} <= exported
        response = await client.get("/exports/placements.parquet")
        assert response.status_code == 200
        table = pq.read_table(io.BytesIO(response.content))
        placed = {p["package_id"] for p in packages if p["status"] == "placed"}
        assert placed <= set(table.column("package_id").to_pylist())
        bad = await client.get("/exports/placements.xlsx")
        assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "format"


async def test_bad_input_and_who_may_ask(stack):
    base = stack.url("reporting")
    async with httpx.AsyncClient(base_url=base, auth=staff("demo-ops"), timeout=30) as ops:
        bad = await ops.get("/kpis", params={"zone": "atlantis"})
        assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "zone"
        assert (await ops.get("/exports/packages.csv")).status_code == 403
    async with httpx.AsyncClient(base_url=base, auth=staff("demo-broker"), timeout=30) as broker:
        assert (await broker.get("/kpis")).status_code == 403
    assert httpx.get(f"{base}/kpis", timeout=10).status_code == 401


async def test_the_health_endpoint_says_how_far_the_projection_is_behind(stack, reporting_batch):
    lag = None
    async with httpx.AsyncClient(base_url=stack.internal_url("reporting"), timeout=10) as client:
        for _ in range(40):  # measured every 15 s
            ready = (await client.get("/health/ready")).json()
            lag = ready["lag"]
            if lag is not None:
                break
            await asyncio.sleep(1)
    assert lag is not None and isinstance(lag["events"], int) and lag["events"] >= 0
    assert "oldest_unprocessed_age_s" in lag and lag["measured_at"]
