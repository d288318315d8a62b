"""A tiny ``homecare bench`` run: the report's shape and its invariants, never its speed."""

from __future__ import annotations

import copy
import json

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console

from services.bench import benchmark, report
from services.bench.processes import ROOT, SERVICES, code_version
from services.cli import bench
from services.runtime.kafka import kafka_security
from services.runtime.settings import admin_settings


@pytest.mark.parametrize("instances", [1, 2])
async def test_a_small_benchmark_reports_every_measure(database_url, tmp_path, identity, instances):
    load = benchmark.Load(
        rate=10, seconds=2, warmup_seconds=1, burst=20, concurrency=4, baseline_messages=300, timeout=180
    )
    result = await benchmark.bench_async(
        load, 1, 7, tmp_path, profile=None, console=Console(quiet=True), extra_env={}, instances=instances
    )

    assert result["exit_codes"] and all(code in (0, -15) for code in result["exit_codes"].values())
    # The services ran this checkout's code (their working folder), and the result says so.
    assert result["code"] == code_version() and result["code"]["folder"] == str(ROOT)
    # The run leaves nothing behind: its database and its namespace's topics are gone.
    settings = admin_settings()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **kafka_security(admin_settings()))
    await admin.start()
    try:
        assert not [t for t in await admin.list_topics() if t.startswith(result["namespace"] + ".")]
    finally:
        await admin.close()
    server = await asyncpg.connect(database_url)
    try:
        assert not await server.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", result["database"])
    finally:
        await server.close()
    # Every instance ran (and stopped cleanly); figures stay per service, instances summed.
    assert len(result["exit_codes"]) == instances * len(SERVICES) and result["instances"] == instances
    (run,) = result["runs"]
    for phase, requests in (("fixed_rate", 20), ("as_fast_as_possible", 20)):
        measured = run[phase]
        assert measured["requests"] == requests
        assert sum(measured["outcomes"].values()) == requests  # every package came to rest
        placed = measured["outcomes"]["placed"]
        assert placed > 0 and len(measured["series"]) == placed  # every placement confirmed
        latency = measured["latency_seconds"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
        assert measured["events"] >= 4 * placed  # requested, offered, answered, placed, confirmed...
        # Where the latency went: every step of the journey measured, none longer than the whole.
        assert list(measured["stages"]) == [name for name, _, _ in benchmark.STAGES]
        for step in measured["stages"].values():
            assert step["p50"] is not None and 0 <= step["p50"] <= step["p99"] <= latency["max"]
        assert 0 < measured["machine_busy_percent"] <= 100
        # PostgreSQL's share by service (pg_stat_statements, which the local cluster loads): every
        # service ran statements, committed, and wrote to the write-ahead log.
        work = measured["statements_per_request"]
        for service in ("brokerage", "providers", "notifications"):
            assert work[service]["calls"] > 0 and work[service]["commits"] > 0 and work[service]["wal_kb"] > 0
        assert all(s["wal_kb"] >= 0 and s["exec_ms"] >= 0 for s in measured["heaviest_statements"])
        # Each service's CPU and the load generator's, and Kafka's and PostgreSQL's when they run here.
        assert set(SERVICES) | {"load_generator"} <= set(measured["cpu_seconds"])
        assert set(measured["cpu_seconds"]) <= set(SERVICES) | {"load_generator", "kafka", "postgresql"}
        assert all(seconds >= 0 for seconds in measured["cpu_seconds"].values())
    assert run["baseline"]["messages"] == 300 and run["baseline"]["per_second"] > 0

    summary = result["summary"]
    assert summary["runs"] == 1 and summary["latency_p99_s"] == run["fixed_rate"]["latency_seconds"]["p99"]
    # How fast the machine was before the run.
    assert run["machine"]["python_ms"] > 0 and summary["machine_python_ms"] == run["machine"]["python_ms"]
    assert run["machine"]["round_trip_us"] > 0 and summary["machine_round_trip_us"] == run["machine"]["round_trip_us"]
    assert all(summary["peak_rss_mb"][s] > 10 for s in SERVICES)
    assert summary["events_vs_baseline"] > 0

    # Each step's p99 at the fixed rate, in the summary and a row of the report.
    assert list(summary["stage_p99_s"]) == [name for name, _, _ in benchmark.STAGES]
    assert all(v is not None and v >= 0 for v in summary["stage_p99_s"].values())
    assert 0 < summary["machine_busy_percent"]["fixed_rate"] <= 100
    # The warm-up ran before the first run (10 requests at 10/s), reported apart, in no median.
    assert result["warm_up"]["requests"] == 10 and sum(result["warm_up"]["outcomes"].values()) == 10
    assert summary["warm_up_latency_p99_s"] == result["warm_up"]["latency_seconds"]["p99"]
    # ...and ended with the new database's tables analyzed (by ANALYZE, not autovacuum's look),
    # every service's among them: the runs are planned with statistics, as a running system is.
    analyzed = result["warm_up"]["analyzed_tables"]
    assert set(SERVICES) <= set(analyzed) and all(analyzed[s] >= 3 for s in SERVICES), analyzed
    slower_start = copy.deepcopy(result)
    slower_start["warm_up"]["latency_seconds"]["p99"] = 99.0
    assert report.summarise(slower_start)["latency_p99_s"] == summary["latency_p99_s"]
    report.draw(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
    json.dumps(result, default=str)  # the JSON report can be written
    measures = report.measures(result)
    # Every figure measured, those shown together ("a / b") too.
    assert len(measures) >= 10 and all("-" not in value.split(" / ") for _, value, _ in measures)
    text = bench.render(result, 80)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert all(value in text for _, value, _ in measures)
