"""Kafka closed by default (deploy/kafka/server-sasl.properties, docs/guide/kafka-security.md):
the local broker the tests run on authenticates every client with SASL/SCRAM and authorises every
operation with ACLs; one principal per service, which may write only its own topics. A forged bid
from a principal without write rights is refused by the broker and places nothing, and an event
on a topic that does not own its type is dead-lettered by the consumers.

These tests need the secured broker: they are skipped on a cluster that is open (a
KAFKA_BOOTSTRAP_SERVERS of your own without credentials, or testcontainers)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from aiokafka.protocol.metadata import MetadataRequest

from schemas.events import BidSubmitted
from services.bench.driver import wait_until_ready
from services.runtime import topics
from services.runtime.db import provision
from services.runtime.kafka import describe_acls, kafka_security, read_topic, secured
from services.runtime.reference import load_framework
from services.runtime.settings import admin_settings, load, local_kafka_identity
from services.simulator.synthetic import batch
from tests.support import drop_database, drop_namespace, staff, start_stack, stop_stack

SERVICES = ("brokerage", "providers", "notifications", "reporting")
ROOT = Path(__file__).resolve().parents[2]


def kafka_client_of(principal: str) -> dict:
    """The principal's client arguments: as its own process would sign in (settings.load), or,
    for a principal that is not one of our processes, from the local broker's credentials."""
    if principal in ("brokerage", "providers", "notifications", "console"):
        return kafka_security(load(principal))  # type: ignore[arg-type]  # one of the processes' names
    settings = admin_settings()
    found = local_kafka_identity(principal, settings.kafka_bootstrap_servers)
    if found is None:
        pytest.skip(f"no credentials for {principal} on this cluster")
    return kafka_security(settings.model_copy(update=found))


@pytest.fixture(scope="module")
def admin(infra, database_url) -> dict:
    security = kafka_security(admin_settings(infra.kafka))
    if not secured(security):
        pytest.skip("the Kafka cluster is open (PLAINTEXT): nothing to test here")
    return security


@pytest.fixture(scope="module")
def acl_namespace(namespace) -> str:
    return f"{namespace}-acl"


@pytest.fixture(scope="module")
async def acl_stack(admin, infra, database_url, acl_namespace, artifacts, identity):
    """The four services on the secured broker, in a database and topic namespace of their own
    (start_stack makes the namespace's topics and ACLs as the administrator)."""
    name = urlsplit(database_url).path.lstrip("/") + "_acl"
    url = infra.database_url(name)
    await provision(url)
    logs = artifacts / "acl-logs"
    shutil.rmtree(logs, ignore_errors=True)
    stack = start_stack(url, infra.kafka, acl_namespace, logs)
    async with httpx.AsyncClient(timeout=10) as client:
        await wait_until_ready(client, {s: stack.url(s) for s in SERVICES}, timeout=90)
    yield stack, url
    codes = stop_stack(stack)
    await drop_database(infra, name)
    await drop_namespace(infra, acl_namespace)
    assert all(code in (0, -15) for code in codes.values()), codes
    for service in SERVICES:
        log = (logs / f"{service}.log").read_text()
        assert "AuthorizationFailed" not in log, f"{service} was refused something it needs"


async def test_each_principal_has_exactly_the_rights_intended(admin, infra, namespace):
    acls = await describe_acls(infra.kafka, admin, namespace)
    rights: dict[str, set[str]] = {}
    for acl in acls:
        base = acl.resource[len(namespace) + 1 :]
        kind = "group" if acl.resource_type == 3 else "topic"
        rights.setdefault(acl.principal, set()).add(f"{str(acl).split()[2]} {kind} {base}")

    def writes(principal: str) -> set[str]:
        return {r.split()[2] for r in rights[principal] if r.startswith("write topic")}

    def reads(principal: str) -> set[str]:
        return {r.split()[2] for r in rights[principal] if r.startswith("read topic")}

    # The hand-off to finance is the brokerage's topic too (decision 0109); no other service reads it.
    assert writes("User:brokerage") == {"brokerage.packages", "brokerage.service-agreements", "homecare.dead-letters"}
    assert writes("User:providers") == {"providers.answers", "providers.registry", "homecare.dead-letters"}
    assert writes("User:notifications") == {"notifications.confirmations", "homecare.dead-letters"}
    assert writes("User:reporting") == {"homecare.dead-letters"}  # its own dead letters, nothing else
    assert reads("User:brokerage") == {"providers.answers", "providers.registry"}
    assert reads("User:providers") == reads("User:notifications") == {"brokerage.packages"}
    # The console reads and never writes; ops replays dead letters (reads them, writes their origin).
    assert writes("User:console") == set()
    assert reads("User:console") == set(topics.contract.ALL)
    assert reads("User:reporting") == set(topics.contract.ALL)  # every event topic, and counts the dead letters
    assert reads("User:ops") == {"homecare.dead-letters"}
    assert writes("User:ops") == set(topics.contract.EVENT_TOPICS)
    # Each consumer group is read (joined) by its own principal only; the console may only see them.
    for service in SERVICES:
        members = {p for p, rs in rights.items() if f"read group {service}" in rs}
        assert members == {f"User:{service}"}
        assert f"describe group {service}" in rights["User:console"]
    assert not any("read group" in r for r in rights["User:console"])
    assert "User:admin" not in rights, "the administrator is a super user, not an ACL holder"
    assert all(acl.permission == 3 for acl in acls), "allow rules only: whatever is not granted is refused"


async def test_a_service_principal_may_write_its_own_topic_and_no_other(admin, infra, acl_stack, acl_namespace):
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, **kafka_client_of("providers"))
    await producer.start()
    try:
        # Its own topic: allowed (garbage, which the brokerage then dead-letters).
        await producer.send_and_wait(topics.resolve("providers.answers", acl_namespace), b"{}")
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(topics.resolve("brokerage.packages", acl_namespace), b"{}")
    finally:
        await producer.stop()
    # Notifications may read packages, not the providers' answers; nor may it join another's group.
    consumer = AIOKafkaConsumer(
        topics.resolve("providers.answers", acl_namespace),
        bootstrap_servers=infra.kafka,
        group_id=topics.group("notifications", acl_namespace),
        **kafka_client_of("notifications"),
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await consumer.start()
    finally:
        await consumer.stop()


async def test_a_wrong_password_is_refused(admin, infra):
    wrong = kafka_client_of("brokerage") | {"sasl_plain_password": "not-the-password"}
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, **wrong)
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()


async def test_no_credentials_at_all_are_refused(admin, infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, request_timeout_ms=5000)
    with pytest.raises(KafkaError):  # the listener speaks SASL only: a plaintext client never gets in
        await asyncio.wait_for(producer.start(), timeout=20)
    await producer.stop()


async def test_a_forged_bid_from_a_principal_without_write_rights_is_refused_and_places_nothing(
    admin, infra, acl_stack, acl_namespace
):
    stack, url = acl_stack
    request = batch(load_framework(), 1, seed=16)[0]
    async with httpx.AsyncClient(timeout=10, auth=staff("demo-broker")) as client:
        response = await client.post(f"{stack.url('brokerage')}/packages", json=request)
        response.raise_for_status()
        package_id = uuid.UUID(response.json()["package_id"])
    conn = await asyncpg.connect(url)
    try:
        offered = None
        for _ in range(100):  # the first round's providers
            offered = await conn.fetchval(
                "SELECT provider_ids[1] FROM brokerage.offer_rounds WHERE package_id = $1 AND offer_round = 1",
                package_id,
            )
            if offered:
                break
            await asyncio.sleep(0.2)
        assert offered, "the package was never offered"
        forged = BidSubmitted(
            correlation_id=package_id,
            package_id=package_id,
            offer_round=1,
            provider_id=offered,
            hourly_rate=Decimal("11.11"),
            earliest_start=dt.date.today(),
            adapter="automatic",
            answered_at=dt.datetime.now(dt.UTC),
        )
        answers = topics.resolve("providers.answers", acl_namespace)
        for principal in ("notifications", "brokerage", "console", "reporting"):
            producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, **kafka_client_of(principal))
            await producer.start()
            try:
                with pytest.raises(TopicAuthorizationFailedError):
                    await producer.send_and_wait(
                        answers,
                        forged.model_dump_json().encode(),
                        key=str(package_id).encode(),
                        headers=[("event_type", b"BidSubmitted")],
                    )
            finally:
                await producer.stop()

        status = None
        for _ in range(300):  # the package runs its course on the real answers
            status = await conn.fetchval("SELECT status FROM brokerage.packages WHERE package_id = $1", package_id)
            if status in ("placed", "unplaced"):
                break
            await asyncio.sleep(0.2)
        assert status in ("placed", "unplaced")
        assert await conn.fetchval("SELECT count(*) FROM brokerage.answers WHERE event_id = $1", forged.event_id) == 0
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM brokerage.answers WHERE package_id = $1 AND hourly_rate = 11.11", package_id
            )
            == 0
        )
        assert await conn.fetchval(
            "SELECT hourly_rate FROM brokerage.packages WHERE package_id = $1", package_id
        ) != Decimal("11.11")
    finally:
        await conn.close()
    on_topic = [
        json.loads(r.value).get("event_id")
        for r in await read_topic(infra.kafka, answers, security=admin)
        if r.value and r.value.startswith(b"{")
    ]
    assert str(forged.event_id) not in on_topic


async def test_an_event_on_a_topic_that_does_not_own_it_is_dead_lettered(admin, infra, acl_stack, acl_namespace):
    """Written by the administrator (who may write anywhere): a BidSubmitted on brokerage.packages
    reaches every consumer of that topic (providers, notifications, reporting), and each
    dead-letters it as misrouted."""
    consumers = {s for s, consumed in topics.contract.CONSUMED_BY.items() if "brokerage.packages" in consumed}
    package_id = uuid.uuid4()  # a package's events are keyed by it
    bid = BidSubmitted(
        correlation_id=package_id,
        package_id=package_id,
        offer_round=1,
        provider_id="bluebell-care",
        hourly_rate=Decimal("11.11"),
        earliest_start=dt.date.today(),
        adapter="automatic",
        answered_at=dt.datetime.now(dt.UTC),
    )
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, **admin)
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.resolve("brokerage.packages", acl_namespace),
            bid.model_dump_json().encode(),
            key=str(bid.package_id).encode(),
            headers=[("event_type", b"BidSubmitted")],
        )
    finally:
        await producer.stop()
    letters: dict[str, str] = {}
    for _ in range(60):
        for record in await read_topic(
            infra.kafka, topics.resolve("homecare.dead-letters", acl_namespace), security=admin
        ):
            headers = {k: v.decode() for k, v in record.headers}
            if record.key == str(bid.package_id).encode():
                letters[headers["x-dlq-service"]] = headers["x-dlq-reason"] + ": " + headers["x-dlq-error"]
        if len(letters) == len(consumers):
            break
        await asyncio.sleep(0.5)
    assert set(letters) == consumers == {"providers", "notifications", "reporting"}
    for letter in letters.values():
        assert letter.startswith("misrouted: BidSubmitted is accepted only from")


async def test_a_rotated_password_replaces_the_old_one(admin, infra):
    """deploy/kafka.sh rotate: the principal's old password no longer signs in, the new one (in
    the credentials file, which the processes read) does. `reporting`: no process of this test
    package signs in as it."""
    before = local_kafka_identity("reporting", infra.kafka)
    if before is None:
        pytest.skip("not the local broker of deploy/kafka.sh")
    rotated = subprocess.run(
        ["bash", str(ROOT / "deploy/kafka.sh"), "rotate", "reporting"], capture_output=True, text=True, timeout=120
    )
    assert rotated.returncode == 0, rotated.stderr
    after = local_kafka_identity("reporting", infra.kafka)
    assert after is not None
    assert after["kafka_password"] != before["kafka_password"]
    assert after["kafka_password"] not in rotated.stdout + rotated.stderr, "a password is never printed"

    async def signs_in(password: str) -> bool:
        producer = AIOKafkaProducer(
            bootstrap_servers=infra.kafka, **kafka_client_of("reporting") | {"sasl_plain_password": password}
        )
        try:
            await producer.start()
            return True
        except KafkaError:
            return False
        finally:
            await producer.stop()

    # The broker applies the new credential from its metadata log a moment after the controller took it.
    for _ in range(50):
        if await signs_in(after["kafka_password"]):
            break
        await asyncio.sleep(0.2)
    assert await signs_in(after["kafka_password"])
    assert not await signs_in(before["kafka_password"])


async def test_the_controller_listener_is_no_open_super_user_path(admin, infra):
    """The KRaft controller listener requires SASL and knows only the administrator: a service
    principal's password does not sign in there, and a client without credentials is cut off at its
    first request; the administrator does sign in (so the refusals are the listener's, not a dead port)."""
    if local_kafka_identity("providers", infra.kafka) is None:
        pytest.skip("not the local broker of deploy/kafka.sh")
    port = int(os.environ.get("HOMECARE_KAFKA_CONTROLLER_PORT", "19093"))

    def plain(principal: str) -> dict:
        password = (
            kafka_client_of(principal)["sasl_plain_password"] if principal != "admin" else admin["sasl_plain_password"]
        )
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": principal,
            "sasl_plain_password": password,
        }

    conn = await create_conn("127.0.0.1", port, request_timeout_ms=5000, **plain("admin"))
    conn.close()
    with pytest.raises(KafkaError):  # SaslAuthenticationFailed
        await create_conn("127.0.0.1", port, request_timeout_ms=5000, **plain("providers"))
    anonymous = await create_conn("127.0.0.1", port, request_timeout_ms=5000)
    try:
        with pytest.raises(KafkaError):  # the listener expects a SASL handshake, not a request
            await anonymous.send(MetadataRequest([]))
    finally:
        anonymous.close()
