"""Reporting service bootstrap: ``python -m services.reporting``.

Consumes every event topic (brokerage.packages, providers.answers, providers.registry,
notifications.confirmations) into projections in its own schema, and counts the dead letters.
HTTP: KPIs for any period (``GET /kpis``), the projection's tables as CSV or Parquet
(``GET /exports/{table}.{format}``), and how far behind the topics it is (``lag`` on
``/health/ready``, on the internal listener: ``REPORTING_INTERNAL_PORT``, default 9005).
Publishes nothing of its own (only its dead letters).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord
from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaMessage

from schemas import topics
from services.reporting import api, handlers
from services.runtime import clock
from services.runtime import topics as runtime_topics
from services.runtime.consumer import Delivery, RebalancePauses, raw_body
from services.runtime.dead_letters import DeadLetter
from services.runtime.http import create_app
from services.runtime.kafka import FASTSTREAM_BATCH_TIMEOUT_MS, poll_without_sleeping
from services.runtime.kafka_records import tolerant_batch_parser
from services.runtime.logging import get_logger
from services.runtime.outbox import UnitOfWork
from services.runtime.service import Service
from services.runtime.settings import ServiceSettings, load

log = get_logger(__name__)


def build(settings: ServiceSettings | None = None) -> tuple[Service, FastAPI]:
    settings = settings or load("reporting")
    service = Service(settings, migrations=Path(__file__).parent / "migrations")
    service.lag_on_health = True  # how far the projection is behind the topics, on /health/ready

    @service.consumer.on_batch(*handlers.PROJECTED)
    async def on_events(uow: UnitOfWork, events: list[Any]) -> None:
        await handlers.project(uow, events)

    # The dead letters are not events to apply (their bytes may be anything): counted by their
    # own subscriber, in the same consumer group.
    service.consumer.subscribe(*topics.EVENT_TOPICS)
    subscribe_dead_letters(service)

    app = create_app(
        service,
        title="Reporting",
        description="The platform's history kept for as long as the council keeps its records: KPIs for any "
        "period, and the projections as CSV or Parquet downloads for business-intelligence tools. "
        "No personal data: the events it is built from carry none.",
    )
    app.include_router(api.build_router(service))
    app.include_router(api.reports_router(service))
    return service, app


def subscribe_dead_letters(service: Service) -> None:
    """Count each record of homecare.dead-letters once (by its origin), committing its offset after.
    A second member of the service's group: the group's session settings, and with static
    membership an instance id of its own (two members may not share one)."""
    settings = service.settings
    instance_id = settings.consumer_group_instance_id

    subscriber = service.broker.subscriber(
        runtime_topics.dead_letters(),
        group_id=service.consumer.group,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        decoder=raw_body,
        parser=tolerant_batch_parser,
        batch=True,
        max_records=service.settings.consumer_batch_size,
        batch_timeout_ms=FASTSTREAM_BATCH_TIMEOUT_MS,  # its poll's; ours replaces it below
        session_timeout_ms=settings.consumer_session_timeout_ms,
        heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
        group_instance_id=f"{instance_id}-dead-letters" if instance_id else None,
        listener=RebalancePauses(service.name, service.consumer.group),
        title=f"{service.consumer.group}:{runtime_topics.dead_letters()}",
        description="reporting counts the dead letters",
    )
    poll_without_sleeping(subscriber, service.settings.consumer_poll_wait_ms)

    @subscriber
    async def on_dead_letters(bodies: list[bytes]) -> None:
        msg: KafkaMessage = service.broker.context.get_local("message")
        raw = msg.raw_message
        records: tuple[ConsumerRecord, ...] = tuple(raw) if isinstance(raw, (list, tuple)) else (raw,)
        try:
            async with service.pool.acquire() as conn, conn.transaction():
                for record in records:
                    delivery = Delivery.of(record)
                    letter = DeadLetter.from_record(delivery.key, delivery.raw_value, delivery.headers)
                    try:
                        failed_at = clock.parse_instant(letter.failed_at)
                    except ValueError:
                        failed_at = clock.now()
                    await handlers.count_dead_letter(conn, letter, failed_at)
        except Exception as exc:
            log.warning("dead letters not counted; they come back", error=repr(exc), size=len(records))
            await msg.nack()
            return
        await msg.ack()
