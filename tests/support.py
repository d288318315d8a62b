"""Running the three services as separate OS processes, for the end-to-end and fault tests."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from services.bench import processes
from services.bench.processes import ROOT, SERVICES, Stack, free_port, stop_stack  # noqa: F401  (shared with the benchmark)
from services.runtime.oidc_client import OidcAuth, user_auth

CLI_CLIENT = "homecare-cli"  # development and tests only: the password grant for the demo users
# One demo user per role (deploy/keycloak/realm-homecare.json).
USER_OF_ROLE = {
    "broker": "demo-broker",
    "senior_broker": "demo-senior",
    "manager": "demo-manager",
    "head_of_service": "demo-head",
    "operations": "demo-ops",
    "council_admin": "demo-admin",
    "provider_staff": "demo-provider",
}


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


async def drop_database(infra, name: str) -> None:
    admin = await asyncpg.connect(infra.database_url("postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


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
    return found
