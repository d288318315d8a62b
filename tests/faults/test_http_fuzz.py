"""Every service's HTTP API fuzzed from its own OpenAPI document with schemathesis: no request
gets a 5xx, and none leaves a package half-written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.support import SERVICES, bearer_of

# A role that may call most of each API, so the requests reach the handlers, not just the 401.
FUZZ_AS = {
    "brokerage": "demo-manager",
    "providers": "demo-admin",
    "notifications": "demo-admin",
    "reporting": "demo-manager",
}

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_PER_OPERATION = 40


@pytest.mark.parametrize("name", SERVICES)
def test_no_request_gets_a_server_error(stack, name, artifacts):
    st = Path(sys.executable).parent / "st"
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{stack.url(name)}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            "20261123",
            "--no-color",
            "--header",
            f"Authorization: {bearer_of(FUZZ_AS[name])['Authorization']}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    (artifacts / f"schemathesis-{name}.txt").write_text(result.stdout + result.stderr)
    generated = re.search(r"(\d+) generated", result.stdout)
    assert result.returncode == 0, result.stdout[-3000:]
    assert generated and int(generated.group(1)) > 50, "schemathesis generated too few requests to mean anything"
    figures = artifacts / "http-fuzz.json"
    data = json.loads(figures.read_text()) if figures.exists() else {}
    data[name] = int(generated.group(1))
    figures.write_text(json.dumps(data, indent=2))


async def test_no_package_is_half_written(stack, database_url):
    conn = await asyncpg.connect(database_url)
    try:
        broken = await conn.fetch(
            """SELECT p.package_id FROM brokerage.packages p
                WHERE NOT EXISTS (SELECT 1 FROM brokerage.persons s WHERE s.package_id = p.package_id)
                   OR NOT EXISTS (SELECT 1 FROM brokerage.timeline t WHERE t.package_id = p.package_id AND t.stage
                       = 'requested')
                   OR (p.status = 'offered' AND NOT EXISTS (SELECT 1 FROM brokerage.offer_rounds r WHERE
                       r.package_id = p.package_id))"""
        )
        assert not broken, f"{len(broken)} half-written packages"
        orphans = await conn.fetchval(
            "SELECT count(*) FROM brokerage.persons s WHERE NOT EXISTS (SELECT 1 FROM brokerage.packages p WHERE "
            "p.package_id = s.package_id)"
        )
        assert orphans == 0
    finally:
        await conn.close()
