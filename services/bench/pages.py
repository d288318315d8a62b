"""``homecare console bench``: how long the console takes to answer each page, with the tables at
the size years of work give them (issue 19: every page's server time p95 < 300 ms with 50,000
packages; issue 17: the operations pages' p95 < 500 ms).

1. A fresh database and topic namespace; the four services and the console as processes on the
   synthetic market (as ``homecare bench``).
2. ``--real`` packages go through the whole pipeline (requests, offers, bids, awards,
   confirmations, the reporting projection), each through the brokerage's API as a broker.
3. Their rows are copied in SQL, in every table that has a ``package_id`` in the brokerage,
   providers, notifications and reporting schemas, until there are ``--packages`` packages
   (:func:`clone_packages`): each copy gets ids of its own (every uuid column mapped the same way
   in every table, so the copies' rows refer to each other as the originals do) and, in the
   reporting projection, dates spread back over five years, so a KPI of the last 365 days reads a
   year's share of them. Copying is how 50,000 packages fit in a benchmark: the pipeline itself
   places about 50 a second here (docs/benchmark.md).
4. Each staff role signs in through the identity provider, as a browser would (the console's
   authorization code flow), and asks for every page of its menu, a package's page and a
   provider's page ``--requests`` times, one at a time. The time of a request is measured from
   the client on the same machine (loopback), so it is the server's time plus well under a
   millisecond.
5. ``homecare kpis --period 365d`` runs three times against the reporting service (a year of the
   five holds about 10,000 packages, as the five generated years of ``homecare reporting bench``
   do).

The database and namespace are removed afterwards."""

from __future__ import annotations

import asyncio
import html
import math
import os
import re
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import asyncpg
import httpx
from rich.console import Console

from services.bench.benchmark import _drop, _with_database, bench_market, post_packages, wait_final
from services.bench.driver import wait_until_ready
from services.bench.processes import SERVICES, start_stack, stop_stack
from services.bench.reporting import time_kpis_command
from services.operations.kpis import percentile
from services.runtime import permissions
from services.runtime.oidc_client import DEMO_USERS, identity_env, user_auth
from services.runtime.reference import load_framework
from services.runtime.settings import admin_settings
from services.simulator.synthetic import batch

SCHEMAS = ("brokerage", "providers", "notifications", "reporting")
# Rows whose copies would start work of their own (a delivery still to send) are not copied.
NOT_COPIED = {("notifications", "deliveries"): "status <> 'pending'"}
FIVE_YEARS_DAYS = 5 * 365
TARGET_MS = 300  # issue 19: every page
OPERATIONS_TARGET_MS = 500  # issue 17: the operations pages
OPERATIONS_PAGES = ("/ops",)


async def clone_packages(conn: asyncpg.Connection, copies: int, schemas: tuple[str, ...] = SCHEMAS) -> dict[str, int]:
    """Copy every row of every table with a ``package_id`` column in ``schemas``, ``copies``
    times: uuid columns mapped to ``md5(value || ':' || copy)`` (the same in every table, so
    references between rows hold), identity and sequence columns left to their defaults, and in
    the reporting schema every date and timestamp moved back ``copy * 7 % 1825`` days. Rows go in
    with ``session_replication_role = replica`` (no triggers, no foreign-key checks: the copies
    are made consistent by the mapping, not checked one by one) and ``ON CONFLICT DO NOTHING``.
    Returns the rows added per table ("schema.table")."""
    tables = await conn.fetch(
        """SELECT c.table_schema AS schema, c.table_name AS name
             FROM information_schema.columns c
             JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
            WHERE c.column_name = 'package_id' AND t.table_type = 'BASE TABLE' AND c.table_schema = ANY($1::text[])
            ORDER BY 1, 2""",
        list(schemas),
    )
    added: dict[str, int] = {}
    await conn.execute("SET session_replication_role = replica")
    try:
        for table in tables:
            schema, name = table["schema"], table["name"]
            columns = await conn.fetch(
                """SELECT column_name, data_type, is_identity, is_generated, column_default
                     FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2
                    ORDER BY ordinal_position""",
                schema,
                name,
            )
            targets, values = [], []
            for c in columns:
                if c["is_identity"] == "YES" or c["is_generated"] == "ALWAYS":
                    continue
                if (c["column_default"] or "").startswith("nextval("):
                    continue
                column = f'"{c["column_name"]}"'
                kind = c["data_type"]
                if kind == "uuid":
                    value = f"md5({column}::text || ':' || copy_no)::uuid"
                elif schema == "reporting" and kind == "date":
                    value = f"{column} - (copy_no * 7 % {FIVE_YEARS_DAYS})"
                elif schema == "reporting" and kind.startswith("timestamp"):
                    value = f"{column} - make_interval(days => copy_no * 7 % {FIVE_YEARS_DAYS})"
                else:
                    value = column
                targets.append(column)
                values.append(value)
            where = NOT_COPIED.get((schema, name))
            status = await conn.execute(
                f'INSERT INTO "{schema}"."{name}" ({", ".join(targets)}) '
                f'SELECT {", ".join(values)} FROM "{schema}"."{name}" '
                f"CROSS JOIN generate_series(1, $1) AS copy_no "
                f"{'WHERE ' + where if where else ''} ON CONFLICT DO NOTHING",
                copies,
            )
            added[f"{schema}.{name}"] = int(status.split()[-1])
    finally:
        await conn.execute("SET session_replication_role = origin")
    await conn.execute("ANALYZE")  # the planner's statistics describe the copied tables, not the small ones
    return added


async def signed_in(console_url: str, username: str, password: str) -> httpx.AsyncClient:
    """An HTTP client holding a console session of ``username``, signed in through the identity
    provider's login form as a browser would (authorization code with PKCE, the console's own)."""
    client = httpx.AsyncClient(base_url=console_url, timeout=60, follow_redirects=False)
    response = await client.get("/sign-in/start")
    location = response.headers.get("location", "")
    async with httpx.AsyncClient(timeout=60) as browser:
        login = await browser.get(location)
        form = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', login.text)
        if not form:
            raise RuntimeError(f"no login form at the identity provider ({login.status_code})")
        # Keycloak marks its cookies Secure even on http://127.0.0.1; sent by hand, as a browser would.
        cookies = "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar)
        answer = await browser.post(
            html.unescape(form.group(1)),
            data={"username": username, "password": password},
            headers={"Cookie": cookies},
        )
    if answer.status_code != 302:
        raise RuntimeError(f"{username} could not sign in at the identity provider ({answer.status_code})")
    back = await client.get(answer.headers["location"])
    if back.status_code not in (302, 303):
        raise RuntimeError(f"the console refused {username}'s sign-in ({back.status_code})")
    return client


def menu_of(page: str) -> list[str]:
    """The links of a console page's menu (the GOV.UK service navigation), in order, once each."""
    nav = re.search(r'<nav aria-label="Menu".*?</nav>', page, re.S)
    links = re.findall(r'href="(/[^"]*)"', nav.group(0)) if nav else []
    return [link for link in dict.fromkeys(links) if not link.startswith(("/sign-out", "/static"))]


async def time_pages(client: httpx.AsyncClient, paths: list[str], requests: int) -> dict[str, dict[str, Any]]:
    """Each path asked ``requests`` times, one at a time (after one unmeasured request that warms
    the caches): {path: {status, p50_ms, p95_ms, max_ms}}."""
    timings: dict[str, dict[str, Any]] = {}
    for path in paths:
        warm = await client.get(path)
        spent = []
        for _ in range(requests):
            started = time.perf_counter()
            response = await client.get(path)
            spent.append((time.perf_counter() - started) * 1000)
        timings[path] = {
            "status": response.status_code if response.status_code == warm.status_code else "varied",
            "p50_ms": round(statistics.median(spent), 1),
            "p95_ms": round(percentile(spent, 95) or 0, 1),
            "max_ms": round(max(spent), 1),
        }
    return timings


async def bench_pages_async(
    *, packages: int, real: int, requests: int, seed: int, out: Path, console: Console
) -> dict[str, Any]:
    """Run the page benchmark (the module's docstring); the result: packages made and copied,
    rows per table, and per role the timings of each page."""
    settings = admin_settings()
    database = f"homecare_pages_{uuid.uuid4().hex[:8]}"
    namespace = f"pages-{uuid.uuid4().hex[:8]}"
    db_url = _with_database(settings.database_url, database)
    from services.runtime.db import provision

    await provision(db_url)
    market = bench_market(Path(tempfile.mkdtemp(prefix="homecare-pages-")) / "reference", seed)
    out.mkdir(parents=True, exist_ok=True)
    env = identity_env()
    password = env.get("HOMECARE_DEMO_PASSWORD", "")
    result: dict[str, Any] = {"database": database, "namespace": namespace, "requests_per_page": requests}
    stack = start_stack(
        db_url,
        settings.kafka_bootstrap_servers,
        namespace,
        out / "logs",
        extra_env={"HOMECARE_REFERENCE_DIR": str(market), "LOG_LEVEL": "WARNING"},
        console=True,
    )
    admin: asyncpg.Connection | None = None
    try:  # from here on, whatever fails, the stack is stopped and the database dropped
        admin = await asyncpg.connect(db_url, server_settings={"jit": "off"})
        broker = user_auth(DEMO_USERS[permissions.BROKER])
        async with httpx.AsyncClient(timeout=60, auth=broker) as probe:
            await wait_until_ready(probe, {n: stack.url(n) for n in SERVICES}, timeout=120)
        with console.status(f"{real} packages through the pipeline..."):
            async with aiohttp.ClientSession() as session:
                ids = await post_packages(
                    session,
                    [stack.url("brokerage")],
                    batch(load_framework(market), real, seed=seed),
                    rate=None,
                    concurrency=16,
                    auth=broker,
                )
            await wait_final(admin, ids, timeout=600)
            await _caught_up(admin, len(ids))
        copies = max(0, math.ceil(packages / max(real, 1)) - 1)
        with console.status(f"copying them {copies} times..."):
            started = time.monotonic()
            result["rows_added"] = await clone_packages(admin, copies)
            result["copy_seconds"] = round(time.monotonic() - started, 1)
        result["packages"] = await admin.fetchval("SELECT count(*) FROM brokerage.packages")
        result["reporting_packages"] = await admin.fetchval("SELECT count(*) FROM reporting.packages")
        package_id = ids[0]
        provider_id = await admin.fetchval("SELECT provider_id FROM providers.providers ORDER BY provider_id LIMIT 1")
        result["roles"] = {}
        for role in [r for r in permissions.STAFF_ROLES if r != permissions.PROVIDER_STAFF]:
            with console.status(f"pages of {role}..."):
                client = await signed_in(stack.url("console"), DEMO_USERS[role], password)
                try:
                    home = await client.get("/")
                    if home.status_code in (302, 303):
                        home = await client.get(urljoin(stack.url("console"), home.headers["location"]))
                    paths = menu_of(home.text)
                    for detail in (f"/packages/{package_id}", f"/admin/providers/{provider_id}"):
                        if (await client.get(detail)).status_code == 200:
                            paths.append(detail)
                    result["roles"][role] = await time_pages(client, paths, requests)
                finally:
                    await client.aclose()
        with console.status("homecare kpis --period 365d, three times..."):
            result["kpis_cli"] = time_kpis_command(stack.url("reporting"), dict(os.environ) | env)
    finally:
        if admin is not None:
            await admin.close()
        stop_stack(stack)
        await _drop(settings.database_url, database)
    result["summary"] = summarise_pages(result["roles"])
    return result


async def _caught_up(admin: asyncpg.Connection, count: int, timeout: float = 120) -> None:
    """Until the reporting projection holds the pipeline's packages (it lags the topics a little)."""
    deadline = time.monotonic() + timeout
    while await admin.fetchval("SELECT count(*) FROM reporting.packages") < count:
        if time.monotonic() > deadline:
            raise TimeoutError("the reporting projection did not catch up with the pipeline")
        await asyncio.sleep(0.5)


def summarise_pages(roles: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The slowest page (by p95) over every role, and the pages over their targets."""
    rows = [(role, path, t) for role, pages in roles.items() for path, t in pages.items()]
    over = [
        {"role": role, "path": path, "p95_ms": t["p95_ms"], "target_ms": target_of(path)}
        for role, path, t in rows
        if t["p95_ms"] >= target_of(path)
    ]
    slowest = max(rows, key=lambda r: r[2]["p95_ms"], default=None)
    return {
        "pages_timed": len(rows),
        "errors": [{"role": r, "path": p, "status": t["status"]} for r, p, t in rows if t["status"] != 200],
        "slowest": None if slowest is None else {"role": slowest[0], "path": slowest[1], **slowest[2]},
        "over_target": over,
    }


def target_of(path: str) -> int:
    """The p95 a page must stay under: 500 ms for the operations pages (issue 17), else 300 ms."""
    return OPERATIONS_TARGET_MS if path.startswith(OPERATIONS_PAGES) else TARGET_MS
