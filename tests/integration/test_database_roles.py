"""Each service's database role has a generated password, stored as a SCRAM-SHA-256 verifier, and
the local cluster checks it (deploy/postgres.sh writes pg_hba.conf; provisioning sets the
passwords): a role's own name, or no password, does not log in."""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
import pytest

from services.runtime.settings import SCHEMA_OWNERS, load

pytestmark = pytest.mark.infra


async def test_every_service_role_has_a_scram_password(infra, database_url):
    admin = await asyncpg.connect(database_url)
    try:
        rows = await admin.fetch(
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY($1)", list(SCHEMA_OWNERS)
        )
    finally:
        await admin.close()
    assert {r["rolname"] for r in rows} == set(SCHEMA_OWNERS)
    for row in rows:
        assert (row["rolpassword"] or "").startswith("SCRAM-SHA-256$"), f"{row['rolname']} has no SCRAM password"


async def test_a_service_role_logs_in_with_its_password_only(infra, database_url):
    admin = await asyncpg.connect(database_url)
    try:
        methods = {
            r["auth_method"]
            for r in await admin.fetch(
                "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' AND 'all' = ANY(user_name)"
            )
        }
    finally:
        await admin.close()
    if methods != {"scram-sha-256"}:
        pytest.skip(f"this server lets service roles in by {sorted(methods)} (an older local cluster: reset it)")
    parts = urlsplit(database_url)
    for role in SCHEMA_OWNERS:
        settings = load(role)
        conn = await asyncpg.connect(settings.service_dsn)
        assert await conn.fetchval("SELECT current_user") == role
        await conn.close()
        for wrong in (role, "", "postgres"):
            with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
                await asyncpg.connect(
                    host=parts.hostname, port=parts.port, user=role, password=wrong or None, database=parts.path[1:]
                )
