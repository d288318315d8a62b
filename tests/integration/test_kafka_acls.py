"""Kafka access control (deploy/kafka/server-sasl.properties): a SECOND local broker, on free
ports with its own data directory, started by deploy/kafka.sh with SASL/SCRAM-SHA-512 and the
StandardAuthorizer; `homecare kafka acls` grants each service its topics. A service principal is
refused where it has no ACL, and the three services still place packages through it."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from services.bench.driver import place_batch, wait_until_ready
from services.runtime import topics
from services.runtime.db import provision
from services.runtime.kafka import grant_service_acls
from services.runtime.reference import load_framework
from services.simulator.synthetic import batch
from tests.support import drop_database, free_port, start_stack, stop_stack

ROOT = Path(__file__).resolve().parents[2]

SERVICES = ("brokerage", "providers", "notifications")


def scram(user: str, password: str) -> dict:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory):
    """deploy/kafka.sh, parameterised: its own run directory and ports, the SASL template."""
    run_dir = tmp_path_factory.mktemp("secured-kafka")
    passwords = {name: secrets.token_urlsafe(16) for name in ("admin", *SERVICES)}
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env |= {
        "HOMECARE_RUN_DIR": str(run_dir),
        "HOMECARE_KAFKA_PORT": str(free_port()),
        "HOMECARE_KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_HEAP": "384m",
        "HOMECARE_KAFKA_SECURE": "1",
        "HOMECARE_KAFKA_ADMIN_PASSWORD": passwords["admin"],
        **{f"HOMECARE_KAFKA_{s.upper()}_PASSWORD": passwords[s] for s in SERVICES},
    }
    script = str(ROOT / "deploy" / "kafka.sh")
    subprocess.run(["bash", script, "start"], env=env, check=True, timeout=300)
    try:
        yield f"127.0.0.1:{env['HOMECARE_KAFKA_PORT']}", passwords
    finally:
        subprocess.run(["bash", script, "stop"], env=env, check=True, timeout=120)


@pytest.fixture(scope="module")
async def granted(secured_kafka, namespace):
    bootstrap, passwords = secured_kafka
    created = await grant_service_acls(bootstrap, scram("admin", passwords["admin"]))
    assert created > 0
    return bootstrap, passwords


async def test_a_service_principal_is_refused_on_a_topic_it_has_no_acl_for(granted):
    bootstrap, passwords = granted
    # The providers service may answer offers, but not make them: brokerage.packages is not its to write.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **scram("providers", passwords["providers"]))
    await producer.start()
    try:
        await producer.send_and_wait(topics.resolve("providers.answers"), b"{}")  # its own topic: allowed
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(topics.resolve("brokerage.packages"), b"{}")
    finally:
        await producer.stop()
    # Notifications may read packages, not the providers' answers.
    consumer = AIOKafkaConsumer(
        topics.resolve("providers.answers"),
        bootstrap_servers=bootstrap,
        group_id=topics.group("notifications"),
        **scram("notifications", passwords["notifications"]),
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await consumer.start()
    finally:
        await consumer.stop()


async def test_a_wrong_password_is_refused(granted):
    bootstrap, _ = granted
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **scram("brokerage", "not-the-password"))
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()


async def test_the_services_still_place_packages_through_the_secured_broker(
    granted, infra, database_url, namespace, artifacts, identity
):
    bootstrap, passwords = granted
    name = urlsplit(database_url).path.lstrip("/") + "_sasl"
    url = infra.database_url(name)
    await provision(url)
    extra = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        **{f"{s.upper()}_KAFKA_PASSWORD": passwords[s] for s in SERVICES},
    }
    logs = artifacts / "sasl-logs"
    shutil.rmtree(logs, ignore_errors=True)
    stack = start_stack(url, bootstrap, namespace, logs, extra_env=extra)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await wait_until_ready(client, {s: stack.url(s) for s in SERVICES}, timeout=90)
        requests = batch(load_framework(), 6, seed=11)
        packages = await place_batch(stack.url("brokerage"), requests, timeout=120)
        assert {p["status"] for p in packages} <= {"placed", "unplaced", "awaiting_approval"}
        assert any(p["status"] == "placed" for p in packages)
    finally:
        codes = stop_stack(stack)
        await drop_database(infra, name)
    assert all(code in (0, -15) for code in codes.values()), codes
    for service in SERVICES:
        log = (logs / f"{service}.log").read_text()
        assert "TopicAuthorizationFailed" not in log and "GroupAuthorizationFailed" not in log, f"{service} was refused"
