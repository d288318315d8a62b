"""Running the three services as separate OS processes, for the end-to-end and fault tests."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx

from services.bench import processes
from services.bench.processes import ROOT, SERVICES, Stack, free_port, stop_stack  # noqa: F401  (shared with the benchmark)
from services.brokerage.repository import IN_FORCE
from services.runtime.db import create_pool, migrate
from services.runtime.oidc_client import DEMO_USERS, OidcAuth, user_auth

CLI_CLIENT = "homecare-cli"  # development and tests only: the password grant for the demo users
# One demo user per role (deploy/keycloak/realm-homecare.json).
USER_OF_ROLE = DEMO_USERS


@dataclass
class Identity:
    """The identity provider the tests use: its settings, and tokens from it (cached until near expiry)."""

    settings: dict[str, str]
    _auths: dict[tuple[str, str], OidcAuth] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return self.settings["OIDC_ISSUER"]

    def user(self, username: str, client_id: str = CLI_CLIENT) -> OidcAuth:
        """An httpx auth signing in ``username`` (the demo password) through ``client_id``."""
        key = (client_id, username)
        if key not in self._auths:
            self._auths[key] = OidcAuth(
                self.issuer, client_id, username=username, password=self.settings["HOMECARE_DEMO_PASSWORD"]
            )
        return self._auths[key]

    def client(self, client_id: str) -> OidcAuth:
        """An httpx auth for a service's client credentials (``<CLIENT>_OIDC_CLIENT_SECRET``)."""
        key = (client_id, "")
        if key not in self._auths:
            secret = self.settings[f"{client_id.upper()}_OIDC_CLIENT_SECRET"]
            self._auths[key] = OidcAuth(self.issuer, client_id, client_secret=secret)
        return self._auths[key]

    def token(self, username: str, client_id: str = CLI_CLIENT) -> str:
        return self.user(username, client_id).token()

    def headers(self, username: str = "demo-broker") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(username)}"}

    def http(self, base_url: str, username: str = "demo-broker", **kwargs) -> httpx.Client:
        """A client of an API acting as ``username``."""
        return httpx.Client(base_url=base_url, auth=self.user(username), **kwargs)


_staff: dict[str, OidcAuth] = {}


def staff(username: str = "demo-broker") -> OidcAuth:
    """An httpx auth acting as a demo user (one per role: USER_OF_ROLE) of the session's identity
    provider - the ``identity`` fixture put its settings in the environment. Cached per user."""
    if username not in _staff:
        _staff[username] = user_auth(username)
    return _staff[username]


def bearer_of(username: str = "demo-broker") -> dict[str, str]:
    """``Authorization`` header of a demo user's current access token."""
    return {"Authorization": f"Bearer {staff(username).token()}"}


def start_stack(
    database_url: str,
    kafka: str,
    namespace: str,
    logs: Path,
    extra_env: dict[str, str] | None = None,
    *,
    console: bool = False,
    **settings: str,
) -> Stack:
    """The services as processes, validating tokens from the session's identity provider (request
    the ``identity`` fixture first: it puts the issuer and the clients' secrets in the environment);
    ``extra_env``/``settings`` add to their environment (e.g. short offer windows); with
    ``console``, the web console too."""
    assert os.environ.get("OIDC_ISSUER"), "request the identity fixture before starting the services"
    env = {
        # A receiver that was down is tried again within seconds, not minutes.
        "PROVIDERS_WEBHOOK_BACKOFF_INITIAL_SECONDS": "0.2",
        "PROVIDERS_WEBHOOK_BACKOFF_MAX_SECONDS": "1",
    }
    return processes.start_stack(
        database_url, kafka, namespace, logs, extra_env=env | (extra_env or {}) | settings, console=console
    )


def event_of(record) -> dict | None:
    """The event in a Kafka record, or None for the garbage other tests put on the topics."""
    try:
        event = json.loads(record.value)
    except (ValueError, TypeError):
        return None
    return event if isinstance(event, dict) and "event_type" in event else None


@asynccontextmanager
async def runtime_schema(database_url: str, prefix: str, empty_folder: Path) -> AsyncIterator[asyncpg.Pool]:
    """A new schema ``<prefix>_<random>`` holding the runtime's tables (outbox, inbox, their
    triggers: ``empty_folder`` stands for a service's own migrations), as a pool of two
    connections; dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    pool = await create_pool(database_url, schema=schema, application=f"{prefix}-test", size=2)
    try:
        await migrate(pool, schema, empty_folder)
        yield pool
    finally:
        await pool.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def drop_database(infra, name: str) -> None:
    admin = await asyncpg.connect(infra.database_url("postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def drop_namespace(infra, namespace: str) -> None:
    """A test namespace's topics and ACLs off the broker, as its administrator (its twin of
    :func:`drop_database`): left behind, they are thousands of partitions on a developer's broker."""
    from services.runtime.kafka import kafka_security, remove_namespace
    from services.runtime.settings import admin_settings

    await remove_namespace(infra.kafka, namespace, kafka_security(admin_settings(infra.kafka)))


PERSONAL_FIELDS = ("full_name", "address", "postcode", "phone", "email", "nhs_number", "date_of_birth", "care_notes")


async def personal_values(database_url: str) -> set[str]:
    """Every personal value the brokerage holds in this session's database (every test's seeded
    persons), as the strings a leak would contain; NHS numbers also in their spaced form."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(f"SELECT {', '.join(PERSONAL_FIELDS)} FROM brokerage.persons")
    finally:
        await conn.close()
    found = set()
    for row in rows:
        for name in PERSONAL_FIELDS:
            if row[name]:
                found.add(str(row[name]))
        number = row["nhs_number"]
        found.add(f"{number[:3]} {number[3:6]} {number[6:]}")
        phone = row["phone"] or ""
        if phone.startswith("+44"):  # stored in E.164; a leak may be in the national form people type
            found |= {"0" + phone[3:], f"0{phone[3:7]} {phone[7:]}"}
    return found


# ---- the services agree on who holds each package (issue 14, item 5) ------------------------


async def disagreements(database_url: str, seed: list[dict] | None = None) -> list[str]:
    """What the services disagree on, read from their schemas at one moment (empty: they agree):

    - for every package, the brokerage's provider (placed, started or paused, or ended with an
      effective date still ahead, or carrying on while a declined change is re-brokered; none
      otherwise) is the
      providers service's live placement, and no live placement is of a package not held;
    - each provider's committed hours are its seeded load plus the hours of its live placements
      and of those it still works a hand-back's notice on (decision 0159), each such notice the
      last day of an agreement in force the brokerage pays it by;
    - the brokerage's copy of each provider (``provider_view``) has the providers service's
      committed hours and status.

    ``seed``: the providers' seed (default: the reference data's), for their seeded load."""
    from services.runtime.reference import load_provider_seed

    seeded = {s["provider_id"]: Decimal(str(s.get("committed_hours", 0))) for s in seed or load_provider_seed()}
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):  # one snapshot of all three
            # A paused package's provider keeps it; an ended one's until its effective date (UK).
            # Re-brokered after a declined change, the provider carrying on at the old hours holds it
            # until the new award (decision 0082).
            packages = await conn.fetch(
                """SELECT package_id, status, coalesce(provider_id, carried_on_by) AS provider_id,
                          status IN ('placed', 'started', 'paused')
                          OR (status = 'ended' AND ended_on > (now() AT TIME ZONE 'Europe/London')::date)
                          OR carried_on_by IS NOT NULL AS held
                     FROM brokerage.packages"""
            )
            live = await conn.fetch(
                "SELECT package_id, provider_id, hours_per_week FROM providers.placements WHERE ended_at IS NULL"
            )
            held = await conn.fetch(
                """SELECT package_id, provider_id, hours_per_week, hours_held_until FROM providers.placements
                    WHERE ended_at IS NOT NULL AND hours_held_until IS NOT NULL AND hours_released_at IS NULL"""
            )
            in_force = IN_FORCE.replace("service_agreements", "brokerage.service_agreements")
            paid_to = {
                (r["package_id"], r["provider_id"], r["end_date"])
                for r in await conn.fetch(
                    "SELECT package_id, provider_id, end_date FROM brokerage.service_agreements s "
                    f"WHERE status = 'agreed' AND {in_force}"
                )
            }
            providers = await conn.fetch(
                "SELECT provider_id, committed_hours, profile->>'status' AS status FROM providers.providers"
            )
            views = await conn.fetch(
                "SELECT provider_id, (profile->>'committed_hours')::numeric AS committed, profile->>'status' AS status "
                "FROM brokerage.provider_view"
            )
    finally:
        await conn.close()
    problems = []
    holder = {r["package_id"]: r["provider_id"] for r in live}
    for p in packages:
        held_by = p["provider_id"] if p["held"] else None
        if holder.get(p["package_id"]) != held_by:
            problems.append(
                f"package {p['package_id']} ({p['status']}): brokerage says {held_by}, "
                f"the providers service's live placement is {holder.get(p['package_id'])}"
            )
    # A live placement of a package the brokerage never had comes from the integration tests'
    # synthetic PackagePlaced events, published on this session's topics before the services'
    # consumers first read them from the start; such packages are not the services' to agree on.
    load: dict[str, Decimal] = defaultdict(Decimal)
    for r in [*live, *held]:
        load[r["provider_id"]] += r["hours_per_week"]
    for r in held:
        if (r["package_id"], r["provider_id"], r["hours_held_until"]) not in paid_to:
            problems.append(
                f"package {r['package_id']}: {r['provider_id']} holds its hours through a notice to "
                f"{r['hours_held_until']}, but no agreement in force pays it to that day"
            )
    for r in providers:
        expected = seeded.get(r["provider_id"], Decimal(0)) + load[r["provider_id"]]
        if r["committed_hours"] != expected:
            problems.append(
                f"provider {r['provider_id']}: committed {r['committed_hours']} h/week, but seeded load "
                f"{seeded.get(r['provider_id'], 0)} + live placements and notices {load[r['provider_id']]} = {expected}"
            )
    registry = {r["provider_id"]: r for r in providers}
    for v in views:
        source = registry.get(v["provider_id"])
        if source is None or (v["committed"], v["status"]) != (source["committed_hours"], source["status"]):
            problems.append(f"brokerage's view of {v['provider_id']} is stale: {dict(v)} vs {source and dict(source)}")
    return problems


async def assert_services_agree(database_url: str, seed: list[dict] | None = None, timeout: float = 30) -> None:
    """:func:`disagreements` is empty - once the events in flight have landed (polled up to
    ``timeout`` seconds: the services agree eventually, through Kafka)."""
    deadline = time.monotonic() + timeout
    while True:
        problems = await disagreements(database_url, seed)
        if not problems or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert not problems, f"{len(problems)} disagreements between the services:\n" + "\n".join(problems[:20])
