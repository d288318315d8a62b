"""The benchmark: the whole pipeline under load, measured against what the broker allows here
(``homecare bench`` runs it).

One run: a fresh database and topic namespace, the three services as separate processes on a
synthetic county market (the seed market's providers, given room for the load), then, once
before the first run, a **warm-up** of ``--warmup`` seconds at the fixed rate (the cold start:
reported apart, in no median; decision 0146) ending with ANALYZE of the new database (decision
0150), and

1. **fixed rate**: package requests POSTed at ``--rate``/s for ``--seconds``; latency from the
   request accepted (the brokerage's ``requested_at``) to the placement confirmation stored
   (notifications' ``deliveries.created_at`` of the placement's messages), both stamped by the same machine,
   and each step's share of it (:data:`STAGES`);
2. **as fast as it can**: ``--burst`` requests from ``--concurrency`` clients at once;
   placements per second from the first request sent to the last confirmation stored;
3. **baseline**: a bare aiokafka consume-then-produce loop through the same broker (same
   message size, acks=all, idempotent producer, offsets committed), as the ceiling the broker
   and client allow on this machine; the pipeline's Kafka events/s is reported as a ratio of it.

CPU seconds (user + system) and peak RSS (the kernel's high-water mark, VmHWM) per service come
from psutil and /proc. ``--runs`` repeats phases 1-3 on the same stack; the report gives medians.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import httpx
import psutil
import yaml
from rich.console import Console

from services.bench.driver import wait_until_ready
from services.bench.processes import SERVICES, code_version, start_stack, stop_stack
from services.bench.report import summarise
from services.operations.kpis import percentile
from services.runtime.db import Connection
from services.runtime.oidc_client import OidcAuth, user_auth
from services.runtime.reference import DEFAULT_DIR, load_framework
from services.runtime.settings import admin_settings
from services.simulator.market import generate_market
from services.simulator.synthetic import batch

FINAL = ("placed", "unplaced", "awaiting_approval")
EVENT_BYTES = 1200  # about the size of an OfferMade, the commonest event: the baseline's message size


def bench_market(folder: Path, seed: int = 2021) -> Path:
    """The seed market with room for the load: same providers, zones, bands, skills and adapters,
    but capacity for tens of thousands of hours each, so that the benchmark measures the pipeline,
    not a market that is full after a hundred packages (the simulator is where supply is studied)."""
    providers = generate_market(load_framework(), seed)
    for p in providers:
        p["weekly_capacity_hours"] = 99_000  # the column holds under 100,000
        p["committed_hours"] = 0
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "framework.yaml").write_text((DEFAULT_DIR / "framework.yaml").read_text())
    (folder / "providers.yaml").write_text(yaml.safe_dump({"providers": providers}, sort_keys=False))
    return folder


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


# ---- process measures ----------------------------------------------------------------------


class ProcessWatch:
    """CPU seconds and peak RSS of the service processes, sampled in the background."""

    def __init__(
        self,
        pids: dict[str, int],
        infrastructure: tuple[str, str] | None = None,
        service_of: dict[str, str] | None = None,
    ) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        # Process name -> service (``brokerage-2`` -> ``brokerage``): figures are per service, all
        # its instances' CPU summed and the highest instance's peak RSS.
        self.service_of = service_of or {}
        self.infrastructure = infrastructure  # (Kafka bootstrap, database URL): their CPU too, if local
        self.sampled_peak = {name: 0 for name in pids}
        self._task: asyncio.Task | None = None

    def cpu(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            t = proc.cpu_times()
            service = self.service_of.get(name, name)
            out[service] = out.get(service, 0.0) + t.user + t.system
        own = psutil.Process().cpu_times()  # this process: the load generator shares the machine too
        out["load_generator"] = own.user + own.system
        return out | (infrastructure_cpu(*self.infrastructure) if self.infrastructure else {})

    def peak_rss_mb(self) -> dict[str, float]:
        """The kernel's high-water mark where it keeps one (Linux), else the highest sample."""
        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            peak = self.sampled_peak[name]
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
            except OSError:
                pass
            service = self.service_of.get(name, name)
            out[service] = max(out.get(service, 0.0), round(peak / 2**20, 1))
        return out

    async def _sample(self) -> None:
        while True:
            for name, proc in self.procs.items():
                with contextlib.suppress(psutil.Error):
                    self.sampled_peak[name] = max(self.sampled_peak[name], proc.memory_info().rss)
            await asyncio.sleep(0.25)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def infrastructure_cpu(kafka_bootstrap: str, database_url: str) -> dict[str, float]:
    """CPU seconds so far of the Kafka broker and the PostgreSQL server (all its backends), when
    they run on this machine: the share of the machine the pipeline's infrastructure takes."""
    ports = {
        "kafka": int(kafka_bootstrap.split(",")[0].rsplit(":", 1)[1]),
        "postgresql": urlsplit(database_url).port or 5432,
    }
    listening = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid and conn.laddr and conn.laddr.port in ports.values():
            listening[conn.laddr.port] = conn.pid
    out = {}
    for name, port in ports.items():
        if port not in listening:
            continue
        try:
            # The server's own time, its live children's (PostgreSQL's backends), and that of the
            # children it has reaped (a backend or autovacuum worker that exited): so the total
            # only grows, whoever comes and goes between two readings.
            root = psutil.Process(listening[port])
            t = root.cpu_times()
            total = t.user + t.system + t.children_user + t.children_system
            for proc in root.children():
                try:
                    t = proc.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
            out[name] = total
        except psutil.Error:
            pass
    return out


# ---- driving the load ----------------------------------------------------------------------


async def post_packages(
    session: aiohttp.ClientSession,
    brokerages: list[str],
    requests: list[dict],
    *,
    rate: float | None,
    concurrency: int,
    auth: OidcAuth,
) -> list[str]:
    """POST every request: at ``rate`` per second (each on its own task, so a slow answer does not
    hold up the schedule), or as fast as ``concurrency`` clients can when rate is None. The client
    is aiohttp's: the load generator shares the machine, and httpx took about a fifth of it."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, body: dict) -> str:
        brokerage = brokerages[i % len(brokerages)]  # round robin, as a load balancer would
        # A keep-alive connection the server is just closing fails the request: send it again,
        # safely, under the same Idempotency-Key.
        async with gate:
            # A broker's access token (refreshed before it expires): authentication is part of the load.
            headers = {"Idempotency-Key": str(uuid.uuid4()), "Authorization": f"Bearer {auth.token()}"}
            for attempt in range(3):
                try:
                    async with session.post(f"{brokerage}/packages", json=body, headers=headers) as r:
                        if r.status >= 400:
                            raise RuntimeError(f"POST /packages answered {r.status}: {await r.text()}")
                        return (await r.json())["package_id"]
                except aiohttp.ClientConnectionError:
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    if rate is None:
        return list(await asyncio.gather(*(one(i, b) for i, b in enumerate(requests))))
    tasks = []
    start = time.monotonic()
    for i, body in enumerate(requests):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, body)))
    return list(await asyncio.gather(*tasks))


async def wait_final(admin: Connection, ids: list[str], timeout: float) -> None:
    """Until every package rests (placed, unplaced, awaiting approval) and every placement's
    confirmation is stored. Each look asks only about the packages still pending, twice a second:
    the benchmark's own queries should cost the database little next to the load they measure."""
    deadline = time.monotonic() + timeout
    pending = [uuid.UUID(i) for i in ids]
    while True:
        rows = await admin.fetch(
            """SELECT p.package_id FROM brokerage.packages p
                WHERE p.package_id = ANY($1::uuid[])
                  AND (p.status <> ALL($2::text[])
                       OR (p.status = 'placed' AND NOT EXISTS (SELECT 1 FROM notifications.deliveries c
                                                               WHERE c.package_id = p.package_id
                                                                 AND c.event_type = 'PackagePlaced')))""",
            pending,
            list(FINAL),
        )
        pending = [r["package_id"] for r in rows]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(pending)} of {len(ids)} packages not final (or not confirmed) after {timeout:.0f} s"
            )
        await asyncio.sleep(0.5)


async def outcomes(admin: Connection, ids: list[str]) -> list[asyncpg.Record]:
    """Each package's status, and when each step of its journey happened (each stamped by the
    machine's one clock): requested, its offer received by the providers, the last answer given,
    placed, its placement confirmation stored."""
    return await admin.fetch(
        """SELECT p.package_id, p.status, p.requested_at, p.placed_at,
                  (SELECT min(c.created_at) FROM notifications.deliveries c
                    WHERE c.package_id = p.package_id AND c.event_type = 'PackagePlaced') AS confirmed_at,
                  o.offer_received_at, o.answered_at
             FROM brokerage.packages p
             LEFT JOIN LATERAL (SELECT min(received_at) AS offer_received_at, max(answered_at) AS answered_at
                                  FROM providers.offers WHERE package_id = p.package_id) o ON true
            WHERE p.package_id = ANY($1::uuid[])""",
        [uuid.UUID(i) for i in ids],
    )


async def events_between(admin: Connection, start: dt.datetime, end: dt.datetime) -> int:
    """Events the three services wrote to their outboxes - and so to Kafka - in the period."""
    total = 0
    for schema in SERVICES:
        total += await admin.fetchval(
            f"SELECT count(*) FROM {schema}.outbox WHERE created_at >= $1 AND created_at < $2", start, end
        )
    return total


# ---- the baseline ------------------------------------------------------------------------


async def kafka_baseline(bootstrap: str, namespace: str, *, messages: int, size: int) -> dict:
    """A bare consume-then-produce loop: the most one hop can do through this broker here."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from services.runtime.kafka import kafka_security

    # As the operator: the baseline's own topics are no service's (on a secured cluster, the
    # same SASL/SCRAM connections the services make, so the comparison stays fair).
    security = kafka_security(admin_settings(bootstrap))
    source, sink = f"{namespace}.baseline-in", f"{namespace}.baseline-out"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in (source, sink)])
    except Exception:  # already there from an earlier run
        pass
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5, **security
    )
    await producer.start()
    payload = b"x" * size
    try:
        await asyncio.gather(*[await producer.send(source, payload, key=str(i % 64).encode()) for i in range(messages)])
        consumer = AIOKafkaConsumer(
            source,
            bootstrap_servers=bootstrap,
            group_id=f"{namespace}.baseline-{uuid.uuid4().hex[:6]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **security,
        )
        await consumer.start()
        try:
            moved, started = 0, None
            while moved < messages:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                if started is None and batches:
                    started = time.monotonic()
                sends = [await producer.send(sink, r.value, key=r.key) for rs in batches.values() for r in rs]
                await asyncio.gather(*sends)
                await consumer.commit()
                moved += len(sends)
            seconds = time.monotonic() - (started or time.monotonic())
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    return {
        "messages": messages,
        "bytes_each": size,
        "seconds": round(seconds, 3),
        "per_second": round(messages / seconds, 1),
    }


# ---- one run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    rate: float = 50.0
    seconds: float = 30.0
    # Requests at the fixed rate before the first run, reported apart and in no median: the
    # stack's first seconds (each connection preparing its statements, first sends to each topic)
    # are a cold start, not the steady state the latency target is about (decision 0146).
    warmup_seconds: float = 10.0
    burst: int = 1500
    concurrency: int = 32
    baseline_messages: int = 20000
    timeout: float = 300.0


async def run_phase(
    client: aiohttp.ClientSession,
    admin: Connection,
    brokerages: list[str],
    requests: list[dict],
    watch: ProcessWatch,
    *,
    rate: float | None,
    concurrency: int,
    timeout: float,
    auth: OidcAuth,
) -> dict:
    await reset_statements(admin)
    cpu0 = watch.cpu()
    busy0 = machine_busy()
    wall0 = time.monotonic()
    t0 = dt.datetime.now(dt.UTC)
    ids = await post_packages(client, brokerages, requests, rate=rate, concurrency=concurrency, auth=auth)
    posted = time.monotonic() - wall0
    await wait_final(admin, ids, timeout)
    t1 = dt.datetime.now(dt.UTC)
    seconds = time.monotonic() - wall0
    cpu1 = watch.cpu()
    busy1 = machine_busy()
    rows = await outcomes(admin, ids)
    placed = sorted((r for r in rows if r["status"] == "placed"), key=lambda r: r["confirmed_at"])
    latencies = [(r["confirmed_at"] - r["requested_at"]).total_seconds() for r in placed]
    # Placements per second from the first request sent to the last confirmation stored: the
    # whole job. (A window in the middle of the confirmations would flatter it: the brokerage
    # accepts a burst of requests faster than the pipeline places them, so most confirmations
    # come after the last request, in a drain at twice the rate the system can sustain.)
    span = (placed[-1]["confirmed_at"] - t0).total_seconds() if placed else 0
    events = await events_between(admin, t0, t1)
    statements = await statements_by_role(admin, len(requests))
    heaviest = await heaviest_statements(admin, len(requests))
    statuses = {s: sum(r["status"] == s for r in rows) for s in FINAL}
    return {
        "requests": len(requests),
        "posting_seconds": round(posted, 2),
        "seconds": round(seconds, 2),
        "outcomes": statuses,
        "placements_per_second": round(len(placed) / span, 1) if span > 0 else None,
        "latency_seconds": {
            "p50": _r(percentile(latencies, 50)),
            "p95": _r(percentile(latencies, 95)),
            "p99": _r(percentile(latencies, 99)),
            "max": _r(max(latencies, default=None)),
        },
        "events": events,
        "events_per_second": round(events / seconds, 1) if seconds else None,
        "cpu_seconds": {n: round(cpu1[n] - cpu0[n], 2) for n in cpu1 if n in cpu0},
        # The share of the machine's CPUs that was busy, every process counted (this one's, and
        # Keycloak's); near 100 at the fixed rate means the rate is at the machine's capacity.
        "machine_busy_percent": _busy_percent(busy0, busy1),
        "stages": stages(placed),
        "cpu_ms_per_request": round(
            sum(cpu1[n] - cpu0[n] for n in cpu1 if n in cpu0) * 1000 / max(len(requests), 1), 1
        ),
        "statements_per_request": statements,
        "heaviest_statements": heaviest,
        "series": [
            {
                "requested_s": round((r["requested_at"] - t0).total_seconds(), 3),
                "confirmed_s": round((r["confirmed_at"] - t0).total_seconds(), 3),
                "latency_s": round((r["confirmed_at"] - r["requested_at"]).total_seconds(), 4),
            }
            for r in placed
        ],
    }


async def reset_statements(admin: Connection) -> None:
    """Zero PostgreSQL's statement statistics for the benchmark's database (pg_stat_statements,
    loaded by deploy/postgres.sh); nothing when the server does not have it."""
    with contextlib.suppress(asyncpg.PostgresError):
        await admin.execute(
            "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)"
        )


async def statements_by_role(admin: Connection, requests: int) -> dict[str, dict[str, float]]:
    """PostgreSQL's work in a phase per database role (one role a service), divided by the
    phase's requests: ``{role: {"calls": statements, "exec_ms": execution milliseconds,
    "commits": transactions, "wal_kb": write-ahead log written, kB, "wal_fpi": full-page images
    in it}}``. The
    server's share of a placement, which its CPU seconds alone cannot split between services.
    Empty when pg_stat_statements is not loaded."""
    try:
        rows = await admin.fetch(
            """SELECT r.rolname AS role, sum(s.calls) AS calls, sum(s.total_exec_time) AS exec_ms,
                      sum(s.calls) FILTER (WHERE s.query ILIKE 'COMMIT%') AS commits,
                      sum(s.wal_bytes) AS wal_bytes, sum(s.wal_fpi) AS wal_fpi
                 FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
                WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                GROUP BY r.rolname"""
        )
    except asyncpg.PostgresError:
        return {}
    n = max(requests, 1)
    return {
        r["role"]: {
            "calls": round(float(r["calls"]) / n, 1),
            "exec_ms": round(float(r["exec_ms"]) / n, 2),
            "commits": round(float(r["commits"] or 0) / n, 2),
            "wal_kb": round(float(r["wal_bytes"] or 0) / n / 1024, 1),
            "wal_fpi": round(float(r["wal_fpi"] or 0) / n, 1),
        }
        for r in rows
    }


async def heaviest_statements(admin: Connection, requests: int, top: int = 40) -> list[dict]:
    """The phase's ``top`` statements by PostgreSQL execution time: role, calls and execution
    milliseconds and write-ahead log kB per request, and the statement's first 160 characters.
    Where to look next."""
    try:
        rows = await admin.fetch(
            """SELECT r.rolname AS role, s.calls, s.total_exec_time AS exec_ms, s.wal_bytes,
                      left(s.query, 160) AS query
                 FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
                WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                ORDER BY s.total_exec_time DESC LIMIT $1""",
            top,
        )
    except asyncpg.PostgresError:
        return []
    n = max(requests, 1)
    return [
        {
            "role": r["role"],
            "calls": round(r["calls"] / n, 2),
            "exec_ms": round(r["exec_ms"] / n, 3),
            "wal_kb": round(float(r["wal_bytes"]) / n / 1024, 2),
            "query": " ".join(r["query"].split()),
        }
        for r in rows
    ]


IDLE_SECONDS = 10.0


# Run in a process of its own (it forks): a fixed piece of pure Python, and round trips over a
# local socket between two processes - each a wake-up of the other, as every PostgreSQL statement
# and Kafka request is.
MACHINE_PROBE = """
import json, os, socket, time

def python_ms():
    started = time.perf_counter()
    total = 0
    for i in range(1_200_000):
        total += (i * i) % 7
    return (time.perf_counter() - started) * 1000

def round_trip_us(n=5_000):
    a, b = socket.socketpair()
    child = os.fork()
    if child == 0:
        for _ in range(n):
            b.send(b.recv(64))
        os._exit(0)
    started = time.perf_counter()
    for _ in range(n):
        a.send(b"x" * 32)
        a.recv(64)
    elapsed = time.perf_counter() - started
    os.waitpid(child, 0)
    return elapsed / n * 1e6

print(json.dumps({"python_ms": round(min(python_ms() for _ in range(3)), 1),
                  "round_trip_us": round(min(round_trip_us() for _ in range(3)), 1)}))
"""


def machine_speed() -> dict[str, float]:
    """How fast this machine is just now, with the stack at rest: ``{"python_ms": the best of three
    timings of a fixed piece of pure Python (about 0.1 s on the 2-core development machine),
    "round_trip_us": the best of three means of a round trip over a local socket between two
    processes}``; lower is faster. On the development machine the same code's CPU per package
    moved by more than half within an evening, so figures taken at different times compare only
    beside these."""
    done = subprocess.run([sys.executable, "-c", MACHINE_PROBE], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"the machine probe failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


async def idle_cpu(watch: ProcessWatch, seconds: float) -> dict[str, float]:
    """CPU per process while nothing is asked of the stack, as percent of one core: what the
    polling loops (outbox relays, timers, webhook senders, heartbeats) cost on their own. Every
    second a phase lasts adds this much to its CPU figures, so a slower run looks costlier."""
    cpu0 = watch.cpu()
    await asyncio.sleep(seconds)
    cpu1 = watch.cpu()
    return {n: round((cpu1[n] - cpu0[n]) / seconds * 100, 1) for n in cpu1 if n in cpu0}


# The steps of a placement's journey, each from the one before (columns of :func:`outcomes`).
STAGES = (
    ("offer_received", "requested_at", "offer_received_at"),  # brokerage plan + relay + Kafka + providers
    # To the last answer of the last round. The offer's receipt is the providers' transaction's
    # start (the database's now()) and an automatic adapter answers in that transaction: for a
    # package placed in its first round this is the time inside the providers' batch; a package
    # offered a second time counts the brokerage's second offer here too.
    ("answered", "offer_received_at", "answered_at"),
    ("placed", "answered_at", "placed_at"),  # relay + Kafka + the brokerage's award
    ("confirmed", "placed_at", "confirmed_at"),  # relay + Kafka + notifications
)


def stages(placed: list[asyncpg.Record]) -> dict[str, dict[str, float | None]]:
    """Where the latency goes: for each step of :data:`STAGES`, the p50 and p99 seconds it took
    (``{"offer_received": {"p50": s, "p99": s}, ...}``); a step whose times are missing is left out
    of its figures. The steps' p99s do not add up to the whole's: the slowest packages differ."""
    out: dict[str, dict[str, float | None]] = {}
    for name, start, end in STAGES:
        spans = [(r[end] - r[start]).total_seconds() for r in placed if r[start] and r[end]]
        out[name] = {"p50": _r(percentile(spans, 50)), "p99": _r(percentile(spans, 99))}
    return out


def machine_busy() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat; (0, 0) where there is none."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return (0, 0)
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle, sum(fields))


def _busy_percent(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    total = after[1] - before[1]
    return round(100 * (after[0] - before[0]) / total, 1) if total > 0 else None


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


async def bench_async(
    load: Load,
    runs: int,
    seed: int,
    out: Path,
    *,
    profile: str | None,
    console: Console,
    extra_env: dict[str, str],
    instances: int = 1,
) -> dict:
    """Run the benchmark: ``runs`` times a fixed-rate phase, an as-fast-as-possible phase and the
    Kafka baseline, on a fresh database and namespace, each service as ``instances`` processes
    (the requests spread over the brokerage instances round robin). The result: every run's
    figures, their medians (``summary``), the machine's CPUs and load."""
    settings = admin_settings()
    name = f"homecare_bench_{uuid.uuid4().hex[:8]}"
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    db_url = _with_database(settings.database_url, name)
    from services.runtime.db import provision

    await provision(db_url)
    market = bench_market(Path(tempfile.mkdtemp(prefix="homecare-bench-")) / "reference", seed)
    out.mkdir(parents=True, exist_ok=True)
    stack = start_stack(
        db_url,
        settings.kafka_bootstrap_servers,
        namespace,
        out / "logs",
        extra_env={"HOMECARE_REFERENCE_DIR": str(market), "LOG_LEVEL": "WARNING"} | extra_env,
    )
    result: dict = {
        "database": name,
        "namespace": namespace,
        "load": load.__dict__,
        "instances": instances,
        "runs": [],
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
    }
    profiler: subprocess.Popen | None = None
    admin: asyncpg.Connection | None = None
    try:  # from here on, whatever fails (a service that never gets ready...), the stack is stopped
        for n in range(2, instances + 1):  # more instances of every service, each its own process and ports
            for service in SERVICES:
                stack.start(f"{service}-{n}", service)
        for process in stack.procs:
            await asyncio.to_thread(stack.wait_ready, process)
        broker = user_auth("demo-broker")  # the load is a broker's requests, each with its access token
        # py-spy samples the running service from outside (only while it holds the GIL: its CPU, not
        # its waiting) and writes its profile when interrupted; an in-process profiler would lose its
        # report, since uvicorn ends the process by re-raising SIGTERM.
        profiler = (
            None
            if not profile
            else subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--gil",
                    "--nonblocking",
                    "--format",
                    "speedscope",
                    "-o",
                    str(out / f"profile-{profile}.json"),
                    "-p",
                    str(stack.procs[profile].pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        # The code the services run: ``python -m`` imports from the folder a service was started in.
        result["code"] = code_version(Path(psutil.Process(stack.procs["brokerage"].pid).cwd()))
        # The benchmark's own look-ups are cheap queries over many ids: no JIT compilation for them.
        admin = await asyncpg.connect(db_url, server_settings={"jit": "off"})
        watch = ProcessWatch(
            {n: p.pid for n, p in stack.procs.items()},
            infrastructure=(settings.kafka_bootstrap_servers, settings.database_url),
            service_of=stack.services,
        )
        watch.start()
        urls = {n: stack.url(n) for n in SERVICES}
        brokerages = [stack.url(n) for n, service in stack.services.items() if service == "brokerage"]
        async with httpx.AsyncClient(timeout=60, auth=broker) as probe:
            await wait_until_ready(probe, urls, timeout=120)
        with console.status(f"idle: {IDLE_SECONDS:g} s with no requests..."):
            result["idle_cpu_percent"] = await idle_cpu(watch, IDLE_SECONDS)
        connector = aiohttp.TCPConnector(limit=max(64, load.concurrency) + 8)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as client:
            framework = load_framework()
            rng = random.Random(seed)

            async def at_fixed_rate(session: aiohttp.ClientSession, requests: list[dict]) -> dict:
                return await run_phase(
                    session,
                    admin,
                    brokerages,
                    requests,
                    watch,
                    rate=load.rate,
                    concurrency=max(64, load.concurrency),
                    timeout=load.timeout,
                    auth=broker,
                )

            if load.warmup_seconds > 0:
                # Its own requests, from a generator of its own: a seed's runs send the same
                # requests whatever the warm-up.
                warm_seed = random.Random(f"{seed}:warm-up").randrange(1 << 30)
                warm = batch(framework, int(load.rate * load.warmup_seconds), seed=warm_seed)
                with console.status(f"warm-up: {len(warm)} requests at {load.rate:g}/s..."):
                    result["warm_up"] = await at_fixed_rate(client, warm)
                # The warm-up leaves the tables with statistics, as a running system's have: a new
                # database has none until autovacuum's first look (a minute), and without them the
                # answers' lock took 2.4 ms a call in the first run, 0.1 ms after (decision 0150).
                await admin.execute("ANALYZE")
                analyzed = await admin.fetch(
                    """SELECT schemaname, count(*) AS tables FROM pg_stat_user_tables
                        WHERE last_analyze IS NOT NULL GROUP BY schemaname ORDER BY schemaname"""
                )
                result["warm_up"]["analyzed_tables"] = {r["schemaname"]: r["tables"] for r in analyzed}
            for run in range(runs):
                speed = await asyncio.to_thread(machine_speed)  # a second or so: not on the loop
                fixed = batch(framework, int(load.rate * load.seconds), seed=rng.randrange(1 << 30))
                burst = batch(framework, load.burst, seed=rng.randrange(1 << 30))
                with console.status(f"run {run + 1}/{runs}: {len(fixed)} requests at {load.rate:g}/s..."):
                    fixed_rate = await at_fixed_rate(client, fixed)
                with console.status(f"run {run + 1}/{runs}: {len(burst)} requests as fast as possible..."):
                    fastest = await run_phase(
                        client,
                        admin,
                        brokerages,
                        burst,
                        watch,
                        rate=None,
                        concurrency=load.concurrency,
                        timeout=load.timeout,
                        auth=broker,
                    )
                with console.status(f"run {run + 1}/{runs}: baseline consume-then-produce loop..."):
                    baseline = await kafka_baseline(
                        settings.kafka_bootstrap_servers, namespace, messages=load.baseline_messages, size=EVENT_BYTES
                    )
                result["runs"].append(
                    {
                        "machine": speed,
                        "fixed_rate": fixed_rate,
                        "as_fast_as_possible": fastest,
                        "baseline": baseline,
                    }
                )
        result["peak_rss_mb"] = watch.peak_rss_mb()
        await watch.stop()
    finally:
        if admin is not None:
            await admin.close()
        if profiler:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=120)
        result["exit_codes"] = stop_stack(stack)
        await _drop(settings.database_url, name)
        await _remove_topics(console, settings.kafka_bootstrap_servers, namespace)
    result["summary"] = summarise(result)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    return result


async def _remove_topics(console: Console, bootstrap: str, namespace: str) -> None:
    """The run's namespace off the broker (its topics, the baseline's, their ACLs), as the
    administrator; a broker that cannot be reached is said, not raised (the figures are made)."""
    from services.runtime.kafka import kafka_security, remove_namespace

    baseline = [f"{namespace}.baseline-in", f"{namespace}.baseline-out"]
    try:
        await remove_namespace(bootstrap, namespace, kafka_security(admin_settings(bootstrap)), more_topics=baseline)
    except Exception as exc:
        console.print(f"[yellow]could not delete the run's topics ({namespace}.*): {exc!r}[/yellow]")


async def _drop(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(_with_database(admin_url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
