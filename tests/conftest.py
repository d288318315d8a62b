"""Fixtures for tests that need the real Kafka and PostgreSQL (and the identity provider).

Where they come from, in order:
1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` in the environment (a cluster of your own);
2. testcontainers (Kafka KRaft + PostgreSQL), when a Docker engine answers;
3. the project's local processes, started by ``deploy/kafka.sh`` and ``deploy/postgres.sh``:
   Kafka closed (SASL/SCRAM and ACLs), its credentials in ``.run/kafka/credentials.env``.

The identity provider: ``OIDC_ISSUER`` (with ``HOMECARE_DEMO_PASSWORD`` and the clients'
``<SERVICE>_OIDC_CLIENT_SECRET``) in the environment, else the local Keycloak of
``deploy/keycloak.sh``, started in the background with Kafka and PostgreSQL (it takes a while).

Each test session gets its own database (``homecare_test_<hex>``) and its own topic namespace
(``HOMECARE_NAMESPACE=test-<hex>``), so runs never see each other's data or events. On a
secured cluster the session's topics and each principal's ACLs on them are made as the
administrator (the services may not create topics) and the ACLs removed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from cryptography.fernet import Fernet

from tests import documented_responses
from tests.support import Identity, drop_database, drop_namespace

ROOT = Path(__file__).resolve().parents[1]

# The tests' webhook receivers (tests/standins.py) listen on plain HTTP on loopback, which the
# outbound guard refuses by default (services/runtime/outbound.py); every service the tests start
# inherits this allowance. The guard's own tests build their settings without it.
os.environ.setdefault("OUTBOUND_ALLOW_HTTP", "true")
os.environ.setdefault("OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8")
# Services refuse to start without a key to seal secrets at rest (services/runtime/sealing.py):
# the test session makes its own.
os.environ.setdefault("SECRETS_KEYS", Fernet.generate_key().decode())
ARTIFACTS = ROOT / "artifacts"


@dataclass(frozen=True)
class Infra:
    kafka: str
    admin_dsn: str  # administrator URL of the server, database part ignored
    source: str

    def database_url(self, database: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def _docker_engine() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def _testcontainers(stack: list) -> Infra:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    kafka = KafkaContainer("apache/kafka:4.1.1").with_kraft()
    postgres = PostgresContainer(
        "postgres:15", username="postgres", password="postgres", dbname="homecare", driver=None
    )
    for container in (kafka, postgres):
        container.start()
        stack.append(container)
    return Infra(kafka.get_bootstrap_server(), postgres.get_connection_url(), "testcontainers")


def _local_processes() -> Infra:
    _start_keycloak_in_background()
    for script in ("kafka.sh", "postgres.sh"):
        subprocess.run(["bash", str(ROOT / "deploy" / script), "start"], check=True)
    from services.runtime.settings import LOCAL_DATABASE, LOCAL_KAFKA

    return Infra(LOCAL_KAFKA, LOCAL_DATABASE, "local processes")


@pytest.fixture(scope="session")
def infra():
    stack: list = []
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("DATABASE_URL"):
        found = Infra(os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["DATABASE_URL"], "environment")
    elif os.environ.get("HOMECARE_TESTCONTAINERS", "auto") != "never" and _docker_engine():
        found = _testcontainers(stack)
    else:
        found = _local_processes()
    yield found
    for container in reversed(stack):
        container.stop()


_keycloak: subprocess.Popen | None = None


def _start_keycloak_in_background() -> None:
    """Keycloak starts slowly: begin at once, beside Kafka and PostgreSQL; :func:`identity` waits."""
    global _keycloak
    if _keycloak is None and not os.environ.get("OIDC_ISSUER"):
        _keycloak = subprocess.Popen(["bash", str(ROOT / "deploy" / "keycloak.sh"), "start"])


@pytest.fixture(scope="session")
def identity() -> Identity:
    """The identity provider: tokens for the demo users and the services' clients, and the settings
    the services need (also put in ``os.environ``, which the service processes inherit)."""
    if os.environ.get("OIDC_ISSUER"):
        settings = {k: v for k, v in os.environ.items() if "OIDC" in k or k == "HOMECARE_DEMO_PASSWORD"}
    else:
        _start_keycloak_in_background()
        assert _keycloak is not None
        if _keycloak.wait() != 0:
            pytest.fail("deploy/keycloak.sh start failed (its log tail is above)")
        printed = subprocess.run(
            ["bash", str(ROOT / "deploy" / "keycloak.sh"), "env"], check=True, capture_output=True, text=True
        ).stdout
        settings = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
    os.environ.update(settings)
    return Identity(settings)


@pytest.fixture(scope="session")
def namespace() -> Iterator[str]:
    ns = f"test-{uuid.uuid4().hex[:8]}"
    os.environ["HOMECARE_NAMESPACE"] = ns
    yield ns
    os.environ.pop("HOMECARE_NAMESPACE", None)


@pytest.fixture(scope="session")
async def database_url(infra, namespace) -> AsyncIterator[str]:
    """A fresh database for this session, provisioned (roles, schemas); dropped afterwards."""
    from services.runtime.db import provision
    from services.runtime.kafka import provision_namespace

    name = f"homecare_{namespace.replace('-', '_')}"
    url = infra.database_url(name)
    await provision(url)
    os.environ["DATABASE_URL"] = url
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = infra.kafka
    provision_namespace(infra.kafka, namespace)
    yield url
    await drop_database(infra, name)
    # Its topics too: left behind, they are thousands of partitions on a developer's broker.
    await drop_namespace(infra, namespace)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(autouse=True)
def responses_match_their_documents(request, monkeypatch) -> Iterator[None]:
    """Every response a published operation sends in this test is what its OpenAPI document says
    (tests/documented_responses.py): checked after the test, failing it with what is wrong."""
    if request.node.get_closest_marker("undocumented_responses"):
        yield
        return
    recorder = documented_responses.Recorder()
    sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

    def send(self, *args, **kwargs):
        response = sync_send(self, *args, **kwargs)
        recorder.record(response)
        return response

    async def asend(self, *args, **kwargs):
        response = await async_send(self, *args, **kwargs)
        recorder.record(response)
        return response

    monkeypatch.setattr(httpx.Client, "send", send)
    monkeypatch.setattr(httpx.AsyncClient, "send", asend)
    yield
    failures = recorder.failures()
    assert not failures, "responses that do not match their OpenAPI documents:\n" + "\n".join(failures)
