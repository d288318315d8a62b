"""Notifications on the real Kafka and PostgreSQL: the same placement delivered again and again,
across a restart of the service, reaches a real SMTP server once per recipient."""

import asyncio
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from schemas.events import PackagePlaced
from services.notifications import handlers
from services.notifications.app import build
from services.runtime import topics
from services.runtime.kafka import kafka_security
from services.runtime.outbox import unit_of_work
from services.runtime.settings import load
from tests.standins import MailServer

SAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "samples"


async def publish(bootstrap: str, event: PackagePlaced, times: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kafka_security())
    await producer.start()
    try:
        for _ in range(times):
            await producer.send_and_wait(
                topics.resolve("brokerage.packages"),
                event.model_dump_json().encode(),
                key=str(event.package_id).encode(),
            )
    finally:
        await producer.stop()


async def wait_sent(service, package_id, n: int, timeout: float = 30) -> list:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await service.pool.fetch(
            "SELECT recipient_role, recipient_id, delivery_id::text, status FROM deliveries WHERE package_id = $1",
            package_id,
        )
        if sum(r["status"] == "sent" for r in rows) >= n or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.2)


async def test_redeliveries_and_a_restart_send_one_email_per_recipient(infra, database_url):
    mail = MailServer().start()
    settings = load(
        "notifications", smtp_host="127.0.0.1", smtp_port=mail.port, smtp_security="none", dispatch_poll_seconds=0.05
    )
    package_id = uuid.uuid4()
    provider, broker = f"prov-{package_id.hex[:8]}", f"broker.{package_id.hex[:8]}"
    placed = PackagePlaced.model_validate_json((SAMPLES / "PackagePlaced.v3.json").read_text()).model_copy(
        update={
            "event_id": uuid.uuid4(),
            "package_id": package_id,
            "correlation_id": package_id,
            "provider_id": provider,
            "requested_by": broker,
            "losing_provider_ids": [],
        }
    )
    service, _ = build(settings)
    await service.start()
    try:
        async with unit_of_work(service.pool) as uow:
            for kind, rid in (("provider", provider), ("broker", broker), ("person", str(package_id))):
                await handlers.register_recipient(
                    uow, service.rules, kind, rid, {"email": f"{rid}@example.org", "channels": ["email"]}
                )
        await publish(infra.kafka, placed, times=2)
        rows = await wait_sent(service, package_id, 3)
    finally:
        await service.stop()
    assert sorted((r["recipient_role"], r["status"]) for r in rows) == [
        ("broker", "sent"),
        ("person", "sent"),
        ("provider", "sent"),
    ]

    # The service restarts and Kafka hands it the same event again (say, offsets were lost).
    service, _ = build(settings)
    await service.start()
    try:
        await publish(infra.kafka, placed, times=2)
        await asyncio.sleep(2)  # time for a wrongful second send to show
        again = await wait_sent(service, package_id, 3)
    finally:
        await service.stop()
        mail.stop()
    assert {r["delivery_id"] for r in again} == {r["delivery_id"] for r in rows}
    for rid in (provider, broker, str(package_id)):
        assert len(mail.to(f"{rid}@example.org")) == 1, rid
