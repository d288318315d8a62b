"""The sandbox (docs/guide/sandbox.md, decision 0116) as a provider's developer uses it: started by
``homecare sandbox start`` as separate processes on the real Kafka, PostgreSQL and identity
provider, on a namespace and a database of its own; a sandbox credential from ``homecare sandbox
credential``; the reference adapter (examples/reference-adapter/adapter.py, the published contract
only) registers, asks for test offers with ``sandbox-offer`` and lives through a whole offer without
a broker: a package that fits its rules is bid for, won (a ``won`` notice) and its made-up person
read; one that does not is declined with the rule's reason. ``homecare sandbox stop`` ends it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys

import asyncpg
import httpx
import pytest

from tests.support import ROOT, drop_database, drop_namespace, free_port

pytestmark = [pytest.mark.infra, pytest.mark.e2e]

PROVIDER = "hallaton-care"  # in the synthetic market: lutterworth, urban band, personal care
ADAPTER = ROOT / "examples/reference-adapter/adapter.py"


def homecare(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def journal(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def eventually(check, timeout: float = 45):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := check()):
        assert asyncio.get_running_loop().time() < deadline, f"{check.__name__} did not come true in {timeout} s"
        await asyncio.sleep(0.3)
    return found


@pytest.fixture
def sandbox(infra, identity, database_url, namespace, tmp_path):
    """``homecare sandbox start`` on a namespace and database of this session's; stopped after."""
    env = os.environ | {"HOMECARE_SANDBOX_DIR": str(tmp_path / "sandbox")}
    ns, database = f"{namespace}-sandbox", f"homecare_{namespace.replace('-', '_')}_sandbox"
    started = homecare(
        "sandbox", "start", "--namespace", ns, "--database", database, "--port-base", "0", "--json", env=env
    )
    try:
        assert started.returncode == 0, started.stderr
        state = json.loads(started.stdout)
        assert (state["namespace"], state["database"]) == (ns, database)
        status = homecare("sandbox", "status", "--json", env=env)
        assert status.returncode == 0 and all(s["ready"] for s in json.loads(status.stdout).values()), status.stdout
        yield {"state": state, "env": env}
    finally:
        stopped = homecare("sandbox", "stop", env=env)
        assert stopped.returncode == 0 and "killed" not in stopped.stdout, stopped.stdout + stopped.stderr
        assert homecare("sandbox", "status", env=env).returncode == 1  # not running any more
        asyncio.run(drop_database(infra, database))
        asyncio.run(drop_namespace(infra, ns))


async def test_the_reference_adapter_lives_through_whole_offers_in_the_sandbox(sandbox, tmp_path, database_url):
    urls = sandbox["state"]["urls"]
    issued = homecare("sandbox", "credential", PROVIDER, env=sandbox["env"])
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    assert token.startswith("hcp_")
    # The sandbox's own database: the main one (this session's) never hears of the sandbox's packages.
    port = free_port()
    env = os.environ | {
        "PROVIDERS_URL": urls["providers"],
        "PROVIDER_TOKEN": token,
        "SECRET_FILE": str(tmp_path / "secret.txt"),
        "JOURNAL_FILE": str(tmp_path / "journal.jsonl"),
        "PORT": str(port),
    }
    log = (tmp_path / "adapter.log").open("w")
    process = subprocess.Popen([sys.executable, str(ADAPTER), "serve"], env=env, stdout=log, stderr=log)
    try:
        for _ in range(300):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            await asyncio.sleep(0.1)

        def adapter(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, str(ADAPTER), *args], env=env, capture_output=True, text=True, timeout=60
            )

        # Room for a 14-hour package on the platform (the adapter's own rules stop at 12), as a developer would.
        async with httpx.AsyncClient(base_url=urls["providers"], headers={"Authorization": f"Bearer {token}"}) as c:
            me = (await c.get("/me")).json()
            free = float(me["committed_hours"]) + float(me["held_hours"]) + 40
            assert (await c.patch("/me", json={"weekly_capacity_hours": str(free)})).status_code == 200
        registered = adapter("register", f"http://127.0.0.1:{port}/homecare")
        assert registered.returncode == 0, registered.stderr
        fits = adapter("sandbox-offer", json.dumps({"zone": "lutterworth", "band": "urban"}))
        too_big = adapter(
            "sandbox-offer",
            json.dumps(
                {
                    "zone": "lutterworth",
                    "band": "urban",
                    "visits": {"calls_per_day": 2, "minutes_per_call": 60, "carers_per_call": 1, "days_per_week": 7},
                }
            ),
        )
        assert fits.returncode == too_big.returncode == 0, fits.stderr + too_big.stderr
        fits_id, too_big_id = (r.stdout.split()[2].rstrip(":") for r in (fits, too_big))
        assert fits.stdout.endswith("offered\n") and too_big.stdout.endswith("offered\n")

        def lived_through():
            entries = journal(tmp_path / "journal.jsonl")
            bid = [e for e in entries if e["event"] == "bid" and e["package_id"] == fits_id]
            won = [e for e in entries if e["event"] == "offer_closed" and e["package_id"] == fits_id]
            declined = [e for e in entries if e["event"] == "decline" and e["package_id"] == too_big_id]
            tested = [e for e in entries if e["event"] == "test_offer"]
            return (bid, won, declined) if bid and won and declined and tested else None

        [bid], [won], [declined] = await eventually(lived_through)
        assert bid["status"] == 200 and (won["outcome"], won["reason"]) == ("won", "placed_with_you")
        assert declined["status"] == 200 and declined["answer"] == {"reason": "capacity", "text": ""}
        assert not [e for e in journal(tmp_path / "journal.jsonl") if e["event"] == "refused"]
        async with httpx.AsyncClient(base_url=urls["providers"], headers={"Authorization": f"Bearer {token}"}) as c:
            person = (await c.get(f"/me/packages/{fits_id}/person")).json()
            offers = {o["package_id"]: o["status"] for o in (await c.get("/me/offers?status=all")).json()}
        assert person["nhs_number"].startswith("999"), "a made-up person: never an issued NHS number"
        assert (offers[fits_id], offers[too_big_id]) == ("won", "declined")
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
    # Nothing of the sandbox reached the session's own (non-sandbox) database.
    conn = await asyncpg.connect(database_url)
    try:
        if await conn.fetchval("SELECT to_regclass('brokerage.packages') IS NOT NULL"):
            assert not await conn.fetchval(
                "SELECT count(*) FROM brokerage.packages WHERE package_id = $1::uuid", fits_id
            )
    finally:
        await conn.close()
