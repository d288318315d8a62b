"""What the notifications service does, one function per event; each runs in one unit of work.

- :func:`confirm_placement`  PackagePlaced -> a confirmation per recipient -> PlacementConfirmed
"""

from __future__ import annotations

import datetime as dt

from schemas.events import PackagePlaced, PlacementConfirmed, Recipient
from services.notifications import domain
from services.notifications import repository as repo
from services.runtime.logging import get_logger
from services.runtime.outbox import UnitOfWork

log = get_logger(__name__)


async def confirm_placement(uow: UnitOfWork, event: PackagePlaced) -> None:
    confirmations = domain.placement_confirmations(event)
    for c in confirmations:
        if await repo.insert_confirmation(uow.conn, event.package_id, event.event_id, c):
            log.info("placement confirmation", recipient_kind=c.recipient_kind, recipient_id=c.recipient_id,
                     channel=c.channel, subject=c.subject)
    await uow.emit(PlacementConfirmed(
        correlation_id=event.package_id, causation_id=event.event_id, package_id=event.package_id,
        provider_id=event.provider_id, confirmed_at=dt.datetime.now(dt.UTC),
        recipients=[Recipient(kind=c.recipient_kind, recipient_id=c.recipient_id, channel=c.channel) for c in confirmations],
    ))
